import EpicycleRuntime
import Testing

/// The memory estimate walks the model zoo's layers without building them: its parameter count must
/// be the built model's, and absurd specs must give a huge figure rather than a trap.
@Suite struct MemoryEstimateTests {
    @Test(arguments: ["resnet8", "resnet20", "resnet8x4", "wrn-10-1", "wrn-16-2", "plain-cnn", "plain-cnnx2", "vgg8", "vgg11x0.5",
                      "vgg13", "mobilenetv2", "mobilenetv2x0.5", "mobilenetv2x1.5"],
          [ModelSpec.Shortcut.a, .b])
    func parameterCountIsTheBuiltModels(architecture: String, shortcut: ModelSpec.Shortcut) throws {
        let spec = ModelSpec(architecture: architecture, inputChannels: 3, numClasses: 10, shortcut: shortcut,
                             dropout: architecture.hasPrefix("wrn") ? 0.3 : 0)
        let estimate = try spec.memoryEstimate(height: 32, width: 32, batchSize: 64)
        #expect(estimate.parameters == (try Model(spec, seed: 0).parameterCount))
    }

    /// ResNet-8 on 32×32: stem conv + BN (2 × 16·32²), one 16-channel block (4 × 16·32²), a 32-channel
    /// block at 16² (4 × 32·16² + the option-A shortcut's 32·16²), a 64-channel block at 8² (4 × 64·8²
    /// + 64·8²), the pooled vector and the logits.
    @Test func activationsFollowTheLayers() throws {
        let estimate = try ModelSpec(architecture: "resnet8", inputChannels: 3, numClasses: 10)
            .memoryEstimate(height: 32, width: 32, batchSize: 1)
        #expect(estimate.activationsPerImage == 2 * 16_384 + 4 * 16_384 + 5 * 8192 + 5 * 4096 + 64 + 10)
        #expect(estimate.largestActivationPerImage == 16_384)
        let twice = try ModelSpec(architecture: "resnet8", inputChannels: 3, numClasses: 10)
            .memoryEstimate(height: 32, width: 32, batchSize: 2)
        #expect(twice.bytes > estimate.bytes)
    }

    /// The fault campaign's `resnet8x100000` (its first convolution alone is 46 TB) and a spec at the
    /// bounds, whose products overflow 64 bits: both estimated, neither traps.
    @Test func absurdSpecsGiveHugeFiguresNotTraps() throws {
        let wide = try ModelSpec(architecture: "resnet8x100000", inputChannels: 1, numClasses: 10)
            .memoryEstimate(height: 28, width: 28, batchSize: 128)
        #expect(wide.bytes > 46 << 40)
        let huge = try ModelSpec(architecture: "resnet9998x100000", inputChannels: 1024, numClasses: 100_000)
            .memoryEstimate(height: 1 << 20, width: 1 << 20, batchSize: 65_536, optimizerSlots: 2)
        #expect(huge.bytes == Int.max)
        #expect(throws: RuntimeError.self) { try ModelSpec(architecture: "resnet8x100001", inputChannels: 1, numClasses: 10).validate() }
        #expect(throws: RuntimeError.self) { try ModelSpec(architecture: "resnet10004", inputChannels: 1, numClasses: 10).validate() }
        #expect(throws: RuntimeError.self) { try ModelSpec(architecture: "resnet8", inputChannels: 1, numClasses: 100_001).validate() }
        #expect(formatBytes(wide.bytes).hasSuffix("PiB"))
        #expect(formatBytes(24 << 30) == "24 GiB" && formatBytes(1536) == "1.5 KiB")
    }
}
