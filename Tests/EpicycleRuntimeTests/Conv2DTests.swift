import EpicycleRuntime
import Testing
import TestSupport

/// One convolution shape for the kernel agreement tests.
struct Conv2DCase: Sendable, CustomTestStringConvertible {
    let geometry: Conv2DGeometry
    let hasBias: Bool
    let label: String

    var testDescription: String { label }

    // Odd channel counts, non-square images, stride 1/2, padding 0/1/2, kernels 1/3/5 and a 3×1 one,
    // groups 1/2/depthwise (with and without a channel multiplier), batch 1 and 3.
    static let all: [Conv2DCase] = [
        make("3×3 pad 1, 3→5, bias", 1, 7, 5, 3, 5, kernel: (3, 3), stride: (1, 1), padding: (1, 1), groups: 1, bias: true),
        make("3×3 stride 2 pad 0, 5→7", 3, 9, 6, 5, 7, kernel: (3, 3), stride: (2, 2), padding: (0, 0), groups: 1, bias: false),
        make("5×5 stride 2 pad 2, groups 2, bias", 3, 8, 11, 6, 4, kernel: (5, 5), stride: (2, 2), padding: (2, 2), groups: 2, bias: true),
        make("depthwise 3×3 pad 1, 7 channels, bias", 1, 6, 7, 7, 7, kernel: (3, 3), stride: (1, 1), padding: (1, 1), groups: 7, bias: true),
        make("depthwise stride 2, 19 channels (vector + tail)", 3, 5, 6, 19, 19, kernel: (3, 3), stride: (2, 2), padding: (1, 1), groups: 19, bias: false),
        make("depthwise ×2 multiplier, stride 2", 3, 5, 4, 4, 8, kernel: (3, 3), stride: (2, 2), padding: (1, 1), groups: 4, bias: false),
        make("1×1 pointwise 9→5, bias", 3, 6, 5, 9, 5, kernel: (1, 1), stride: (1, 1), padding: (0, 0), groups: 1, bias: true),
        make("1×1 pointwise groups 3", 3, 4, 5, 9, 6, kernel: (1, 1), stride: (1, 1), padding: (0, 0), groups: 3, bias: false),
        make("1×1 stride 2 groups 2", 3, 7, 6, 6, 4, kernel: (1, 1), stride: (2, 2), padding: (0, 0), groups: 2, bias: false),
        make("1×1 pad 1", 1, 3, 4, 3, 2, kernel: (1, 1), stride: (1, 1), padding: (1, 1), groups: 1, bias: true),
        make("5×5 pad 2, 3→2, bias", 1, 5, 9, 3, 2, kernel: (5, 5), stride: (1, 1), padding: (2, 2), groups: 1, bias: true),
        make("3×3 stride 2 pad 2, 5→3", 3, 9, 7, 5, 3, kernel: (3, 3), stride: (2, 2), padding: (2, 2), groups: 1, bias: true),
        make("5×5 stride 3 on 4×3 pad 1", 1, 4, 3, 3, 2, kernel: (5, 5), stride: (3, 3), padding: (1, 1), groups: 1, bias: true),
        make("3×1 stride (1, 2) pad (1, 0), groups 2", 3, 7, 8, 4, 6, kernel: (3, 1), stride: (1, 2), padding: (1, 0), groups: 2, bias: true),
        // Depthwise at MobileNetV2's shapes and odd ones: whole vectors only (48, 96), stride 2 on odd
        // sizes, a 5×5 kernel with padding 2, no padding, a 3×1 kernel, and batches that split unevenly
        // over threads.
        make("depthwise 48 channels stride 2 on 7×9", 5, 7, 9, 48, 48, kernel: (3, 3), stride: (2, 2), padding: (1, 1), groups: 48, bias: false),
        make("depthwise 96 channels 4×4", 3, 4, 4, 96, 96, kernel: (3, 3), stride: (1, 1), padding: (1, 1), groups: 96, bias: true),
        make("depthwise 5×5 pad 2, 21 channels", 2, 6, 5, 21, 21, kernel: (5, 5), stride: (1, 1), padding: (2, 2), groups: 21, bias: false),
        make("depthwise 3×3 pad 0 stride 3, 17 channels", 4, 8, 10, 17, 17, kernel: (3, 3), stride: (3, 3), padding: (0, 0), groups: 17, bias: true),
        make("depthwise 3×1 stride (2, 1), 6 channels", 3, 5, 3, 6, 6, kernel: (3, 1), stride: (2, 1), padding: (1, 0), groups: 6, bias: false),
    ]

