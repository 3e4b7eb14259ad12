@testable import EpicycleRuntime
import Testing
import TestSupport

@Suite struct ModelTests {
    @Test func parameterCountsMatchThePapers() throws {
        // ResNet-20: 0.27 M (He et al. 2016, Table 6); WRN-16-2 ≈ 0.69 M; figures from the PyTorch twins
        // in scripts/torch_models.py, which load the same state_dict.
        #expect(try Model(ModelSpec(architecture: "resnet20", inputChannels: 3, numClasses: 10), seed: 0).parameterCount == 269_722)
        #expect(try Model(ModelSpec(architecture: "resnet8", inputChannels: 3, numClasses: 10), seed: 0).parameterCount == 75_290)
        #expect(try Model(ModelSpec(architecture: "wrn-10-1", inputChannels: 3, numClasses: 10), seed: 0).parameterCount == 77_850)
        #expect(try Model(ModelSpec(architecture: "resnet8x4", inputChannels: 3, numClasses: 10), seed: 0).parameterCount == 1_166_506)
    }

    @Test func everyDepthAndWidthBuildsAndRuns() throws {
        for architecture in ["resnet8", "resnet14", "resnet32x2", "wrn-16-2", "plain-cnn", "plain-cnnx2"] {
            for (channels, size) in [(1, 28), (3, 32), (3, 9)] {
                let model = try Model(ModelSpec(architecture: architecture, inputChannels: channels, numClasses: 7), seed: 3)
                let logits = try model.forward(randomTensor([2, size, size, channels], seed: 1), mode: .inference).logits
                #expect(logits.shape == [2, 7], "\(architecture) on \(channels)×\(size)×\(size)")
                #expect(logits.scalars.allSatisfy(\.isFinite))
            }
        }
    }

    @Test func badSpecsAndInputsAreNamedErrors() throws {
        #expect(throws: RuntimeError.self) { try Model(ModelSpec(architecture: "resnet21", inputChannels: 3, numClasses: 10), seed: 0) }
        #expect(throws: RuntimeError.self) { try Model(ModelSpec(architecture: "vgg16", inputChannels: 3, numClasses: 10), seed: 0) }
        #expect(throws: RuntimeError.self) { try Model(ModelSpec(architecture: "resnet20", inputChannels: 3, numClasses: 1), seed: 0) }

        let model = try Model(ModelSpec(architecture: "resnet8", inputChannels: 3, numClasses: 10), seed: 0)
        do {
            _ = try model.forward(Tensor(zeros: [2, 8, 8, 1]), mode: .inference)
            Issue.record("a 1-channel input to a 3-channel model must throw")
        } catch let error as RuntimeError {
            // The message names the failing layer by its state_dict path and shows the shapes.
            #expect(error.description.hasPrefix("conv1 (Conv2D)"), "\(error)")
            #expect(error.description.contains("[2, 8, 8, 1]"), "\(error)")
        }
        do {
            _ = try model.forward(Tensor(zeros: [2, 8, 8, 3]), mode: .inference, capture: ["layer4"])
            Issue.record("an unknown feature must throw")
        } catch let error as RuntimeError {
            #expect(error == .unknownFeature("layer4", valid: model.featureNames))
            #expect(error.description.contains("layer3.0"))
        }
    }

    @Test func inferenceLeavesTheStateAlone() throws {
        // Inference must not touch batch-norm statistics (PyTorch's eval mode), so it is a pure function.
        let model = try Model(ModelSpec(architecture: "resnet8", inputChannels: 1, numClasses: 4), seed: 5)
        let input = randomTensor([2, 6, 6, 1], seed: 2)
        let before = model.state.buffers.map(\.buffer.value)
        let first = try model.forward(input, mode: .inference).logits
        #expect(model.state.buffers.map(\.buffer.value) == before)
        #expect(try model.forward(input, mode: .inference).logits == first)
        _ = try model.forward(input, mode: .training)
        #expect(model.state.buffers.map(\.buffer.value) != before, "training mode updates the running statistics")
    }

