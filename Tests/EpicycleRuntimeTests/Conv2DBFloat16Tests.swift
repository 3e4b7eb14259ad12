import EpicycleRuntime
import Foundation
import Testing
import TestSupport

/// The AVX512-BF16 kernels against their Swift reference: the fp32 reference loops on operands rounded
/// to bf16 (`BFloat16Reference`). VDPBF16PS multiplies exactly those bf16 values, and a product of two
/// bf16 numbers (8-bit mantissas) is exact in fp32, so the two compute the same n terms and differ only
/// in the order of their fp32 sums. Any order's sum is within γₙ·Σ|terms| of the exact one (γₙ = n·u /
/// (1 − n·u), u = 2⁻²⁴; Higham, "Accuracy and Stability of Numerical Algorithms", §3.1), so the two
/// results may differ by 2γₙ·Σ|terms|, computed per value from the operands' magnitudes. A wrong index
/// or an unrounded operand moves a value by far more: unrounded inputs differ from rounded ones by up
/// to 2⁻⁹ of each term, which the last check of each product asserts is seen.
@Suite(.enabled(if: Precision.bf16Available, "this CPU has no AVX512-BF16: the bf16 kernels cannot run here"))
struct Conv2DBFloat16Tests {
    static let cases = Conv2DDirectKernelTests.cases.filter { $0.geometry.hasBFloat16Forward }

    // 2γₙ·Σ|terms| + the rounding of the `extra` additions made after the sum, per value.
    static func bound(_ magnitudes: [Float], terms n: Int, extra: Int = 0) -> [Float] {
        let u = Double(Float.ulpOfOne) / 2  // 2⁻²⁴, fp32's unit roundoff
        let gamma = Double(n + extra) * u / (1 - Double(n + extra) * u)
        return magnitudes.map { Float(2 * gamma * Double($0)) + Float.leastNormalMagnitude }
    }

