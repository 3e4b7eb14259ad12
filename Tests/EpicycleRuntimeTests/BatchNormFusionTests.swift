import EpicycleRuntime
import Testing
import TestSupport

/// The fused batch-norm epilogues (residual add, ReLU) and the threaded passes against the reference
/// kernels composed with a plain ReLU.
@Suite struct BatchNormFusionTests {
    // 37 × 13 stays on one thread; 65 537 × 16 = 1 048 592 elements crosses the threshold at which the
    // passes split over threads (uneven parts with 3 threads).
    @Test(arguments: [(37, 13, 1), (65_537, 16, 2), (65_537, 16, 3)], [false, true])
    func fusedKernelsAgreeWithReference(shape: (rows: Int, channels: Int, threads: Int), withResidual: Bool) {
        let (rows, channels, threads) = shape
        let count = rows * channels
        let input = randomTensor([rows, channels], seed: 31, low: -2, high: 3).scalars
        let residual = randomTensor([rows, channels], seed: 32).scalars
        let dOutput = randomTensor([rows, channels], seed: 33).scalars
        let weight = randomTensor([channels], seed: 34, low: 0.5, high: 1.5).scalars
        let bias = randomTensor([channels], seed: 35).scalars

        var mean = [Float](repeating: 0, count: channels), variance = mean
        var referenceMean = mean, referenceVariance = mean
        batchNormStatistics(input, rows: rows, channels: channels, mean: &mean, variance: &variance, threads: threads)
        batchNormStatisticsReference(input, rows: rows, channels: channels, mean: &referenceMean, variance: &referenceVariance)
        // Float partial sums over 64-row blocks, Double beyond: far below 1e-5 relative.
        expectClose(mean, referenceMean, rtol: 1e-5, atol: 1e-6, "mean")
        expectClose(variance, referenceVariance, rtol: 1e-5, atol: 1e-6, "variance")

        // Reference: normalise, add the residual, clamp.
        let inverseStd = referenceVariance.map { 1 / ($0 + 1e-5).squareRoot() }
        var expected = [Float](repeating: 0, count: count)
        batchNormForwardReference(input, rows: rows, channels: channels, mean: referenceMean, inverseStd: inverseStd,
                                  weight: weight, bias: bias, into: &expected)
        if withResidual { for i in 0..<count { expected[i] += residual[i] } }
        expected = expected.map { max($0, 0) }

        var output = [Float](repeating: .nan, count: count)
        residual.withUnsafeBufferPointer { z in
            batchNormForward(input, rows: rows, channels: channels, mean: referenceMean, inverseStd: inverseStd,
                             weight: weight, bias: bias, adding: withResidual ? z.baseAddress! : nil, relu: true,
                             into: &output, threads: threads)
        }
        // A few Float roundings of values ≲ 6 against Double.
        expectClose(output, expected, rtol: 1e-5, atol: 1e-5, "forward")
        #expect(output.contains(0) && output.contains { $0 > 0 }, "the ReLU must clamp some values and pass others")

        // Reference backward: the ReLU's mask first, then batch norm.
        var masked = [Float](repeating: 0, count: count)
        reluBackward(dOutput, output: expected, into: &masked, count: count)
        var referenceDInput = [Float](repeating: 0, count: count)
        var referenceDWeight = [Float](repeating: 0.5, count: channels), referenceDBias = [Float](repeating: -0.25, count: channels)
        batchNormBackwardReference(masked, input: input, rows: rows, channels: channels, mean: referenceMean,
                                   inverseStd: inverseStd, weight: weight, dInput: &referenceDInput,
                                   dWeight: &referenceDWeight, dBias: &referenceDBias)

        var dInput = [Float](repeating: .nan, count: count), dPreActivation = dInput
        var dWeight = [Float](repeating: 0.5, count: channels), dBias = [Float](repeating: -0.25, count: channels)
        dPreActivation.withUnsafeMutableBufferPointer { dz in
            batchNormBackward(dOutput, input: input, rows: rows, channels: channels, mean: referenceMean,
                              inverseStd: inverseStd, weight: weight, reluOutput: output, dInput: &dInput,
                              dWeight: &dWeight, dBias: &dBias, dPreActivation: withResidual ? dz.baseAddress! : nil,
                              threads: threads)
        }
        // As in BatchNormKernelTests: the bracket cancels in Float here and in Double there. Sums over
        // 10⁶ rows of terms of order 1 round to ~1e-4 relative in the Float blocks: dWeight and dBias
        // get 1e-4 too.
        expectClose(dInput, referenceDInput, rtol: 1e-4, atol: 1e-5, "dInput")
        expectClose(dWeight, referenceDWeight, rtol: 1e-4, atol: 1e-4, "dWeight")
        expectClose(dBias, referenceDBias, rtol: 1e-4, atol: 1e-4, "dBias")
        if withResidual { expectClose(dPreActivation, masked, rtol: 0, atol: 0, "dPreActivation is the masked gradient") }
    }

    /// The layer's fused path equals batch norm, add and ReLU run as separate layers.
    @Test func layerForwardReLUMatchesSeparateLayers() throws {
        let input = randomTensor([2, 3, 4, 5], seed: 41, low: -1, high: 2)
        let residual = randomTensor([2, 3, 4, 5], seed: 42)
        let dOutput = randomTensor([2, 3, 4, 5], seed: 43)
        let fused = BatchNorm2D(channels: 5), separate = BatchNorm2D(channels: 5), relu = ReLU()
        for layer in [fused, separate] { layer.weight.value = randomTensor([5], seed: 44, low: 0.5, high: 1.5) }

        let output = try fused.forwardReLU(input, adding: residual, mode: .training)
        var sum = try separate.forward(input, mode: .training)
        sum += residual
        let expected = try relu.forward(sum, mode: .training)
        expectClose(output, expected, rtol: 1e-6, atol: 1e-6, "forward")

        let (dInput, dResidual) = fused.backwardThroughReLU(dOutput)
        let dSum = relu.backward(dOutput)
        expectClose(try #require(dResidual), dSum, rtol: 0, atol: 0, "dResidual")
        expectClose(dInput, separate.backward(dSum), rtol: 1e-5, atol: 1e-6, "dInput")
        expectClose(fused.weight.gradient, separate.weight.gradient, rtol: 1e-5, atol: 1e-6, "dWeight")
        expectClose(fused.bias.gradient, separate.bias.gradient, rtol: 1e-5, atol: 1e-6, "dBias")

        #expect(throws: RuntimeError.self) { try fused.forwardReLU(input, adding: Tensor(zeros: [2, 3, 4, 4]), mode: .training) }
    }
}