    /// The input gradient and a few parameter gradients of L = Σ logits⊙R + Σ feature⊙S, against central
    /// differences: checks the model's backward order, residual joins and where feature gradients enter.
    @Test(arguments: [("resnet8", "layer2"), ("wrn-10-1", "layer1"), ("plain-cnn", "layer2"), ("resnet8", "stem")])
    func featureGradientsEnterWhereTheFeatureIsMade(architecture: String, feature: String) throws {
        var spec = ModelSpec(architecture: architecture, inputChannels: 2, numClasses: 3)
        spec.shortcut = .a
        let model = try Model(spec, seed: 11)
        var input = randomTensor([3, 8, 8, 2], seed: 4)
        let first = try model.forward(input, mode: .training, capture: [feature])
        let r = randomTensor(first.logits.shape, seed: 5)
        let s = randomTensor(first.features[feature]!.shape, seed: 6)
        for (_, parameter) in model.state.parameters { parameter.zeroGradient() }
        let dInput = model.backward(r, featureGradients: [feature: s])

        func loss() throws -> Double {
            let output = try model.forward(input, mode: .training, capture: [feature])
            var sum = 0.0
            for (i, value) in output.logits.scalars.enumerated() { sum += Double(value) * Double(r.scalars[i]) }
            for (i, value) in output.features[feature]!.scalars.enumerated() { sum += Double(value) * Double(s.scalars[i]) }
            return sum
        }
        // ε = 1e-2 in float32: rounding error ≈ 1e-7·|L|/ε ≈ 1e-4 for |L| ≈ 10, truncation ≈ ε² ≈ 1e-4;
        // batch norm over small batches amplifies both, hence 3 % relative with a 2e-3 floor.
        let indices = sampleIndices(count: input.count, limit: 24, seed: 8)
        let numeric = try centralDifferences(indices: indices, epsilon: 1e-2, read: { input.scalars[$0] },
                                             write: { input.scalars[$0] = $1 }, loss: loss)
        for (k, index) in indices.enumerated() {
            let analytic = Double(dInput.scalars[index])
            #expect(abs(analytic - numeric[k]) <= 2e-3 + 3e-2 * abs(numeric[k]),
                    "input[\(index)]: backward \(analytic), finite differences \(numeric[k])")
        }
        let conv = try #require(model.state.parameters.first { $0.name.hasSuffix("conv1.weight") }?.parameter)
        let convIndices = sampleIndices(count: conv.value.count, limit: 12, seed: 9)
        let convNumeric = try centralDifferences(indices: convIndices, epsilon: 1e-2, read: { conv.value.scalars[$0] },
                                                 write: { conv.value.scalars[$0] = $1 }, loss: loss)
        for (k, index) in convIndices.enumerated() {
            let analytic = Double(conv.gradient.scalars[index])
            #expect(abs(analytic - convNumeric[k]) <= 2e-3 + 3e-2 * abs(convNumeric[k]),
                    "conv1.weight[\(index)]: backward \(analytic), finite differences \(convNumeric[k])")
        }
    }

    @Test func blocksPassGradientChecks() throws {
        var generator = RandomGenerator(seed: 21)
        let blocks: [(String, any Layer, [Int])] = [
            ("BasicBlock identity", BasicBlock(inputChannels: 4, outputChannels: 4, stride: 1, shortcut: .a, generator: &generator), [2, 5, 5, 4]),
            ("BasicBlock option A", BasicBlock(inputChannels: 3, outputChannels: 6, stride: 2, shortcut: .a, generator: &generator), [2, 5, 5, 3]),
            ("BasicBlock option B", BasicBlock(inputChannels: 3, outputChannels: 5, stride: 2, shortcut: .b, generator: &generator), [2, 6, 5, 3]),
            ("WideBlock projection", WideBlock(inputChannels: 3, outputChannels: 4, stride: 2, dropout: 0, generator: &generator), [2, 6, 6, 3]),
            ("WideBlock identity", WideBlock(inputChannels: 4, outputChannels: 4, stride: 1, dropout: 0, generator: &generator), [2, 4, 4, 4]),
            ("ChannelPadShortcut", ChannelPadShortcut(inputChannels: 2, outputChannels: 6, stride: 2), [2, 5, 4, 2]),
            ("ConvBNReLU", ConvBNReLU(inputChannels: 2, outputChannels: 3, generator: &generator), [2, 4, 4, 2]),
        ]
        for (index, (_, block, shape)) in blocks.enumerated() {
            // Same tolerance argument as above: float32 central differences through batch norm.
            try expectGradientsMatchFiniteDifferences(of: block, input: randomTensor(shape, seed: UInt64(30 + index)),
                                                      epsilon: 1e-2, rtol: 3e-2, atol: 2e-3, samples: 20)
        }
    }

    @Test func optionAShortcutSubsamplesAndPadsChannels() throws {
        // 1 image 3×3, 1 channel → stride 2 keeps pixels (0,0), (0,2), (2,0), (2,2); 1 → 3 channels puts
        // the kept channel in the middle (pad 1 in front, 1 behind).
        let shortcut = ChannelPadShortcut(inputChannels: 1, outputChannels: 3, stride: 2)
        let input = Tensor(shape: [1, 3, 3, 1], scalars: [1, 2, 3, 4, 5, 6, 7, 8, 9])
        let output = try shortcut.forward(input, mode: .training)
        #expect(output.shape == [1, 2, 2, 3])
        #expect(output.scalars == [0, 1, 0, 0, 3, 0, 0, 7, 0, 0, 9, 0])
    }

    @Test func aSmallResNetLearnsAGeneratedTask() throws {
        // Class = which half of the image holds a bright bar, under noise: learnable in a few dozen steps.
        let model = try Model(ModelSpec(architecture: "resnet8", inputChannels: 1, numClasses: 2), seed: 1)
        let optimizer = SGD(groups: ParameterGroup.standard(model.state.parameters, weightDecay: 5e-4),
                            learningRate: 0.05, momentum: 0.9)
        var generator = RandomGenerator(seed: 2)
        func batch() -> (Tensor, [Int32]) {
            var images = Tensor(zeros: [16, 8, 8, 1]), labels: [Int32] = []
            for n in 0..<16 {
                let label = Int32(generator.next() % 2)
                labels.append(label)
                for y in 0..<8 {
                    for x in 0..<8 {
                        let bar = (label == 0 ? x < 4 : x >= 4) && y >= 2 && y < 6 ? Float(1) : 0
                        images.scalars[((n * 8 + y) * 8 + x)] = bar + 0.5 * generator.nextNormal()
                    }
                }
            }
            return (images, labels)
        }
        var losses: [Float] = []
        for _ in 0..<40 {
            let (images, labels) = batch()
            optimizer.zeroGradients()
            let loss = try CrossEntropyLoss()(logits: try model.forward(images, mode: .training).logits, labels: labels)
            model.backward(loss.gradient)
            optimizer.step()
            losses.append(loss.value)
        }
        // Chance level is ln 2 ≈ 0.69; the last 10 steps must average well below half of it.
        let late = losses.suffix(10).reduce(0, +) / 10
        #expect(losses.allSatisfy(\.isFinite))
        #expect(late < 0.3, "loss went \(losses.prefix(3)) … \(losses.suffix(3))")
    }
}
