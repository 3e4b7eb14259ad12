import EpicycleRuntime
import Testing
import TestSupport

/// The kernels' reductions (weight gradients, batch-norm sums) split into parts fixed by the core
/// count, not by the thread count, so every thread count from 1 to the cores gives the same bits: a
/// comparison's run with `--jobs 2` (one thread each on two cores) computes what it computes alone.
@Suite(.serialized) struct ThreadCountTests {
    static let threadCounts = Array(1...max(1, onlineProcessorCount))

    @Test func convolutionGradientsDoNotDependOnTheThreadCount() {
        let geometry = Conv2DGeometry(batch: 7, inputHeight: 9, inputWidth: 8, inputChannels: 16, outputChannels: 32,
                                      kernelHeight: 3, kernelWidth: 3, strideHeight: 1, strideWidth: 1,
                                      paddingHeight: 1, paddingWidth: 1, groups: 1)
        let input = randomTensor(geometry.inputShape, seed: 1).scalars
        let weight = randomTensor(geometry.weightShape, seed: 2).scalars
        let dOutput = randomTensor(geometry.outputShape, seed: 3).scalars
        func gradients(threads: Int) -> (dInput: [UInt32], dWeight: [UInt32], weightOnly: [UInt32], dBias: [UInt32]) {
            let workspace = Conv2DWorkspace()
            var dInput = [Float](repeating: 0, count: geometry.inputShape.reduce(1, *))
            var dWeight = [Float](repeating: 0, count: geometry.weightShape.reduce(1, *)), weightOnly = dWeight
            var dBias = [Float](repeating: 0, count: geometry.outputChannels)
            conv2DBackwardDirect(geometry, input: input, dOutput: dOutput, weight: weight, dInput: &dInput,
                                 dWeight: &dWeight, dBias: &dBias, workspace: workspace, threads: threads)
            conv2DBackwardWeightDirect(geometry, input: input, dOutput: dOutput, dWeight: &weightOnly, dBias: nil,
                                       workspace: workspace, threads: threads)
            return (dInput.map(\.bitPattern), dWeight.map(\.bitPattern), weightOnly.map(\.bitPattern), dBias.map(\.bitPattern))
        }
        let reference = gradients(threads: onlineProcessorCount)
        for threads in Self.threadCounts {
            let result = gradients(threads: threads)
            #expect(result.dInput == reference.dInput, "dInput with \(threads) threads")
            #expect(result.dWeight == reference.dWeight, "dWeight with \(threads) threads")
            #expect(result.weightOnly == reference.weightOnly, "dWeight alone with \(threads) threads")
            #expect(result.dBias == reference.dBias, "dBias with \(threads) threads")
        }
    }

    @Test func batchNormSumsDoNotDependOnTheThreadCount() {
        // 65,536 rows of 16 channels: 2²⁰ elements, where the sums start to split.
        let (rows, channels) = (65_536, 16)
        let input = randomTensor([rows, channels], seed: 4, low: 2, high: 3).scalars
        let dOutput = randomTensor([rows, channels], seed: 5).scalars
        let weight = randomTensor([channels], seed: 6).scalars
        func results(threads: Int) -> [[UInt32]] {
            var mean = [Float](repeating: 0, count: channels), variance = mean
            batchNormStatistics(input, rows: rows, channels: channels, mean: &mean, variance: &variance, threads: threads)
            let inverseStd = variance.map { 1 / ($0 + 1e-5).squareRoot() }
            var dInput = [Float](repeating: 0, count: rows * channels)
            var dWeight = [Float](repeating: 0, count: channels), dBias = dWeight
            batchNormBackward(dOutput, input: input, rows: rows, channels: channels, mean: mean, inverseStd: inverseStd,
                              weight: weight, dInput: &dInput, dWeight: &dWeight, dBias: &dBias, threads: threads)
            return [mean, variance, dInput, dWeight, dBias].map { $0.map(\.bitPattern) }
        }
        let reference = results(threads: onlineProcessorCount)
        for threads in Self.threadCounts {
            #expect(results(threads: threads) == reference, "\(threads) threads")
        }
    }

    /// The depthwise kernels split the images over the threads (this layer is above the split threshold).
    @Test func depthwiseConvolutionDoesNotDependOnTheThreadCount() {
        let kernels = kernelThreads
        defer { setKernelThreads(kernels) }
        let geometry = Conv2DGeometry(batch: 9, inputHeight: 16, inputWidth: 15, inputChannels: 72, outputChannels: 72,
                                      kernelHeight: 3, kernelWidth: 3, strideHeight: 1, strideWidth: 1,
                                      paddingHeight: 1, paddingWidth: 1, groups: 72)
        let input = randomTensor(geometry.inputShape, seed: 1).scalars
        let weight = randomTensor(geometry.weightShape, seed: 2).scalars
        let dOutput = randomTensor(geometry.outputShape, seed: 3).scalars
        func results(threads: Int) -> [[UInt32]] {
            setKernelThreads(threads)
            let workspace = Conv2DWorkspace()
            var output = [Float](repeating: 0, count: geometry.outputShape.reduce(1, *))
            var dInput = [Float](repeating: 0, count: geometry.inputShape.reduce(1, *))
            var dWeight = [Float](repeating: 0, count: geometry.weightShape.reduce(1, *))
            conv2DForward(geometry, input: input, weight: weight, bias: nil, output: &output, workspace: workspace)
            conv2DBackward(geometry, input: input, dOutput: dOutput, weight: weight, dInput: &dInput, dWeight: &dWeight,
                           dBias: nil, workspace: workspace)
            return [output, dInput, dWeight].map { $0.map(\.bitPattern) }
        }
        let reference = results(threads: onlineProcessorCount)
        for threads in Self.threadCounts {
            #expect(results(threads: threads) == reference, "\(threads) threads")
        }
    }

    /// A whole ResNet-8 training step (kernels, batch norm above the split threshold, the classifier's
    /// sgemm) under `setThreads`, which sets the kernels' and OpenBLAS's pools. (Convolutions whose
    /// channels are not multiples of 16 take OpenBLAS's sgemm, whose sums do depend on its thread count.)
    @Test func aTrainingStepDoesNotDependOnTheThreadCount() throws {
        let (kernels, blas) = (kernelThreads, blasThreads)
        defer { setKernelThreads(kernels); setBLASThreads(blas) }
        let images = randomTensor([64, 32, 32, 3], seed: 7)
        let labels = (0..<64).map { Int32($0 % 10) }
        func step(threads: Int) throws -> [[UInt32]] {
            setThreads(threads)
            #expect(kernelThreads == threads && blasThreads == threads)
            let model = try Model(ModelSpec(architecture: "resnet8", inputChannels: 3, numClasses: 10), seed: 0)
            let output = try model.forward(images, mode: .training)
            model.backward(try CrossEntropyLoss()(logits: output.logits, labels: labels).gradient)
            return [output.logits.scalars.map(\.bitPattern)]
                + model.state.parameters.map { $0.parameter.gradient.scalars.map(\.bitPattern) }
        }
        let reference = try step(threads: onlineProcessorCount)
        for threads in Self.threadCounts {
            #expect(try step(threads: threads) == reference, "\(threads) threads")
        }
    }
}
