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
        // CIFAR-100 VGG-8/13 and MobileNetV2 at width 0.5: RepDistiller's 3.96 M, 9.46 M and 0.81 M
        // (Tian et al. 2020, Table 1).
        let cifar100 = ["vgg8": 3_965_028, "vgg11": 9_277_284, "vgg13": 9_462_180, "mobilenetv2x0.5": 812_836,
                        "mobilenetv2": 2_353_060]
        for (architecture, count) in cifar100 {
            #expect(try Model(ModelSpec(architecture: architecture, inputChannels: 3, numClasses: 100), seed: 0).parameterCount == count,
                    "\(architecture)")
        }
    }

    @Test func everyDepthAndWidthBuildsAndRuns() throws {
        for architecture in ["resnet8", "resnet14", "resnet32x2", "wrn-16-2", "plain-cnn", "plain-cnnx2", "vgg8x0.25", "vgg13x0.125",
                             "mobilenetv2x0.25"] {
            for (channels, size) in [(1, 28), (3, 32), (3, 9)] {
                let model = try Model(ModelSpec(architecture: architecture, inputChannels: channels, numClasses: 7), seed: 3)
                let logits = try model.forward(randomTensor([2, size, size, channels], seed: 1), mode: .inference).logits
                #expect(logits.shape == [2, 7], "\(architecture) on \(channels)×\(size)×\(size)")
                #expect(logits.scalars.allSatisfy { $0.isFinite })
            }
        }
    }

    @Test func badSpecsAndInputsAreNamedErrors() throws {
        #expect(throws: RuntimeError.self) { try Model(ModelSpec(architecture: "resnet21", inputChannels: 3, numClasses: 10), seed: 0) }
        #expect(throws: RuntimeError.self) { try Model(ModelSpec(architecture: "vgg16", inputChannels: 3, numClasses: 10), seed: 0) }
        #expect(throws: RuntimeError.self) { try Model(ModelSpec(architecture: "resnet20", inputChannels: 3, numClasses: 1), seed: 0) }
        // Width multipliers that are not numbers, leave a layer without channels or exceed the bound.
        for architecture in ["vgg12", "vgg13x0", "vgg13xnan", "vgg13x-1", "vgg8x0.01", "mobilenetv2x", "mobilenetv2x0.05",
                             "mobilenetv2xinf", "mobilenetv2x65", "mobilenetv2x0.5x2"] {
            #expect(throws: RuntimeError.self, "\(architecture)") { try ModelSpec(architecture: architecture, inputChannels: 3, numClasses: 10).validate() }
        }

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
            ("VGGStage", VGGStage(inputChannels: 2, widths: [3, 4], generator: &generator), [8, 6, 6, 2]),
        ]
        for (index, (_, block, shape)) in blocks.enumerated() {
            // A conv weight moves every pre-activation of the block, so ReLU kinks lie within ~5e-3 of
            // many coordinates: ε = 2e-3 (compared with ε/2 to skip the rest). Rounding then costs
            // ≈ 1e-7·|L|/ε ≈ 1e-3 for |L| ≈ 20, hence the 5e-3 floor; 2 % relative for truncation.
            try expectGradientsMatchFiniteDifferences(of: block, input: randomTensor(shape, seed: UInt64(30 + index)),
                                                      epsilon: 2e-3, rtol: 2e-2, atol: 5e-3, samples: 20,
                                                      skippingKinks: true)
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
        #expect(losses.allSatisfy { $0.isFinite })
        #expect(late < 0.3, "loss went \(losses.prefix(3)) … \(losses.suffix(3))")
    }
}
