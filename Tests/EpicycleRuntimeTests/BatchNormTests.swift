import EpicycleRuntime
import Testing
import TestSupport

/// Per-channel mean and biased variance of an NHWC tensor (channels last), in Double.
private func channelStatistics(_ tensor: Tensor) -> (mean: [Double], variance: [Double]) {
    let channels = tensor.shape.last!, rows = tensor.count / channels
    var mean = [Double](repeating: 0, count: channels), variance = mean
    for c in 0..<channels {
        for r in 0..<rows { mean[c] += Double(tensor.scalars[r * channels + c]) }
        mean[c] /= Double(rows)
        for r in 0..<rows {
            let d = Double(tensor.scalars[r * channels + c]) - mean[c]
            variance[c] += d * d
        }
        variance[c] /= Double(rows)
    }
    return (mean, variance)
}

private func floats(_ buffer: Buffer) -> [Float] {
    guard case let .float32(tensor) = buffer.value else { return [] }
    return tensor.scalars
}

private func count(_ buffer: Buffer) -> Int64? {
    guard case let .int64(value) = buffer.value else { return nil }
    return value
}

@Suite struct BatchNormKernelTests {
    // 100 and 150 rows cross the 64-row blocks of the fast kernels' partial sums; 13, 3 and 8 channels
    // fill no 16-channel vector, 40 fills two and part of a third.
    @Test(arguments: [(37, 13), (100, 3), (1, 8), (150, 40)])
    func kernelsAgreeWithReference(rows: Int, channels: Int) {
        let input = randomTensor([rows, channels], seed: 11, low: -2, high: 3).scalars
        let dOutput = randomTensor([rows, channels], seed: 12).scalars
        let weight = randomTensor([channels], seed: 13, low: 0.5, high: 1.5).scalars
        let bias = randomTensor([channels], seed: 14).scalars

        var mean = [Float](repeating: 0, count: channels), variance = mean
        var referenceMean = mean, referenceVariance = mean
        batchNormStatistics(input, rows: rows, channels: channels, mean: &mean, variance: &variance)
        batchNormStatisticsReference(input, rows: rows, channels: channels,
                                     mean: &referenceMean, variance: &referenceVariance)
        // Float partial sums over ≤ 64 rows of values below 3: relative error far below 1e-5.
        expectClose(mean, referenceMean, rtol: 1e-5, atol: 1e-6, "mean")
        expectClose(variance, referenceVariance, rtol: 1e-5, atol: 1e-6, "variance")

        let inverseStd = referenceVariance.map { 1 / ($0 + 1e-5).squareRoot() }
        var output = [Float](repeating: 0, count: rows * channels), referenceOutput = output
        batchNormForward(input, rows: rows, channels: channels, mean: referenceMean, inverseStd: inverseStd,
                         weight: weight, bias: bias, into: &output)
        batchNormForwardReference(input, rows: rows, channels: channels, mean: referenceMean, inverseStd: inverseStd,
                                  weight: weight, bias: bias, into: &referenceOutput)
        // One subtraction and one fused multiply-add in Float against Double: a few ulps of values ≲ 5.
        expectClose(output, referenceOutput, rtol: 1e-5, atol: 1e-5, "forward")

        var dInput = [Float](repeating: 0, count: rows * channels), referenceDInput = dInput
        var dWeight = [Float](repeating: 0.5, count: channels), referenceDWeight = dWeight
        var dBias = [Float](repeating: -0.25, count: channels), referenceDBias = dBias
        batchNormBackward(dOutput, input: input, rows: rows, channels: channels, mean: referenceMean,
                          inverseStd: inverseStd, weight: weight, dInput: &dInput, dWeight: &dWeight, dBias: &dBias)
        batchNormBackwardReference(dOutput, input: input, rows: rows, channels: channels, mean: referenceMean,
                                   inverseStd: inverseStd, weight: weight, dInput: &referenceDInput,
                                   dWeight: &referenceDWeight, dBias: &referenceDBias)
        // g − mean(g) − x̂·mean(g·x̂) cancels in Float here and in Double there: allow 1e-4 on gradients
        // of order 1 (with one row the bracket is exactly 0 in both).
        expectClose(dInput, referenceDInput, rtol: 1e-4, atol: 1e-5, "dInput")
        expectClose(dWeight, referenceDWeight, rtol: 1e-5, atol: 1e-5, "dWeight (accumulated onto 0.5)")
        expectClose(dBias, referenceDBias, rtol: 1e-5, atol: 1e-5, "dBias (accumulated onto −0.25)")
    }

