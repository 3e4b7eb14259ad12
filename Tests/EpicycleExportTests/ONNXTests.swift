import EpicycleCheckpoint
import EpicycleExport
import EpicycleRuntime
import EpicycleTraining
import Foundation
import TestSupport
import Testing

/// Checks the file with onnx's own checker (full check: types and shapes inferred through the graph),
/// runs it in ONNX Runtime on the raw float32 images given ([N, C, H, W]) and prints the logits, the
/// output's shape as the file declares it, and the opset.
private let onnxRunner = #"""
import json, sys
import numpy as np, onnx, onnxruntime
model = onnx.load(sys.argv[1])
onnx.checker.check_model(model, full_check=True)
n, c, h, w = (int(v) for v in sys.argv[3:7])
images = np.fromfile(sys.argv[2], dtype=np.float32).reshape(n, c, h, w)
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
(logits,) = session.run(["logits"], {"images": images})
declared = [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
print(json.dumps({"logits": logits.astype(float).tolist(), "declared": declared,
                  "opset": model.opset_import[0].version,
                  "classes": {p.key: p.value for p in model.metadata_props}["classes"]}))
"""#

@Suite struct ONNXTests {
    /// Every architecture family of the zoo, with each block variant: ResNet option A and B shortcuts
    /// and a width multiplier, a wide ResNet with dropout and projection shortcuts, the plain CNN.
    static let architectures: [ModelSpec] = [
        ModelSpec(architecture: "resnet8", inputChannels: 3, numClasses: 10),
        ModelSpec(architecture: "resnet14", inputChannels: 1, numClasses: 7, shortcut: .b),
        ModelSpec(architecture: "resnet8x2", inputChannels: 3, numClasses: 5),
        ModelSpec(architecture: "wrn-10-2", inputChannels: 3, numClasses: 10, dropout: 0.3),
        ModelSpec(architecture: "wrn-10-1", inputChannels: 1, numClasses: 4),
        ModelSpec(architecture: "plain-cnn", inputChannels: 3, numClasses: 6),
        ModelSpec(architecture: "vgg8", inputChannels: 3, numClasses: 10),
        ModelSpec(architecture: "mobilenetv2x0.5", inputChannels: 3, numClasses: 10),
    ]

    /// A model whose batch norms have non-trivial running statistics and affine parameters, so that
    /// folding them is exercised, as after training.
    static func trainedLookingModel(_ spec: ModelSpec) throws -> Model {
        let model = try Model(spec, seed: 11)
        var generator = RandomGenerator(seed: 5)
        for norm in model.batchNorms {
            let channels = norm.channels
            func uniform(_ low: Float, _ high: Float) -> [Float] {
                (0..<channels).map { _ in low + (high - low) * Float(generator.nextUniform()) }
            }
            norm.weight.value = Tensor(shape: [channels], scalars: uniform(0.5, 1.5))
            norm.bias.value = Tensor(shape: [channels], scalars: uniform(-0.3, 0.3))
            norm.runningMean.value = .float32(Tensor(shape: [channels], scalars: uniform(-0.2, 0.2)))
            norm.runningVariance.value = .float32(Tensor(shape: [channels], scalars: uniform(0.5, 2)))
        }
        return model
    }

    static func pipeline(for spec: ModelSpec, size: Int) -> InputPipeline {
        InputPipeline(dataset: "synthetic", height: size, width: size, channels: spec.inputChannels,
                      mean: (0..<spec.inputChannels).map { 0.3 + 0.1 * Float($0) },
                      standardDeviation: (0..<spec.inputChannels).map { 0.2 + 0.05 * Float($0) },
                      classes: Array(0..<spec.numClasses), classNames: (0..<spec.numClasses).map { "class \($0)" })
    }

    /// ONNX Runtime's logits for the exported file equal Epicycle's inference-mode logits within 1e-4,
    /// at two batch sizes (the batch dimension is dynamic), for every architecture in the zoo.
    @Test(.enabled(if: peerPython != nil, peerReason), arguments: architectures)
    func onnxRuntimeReproducesTheInferenceLogits(spec: ModelSpec) throws {
        let folder = try temporaryFolder("onnx")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let size = 12
        let model = try Self.trainedLookingModel(spec)
        let input = Self.pipeline(for: spec, size: size)
        let file = folder + "/model.onnx"
        try Data(try ONNXExport(model: model, input: input).bytes).write(to: URL(fileURLWithPath: file))
        var generator = RandomGenerator(seed: 9)
        for batch in [1, 3] {
            let channels = spec.inputChannels
            // Pixel values in [0, 1], NCHW for ONNX; Epicycle normalises and takes NHWC.
            let pixels = (0..<batch * channels * size * size).map { _ in Float(generator.nextUniform()) }
            try pixels.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: folder + "/images.f32")) }
            var nhwc = [Float](repeating: 0, count: pixels.count)
            for n in 0..<batch { for c in 0..<channels { for y in 0..<size { for x in 0..<size {
                let value = pixels[((n * channels + c) * size + y) * size + x]
                nhwc[((n * size + y) * size + x) * channels + c] = (value - input.mean[c]) / input.standardDeviation[c]
            } } } }
            let expected = try model.forward(Tensor(shape: [batch, size, size, channels], scalars: nhwc), mode: .inference).logits
            let seen = try #require(try runPeerScript(onnxRunner, [file, folder + "/images.f32", "\(batch)", "\(channels)", "\(size)", "\(size)"])
                as? [String: Any])
            let logits = try #require(seen["logits"] as? [[Double]])
            #expect(logits.count == batch && logits.allSatisfy { $0.count == spec.numClasses })
            let difference = zip(logits.joined(), expected.scalars).map { abs($0 - Double($1)) }.max() ?? .infinity
            #expect(difference <= 1e-4, "\(spec.architecture), batch \(batch): largest logit difference \(difference)")
            let declared = try #require(seen["declared"] as? [Any])
            #expect(declared.count == 2 && declared.first as? String == "batch" && declared.last as? Int == spec.numClasses)
            #expect(seen["opset"] as? Int == 17)
            #expect(seen["classes"] as? String == input.classNames.joined(separator: "\n"))
        }
    }

    /// Folding changes the weights: the exported convolutions are not the checkpoint's, and the graph
    /// has no batch-norm node left in a ResNet (every batch norm follows a convolution there).
    @Test func batchNormIsFoldedIntoTheConvolutionsOfAResNet() throws {
        let model = try Self.trainedLookingModel(ModelSpec(architecture: "resnet8", inputChannels: 1, numClasses: 3))
        let graph = try model.inferenceGraph()
        var convolutions = 0
        for node in graph.nodes {
            if case .channelAffine = node.operation { Issue.record("unfolded batch norm at \(node.path)") }
            if case let .convolution(weight, _, _, _, _) = node.operation {
                convolutions += 1
                let original = try #require(model.state.parameters.first { $0.name == node.path + ".weight" })
                #expect(weight.shape == original.parameter.value.shape && weight != original.parameter.value, "\(node.path)")
            }
        }
        #expect(convolutions == 7)
    }

    /// A checkpoint without `/data` cannot give the input its shape: the error names the file and why.
    @Test func aCheckpointWithoutAnInputPipelineIsRefusedByName() throws {
        let folder = try temporaryFolder("no-data")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let model = try Model(ModelSpec(architecture: "resnet8", inputChannels: 1, numClasses: 3), seed: 1)
        try Checkpoint(model: model.state, architecture: try model.spec.yaml, numClasses: 3).write(to: folder + "/old.h5")
        do {
            _ = try exportONNX(checkpoint: folder + "/old.h5", to: folder + "/m.onnx")
            Issue.record("exported a checkpoint without /data")
        } catch {
            #expect("\(error)".contains("old.h5 has no /data input pipeline"), "\(error)")
        }
        #expect(!FileManager.default.fileExists(atPath: folder + "/m.onnx"))
    }
}
