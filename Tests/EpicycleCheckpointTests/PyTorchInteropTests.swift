import EpicycleCheckpoint
import EpicycleRuntime
import Foundation
import Testing
import TestSupport

/// A Python with torch, h5py and NumPy (`.ci/run` sets one up); these tests run only when it is set.
private let python = ProcessInfo.processInfo.environment["EPICYCLE_PYTHON"]
private let interopScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../../scripts/checkpoint_interop.py").standardized.path

private func runPython(_ arguments: [String]) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try #require(python))
    process.arguments = arguments
    let errors = Pipe()
    process.standardError = errors
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    #expect(process.terminationStatus == 0, "python \(arguments.prefix(2).joined(separator: " ")) failed: \(message)")
}

private func readFloats(_ path: String, shape: [Int]) throws -> Tensor {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let scalars = data.withUnsafeBytes { raw in
        (0..<data.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
    }
    return Tensor(shape: shape, scalars: scalars)
}

private func writeFloats(_ tensor: Tensor, to path: String) throws {
    let data = tensor.scalars.withUnsafeBufferPointer { Data(buffer: $0) }
    try data.write(to: URL(fileURLWithPath: path))
}

extension CheckpointTests {
    /// Both directions of scripts/checkpoint_interop.py against the real PyTorch twins of the models:
    /// the logits agree within 1e-4 normwise relative error (float32 sums in another order).
    @Suite struct PyTorchInterop {
        static let spec = "architecture: resnet8\ninput_channels: 3\nnum_classes: 10\nshortcut: B\ndropout: 0\n"

        @Test(.enabled(if: python != nil, "set EPICYCLE_PYTHON to a Python with torch and h5py"))
        func pyTorchLoadsAnEpicycleCheckpoint() throws {
            let folder = try makeTemporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let model = try Model(ModelSpec(architecture: "resnet8", inputChannels: 3, numClasses: 10, shortcut: .b), seed: 4)
            // A training-mode pass moves the batch-norm statistics away from their initial 0/1.
            _ = try model.forward(randomTensor([8, 12, 12, 3], seed: 1, low: -2, high: 3), mode: .training)
            try Checkpoint(model: model.state, architecture: Self.spec, numClasses: 10).write(to: folder + "/model.h5")

            let input = randomTensor([4, 12, 12, 3], seed: 2)
            try writeFloats(input, to: folder + "/input.f32")
            try runPython([interopScript, "logits", folder + "/model.h5", "--input", folder + "/input.f32",
                           "--shape", "4,12,12,3", "--output", folder + "/logits.f32"])
            let expected = try model.forward(input, mode: .inference).logits
            expectNormwiseClose(try readFloats(folder + "/logits.f32", shape: [4, 10]), expected, tolerance: 1e-4,
                                "PyTorch's logits of the Epicycle checkpoint")
        }

        @Test(.enabled(if: python != nil, "set EPICYCLE_PYTHON to a Python with torch and h5py"))
        func anExportedPyTorchModelLoadsInEpicycle() throws {
            let folder = try makeTemporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let input = randomTensor([4, 12, 12, 3], seed: 3)
            try writeFloats(input, to: folder + "/input.f32")
            // A PyTorch model with trained-looking batch-norm statistics, its state_dict and its logits.
            let makeModel = """
                import sys, numpy as np, torch
                sys.path.insert(0, sys.argv[1])
                import torch_models
                torch.manual_seed(7)
                model = torch_models.build("resnet8", 3, 10, shortcut="B")
                model.train()
                model(torch.randn(8, 3, 12, 12) * 2 + 0.5)
                model.eval()
                torch.save(model.state_dict(), sys.argv[2])
                batch = np.fromfile(sys.argv[3], dtype="<f4").reshape(4, 12, 12, 3)
                with torch.no_grad():
                    model(torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()).numpy().astype("<f4").tofile(sys.argv[4])
                """
            let scripts = URL(fileURLWithPath: interopScript).deletingLastPathComponent().path
            try runPython(["-c", makeModel, scripts, folder + "/state.pt", folder + "/input.f32", folder + "/torch-logits.f32"])
            try runPython([interopScript, "export", folder + "/state.pt", folder + "/exported.h5", "--architecture", "resnet8",
                           "--input-channels", "3", "--num-classes", "10", "--shortcut", "B"])

            let checkpoint = try Checkpoint.read(from: folder + "/exported.h5")
            let model = try Model(ModelSpec(architecture: "resnet8", inputChannels: 3, numClasses: 10, shortcut: .b), seed: 0)
            try checkpoint.loadModel(into: model.state)
            expectNormwiseClose(try model.forward(input, mode: .inference).logits,
                                try readFloats(folder + "/torch-logits.f32", shape: [4, 10]), tolerance: 1e-4,
                                "Epicycle's logits of the exported PyTorch model")
        }
    }
}
