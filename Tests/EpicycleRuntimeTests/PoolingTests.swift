import EpicycleRuntime
import Testing
import TestSupport

/// Records the first index where two equally long arrays differ (a compact message for large arrays).
private func expectIdentical<T: Equatable>(
    _ actual: [T], _ expected: [T], _ what: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    guard actual.count == expected.count else {
        Issue.record("\(what): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
        return
    }
    if let index = actual.indices.first(where: { actual[$0] != expected[$0] }) {
        Issue.record("\(what): element \(index) is \(actual[index]), expected \(expected[index])", sourceLocation: sourceLocation)
    }
}

/// Pooling configurations (kernel, stride, padding): overlapping windows, stride beyond the kernel,
/// padding at its PyTorch limit of half the kernel.
private let poolConfigurations = [(3, 2, 1), (2, 2, 0), (3, 1, 1), (2, 3, 1), (4, 2, 2)]

@Suite struct PoolKernelTests {
    // 7 × 6 pixels: odd sizes and partial windows at the borders; 11 channels: one 8-lane SIMD group of
    // the fast max pool plus a scalar tail of 3.
    @Test(arguments: poolConfigurations)
    func maxPoolAgreesWithReference(kernel: Int, stride: Int, padding: Int) {
        let (n, h, w, c) = (2, 7, 6, 11)
        let p = poolOutputSize(inputSize: h, kernelSize: kernel, stride: stride, padding: padding)
        let q = poolOutputSize(inputSize: w, kernelSize: kernel, stride: stride, padding: padding)
        // Values rounded to halves, so many windows hold ties and the first-maximum rule is exercised.
        let input = randomTensor([n, h, w, c], seed: 1, low: -2, high: 2).scalars.map { ($0 * 2).rounded() / 2 }
        let dOutput = randomTensor([n, p, q, c], seed: 2).scalars
        var output = [Float](repeating: 0, count: n * p * q * c), referenceOutput = output
        var argmax = [Int32](repeating: 0, count: output.count), referenceArgmax = argmax
        var inferenceOutput = output
        maxPool2DForward(input, batch: n, height: h, width: w, channels: c, kernelSize: kernel, stride: stride,
                         padding: padding, into: &output, argmax: &argmax)
        maxPool2DForward(input, batch: n, height: h, width: w, channels: c, kernelSize: kernel, stride: stride,
                         padding: padding, into: &inferenceOutput, argmax: nil)
        maxPool2DForwardReference(input, batch: n, height: h, width: w, channels: c, kernelSize: kernel,
                                  stride: stride, padding: padding, into: &referenceOutput, argmax: &referenceArgmax)
        expectIdentical(output, referenceOutput, "output")
        expectIdentical(inferenceOutput, referenceOutput, "output without argmax")
        expectIdentical(argmax, referenceArgmax, "argmax")

        var dInput = [Float](repeating: 1, count: input.count), referenceDInput = dInput
        maxPool2DBackward(dOutput, argmax: argmax, outputCount: dOutput.count, into: &dInput, inputCount: input.count)
        maxPool2DBackwardReference(dOutput, input: input, batch: n, height: h, width: w, channels: c,
                                   kernelSize: kernel, stride: stride, padding: padding, into: &referenceDInput)
        // Same scatter order, same Float sums: exact.
        expectIdentical(dInput, referenceDInput, "dInput")
    }

    @Test(arguments: poolConfigurations, [true, false])
    func avgPoolAgreesWithReference(configuration: (Int, Int, Int), countIncludePad: Bool) {
        let (kernel, stride, padding) = configuration
        let (n, h, w, c) = (2, 7, 6, 11)
        let p = poolOutputSize(inputSize: h, kernelSize: kernel, stride: stride, padding: padding)
        let q = poolOutputSize(inputSize: w, kernelSize: kernel, stride: stride, padding: padding)
        let input = randomTensor([n, h, w, c], seed: 3).scalars
        let dOutput = randomTensor([n, p, q, c], seed: 4).scalars
        var output = [Float](repeating: 0, count: n * p * q * c), referenceOutput = output
        avgPool2DForward(input, batch: n, height: h, width: w, channels: c, kernelSize: kernel, stride: stride,
                         padding: padding, countIncludePad: countIncludePad, into: &output)
        avgPool2DForwardReference(input, batch: n, height: h, width: w, channels: c, kernelSize: kernel,
                                  stride: stride, padding: padding, countIncludePad: countIncludePad,
                                  into: &referenceOutput)
        // Sums of ≤ 16 values below 1 in Float against Double.
        expectClose(output, referenceOutput, rtol: 1e-5, atol: 1e-6, "forward")

        var dInput = [Float](repeating: 1, count: input.count), referenceDInput = dInput
        avgPool2DBackward(dOutput, batch: n, height: h, width: w, channels: c, kernelSize: kernel, stride: stride,
                          padding: padding, countIncludePad: countIncludePad, into: &dInput)
        avgPool2DBackwardReference(dOutput, batch: n, height: h, width: w, channels: c, kernelSize: kernel,
                                   stride: stride, padding: padding, countIncludePad: countIncludePad,
                                   into: &referenceDInput)
        expectClose(dInput, referenceDInput, rtol: 1e-5, atol: 1e-6, "backward")
    }

    @Test func globalAvgPoolAgreesWithReference() {
        let (n, h, w, c) = (3, 5, 7, 9)
        let input = randomTensor([n, h, w, c], seed: 5).scalars
        var output = [Float](repeating: 0, count: n * c), referenceOutput = output
        globalAvgPool2DForward(input, batch: n, height: h, width: w, channels: c, into: &output)
        globalAvgPool2DForwardReference(input, batch: n, height: h, width: w, channels: c, into: &referenceOutput)
        // 35 Float additions of values below 1.
        expectClose(output, referenceOutput, rtol: 1e-5, atol: 1e-6, "forward")
    }
}

@Suite struct PoolingLayerTests {
    @Test func maxPoolTakesWindowMaximaWithDefaultStride() throws {
        // 4 × 4 map holding 1…16 row by row; 2 × 2 windows, stride defaulting to 2.
        let input = Tensor(shape: [1, 4, 4, 1], scalars: (1...16).map(Float.init))
        let layer = MaxPool2D(kernelSize: 2)
        let output = try layer.forward(input, mode: .training)
        #expect(output.shape == [1, 2, 2, 1])
        #expect(output.scalars == [6, 8, 14, 16])
        let dInput = layer.backward(Tensor(shape: [1, 2, 2, 1], scalars: [1, 2, 3, 4]))
        var expected = [Float](repeating: 0, count: 16)
        (expected[5], expected[7], expected[13], expected[15]) = (1, 2, 3, 4)
        #expect(dInput.scalars == expected)
    }

    @Test func maxPoolRoutesTiesToTheFirstMaximum() throws {
        // All four equal: PyTorch's argmax is the first in scan order, (0, 0).
        let layer = MaxPool2D(kernelSize: 2)
        _ = try layer.forward(Tensor(repeating: 3, shape: [1, 2, 2, 2]), mode: .training)
        let dInput = layer.backward(Tensor(shape: [1, 1, 1, 2], scalars: [5, 7]))
        #expect(dInput.scalars == [5, 7, 0, 0, 0, 0, 0, 0])
    }

    @Test func maxPoolPropagatesNaN() throws {
        // One 2 × 2 window; channels 2 (in the SIMD group) and 8 (in the scalar tail) hold a NaN in its
        // second pixel and larger numbers after it. PyTorch's max pool returns NaN and routes the gradient
        // to it.
        var scalars = randomTensor([1, 2, 2, 9], seed: 6).scalars
        scalars[9 + 2] = .nan
        scalars[9 + 8] = .nan
        scalars[18 + 2] = 5
        scalars[27 + 8] = 5
        let layer = MaxPool2D(kernelSize: 2)
        let output = try layer.forward(Tensor(shape: [1, 2, 2, 9], scalars: scalars), mode: .training)
        #expect(output.shape == [1, 1, 1, 9])
        #expect(output.scalars.enumerated().filter { $0.element.isNaN }.map(\.offset) == [2, 8])
        let dInput = layer.backward(Tensor(repeating: 1, shape: [1, 1, 1, 9]))
        #expect(dInput.scalars[9 + 2] == 1 && dInput.scalars[9 + 8] == 1)
    }

    @Test func avgPoolDivisorFollowsCountIncludePad() throws {
        // 2 × 2 map [1 2; 3 4], kernel 3, stride 1, padding 1: every window covers all four pixels (sum 10)
        // and five padding cells, so the divisor is 9 with padding counted and 4 without.
        let input = Tensor(shape: [1, 2, 2, 1], scalars: [1, 2, 3, 4])
        let including = try AvgPool2D(kernelSize: 3, stride: 1, padding: 1).forward(input, mode: .inference)
        let excluding = try AvgPool2D(kernelSize: 3, stride: 1, padding: 1, countIncludePad: false)
            .forward(input, mode: .inference)
        #expect(including.shape == [1, 2, 2, 1])
        expectClose(including.scalars, [Float](repeating: 10 / 9, count: 4), rtol: 1e-6, atol: 0, "count_include_pad")
        #expect(excluding.scalars == [2.5, 2.5, 2.5, 2.5])
    }

    @Test func globalAvgPoolAveragesEachChannel() throws {
        let input = Tensor(shape: [1, 2, 2, 2], scalars: [1, 10, 2, 20, 3, 30, 4, 40])
        let layer = GlobalAvgPool2D()
        let output = try layer.forward(input, mode: .training)
        #expect(output.shape == [1, 2])
        #expect(output.scalars == [2.5, 25])
        #expect(layer.backward(Tensor(shape: [1, 2], scalars: [4, 8])).scalars == [1, 2, 1, 2, 1, 2, 1, 2])
    }

    @Test func maxPoolGradientsMatchFiniteDifferences() throws {
        // Distinct values 0.05 apart, shuffled: within any window the maximum leads the runner-up by
        // ≥ 0.05 > 2ε (ε = 1e-2), so no perturbation changes an argmax and the map is locally linear.
        let count = 2 * 5 * 5 * 3
        var generator = RandomGenerator(seed: 81)
        let values = (0..<count).map { Float($0) * 0.05 }.shuffled(using: &generator)
        let input = Tensor(shape: [2, 5, 5, 3], scalars: values)
        try expectGradientsMatchFiniteDifferences(of: MaxPool2D(kernelSize: 3, stride: 2, padding: 1), input: input)
    }

    // Average pooling is linear: central differences are exact up to Float rounding of the loss.
    @Test(arguments: [true, false])
    func avgPoolGradientsMatchFiniteDifferences(countIncludePad: Bool) throws {
        let layer = AvgPool2D(kernelSize: 3, stride: 2, padding: 1, countIncludePad: countIncludePad)
        try expectGradientsMatchFiniteDifferences(of: layer, input: randomTensor([2, 5, 6, 3], seed: 82))
    }

    @Test func globalAvgPoolGradientsMatchFiniteDifferences() throws {
        try expectGradientsMatchFiniteDifferences(of: GlobalAvgPool2D(), input: randomTensor([2, 3, 4, 5], seed: 83))
    }

    @Test func shapeErrorsNameTheExpectedShape() throws {
        let tooSmall = #expect(throws: RuntimeError.self) {
            try MaxPool2D(kernelSize: 3).forward(Tensor(zeros: [2, 2, 2, 4]), mode: .training)
        }
        #expect(tooSmall?.description
                == "MaxPool2D: expected input [N, H, W, C] (NHWC) with H, W ≥ 3 for kernel 3, padding 0, got [2, 2, 2, 4]")
        // With padding 1 a 1 × 1 map is enough for a 3 × 3 window.
        #expect(try MaxPool2D(kernelSize: 3, padding: 1).forward(Tensor(zeros: [1, 1, 1, 2]), mode: .inference).shape
                == [1, 1, 1, 2])
        #expect(throws: RuntimeError.shapeMismatch(
            path: "", kind: "AvgPool2D", expected: "[N, H, W, C] (NHWC) with H, W ≥ 2 for kernel 2, padding 0",
            found: [4, 4, 3])) {
            try AvgPool2D(kernelSize: 2).forward(Tensor(zeros: [4, 4, 3]), mode: .training)
        }
        let flat = #expect(throws: RuntimeError.self) {
            try GlobalAvgPool2D().forward(Tensor(zeros: [4, 16]), mode: .training)
        }
        #expect(flat?.description == "GlobalAvgPool2D: expected input [N, H, W, C] (NHWC) with H, W ≥ 1, got [4, 16]")
    }
}