    static func make(
        _ label: String, _ batch: Int, _ height: Int, _ width: Int, _ inputChannels: Int, _ outputChannels: Int,
        kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int), groups: Int, bias: Bool
    ) -> Conv2DCase {
        Conv2DCase(
            geometry: Conv2DGeometry(
                batch: batch, inputHeight: height, inputWidth: width, inputChannels: inputChannels,
                outputChannels: outputChannels, kernelHeight: kernel.0, kernelWidth: kernel.1,
                strideHeight: stride.0, strideWidth: stride.1, paddingHeight: padding.0, paddingWidth: padding.1,
                groups: groups),
            hasBias: bias, label: label)
    }
}

@Suite struct Conv2DKernelTests {
    // Budget 1 forces one image per chunk of the column matrix; the default holds these batches whole.
    @Test(arguments: Conv2DCase.all, [1, 1 << 20])
    func fastAgreesWithReference(_ testCase: Conv2DCase, columnBudget: Int) {
        let geometry = testCase.geometry
        let workspace = Conv2DWorkspace(columnBudget: columnBudget)
        let input = randomTensor(geometry.inputShape, seed: 1).scalars
        let weight = randomTensor(geometry.weightShape, seed: 2).scalars
        let bias = randomTensor([geometry.outputChannels], seed: 3).scalars
        let dOutput = randomTensor(geometry.outputShape, seed: 4).scalars
        let outputCount = geometry.outputShape.reduce(1, *), inputCount = geometry.inputShape.reduce(1, *)

        // Each output is a sum of at most 5·5·6 = 150 products of numbers in [−1, 1] (each dWeight entry
        // of at most 3·6·6 = 108): float32 rounding of such sums stays near √150·2⁻²⁴·|terms| ≈ 1e-6, while
        // a wrong index or a missed tap changes a value by a whole product, ~0.1 or more.
        let (rtol, atol): (Float, Float) = (1e-4, 1e-4)

        // Garbage in the output buffers checks that forward and backward-input overwrite.
        var fast = [Float](repeating: .nan, count: outputCount), reference = fast
        withOptional(testCase.hasBias ? bias : nil) { bias in
            conv2DForward(geometry, input: input, weight: weight, bias: bias, output: &fast, workspace: workspace)
            conv2DForwardReference(geometry, input: input, weight: weight, bias: bias, output: &reference)
        }
        expectClose(fast, reference, rtol: rtol, atol: atol, "forward \(testCase.label)")

        var dInputFast = [Float](repeating: .nan, count: inputCount), dInputReference = dInputFast
        conv2DBackwardInput(geometry, dOutput: dOutput, weight: weight, dInput: &dInputFast, workspace: workspace)
        conv2DBackwardInputReference(geometry, dOutput: dOutput, weight: weight, dInput: &dInputReference)
        expectClose(dInputFast, dInputReference, rtol: rtol, atol: atol, "backward input \(testCase.label)")

        // With accumulate, every path (direct, im2col, pointwise, depthwise) adds onto what dInput holds.
        let startInput = randomTensor(geometry.inputShape, seed: 7).scalars
        var dInputAccumulated = startInput
        conv2DBackwardInput(geometry, dOutput: dOutput, weight: weight, dInput: &dInputAccumulated, workspace: workspace,
                            accumulate: true)
        expectClose(dInputAccumulated, zip(startInput, dInputReference).map(+), rtol: rtol, atol: atol,
                    "backward input, accumulated \(testCase.label)")

        // Gradients start non-zero: both versions must add to them.
        let startWeight = randomTensor(geometry.weightShape, seed: 5).scalars
        let startBias = randomTensor([geometry.outputChannels], seed: 6).scalars
        var dWeightFast = startWeight, dWeightReference = startWeight
        var dBiasFast = startBias, dBiasReference = startBias
        if testCase.hasBias {
            conv2DBackwardWeight(geometry, input: input, dOutput: dOutput, dWeight: &dWeightFast, dBias: &dBiasFast,
                                 workspace: workspace)
            conv2DBackwardWeightReference(geometry, input: input, dOutput: dOutput, dWeight: &dWeightReference,
                                          dBias: &dBiasReference)
        } else {
            conv2DBackwardWeight(geometry, input: input, dOutput: dOutput, dWeight: &dWeightFast, dBias: nil,
                                 workspace: workspace)
            conv2DBackwardWeightReference(geometry, input: input, dOutput: dOutput, dWeight: &dWeightReference, dBias: nil)
        }
        expectClose(dWeightFast, dWeightReference, rtol: rtol, atol: atol, "backward weight \(testCase.label)")
        expectClose(dBiasFast, dBiasReference, rtol: rtol, atol: atol, "backward bias \(testCase.label)")
        #expect(dWeightReference != startWeight)
        #expect(testCase.hasBias == (dBiasReference != startBias))
    }

