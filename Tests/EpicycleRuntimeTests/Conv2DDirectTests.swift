import EpicycleRuntime
import Testing
import TestSupport

/// The direct convolution kernels against the reference loops, on shapes that exercise every tile
/// (32- and 16-channel blocks, 16- and 8-pixel tiles with leftover pixels, 8-wide run blocks with leftovers),
/// strides, paddings, non-square kernels, and batches split unevenly over threads. For the input
/// gradient's stride phases: strides 2 and 3, phases with empty sub-kernels (1×1 and 2×2 kernels whose
/// stride skips input pixels), and paddings that crop dOutput (padding ≥ kernel, or stride 2 pad 2).
@Suite struct Conv2DDirectKernelTests {
    static let cases: [Conv2DCase] = [
        Conv2DCase.make("3×3 pad 1, 5→48, bias, 7×11", 3, 7, 11, 5, 48, kernel: (3, 3), stride: (1, 1), padding: (1, 1), groups: 1, bias: true),
        Conv2DCase.make("3×3 pad 1, 3→16 (stem), 8×9", 2, 8, 9, 3, 16, kernel: (3, 3), stride: (1, 1), padding: (1, 1), groups: 1, bias: false),
        Conv2DCase.make("3×3 stride 2 pad 1, 16→32, 9×10", 3, 9, 10, 16, 32, kernel: (3, 3), stride: (2, 2), padding: (1, 1), groups: 1, bias: false),
        Conv2DCase.make("3×3 pad 1, 32→32, 6×17", 2, 6, 17, 32, 32, kernel: (3, 3), stride: (1, 1), padding: (1, 1), groups: 1, bias: false),
        Conv2DCase.make("3×3 pad 0, 16→64, 5×12", 3, 5, 12, 16, 64, kernel: (3, 3), stride: (1, 1), padding: (0, 0), groups: 1, bias: true),
        Conv2DCase.make("5×3 pad (2, 1), 16→16, 6×9", 2, 6, 9, 16, 16, kernel: (5, 3), stride: (1, 1), padding: (2, 1), groups: 1, bias: false),
        Conv2DCase.make("3×3 pad 2, 16→16, 4×5", 1, 4, 5, 16, 16, kernel: (3, 3), stride: (1, 1), padding: (2, 2), groups: 1, bias: true),
        Conv2DCase.make("1×1, 32→16, 5×9", 3, 5, 9, 32, 16, kernel: (1, 1), stride: (1, 1), padding: (0, 0), groups: 1, bias: true),
        Conv2DCase.make("1×1 stride 2, 16→32, 7×7", 2, 7, 7, 16, 32, kernel: (1, 1), stride: (2, 2), padding: (0, 0), groups: 1, bias: false),
        Conv2DCase.make("3×3 stride 2 pad 1, 48→16, 17×18", 2, 17, 18, 48, 16, kernel: (3, 3), stride: (2, 2), padding: (1, 1), groups: 1, bias: true),
        Conv2DCase.make("3×3 stride 2 pad 2, 16→16, 7×6", 3, 7, 6, 16, 16, kernel: (3, 3), stride: (2, 2), padding: (2, 2), groups: 1, bias: false),
        Conv2DCase.make("3×1 stride (2, 1) pad (1, 0), 32→16, 9×7", 2, 9, 7, 32, 16, kernel: (3, 1), stride: (2, 1), padding: (1, 0), groups: 1, bias: false),
        Conv2DCase.make("5×5 stride 3 pad 1, 16→16, 8×10", 2, 8, 10, 16, 16, kernel: (5, 5), stride: (3, 3), padding: (1, 1), groups: 1, bias: true),
        Conv2DCase.make("2×2 stride 3, 16→16, 7×8", 2, 7, 8, 16, 16, kernel: (2, 2), stride: (3, 3), padding: (0, 0), groups: 1, bias: false),
        Conv2DCase.make("1×1 stride 2 pad 1, 16→16, 5×6", 2, 5, 6, 16, 16, kernel: (1, 1), stride: (2, 2), padding: (1, 1), groups: 1, bias: false),
        Conv2DCase.make("3×3 pad 3, 16→32, 3×4", 2, 3, 4, 16, 32, kernel: (3, 3), stride: (1, 1), padding: (3, 3), groups: 1, bias: true),
        // 16 channels and rows of 16 + 8 + 3 pixels (forward and input gradient), and stride-2 phases of 18 and 17.
        Conv2DCase.make("3×3 pad 1, 16→16, 3×27", 2, 3, 27, 16, 16, kernel: (3, 3), stride: (1, 1), padding: (1, 1), groups: 1, bias: true),
        Conv2DCase.make("3×3 stride 2 pad 1, 16→32, 4×35", 2, 4, 35, 16, 32, kernel: (3, 3), stride: (2, 2), padding: (1, 1), groups: 1, bias: false),
        // Fashion-MNIST's last two stages: rows of 6 + 8 and of 7 pixels, all in short 8-pixel tiles.
        Conv2DCase.make("3×3 pad 1, 32→32, 3×14", 2, 3, 14, 32, 32, kernel: (3, 3), stride: (1, 1), padding: (1, 1), groups: 1, bias: false),
        Conv2DCase.make("3×3 pad 1, 64→48, 7×7", 2, 7, 7, 64, 48, kernel: (3, 3), stride: (1, 1), padding: (1, 1), groups: 1, bias: true),
        // The input-stationary 16-pixel tile of 3-wide kernels with 3 input channels (the stem) and 5 tap rows.
        Conv2DCase.make("5×3 pad (2, 1), 3→16, 4×19", 2, 4, 19, 3, 16, kernel: (5, 3), stride: (1, 1), padding: (2, 1), groups: 1, bias: true),
    ]