    static func expectWithin(_ actual: [Float], _ expected: [Float], _ bounds: [Float], _ what: String,
                             sourceLocation: SourceLocation = #_sourceLocation) {
        let worst = zip(zip(actual, expected), bounds).enumerated().max { a, b in
            abs(a.element.0.0 - a.element.0.1) / a.element.1 < abs(b.element.0.0 - b.element.0.1) / b.element.1
        }
        guard let worst else { return }
        let ((a, e), b) = worst.element
        #expect(abs(a - e) <= b, "\(what): value \(worst.offset) is \(a), the reference \(e), allowed ±\(b)",
                sourceLocation: sourceLocation)
    }

    // Whether some value moved by more than its bound when the operands were not rounded.
    static func roundingIsVisible(_ unrounded: [Float], _ bf16: [Float], _ bounds: [Float]) -> Bool {
        zip(zip(unrounded, bf16), bounds).contains { abs($0.0 - $0.1) > 4 * $1 }
    }

    @Test(arguments: cases, [1, 2])
    func forwardAgreesWithTheReferenceOnRoundedOperands(_ testCase: Conv2DCase, threads: Int) {
        let geometry = testCase.geometry, workspace = Conv2DWorkspace()
        let input = randomTensor(geometry.inputShape, seed: 21).scalars
        let weight = randomTensor(geometry.weightShape, seed: 22).scalars
        let bias = testCase.hasBias ? randomTensor([geometry.outputChannels], seed: 23).scalars : nil
        let count = geometry.outputShape.reduce(1, *)
        let depth = geometry.kernelHeight * geometry.kernelWidth * geometry.inputChannels + 1

        var bf16 = [Float](repeating: .nan, count: count), reference = bf16, magnitude = bf16, fp32 = bf16
        withOptional(bias) { bias in
            conv2DForwardDirect(geometry, input: input, weight: weight, bias: bias, output: &bf16, workspace: workspace,
                                precision: .bf16, threads: threads)
            conv2DForwardReference(geometry, input: BFloat16Reference.rounded(input), weight: BFloat16Reference.rounded(weight),
                                   bias: bias, output: &reference)
            conv2DForwardDirect(geometry, input: input, weight: weight, bias: bias, output: &fp32, workspace: workspace,
                                threads: threads)
        }
        withOptional(bias.map { $0.map(abs) }) { bias in
            conv2DForwardReference(geometry, input: BFloat16Reference.rounded(input).map(abs),
                                   weight: BFloat16Reference.rounded(weight).map(abs), bias: bias, output: &magnitude)
        }
        let bounds = Self.bound(magnitude, terms: depth)
        Self.expectWithin(bf16, reference, bounds, "forward \(testCase.label)")
        #expect(Self.roundingIsVisible(fp32, bf16, bounds), "forward \(testCase.label): bf16 equals fp32, nothing was rounded")
    }

    /// An inference epilogue: the batch-norm scale folded into the weights before they are rounded, the
    /// shift into the bias, then a residual and a ReLU.
    @Test(arguments: cases)
    func epilogueFoldsBeforeRounding(_ testCase: Conv2DCase) {
        let geometry = testCase.geometry, workspace = Conv2DWorkspace()
        let K = geometry.outputChannels, taps = geometry.weightShape.reduce(1, *) / K
        let input = randomTensor(geometry.inputShape, seed: 31).scalars
        let weight = randomTensor(geometry.weightShape, seed: 32).scalars
        let scale = randomTensor([K], seed: 33, low: 0.5, high: 2).scalars, shift = randomTensor([K], seed: 34).scalars
        let residual = randomTensor(geometry.outputShape, seed: 35).scalars
        let count = geometry.outputShape.reduce(1, *)

        var bf16 = [Float](repeating: .nan, count: count)
        scale.withUnsafeBufferPointer { scale in
            shift.withUnsafeBufferPointer { shift in
                residual.withUnsafeBufferPointer { residual in
                    let epilogue = Conv2DEpilogue(scale: scale.baseAddress, shift: shift.baseAddress,
                                                  residual: residual.baseAddress, relu: true)
                    conv2DForwardDirect(geometry, input: input, weight: weight, bias: nil, output: &bf16,
                                        workspace: workspace, epilogue: epilogue, precision: .bf16)
                }
            }
        }
        let folded = BFloat16Reference.rounded((0..<weight.count).map { weight[$0] * scale[$0 / taps] })
        let rounded = BFloat16Reference.rounded(input)
        var sums = [Float](repeating: .nan, count: count), magnitude = sums
        conv2DForwardReference(geometry, input: rounded, weight: folded, bias: shift, output: &sums)
        conv2DForwardReference(geometry, input: rounded.map(abs), weight: folded.map(abs), bias: shift.map(abs),
                               output: &magnitude)
        let reference = (0..<count).map { max(0, sums[$0] + residual[$0]) }
        let depth = geometry.kernelHeight * geometry.kernelWidth * geometry.inputChannels + 1
        Self.expectWithin(bf16, reference, Self.bound(zip(magnitude, residual).map { $0 + abs($1) }, terms: depth, extra: 1),
                          "forward with epilogue \(testCase.label)")
    }

    @Test(arguments: cases.filter { $0.geometry.hasBFloat16BackwardInput }, [1, 2])
    func inputGradientAgreesWithTheReferenceOnRoundedOperands(_ testCase: Conv2DCase, threads: Int) {
        let geometry = testCase.geometry, workspace = Conv2DWorkspace()
        let weight = randomTensor(geometry.weightShape, seed: 41).scalars
        let dOutput = randomTensor(geometry.outputShape, seed: 42).scalars
        let start = randomTensor(geometry.inputShape, seed: 43).scalars
        let count = geometry.inputShape.reduce(1, *)
        let depth = geometry.kernelHeight * geometry.kernelWidth * geometry.outputChannels

        var bf16 = start, fp32 = start
        conv2DBackwardInputDirect(geometry, dOutput: dOutput, weight: weight, dInput: &bf16, workspace: workspace,
                                  accumulate: true, precision: .bf16, threads: threads)
        conv2DBackwardInputDirect(geometry, dOutput: dOutput, weight: weight, dInput: &fp32, workspace: workspace,
                                  accumulate: true, threads: threads)
        var sums = [Float](repeating: .nan, count: count), magnitude = sums
        conv2DBackwardInputReference(geometry, dOutput: BFloat16Reference.rounded(dOutput),
                                     weight: BFloat16Reference.rounded(weight), dInput: &sums)
        conv2DBackwardInputReference(geometry, dOutput: BFloat16Reference.rounded(dOutput).map(abs),
                                     weight: BFloat16Reference.rounded(weight).map(abs), dInput: &magnitude)
        let bounds = Self.bound(zip(magnitude, start).map { $0 + abs($1) }, terms: depth, extra: 1)
        Self.expectWithin(bf16, zip(start, sums).map(+), bounds, "input gradient \(testCase.label)")
        #expect(Self.roundingIsVisible(fp32, bf16, bounds), "input gradient \(testCase.label): nothing was rounded")

        // Overwriting gives the sums alone, zeros included where no tap reaches.
        var overwritten = [Float](repeating: .nan, count: count)
        conv2DBackwardInputDirect(geometry, dOutput: dOutput, weight: weight, dInput: &overwritten, workspace: workspace,
                                  precision: .bf16, threads: threads)
        Self.expectWithin(overwritten, sums, Self.bound(magnitude, terms: depth), "input gradient, overwritten \(testCase.label)")
    }

    @Test(arguments: cases, [1, 2])
    func weightGradientAgreesWithTheReferenceOnRoundedOperands(_ testCase: Conv2DCase, threads: Int) {
        let geometry = testCase.geometry, workspace = Conv2DWorkspace()
        let input = randomTensor(geometry.inputShape, seed: 51).scalars
        let dOutput = randomTensor(geometry.outputShape, seed: 52).scalars
        let start = randomTensor(geometry.weightShape, seed: 53).scalars
        let pixels = geometry.batch * geometry.outputHeight * geometry.outputWidth

        var bf16 = start, fp32 = start, bf16Bias = [Float](repeating: 0, count: geometry.outputChannels)
        conv2DBackwardWeightDirect(geometry, input: input, dOutput: dOutput, dWeight: &bf16, dBias: &bf16Bias,
                                   workspace: workspace, precision: .bf16, threads: threads)
        conv2DBackwardWeightDirect(geometry, input: input, dOutput: dOutput, dWeight: &fp32, dBias: nil,
                                   workspace: workspace, threads: threads)
        var sums = [Float](repeating: 0, count: start.count), magnitude = sums
        var referenceBias = [Float](repeating: 0, count: geometry.outputChannels), ignored = referenceBias
        conv2DBackwardWeightReference(geometry, input: BFloat16Reference.rounded(input), dOutput: BFloat16Reference.rounded(dOutput),
                                      dWeight: &sums, dBias: nil)
        conv2DBackwardWeightReference(geometry, input: BFloat16Reference.rounded(input).map(abs),
                                      dOutput: BFloat16Reference.rounded(dOutput).map(abs), dWeight: &magnitude, dBias: &ignored)
        let bounds = Self.bound(zip(magnitude, start).map { $0 + abs($1) }, terms: pixels, extra: 1)
        Self.expectWithin(bf16, zip(start, sums).map(+), bounds, "weight gradient \(testCase.label)")
        #expect(Self.roundingIsVisible(fp32, bf16, bounds), "weight gradient \(testCase.label): nothing was rounded")
        // The bias gradient is a sum of dOutput alone: fp32, as autocast keeps it.
        var unused = [Float](repeating: 0, count: start.count)
        conv2DBackwardWeightReference(geometry, input: input, dOutput: dOutput, dWeight: &unused, dBias: &referenceBias)
        expectClose(bf16Bias, referenceBias, rtol: 1e-5, atol: 1e-5, "bias gradient \(testCase.label)")
    }

    /// Both gradients in one sweep are the separate kernels' values bit for bit: the same per-image work.
    @Test(arguments: cases.filter { $0.geometry.hasBFloat16BackwardInput })
    func oneSweepEqualsTheSeparateKernels(_ testCase: Conv2DCase) {
        let geometry = testCase.geometry, workspace = Conv2DWorkspace()
        let input = randomTensor(geometry.inputShape, seed: 61).scalars
        let weight = randomTensor(geometry.weightShape, seed: 62).scalars
        let dOutput = randomTensor(geometry.outputShape, seed: 63).scalars
        var dInput = [Float](repeating: .nan, count: input.count), dWeight = [Float](repeating: 0, count: weight.count)
        conv2DBackwardDirect(geometry, input: input, dOutput: dOutput, weight: weight, dInput: &dInput, dWeight: &dWeight,
                             dBias: nil, workspace: workspace, precision: .bf16, threads: 2)
        var separateInput = [Float](repeating: .nan, count: input.count), separateWeight = [Float](repeating: 0, count: weight.count)
        conv2DBackwardInputDirect(geometry, dOutput: dOutput, weight: weight, dInput: &separateInput, workspace: workspace,
                                  precision: .bf16, threads: 2)
        conv2DBackwardWeightDirect(geometry, input: input, dOutput: dOutput, dWeight: &separateWeight, dBias: nil,
                                   workspace: workspace, precision: .bf16, threads: 2)
        #expect(dInput == separateInput, "input gradient \(testCase.label)")
        #expect(dWeight == separateWeight, "weight gradient \(testCase.label)")
    }
}

/// `BFloat16Reference.rounded` against values worked out by hand from the bit patterns.
@Suite struct BFloat16RoundingTests {
    @Test func roundsToNearestWithTiesToEven() {
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: the tie goes to the even mantissa, 1.
        #expect(BFloat16Reference.rounded(1 + 0x1p-8) == 1)
        // 1 + 3·2⁻⁸ lies halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶ (even).
        #expect(BFloat16Reference.rounded(1 + 3 * 0x1p-8) == 1 + 0x1p-6)
        // Just above the tie rounds up.
        #expect(BFloat16Reference.rounded(1 + 0x1p-8 + 0x1p-20) == 1 + 0x1p-7)
        #expect(BFloat16Reference.rounded(-3.14159) == -3.140625)
        // The largest finite float rounds up to infinity; subnormals flush to a signed zero.
        #expect(BFloat16Reference.rounded(Float.greatestFiniteMagnitude) == .infinity)
        #expect(BFloat16Reference.rounded(-Float.leastNonzeroMagnitude).bitPattern == (-0.0 as Float).bitPattern)
        #expect(BFloat16Reference.rounded(Float.nan).isNaN)
    }
}