    // Every path, whichever kernel the geometry takes (the direct cases included).
    @Test(arguments: Conv2DCase.all + Conv2DDirectKernelTests.cases)
    func epilogueAgreesWithReference(_ testCase: Conv2DCase) {
        let workspace = Conv2DWorkspace()
        expectEpilogueMatchesReference(testCase) { epilogue, input, weight, bias, output in
            conv2DForward(testCase.geometry, input: input, weight: weight, bias: bias, output: output,
                          workspace: workspace, epilogue: epilogue)
        }
    }

    @Test func geometryFollowsPyTorchOutputSize() {
        // PyTorch: ⌊(H + 2p − k) / s⌋ + 1, e.g. 32×32 with a 3×3 kernel, stride 2, padding 1 → 16×16.
        let geometry = Conv2DGeometry(batch: 2, inputHeight: 32, inputWidth: 31, inputChannels: 16, outputChannels: 32,
                                      kernelHeight: 3, kernelWidth: 3, strideHeight: 2, strideWidth: 2,
                                      paddingHeight: 1, paddingWidth: 1)
        #expect(geometry.outputShape == [2, 16, 16, 32])
        #expect(geometry.weightShape == [32, 16, 3, 3])
    }
}

@Suite struct Conv2DLayerTests {
    // 1 image 3×3 with values 1…9, one 2×2 kernel [[1, 2], [3, 4]], bias 0.5.
    static func handLayer(stride: Int, padding: Int) -> Conv2D {
        var generator = RandomGenerator(seed: 0)
        let conv = Conv2D(inputChannels: 1, outputChannels: 1, kernelSize: 2, stride: stride, padding: padding,
                          bias: true, generator: &generator)
        conv.weight.value = Tensor(shape: [1, 1, 2, 2], scalars: [1, 2, 3, 4])
        conv.bias!.value = Tensor(shape: [1], scalars: [0.5])
        return conv
    }
    static let handInput = Tensor(shape: [1, 3, 3, 1], scalars: [1, 2, 3, 4, 5, 6, 7, 8, 9])

    @Test func handComputedTinyCase() throws {
        let conv = Self.handLayer(stride: 1, padding: 0)
        let output = try conv.forward(Self.handInput, mode: .training)
        // out[p, q] = x[p, q]·1 + x[p, q+1]·2 + x[p+1, q]·3 + x[p+1, q+1]·4 + 0.5:
        // (1 + 4 + 12 + 20), (2 + 6 + 15 + 24), (4 + 10 + 21 + 32), (5 + 12 + 24 + 36), each + 0.5.
        #expect(output == Tensor(shape: [1, 2, 2, 1], scalars: [37.5, 47.5, 67.5, 77.5]))

        let dInput = conv.backward(Tensor(repeating: 1, shape: [1, 2, 2, 1]))
        // With dOutput = 1 everywhere, dInput[i, j] sums the kernel entries that ever touch x[i, j]:
        // corners touch one entry, edges two, the centre all four.
        #expect(dInput == Tensor(shape: [1, 3, 3, 1], scalars: [1, 3, 2, 4, 10, 6, 3, 7, 4]))
        // dWeight[r, s] sums the 2×2 window of x starting at (r, s): 1+2+4+5, 2+3+5+6, 4+5+7+8, 5+6+8+9.
        #expect(conv.weight.gradient == Tensor(shape: [1, 1, 2, 2], scalars: [12, 16, 24, 28]))
        #expect(conv.bias!.gradient == Tensor(shape: [1], scalars: [4]))
    }