    @Test func statisticsStayAccurateWhenTheMeanDwarfsTheSpread() {
        // Mean 1000, spread ±0.05: E[x²] − E[x]² in Float would lose everything (ulp(10⁶) = 0.06 against
        // a variance of ≈ 8·10⁻⁴); the shifted one-pass form must agree with Double to a fraction of a percent.
        let (rows, channels) = (1000, 4)
        let input = randomTensor([rows, channels], seed: 21, low: 999.95, high: 1000.05).scalars
        var mean = [Float](repeating: 0, count: channels), variance = mean
        var referenceMean = mean, referenceVariance = mean
        batchNormStatistics(input, rows: rows, channels: channels, mean: &mean, variance: &variance)
        batchNormStatisticsReference(input, rows: rows, channels: channels,
                                     mean: &referenceMean, variance: &referenceVariance)
        expectClose(mean, referenceMean, rtol: 1e-6, atol: 0, "mean")
        expectClose(variance, referenceVariance, rtol: 1e-3, atol: 0, "variance")
    }
}

@Suite struct BatchNormLayerTests {
    // A batch norm folded into an inference convolution must forget its last training forward, as an
    // inference forward does: keeping it would hold the activation and let a stale backward run.
    @Test func foldedInferenceKeepsNoCache() async {
        await #expect(processExitsWith: .success) {
            let norm = BatchNorm2D(channels: 3)
            _ = try norm.forward(randomTensor([2, 2, 2, 3], seed: 1), mode: .training)
            _ = norm.backward(Tensor(zeros: [2, 2, 2, 3]))
        }
        await #expect(processExitsWith: .failure) {
            var generator = RandomGenerator(seed: 1)
            let conv = Conv2D(inputChannels: 2, outputChannels: 3, kernelSize: 1, generator: &generator)
            let norm = BatchNorm2D(channels: 3)
            _ = try norm.forward(randomTensor([2, 2, 2, 3], seed: 1), mode: .training)
            _ = try conv.forwardInference(Tensor(zeros: [2, 2, 2, 2]), normalizedBy: norm, relu: false)
            _ = norm.backward(Tensor(zeros: [2, 2, 2, 3]))
        }
    }

    @Test func stateNamesAndInitialValues() {
        let layer = BatchNorm2D(channels: 3)
        let state = layer.state
        #expect(state.parameters.map(\.name) == ["weight", "bias"])
        #expect(state.buffers.map(\.name) == ["running_mean", "running_var", "num_batches_tracked"])
        #expect(layer.weight.value.scalars == [1, 1, 1] && layer.bias.value.scalars == [0, 0, 0])
        #expect(!layer.weight.decays && !layer.bias.decays)
        #expect(floats(layer.runningMean) == [0, 0, 0] && floats(layer.runningVariance) == [1, 1, 1])
        #expect(count(layer.batchesTracked) == 0)
    }

    @Test func trainingForwardNormalisesWithBatchStatistics() throws {
        let layer = BatchNorm2D(channels: 5, epsilon: 1e-3)
        layer.weight.value = randomTensor([5], seed: 2, low: 0.5, high: 2)
        layer.bias.value = randomTensor([5], seed: 3)
        let input = randomTensor([2, 3, 4, 5], seed: 1, low: -1, high: 4)
        let output = try layer.forward(input, mode: .training)

        let (mean, variance) = channelStatistics(input)
        var expected = [Float](repeating: 0, count: input.count)
        for i in 0..<input.count {
            let c = i % 5
            let normalized = (Double(input.scalars[i]) - mean[c]) / (variance[c] + 1e-3).squareRoot()
            expected[i] = Float(normalized * Double(layer.weight.value.scalars[c]) + Double(layer.bias.value.scalars[c]))
        }
        #expect(output.shape == [2, 3, 4, 5])
        // Float statistics and arithmetic against Double: a few ulps of outputs of magnitude ≲ 5.
        expectClose(output.scalars, expected, rtol: 1e-5, atol: 2e-5, "output")
    }

    @Test func runningStatisticsFollowPyTorchAfterTwoSteps() throws {
        let layer = BatchNorm2D(channels: 3)
        let first = randomTensor([4, 2, 2, 3], seed: 31, low: 0, high: 2)
        let second = randomTensor([4, 2, 2, 3], seed: 32, low: -3, high: 1)
        _ = try layer.forward(first, mode: .training)
        _ = try layer.forward(second, mode: .training)

        // running = 0.9·running + 0.1·batch, variance unbiased by n/(n − 1) with n = 4·2·2 = 16.
        let n = 16.0
        let (mean1, variance1) = channelStatistics(first), (mean2, variance2) = channelStatistics(second)
        var expectedMean = [Float](), expectedVariance = [Float]()
        for c in 0..<3 {
            let afterOne = (mean: 0.1 * mean1[c], variance: 0.9 * 1 + 0.1 * variance1[c] * n / (n - 1))
            expectedMean.append(Float(0.9 * afterOne.mean + 0.1 * mean2[c]))
            expectedVariance.append(Float(0.9 * afterOne.variance + 0.1 * variance2[c] * n / (n - 1)))
        }
        // Float arithmetic on values of order 1: well within 1e-5 relative.
        expectClose(floats(layer.runningMean), expectedMean, rtol: 1e-5, atol: 1e-6, "running_mean")
        expectClose(floats(layer.runningVariance), expectedVariance, rtol: 1e-5, atol: 1e-6, "running_var")
        #expect(count(layer.batchesTracked) == 2)
    }

    @Test func inferenceUsesRunningStatisticsAndChangesNoState() throws {
        let layer = BatchNorm2D(channels: 4, momentum: 0.5)
        layer.weight.value = randomTensor([4], seed: 41, low: 0.5, high: 2)
        layer.bias.value = randomTensor([4], seed: 42)
        _ = try layer.forward(randomTensor([3, 2, 2, 4], seed: 43, low: 1, high: 5), mode: .training)
        let runningMean = floats(layer.runningMean), runningVariance = floats(layer.runningVariance)

        let input = randomTensor([2, 3, 3, 4], seed: 44)
        let output = try layer.forward(input, mode: .inference)
        var expected = [Float](repeating: 0, count: input.count)
        for i in 0..<input.count {
            let c = i % 4
            let normalized = (Double(input.scalars[i]) - Double(runningMean[c])) / (Double(runningVariance[c]) + 1e-5).squareRoot()
            expected[i] = Float(normalized * Double(layer.weight.value.scalars[c]) + Double(layer.bias.value.scalars[c]))
        }
        expectClose(output.scalars, expected, rtol: 1e-5, atol: 1e-5, "inference output")
        #expect(floats(layer.runningMean) == runningMean)
        #expect(floats(layer.runningVariance) == runningVariance)
        #expect(count(layer.batchesTracked) == 1)
    }

    @Test func rankTwoInputIsTreatedAsOnePixel() throws {
        let input = randomTensor([6, 3], seed: 51)
        let flat = try BatchNorm2D(channels: 3).forward(input, mode: .training)
        let pixels = try BatchNorm2D(channels: 3).forward(input.reshaped([6, 1, 1, 3]), mode: .training)
        #expect(flat.shape == [6, 3])
        #expect(flat.scalars == pixels.scalars)
        let (mean, _) = channelStatistics(flat)
        // Normalised columns have mean 0 (β = 0).
        expectClose(mean.map(Float.init), [0, 0, 0], rtol: 0, atol: 1e-6, "column means")
    }

    @Test func parameterGradientsAccumulate() throws {
        let layer = BatchNorm2D(channels: 2)
        let input = randomTensor([2, 2, 2, 2], seed: 61)
        let dOutput = randomTensor([2, 2, 2, 2], seed: 62)
        _ = try layer.forward(input, mode: .training)
        _ = layer.backward(dOutput)
        let once = (layer.weight.gradient.scalars, layer.bias.gradient.scalars)
        _ = layer.backward(dOutput)
        expectClose(layer.weight.gradient.scalars, once.0.map { 2 * $0 }, rtol: 1e-6, atol: 1e-7, "dWeight")
        expectClose(layer.bias.gradient.scalars, once.1.map { 2 * $0 }, rtol: 1e-6, atol: 1e-7, "dBias")
    }

    // Batch norm is smooth everywhere (σ ≥ 0.4 for uniform inputs), so ε = 1e-2 central differences carry
    // truncation error ≈ ε²·f‴ ≲ 1e-4, well inside atol 1e-3 + rtol 1e-2.
    @Test(arguments: [[2, 3, 3, 4], [8, 3]])
    func gradientsMatchFiniteDifferences(shape: [Int]) throws {
        let channels = shape.last!
        let layer = BatchNorm2D(channels: channels)
        layer.weight.value = randomTensor([channels], seed: 71, low: 0.5, high: 2)
        layer.bias.value = randomTensor([channels], seed: 72)
        try expectGradientsMatchFiniteDifferences(of: layer, input: randomTensor(shape, seed: 73))
    }

    /// A batch norm with running statistics unlike any batch's, γ and β frozen as `finetune.freeze` leaves them.
    static func frozenLayer(channels: Int) throws -> BatchNorm2D {
        let layer = BatchNorm2D(channels: channels, momentum: 0.5)
        layer.weight.value = randomTensor([channels], seed: 81, low: 0.5, high: 2)
        layer.bias.value = randomTensor([channels], seed: 82)
        _ = try layer.forward(randomTensor([3, 2, 2, channels], seed: 83, low: 1, high: 5), mode: .training)
        layer.weight.trainable = false
        layer.bias.trainable = false
        return layer
    }

    @Test func frozenLayerTrainsLikeInferenceAndKeepsItsStatistics() throws {
        let layer = try Self.frozenLayer(channels: 4)
        #expect(layer.isFrozen)
        let runningMean = floats(layer.runningMean), runningVariance = floats(layer.runningVariance)
        let input = randomTensor([2, 3, 3, 4], seed: 84), residual = randomTensor([2, 3, 3, 4], seed: 85)
        let inference = try layer.forward(input, mode: .inference)
        let training = try layer.forward(input, mode: .training)
        #expect(training.scalars == inference.scalars)
        let fusedInference = try layer.forwardReLU(input, adding: residual, mode: .inference)
        let fusedTraining = try layer.forwardReLU(input, adding: residual, mode: .training)
        #expect(fusedTraining.scalars == fusedInference.scalars)
        #expect(floats(layer.runningMean) == runningMean && floats(layer.runningVariance) == runningVariance)
        #expect(count(layer.batchesTracked) == 1, "only the batch before freezing is counted")

        // The fused backward of a fixed affine map: g = dOutput where the output is positive, the
        // residual gets g, the input g·γ/√(running_var + ε).
        let dOutput = randomTensor(input.shape, seed: 86)
        let (dInput, dResidual) = layer.backwardThroughReLU(dOutput)
        let gamma = layer.weight.value.scalars
        let masked = (0..<input.count).map { fusedTraining.scalars[$0] > 0 ? dOutput.scalars[$0] : 0 }
        let expected = (0..<input.count).map { masked[$0] * gamma[$0 % 4] / (runningVariance[$0 % 4] + 1e-5).squareRoot() }
        #expect(dResidual?.scalars == masked)
        expectClose(dInput.scalars, expected, rtol: 1e-5, atol: 1e-7, "dInput")
        // One image of one pixel has no batch variance, but a frozen layer needs none.
        #expect(try layer.forward(Tensor(zeros: [1, 1, 1, 4]), mode: .training).shape == [1, 1, 1, 4])
    }

    @Test(arguments: [[2, 3, 3, 4], [8, 3]])
    func frozenGradientsMatchFiniteDifferences(shape: [Int]) throws {
        try expectGradientsMatchFiniteDifferences(of: Self.frozenLayer(channels: shape.last!), input: randomTensor(shape, seed: 87))
    }

    @Test func freezingOnlyOneParameterKeepsBatchStatistics() throws {
        let layer = BatchNorm2D(channels: 2)
        layer.weight.trainable = false
        _ = try layer.forward(randomTensor([4, 2], seed: 88, low: 1, high: 3), mode: .training)
        #expect(!layer.isFrozen && count(layer.batchesTracked) == 1)
    }

    @Test func shapeErrorsNameTheExpectedShape() throws {
        let layer = BatchNorm2D(channels: 16)
        let wrongChannels = #expect(throws: RuntimeError.self) {
            try layer.forward(Tensor(zeros: [2, 4, 4, 8]), mode: .training)
        }
        #expect(wrongChannels?.description
                == "BatchNorm2D: expected input [N, H, W, 16] (NHWC) or [N, 16], got [2, 4, 4, 8]")
        #expect(throws: RuntimeError.shapeMismatch(path: "", kind: "BatchNorm2D",
                                                   expected: "[N, H, W, 16] (NHWC) or [N, 16]", found: [4, 16, 16])) {
            try layer.forward(Tensor(zeros: [4, 16, 16]), mode: .inference)
        }
        // One value per channel has no batch variance (PyTorch raises too); inference is fine with it.
        let single = #expect(throws: RuntimeError.self) {
            try layer.forward(Tensor(zeros: [1, 1, 1, 16]), mode: .training)
        }
        #expect(single?.description
                == "BatchNorm2D: expected input [N, H, W, 16] with N·H·W > 1 in training (one value per channel has no variance), got [1, 1, 1, 16]")
        #expect(try layer.forward(Tensor(zeros: [1, 16]), mode: .inference).shape == [1, 16])
        #expect(count(layer.batchesTracked) == 0)
    }
}
