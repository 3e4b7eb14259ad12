import EpicycleRuntime
import Testing
import TestSupport

/// The Winograd F(2×2, 3×3) kernels against the reference loops (Double sums) and the direct kernels,
/// on ResNet-CIFAR's channel counts (16/32/64, and 48 for 16-channel blocks next to 32-channel ones),
/// image sizes 32×32, 28×28 (Fashion-MNIST), odd 7×7 and smaller odd ones where tiles overhang the
/// last row or column, paddings 0/1/2 (the input gradient then pads by 2/1/0), batches 1 to 3 split
/// unevenly over threads, with and without bias, residual, ReLU, accumulation.
///
/// Tolerance, from Winograd's error growth (Lavin & Gray 2016; bounds as in Barabasz et al. 2020,
/// "Error Analysis and Improving the Accuracy of Winograd Convolution for Deep Neural Networks"): an
/// output is Aᵀ[Σ_c (G g Gᵀ) ⊙ (Bᵀ d B)]A, a sum over C channels of 16 products of transformed values.
/// Each transform multiplies magnitudes by at most its largest absolute row sum per axis — |Bᵀ| 2,
/// |G| 1.5, |Aᵀ| 3, so (2·1.5·3)² = 81 over both axes — and each rounding step adds at most ε = 2⁻²⁴ of
/// the value it rounds; the C·9 products the direct sum has become C·16 terms. So |error| ≤
/// 81 · 16·C · ε · max|x| · max|w| summed linearly (the worst case; random signs give its square root),
/// ≈ 5e-3 for C = 64 with inputs in [−1, 1]. A wrong tap, tile or channel moves an output by one
/// product, ~0.1–1, so the bound still separates right from wrong. The weight gradient sums over the
/// N·P·Q outputs instead of C·9 taps (16 terms per 2×2 tile, ~4 per output), the same argument with
/// depth 4·N·P·Q.
@Suite struct Conv2DWinogradTests {
    static let cases: [Conv2DCase] = [
        Conv2DCase.make("16→16 @32², batch 2", 2, 32, 32, 16, 16, kernel: (3, 3), stride: (1, 1), padding: (1, 1), groups: 1, bias: false),
        Conv2DCase.make("32→64 @32², bias, batch 1", 1, 32, 32, 32, 64, kernel: (3, 3), stride: (1, 1), padding: (1, 1), groups: 1, bias: true),
        Conv2DCase.make("16→32 @28², bias, batch 2", 2, 28, 28, 16, 32, kernel: (3, 3), stride: (1, 1), padding: (1, 1), groups: 1, bias: true),
        Conv2DCase.make("64→64 @7², batch 3", 3, 7, 7, 64, 64, kernel: (3, 3), stride: (1, 1), padding: (1, 1), groups: 1, bias: false),
        Conv2DCase.make("64→32 @8², bias, batch 2", 2, 8, 8, 64, 32, kernel: (3, 3), stride: (1, 1), padding: (1, 1), groups: 1, bias: true),
        Conv2DCase.make("16→16 @7², bias, batch 1", 1, 7, 7, 16, 16, kernel: (3, 3), stride: (1, 1), padding: (1, 1), groups: 1, bias: true),
        Conv2DCase.make("16→48 pad 0 @9×6, bias", 2, 9, 6, 16, 48, kernel: (3, 3), stride: (1, 1), padding: (0, 0), groups: 1, bias: true),
        Conv2DCase.make("32→16 pad 2 @5×4", 3, 5, 4, 32, 16, kernel: (3, 3), stride: (1, 1), padding: (2, 2), groups: 1, bias: false),
        Conv2DCase.make("16→16 pad (1, 0) @2×3", 3, 2, 3, 16, 16, kernel: (3, 3), stride: (1, 1), padding: (1, 0), groups: 1, bias: true),
    ]

    // The bound above for a sum over `depth` terms of values ≤ 1 in magnitude.
    static func tolerance(depth: Int) -> Float { 81 * Float(depth) * Float.ulpOfOne / 2 }