    @Test func handComputedStrideAndPadding() throws {
        let conv = Self.handLayer(stride: 2, padding: 1)
        let output = try conv.forward(Self.handInput, mode: .inference)
        // Windows start at padded rows/columns −1 and 1: (⌊(3 + 2 − 2) / 2⌋ + 1)² = 2×2 outputs.
        // [0,0]: only x[0,0]·4 = 4. [0,1]: x[0,1]·3 + x[0,2]·4 = 18. [1,0]: x[1,0]·2 + x[2,0]·4 = 36.
        // [1,1]: 5·1 + 6·2 + 8·3 + 9·4 = 77. Plus the bias 0.5.
        #expect(output == Tensor(shape: [1, 2, 2, 1], scalars: [4.5, 18.5, 36.5, 77.5]))
    }

    // The convolution is bilinear in input and weight, so central differences have no truncation
    // error; what is left is float32 rounding of L = Σ output ⊙ R, about ulp(|L| ≲ 50) / (2ε) ≈ 2e-4 at
    // ε = 1e-2, inside the helper's atol 1e-3 + rtol 1e-2.
    @Test(arguments: [
        (kernel: 3, stride: 2, padding: 1, groups: 1, channels: (3, 5)),
        (kernel: 3, stride: 1, padding: 2, groups: 2, channels: (4, 6)),
        (kernel: 5, stride: 2, padding: 0, groups: 1, channels: (2, 3)),
        (kernel: 3, stride: 1, padding: 1, groups: 5, channels: (5, 5)),
        (kernel: 1, stride: 1, padding: 0, groups: 3, channels: (6, 3)),
        (kernel: 3, stride: 2, padding: 1, groups: 18, channels: (18, 18)),
        (kernel: 5, stride: 1, padding: 2, groups: 4, channels: (4, 4)),
    ])
    func gradientsMatchFiniteDifferences(
        kernel: Int, stride: Int, padding: Int, groups: Int, channels: (Int, Int)
    ) throws {
        var generator = RandomGenerator(seed: 11)
        let conv = Conv2D(inputChannels: channels.0, outputChannels: channels.1, kernelSize: kernel, stride: stride,
                          padding: padding, groups: groups, bias: true, generator: &generator)
        try expectGradientsMatchFiniteDifferences(of: conv, input: randomTensor([2, 7, 6, channels.0], seed: 12))
    }

    @Test func parameterGradientsAccumulate() throws {
        var generator = RandomGenerator(seed: 3)
        let conv = Conv2D(inputChannels: 3, outputChannels: 4, kernelSize: 3, padding: 1, bias: true, generator: &generator)
        let input = randomTensor([2, 5, 4, 3], seed: 4)
        let dOutput = randomTensor([2, 5, 4, 4], seed: 5)
        _ = try conv.forward(input, mode: .training)
        let firstInputGradient = conv.backward(dOutput)
        let once = (conv.weight.gradient, conv.bias!.gradient)
        let secondInputGradient = conv.backward(dOutput)
        #expect(once.0.scalars.contains { $0 != 0 })
        // The second call adds the same values again; doubling is exact in floating point.
        expectClose(conv.weight.gradient.scalars, once.0.scalars.map { 2 * $0 }, rtol: 1e-6, atol: 0, "dWeight")
        expectClose(conv.bias!.gradient.scalars, once.1.scalars.map { 2 * $0 }, rtol: 1e-6, atol: 0, "dBias")
        // The input gradient is fresh each time, not accumulated.
        #expect(firstInputGradient == secondInputGradient)
    }

    @Test func frozenWeightGetsNoGradient() throws {
        var generator = RandomGenerator(seed: 3)
        let conv = Conv2D(inputChannels: 2, outputChannels: 3, kernelSize: 3, bias: true, generator: &generator)
        conv.weight.trainable = false
        let dOutput = randomTensor([1, 2, 2, 3], seed: 5)
        _ = try conv.forward(randomTensor([1, 4, 4, 2], seed: 4), mode: .training)
        _ = conv.backward(dOutput)
        #expect(conv.weight.gradient == Tensor(zeros: [3, 2, 3, 3]))
        // The bias still learns: its gradient sums dOutput over the 2×2 positions.
        var expected = [Float](repeating: 0, count: 3)
        for (i, value) in dOutput.scalars.enumerated() { expected[i % 3] += value }
        expectClose(conv.bias!.gradient.scalars, expected, rtol: 1e-6, atol: 1e-6, "dBias")
    }