    @Test(arguments: cases, [1, 2, 3])
    func directAgreesWithReference(_ testCase: Conv2DCase, threads: Int) {
        let geometry = testCase.geometry
        #expect(geometry.usesDirectForward)
        let workspace = Conv2DWorkspace()
        let input = randomTensor(geometry.inputShape, seed: 11).scalars
        let weight = randomTensor(geometry.weightShape, seed: 12).scalars
        let bias = randomTensor([geometry.outputChannels], seed: 13).scalars
        let dOutput = randomTensor(geometry.outputShape, seed: 14).scalars
        let outputCount = geometry.outputShape.reduce(1, *), inputCount = geometry.inputShape.reduce(1, *)

        // Outputs are sums of at most 5·3·16 = 240 products of numbers in [−1, 1], dWeight entries of at
        // most 3·7·11 = 231: float32 rounding stays near √240·2⁻²⁴ ≈ 1e-6 of the terms' size, while a
        // wrong index or a missed tap moves a value by a whole product (~0.1).
        let (rtol, atol): (Float, Float) = (1e-4, 1e-4)

        var fast = [Float](repeating: .nan, count: outputCount), reference = fast
        withOptional(testCase.hasBias ? bias : nil) { bias in
            conv2DForwardDirect(geometry, input: input, weight: weight, bias: bias, output: &fast,
                                workspace: workspace, threads: threads)
            conv2DForwardReference(geometry, input: input, weight: weight, bias: bias, output: &reference)
        }
        expectClose(fast, reference, rtol: rtol, atol: atol, "forward \(testCase.label)")

        var dInputReference = [Float](repeating: .nan, count: inputCount)
        conv2DBackwardInputReference(geometry, dOutput: dOutput, weight: weight, dInput: &dInputReference)
        if geometry.usesDirectBackwardInput {
            var dInputFast = [Float](repeating: .nan, count: inputCount)
            conv2DBackwardInputDirect(geometry, dOutput: dOutput, weight: weight, dInput: &dInputFast,
                                      workspace: workspace, threads: threads)
            expectClose(dInputFast, dInputReference, rtol: rtol, atol: atol, "backward input \(testCase.label)")
            // Accumulating adds onto every input pixel, also those no tap reaches.
            let startInput = randomTensor(geometry.inputShape, seed: 17).scalars
            var dInputAccumulated = startInput
            conv2DBackwardInputDirect(geometry, dOutput: dOutput, weight: weight, dInput: &dInputAccumulated,
                                      workspace: workspace, accumulate: true, threads: threads)
            expectClose(dInputAccumulated, zip(startInput, dInputReference).map(+), rtol: rtol, atol: atol,
                        "backward input, accumulated \(testCase.label)")
        }
        // The dispatching entry point, whichever kernel it picks.
        var dInputDispatched = [Float](repeating: .nan, count: inputCount)
        conv2DBackwardInput(geometry, dOutput: dOutput, weight: weight, dInput: &dInputDispatched, workspace: workspace)
        expectClose(dInputDispatched, dInputReference, rtol: rtol, atol: atol, "backward input (dispatch) \(testCase.label)")

        // Gradients start non-zero: both versions must add to them.
        let startWeight = randomTensor(geometry.weightShape, seed: 15).scalars
        let startBias = randomTensor([geometry.outputChannels], seed: 16).scalars
        var dWeightFast = startWeight, dWeightReference = startWeight
        var dBiasFast = startBias, dBiasReference = startBias
        conv2DBackwardWeightDirect(geometry, input: input, dOutput: dOutput, dWeight: &dWeightFast, dBias: &dBiasFast,
                                   workspace: workspace, threads: threads)
        conv2DBackwardWeightReference(geometry, input: input, dOutput: dOutput, dWeight: &dWeightReference, dBias: &dBiasReference)
        expectClose(dWeightFast, dWeightReference, rtol: rtol, atol: atol, "backward weight \(testCase.label)")
        expectClose(dBiasFast, dBiasReference, rtol: rtol, atol: atol, "backward bias \(testCase.label)")

        // Both gradients in one sweep: the same sums, with dInput added to a random start.
        if geometry.usesDirectBackwardInput {
            let startInput = randomTensor(geometry.inputShape, seed: 18).scalars
            var dInputBoth = startInput, dWeightBoth = startWeight, dBiasBoth = startBias
            conv2DBackwardDirect(geometry, input: input, dOutput: dOutput, weight: weight, dInput: &dInputBoth,
                                 accumulate: true, dWeight: &dWeightBoth, dBias: &dBiasBoth, workspace: workspace,
                                 threads: threads)
            expectClose(dInputBoth, zip(startInput, dInputReference).map(+), rtol: rtol, atol: atol,
                        "one-sweep backward input \(testCase.label)")
            expectClose(dWeightBoth, dWeightReference, rtol: rtol, atol: atol, "one-sweep backward weight \(testCase.label)")
            expectClose(dBiasBoth, dBiasReference, rtol: rtol, atol: atol, "one-sweep backward bias \(testCase.label)")
        }
    }