    @Test(arguments: cases, [1, 2, 3])
    func winogradAgreesWithReference(_ testCase: Conv2DCase, threads: Int) {
        let geometry = testCase.geometry
        #expect(geometry.supportsWinograd)
        let workspace = Conv2DWorkspace()
        let (C, K) = (geometry.inputChannels, geometry.outputChannels)
        let input = randomTensor(geometry.inputShape, seed: 31).scalars
        let weight = randomTensor(geometry.weightShape, seed: 32).scalars
        let bias = randomTensor([K], seed: 33).scalars
        let dOutput = randomTensor(geometry.outputShape, seed: 34).scalars
        let outputCount = geometry.outputShape.reduce(1, *), inputCount = geometry.inputShape.reduce(1, *)
        // The bias adds one exactly rounded term.
        let forwardTolerance = Self.tolerance(depth: 16 * C) + 1e-6
        let inputTolerance = Self.tolerance(depth: 16 * K)

        var winograd = [Float](repeating: .nan, count: outputCount), reference = winograd, direct = winograd
        withOptional(testCase.hasBias ? bias : nil) { bias in
            conv2DForwardWinograd(geometry, input: input, weight: weight, bias: bias, output: &winograd,
                                  workspace: workspace, threads: threads)
            conv2DForwardReference(geometry, input: input, weight: weight, bias: bias, output: &reference)
            conv2DForwardDirect(geometry, input: input, weight: weight, bias: bias, output: &direct,
                                workspace: workspace, threads: threads)
        }
        expectClose(winograd, reference, rtol: 0, atol: forwardTolerance, "forward \(testCase.label)")
        expectClose(winograd, direct, rtol: 0, atol: forwardTolerance, "forward against direct \(testCase.label)")

        var dInputReference = [Float](repeating: .nan, count: inputCount), dInput = dInputReference
        conv2DBackwardInputReference(geometry, dOutput: dOutput, weight: weight, dInput: &dInputReference)
        conv2DBackwardInputWinograd(geometry, dOutput: dOutput, weight: weight, dInput: &dInput, workspace: workspace,
                                    threads: threads)
        expectClose(dInput, dInputReference, rtol: 0, atol: inputTolerance, "backward input \(testCase.label)")
        // Accumulating adds onto every input pixel, the border ones included.
        let startInput = randomTensor(geometry.inputShape, seed: 35).scalars
        var dInputAccumulated = startInput
        conv2DBackwardInputWinograd(geometry, dOutput: dOutput, weight: weight, dInput: &dInputAccumulated,
                                    workspace: workspace, accumulate: true, threads: threads)
        expectClose(dInputAccumulated, zip(startInput, dInputReference).map(+), rtol: 0, atol: inputTolerance + 1e-6,
                    "backward input, accumulated \(testCase.label)")

        // Gradients start non-zero: Winograd must add to them.
        let startWeight = randomTensor(geometry.weightShape, seed: 36).scalars
        let startBias = randomTensor([K], seed: 37).scalars
        var dWeight = startWeight, dWeightReference = startWeight, dBias = startBias, dBiasReference = startBias
        conv2DBackwardWeightWinograd(geometry, input: input, dOutput: dOutput, dWeight: &dWeight, dBias: &dBias,
                                     workspace: workspace, threads: threads)
        conv2DBackwardWeightReference(geometry, input: input, dOutput: dOutput, dWeight: &dWeightReference,
                                      dBias: &dBiasReference)
        let weightDepth = 16 * geometry.batch * (geometry.outputHeight + 1) / 2 * (geometry.outputWidth + 1) / 2
        expectClose(dWeight, dWeightReference, rtol: 0, atol: Self.tolerance(depth: weightDepth) + 1e-6,
                    "backward weight \(testCase.label)")
        // The bias gradient is the direct kernels' column sum: within float32 rounding of the Double one.
        expectClose(dBias, dBiasReference, rtol: 1e-5, atol: 1e-5, "backward bias \(testCase.label)")
    }

    @Test(arguments: cases, [1, 2])
    func epilogueAgreesWithReference(_ testCase: Conv2DCase, threads: Int) {
        let workspace = Conv2DWorkspace()
        expectEpilogueMatchesReference(testCase) { epilogue, input, weight, bias, output in
            conv2DForwardWinograd(testCase.geometry, input: input, weight: weight, bias: bias, output: output,
                                  workspace: workspace, epilogue: epilogue, threads: threads)
        }
    }