    @Test func shapeErrorsNameTheLayerAndBothShapes() {
        var generator = RandomGenerator(seed: 1)
        let conv = Conv2D(inputChannels: 16, outputChannels: 8, kernelSize: 3, generator: &generator)
        let expected = "[N, H, W, 16] (NHWC)"
        #expect(throws: RuntimeError.shapeMismatch(path: "", kind: "Conv2D", expected: expected, found: [2, 8, 8, 3])) {
            try conv.forward(Tensor(zeros: [2, 8, 8, 3]), mode: .inference)
        }
        #expect(throws: RuntimeError.shapeMismatch(path: "", kind: "Conv2D", expected: expected, found: [8, 8, 16])) {
            try conv.forward(Tensor(zeros: [8, 8, 16]), mode: .inference)
        }
        do {
            _ = try conv.forward(Tensor(zeros: [2, 16, 8, 8]), mode: .inference)
            Issue.record("an NCHW-shaped input was accepted")
        } catch {
            #expect("\(error)" == "Conv2D: expected input [N, H, W, 16] (NHWC), got [2, 16, 8, 8]")
        }
    }

    @Test func inputSmallerThanTheKernelThrows() throws {
        var generator = RandomGenerator(seed: 1)
        let conv = Conv2D(inputChannels: 3, outputChannels: 2, kernelSize: 5, padding: 1, generator: &generator)
        #expect(throws: RuntimeError.shapeMismatch(
            path: "", kind: "Conv2D", expected: "[N, H, W, 3] (NHWC) with H, W ≥ 3 for kernel 5 and padding 1",
            found: [1, 2, 9, 3])) {
            try conv.forward(Tensor(zeros: [1, 2, 9, 3]), mode: .training)
        }
        // 3 + 2·1 = 5 rows fit the kernel exactly: one output row.
        #expect(try conv.forward(Tensor(zeros: [1, 3, 9, 3]), mode: .training).shape == [1, 1, 7, 2])
    }

    @Test func initializationFollowsPyTorch() {
        var generator = RandomGenerator(seed: 5)
        let conv = Conv2D(inputChannels: 16, outputChannels: 32, kernelSize: 3, groups: 2, bias: true, generator: &generator)
        #expect(conv.state.parameters.map(\.name) == ["weight", "bias"])
        #expect(conv.weight.value.shape == [32, 8, 3, 3] && conv.weight.decays)
        #expect(conv.bias!.value.shape == [32] && !conv.bias!.decays)
        // Kaiming normal, fan-out = 32·3·3 = 288: std √(2/288) = 0.0833. Over 2304 samples the sample
        // std has a standard error of std/√(2·2304) ≈ 1.5%; allow 6%.
        let values = conv.weight.value.scalars.map(Double.init)
        let mean = values.reduce(0, +) / Double(values.count)
        let std = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot()
        #expect(abs(std - (2.0 / 288).squareRoot()) < 0.06 * (2.0 / 288).squareRoot())
        // Bias U(−b, b), b = 1/√fan-in = 1/√(8·3·3) = 1/√72.
        let bound = 1 / Float(72).squareRoot()
        #expect(conv.bias!.value.scalars.allSatisfy { abs($0) <= bound })
        #expect(conv.bias!.value.scalars.contains { abs($0) > bound / 2 })
        #expect(Conv2D(inputChannels: 3, outputChannels: 4, kernelSize: 3, generator: &generator).bias == nil)
    }

    // Exit tests: the same steps with and without an inference forward in between. Backward after a
    // training forward succeeds; after an inference forward it stops the process, because the inference
    // pass dropped what backward needs (the layer keeps no cache in inference mode).
    @Test func inferenceForwardKeepsNoCache() async {
        await #expect(processExitsWith: .success) {
            var generator = RandomGenerator(seed: 1)
            let conv = Conv2D(inputChannels: 2, outputChannels: 3, kernelSize: 3, padding: 1, generator: &generator)
            _ = try conv.forward(Tensor(zeros: [1, 4, 4, 2]), mode: .training)
            _ = conv.backward(Tensor(zeros: [1, 4, 4, 3]))
        }
        await #expect(processExitsWith: .failure) {
            var generator = RandomGenerator(seed: 1)
            let conv = Conv2D(inputChannels: 2, outputChannels: 3, kernelSize: 3, padding: 1, generator: &generator)
            _ = try conv.forward(Tensor(zeros: [1, 4, 4, 2]), mode: .training)
            _ = try conv.forward(Tensor(zeros: [1, 4, 4, 2]), mode: .inference)
            _ = conv.backward(Tensor(zeros: [1, 4, 4, 3]))
        }
    }

    @Test func sharedWorkspaceGivesTheSameOutputs() throws {
        var generator = RandomGenerator(seed: 8)
        let first = Conv2D(inputChannels: 3, outputChannels: 6, kernelSize: 3, stride: 2, padding: 1, bias: true, generator: &generator)
        let second = Conv2D(inputChannels: 6, outputChannels: 4, kernelSize: 3, padding: 1, generator: &generator)
        let input = randomTensor([3, 9, 8, 3], seed: 9)
        let separate = try second.forward(try first.forward(input, mode: .inference), mode: .inference)
        let shared = Conv2DWorkspace(columnBudget: 100)
        first.workspace = shared
        second.workspace = shared
        let together = try second.forward(try first.forward(input, mode: .training), mode: .training)
        expectClose(together, separate, rtol: 1e-5, atol: 1e-6, "shared workspace")
    }
}