    @Test(arguments: cases, [1, 2, 3])
    func epilogueAgreesWithReference(_ testCase: Conv2DCase, threads: Int) {
        let workspace = Conv2DWorkspace()
        expectEpilogueMatchesReference(testCase) { epilogue, input, weight, bias, output in
            conv2DForwardDirect(testCase.geometry, input: input, weight: weight, bias: bias, output: output,
                                workspace: workspace, epilogue: epilogue, threads: threads)
        }
    }

    @Test func eligibility() {
        // Every stride and padding takes the direct input gradient; only the channels and groups decide.
        #expect(Conv2DDirectKernelTests.cases.allSatisfy { $0.geometry.usesDirectForward })
        #expect(Conv2DDirectKernelTests.cases.filter { !$0.geometry.usesDirectBackwardInput }.map(\.label)
                == ["3×3 pad 1, 5→48, bias, 7×11", "3×3 pad 1, 3→16 (stem), 8×9", "5×3 pad (2, 1), 3→16, 4×19"])
        let grouped = Conv2DGeometry(batch: 1, inputHeight: 4, inputWidth: 4, inputChannels: 32, outputChannels: 32,
                                     kernelHeight: 3, kernelWidth: 3, paddingHeight: 1, paddingWidth: 1, groups: 2)
        #expect(!grouped.usesDirectForward && !grouped.usesDirectBackwardInput)
        let narrow = Conv2DGeometry(batch: 1, inputHeight: 4, inputWidth: 4, inputChannels: 16, outputChannels: 10,
                                    kernelHeight: 3, kernelWidth: 3)
        #expect(!narrow.usesDirectForward && narrow.usesDirectBackwardInput)
    }
}