    /// The weight gradient's parts follow the core count, not the thread count: one thread and all the
    /// cores give the same bits, and so does a second call.
    @Test func weightGradientIsDeterministic() {
        let geometry = Self.cases[3].geometry
        let input = randomTensor(geometry.inputShape, seed: 41).scalars
        let dOutput = randomTensor(geometry.outputShape, seed: 42).scalars
        func gradient(threads: Int) -> [Float] {
            var dWeight = [Float](repeating: 0, count: geometry.weightShape.reduce(1, *))
            conv2DBackwardWeightWinograd(geometry, input: input, dOutput: dOutput, dWeight: &dWeight, dBias: nil,
                                         workspace: Conv2DWorkspace(), threads: threads)
            return dWeight
        }
        let alone = gradient(threads: 1)
        #expect(alone == gradient(threads: min(onlineProcessorCount, geometry.batch)))
        #expect(alone == gradient(threads: 1))
    }

    /// Each image's forward and input gradient are the same bits whether it is convolved in a whole
    /// batch on all threads or in half of it on one — as the ranks of a data-parallel run hold it —
    /// on wrn-10-2's and ResNet-20's Winograd layers (odd 7×7 images, whose tiles overhang, included).
    @Test(arguments: [(7, 128), (14, 64), (28, 32), (8, 64), (16, 32)])
    func imagesGetTheSameBitsHoweverABatchIsSplit(_ layer: (size: Int, channels: Int)) {
        let whole = Self.resNetLayer(channels: layer.channels, size: layer.size, batch: 6)
        var half = whole
        half.batch = 3
        let (input, weight, dOutput) = Self.operands(whole)
        let bias = randomTensor([layer.channels], seed: 54).scalars
        let (inputHalf, outputHalf) = (half.inputShape.reduce(1, *), half.outputShape.reduce(1, *))
        var output = [Float](repeating: .nan, count: 2 * outputHalf), outputInHalves = output
        var dInput = [Float](repeating: .nan, count: 2 * inputHalf), dInputInHalves = dInput
        let workspace = Conv2DWorkspace()
        conv2DForwardWinograd(whole, input: input, weight: weight, bias: bias, output: &output, workspace: workspace,
                              threads: onlineProcessorCount)
        conv2DBackwardInputWinograd(whole, dOutput: dOutput, weight: weight, dInput: &dInput, workspace: workspace,
                                    threads: onlineProcessorCount)
        // The second half first, so that no scratch is left as the whole batch left it.
        for part in [1, 0] {
            input.withUnsafeBufferPointer { x in
                outputInHalves.withUnsafeMutableBufferPointer { y in
                    conv2DForwardWinograd(half, input: x.baseAddress! + part * inputHalf, weight: weight, bias: bias,
                                          output: y.baseAddress! + part * outputHalf, workspace: workspace, threads: 1)
                }
            }
            dOutput.withUnsafeBufferPointer { dy in
                dInputInHalves.withUnsafeMutableBufferPointer { dx in
                    conv2DBackwardInputWinograd(half, dOutput: dy.baseAddress! + part * outputHalf, weight: weight,
                                                dInput: dx.baseAddress! + part * inputHalf, workspace: workspace, threads: 1)
                }
            }
        }
        #expect(output == outputInHalves, "forward, \(layer)")
        #expect(dInput == dInputInHalves, "input gradient, \(layer)")
    }

    /// Only ungrouped 3×3 stride-1 convolutions with 16·n channels and padding ≤ 2 take Winograd.
    @Test func eligibility() {
        func geometry(channels: (Int, Int) = (16, 16), kernel: Int = 3, stride: Int = 1, padding: Int = 1,
                      groups: Int = 1) -> Conv2DGeometry {
            Conv2DGeometry(batch: 2, inputHeight: 9, inputWidth: 9, inputChannels: channels.0, outputChannels: channels.1,
                           kernelHeight: kernel, kernelWidth: kernel, strideHeight: stride, strideWidth: stride,
                           paddingHeight: padding, paddingWidth: padding, groups: groups)
        }
        #expect(geometry().supportsWinograd && geometry(channels: (64, 32), padding: 0).supportsWinograd)
        #expect(!geometry(stride: 2).supportsWinograd)
        #expect(!geometry(kernel: 5, padding: 2).supportsWinograd && !geometry(kernel: 1, padding: 0).supportsWinograd)
        #expect(!geometry(channels: (32, 32), groups: 2).supportsWinograd)
        #expect(!geometry(channels: (3, 16)).supportsWinograd && !geometry(channels: (16, 10)).supportsWinograd)
        #expect(!geometry(padding: 3).supportsWinograd)
    }