// Passes an optional array to a body as an optional pointer.
func withOptional<Result>(_ array: [Float]?, _ body: (UnsafePointer<Float>?) -> Result) -> Result {
    guard let array else { return body(nil) }
    return array.withUnsafeBufferPointer { body($0.baseAddress) }
}

// Runs `forward(epilogue, input, weight, bias, output)` with each of the 16 combinations of scale, shift,
// residual and ReLU (none included) and compares with conv2DForwardReference followed by the epilogue's
// formula, max(0?, (conv + bias)·scale + shift + residual), computed here.
func expectEpilogueMatchesReference(
    _ testCase: Conv2DCase,
    forward: (Conv2DEpilogue, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>?, UnsafeMutablePointer<Float>) -> Void
) {
    let geometry = testCase.geometry
    let K = geometry.outputChannels, outputCount = geometry.outputShape.reduce(1, *)
    let input = randomTensor(geometry.inputShape, seed: 21).scalars
    let weight = randomTensor(geometry.weightShape, seed: 22).scalars
    let bias = testCase.hasBias ? randomTensor([K], seed: 23).scalars : nil
    let scale = randomTensor([K], seed: 24, low: -2, high: 2).scalars
    let shift = randomTensor([K], seed: 25).scalars
    let residual = randomTensor(geometry.outputShape, seed: 26).scalars
    var convolution = [Float](repeating: .nan, count: outputCount)
    withOptional(bias) { conv2DForwardReference(geometry, input: input, weight: weight, bias: $0, output: &convolution) }
    // Sums of at most 240 products of numbers in [−1, 1], scaled by at most 2, plus two terms of size ≤ 1:
    // float32 rounding (including folding the scale into the weights) stays near 1e-5, while a missing or
    // misplaced epilogue term moves a value by ~0.1 or more.
    let (rtol, atol): (Float, Float) = (1e-4, 1e-4)
    for useScale in [false, true] { for useShift in [false, true] { for useResidual in [false, true] { for relu in [false, true] {
        var expected = convolution
        for index in 0..<outputCount {
            var value = expected[index]
            if useScale { value *= scale[index % K] }
            if useShift { value += shift[index % K] }
            if useResidual { value += residual[index] }
            expected[index] = relu ? max(value, 0) : value
        }
        var output = [Float](repeating: .nan, count: outputCount)
        scale.withUnsafeBufferPointer { scale in shift.withUnsafeBufferPointer { shift in residual.withUnsafeBufferPointer { residual in
            let epilogue = Conv2DEpilogue(scale: useScale ? scale.baseAddress : nil, shift: useShift ? shift.baseAddress : nil,
                                          residual: useResidual ? residual.baseAddress : nil, relu: relu)
            withOptional(bias) { bias in
                output.withUnsafeMutableBufferPointer { forward(epilogue, input, weight, bias, $0.baseAddress!) }
            }
        } } }
        let label = "\(testCase.label), scale \(useScale), shift \(useShift), residual \(useResidual), relu \(relu)"
        expectClose(output, expected, rtol: rtol, atol: atol, "epilogue \(label)")
    } } } }
}