    // (output, dInput, dWeight) of one geometry's three passes, through the dispatching entry points
    // under `algorithm` (also checking that conv2DBackward's one call equals its two separate ones), or
    // straight through one kind of kernels.
    static func dispatched(_ g: Conv2DGeometry, _ algorithm: Conv2DAlgorithm) -> [[Float]] {
        let (input, weight, dOutput) = Self.operands(g)
        let workspace = Conv2DWorkspace()
        workspace.algorithm = algorithm
        var output = [Float](repeating: .nan, count: g.outputShape.reduce(1, *))
        conv2DForward(g, input: input, weight: weight, bias: nil, output: &output, workspace: workspace)
        var dInput = [Float](repeating: .nan, count: g.inputShape.reduce(1, *)), dInputAlone = dInput
        var dWeight = [Float](repeating: 0, count: g.weightShape.reduce(1, *)), dWeightAlone = dWeight
        conv2DBackward(g, input: input, dOutput: dOutput, weight: weight, dInput: &dInput, dWeight: &dWeight,
                       dBias: nil, workspace: workspace)
        conv2DBackwardInput(g, dOutput: dOutput, weight: weight, dInput: &dInputAlone, workspace: workspace)
        conv2DBackwardWeight(g, input: input, dOutput: dOutput, dWeight: &dWeightAlone, dBias: nil, workspace: workspace)
        #expect(dInput == dInputAlone && dWeight == dWeightAlone, "\(algorithm): one call and two calls differ")
        return [output, dInput, dWeight]
    }

    static func kernels(_ g: Conv2DGeometry, winograd: Bool) -> [[Float]] {
        let (input, weight, dOutput) = Self.operands(g)
        var output = [Float](repeating: .nan, count: g.outputShape.reduce(1, *))
        var dInput = [Float](repeating: .nan, count: g.inputShape.reduce(1, *))
        var dWeight = [Float](repeating: 0, count: g.weightShape.reduce(1, *))
        let scratch = Conv2DWorkspace()
        if winograd {
            conv2DForwardWinograd(g, input: input, weight: weight, bias: nil, output: &output, workspace: scratch)
            conv2DBackwardInputWinograd(g, dOutput: dOutput, weight: weight, dInput: &dInput, workspace: scratch)
            conv2DBackwardWeightWinograd(g, input: input, dOutput: dOutput, dWeight: &dWeight, dBias: nil, workspace: scratch)
        } else {
            conv2DForwardDirect(g, input: input, weight: weight, bias: nil, output: &output, workspace: scratch)
            conv2DBackwardInputDirect(g, dOutput: dOutput, weight: weight, dInput: &dInput, workspace: scratch)
            conv2DBackwardWeightDirect(g, input: input, dOutput: dOutput, dWeight: &dWeight, dBias: nil, workspace: scratch)
        }
        return [output, dInput, dWeight]
    }

    static func operands(_ g: Conv2DGeometry) -> (input: [Float], weight: [Float], dOutput: [Float]) {
        (randomTensor(g.inputShape, seed: 51).scalars, randomTensor(g.weightShape, seed: 52).scalars,
         randomTensor(g.outputShape, seed: 53).scalars)
    }

    // Each of these is above the 2²⁰ multiply-adds per image below which `auto` and `measure` stay direct.
    static func resNetLayer(channels: Int, size: Int, batch: Int = 8) -> Conv2DGeometry {
        Conv2DGeometry(batch: batch, inputHeight: size, inputWidth: size, inputChannels: channels, outputChannels: channels,
                       kernelHeight: 3, kernelWidth: 3, paddingHeight: 1, paddingWidth: 1)
    }

    /// The dispatcher follows a workspace's algorithm: `winograd` and `direct` force their kernels,
    /// `auto` applies its rule — Winograd's forward from 32 channels on, its input gradient from 64,
    /// never its weight gradient, and nothing below the size worth it.
    @Test func dispatch() {
        let small = Conv2DGeometry(batch: 2, inputHeight: 5, inputWidth: 5, inputChannels: 64, outputChannels: 64,
                                   kernelHeight: 3, kernelWidth: 3, paddingHeight: 1, paddingWidth: 1)
        let (winograd, direct) = (Self.kernels(small, winograd: true), Self.kernels(small, winograd: false))
        #expect(winograd != direct, "the two algorithms round differently, so equal bits would mean one path")
        #expect(Self.dispatched(small, .winograd) == winograd)
        #expect(Self.dispatched(small, .direct) == direct)
        #expect(Self.dispatched(small, .auto) == direct)
        for (channels, size, forward, input) in [(16, 32, false, false), (32, 16, true, false), (64, 8, true, true)] {
            let g = Self.resNetLayer(channels: channels, size: size)
            let (winograd, direct) = (Self.kernels(g, winograd: true), Self.kernels(g, winograd: false))
            #expect(Self.dispatched(g, .auto) == [forward ? winograd[0] : direct[0], input ? winograd[1] : direct[1], direct[2]],
                    "\(channels) channels")
        }
    }

    /// `measure` times both kernels once for a geometry worth it, keeps a choice consistent with its
    /// timings, and the dispatched results are those of the chosen kernels.
    @Test func measureChoosesByTiming() {
        let g = Self.resNetLayer(channels: 16, size: 32)
        let results = Self.dispatched(g, .measure)
        let decisions = conv2DAlgorithmDecisions().filter { $0.geometry == g }
        #expect(decisions.count == 1)
        guard let decision = decisions.first else { return }
        #expect(decision.forwardWinograd == (decision.forward.winograd * 1.1 <= decision.forward.direct))
        #expect(decision.forward.direct > 0 && decision.forward.winograd > 0 && decision.backwardDirect > 0)
        let fastestSplit = min(decision.backwardInput.winograd + decision.backwardWeight.direct,
                               decision.backwardInput.direct + decision.backwardWeight.winograd,
                               decision.backwardInput.winograd + decision.backwardWeight.winograd)
        #expect((decision.backwardInputWinograd || decision.backwardWeightWinograd) == (fastestSplit * 1.1 <= decision.backwardDirect))
        let (winograd, direct) = (Self.kernels(g, winograd: true), Self.kernels(g, winograd: false))
        #expect(results == [decision.forwardWinograd ? winograd[0] : direct[0],
                            decision.backwardInputWinograd ? winograd[1] : direct[1],
                            decision.backwardWeightWinograd ? winograd[2] : direct[2]])
    }

    /// A `Conv2D` layer (bias, forward, backward adding onto a shortcut's gradient, parameter gradients)
    /// gives the same results with its workspace forced to Winograd as forced to direct, within the
    /// bound above, for two steps with the gradients accumulating.
    @Test func layerAgreesAcrossAlgorithms() throws {
        func run(_ algorithm: Conv2DAlgorithm) throws -> [[Float]] {
            var generator = RandomGenerator(seed: 71)
            let layer = Conv2D(inputChannels: 32, outputChannels: 32, kernelSize: 3, stride: 1, padding: 1, bias: true,
                               generator: &generator)
            layer.workspace.algorithm = algorithm
            var results: [[Float]] = []
            for step in 0..<2 {
                let input = randomTensor([3, 11, 9, 32], seed: 72 + UInt64(step))
                let output = try layer.forward(input, mode: .training)
                let shortcut = randomTensor(input.shape, seed: 74 + UInt64(step))
                let dInput = layer.backward(randomTensor(output.shape, seed: 76 + UInt64(step)), adding: shortcut)
                results += [output.scalars, dInput.scalars]
            }
            return results + [layer.weight.gradient.scalars, layer.bias!.gradient.scalars]
        }
        let (winograd, direct) = (try run(.winograd), try run(.direct))
        // Weights are Kaiming-scaled (|w| ≲ 0.3), so the bound with max|w| = 1 is generous; the weight
        // gradient sums over 2 steps · 3 images · 6·5 tiles · 16 terms.
        let names = ["output 1", "dInput 1", "output 2", "dInput 2"]
        for (name, (a, b)) in zip(names, zip(winograd, direct)) {
            expectClose(a, b, rtol: 0, atol: Self.tolerance(depth: 16 * 32) + 1e-5, "\(name)")
        }
        expectClose(winograd[4], direct[4], rtol: 0, atol: Self.tolerance(depth: 2 * 16 * 3 * 30) + 1e-5, "dWeight")
        expectClose(winograd[5], direct[5], rtol: 1e-5, atol: 1e-5, "dBias")
        #expect(winograd[4] != direct[4], "the two algorithms round differently, so equal bits would mean one path")
    }
}
