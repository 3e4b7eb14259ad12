import CHDF5
import EpicycleCheckpoint
import EpicycleRuntime
import Foundation
import Testing
import TestSupport

extension CheckpointTests {
    /// Each test breaks a good file in one way and checks that reading or loading it names the problem.
    @Suite struct BrokenFiles {
        let folder: String
        let path: String
        let model = makeResNet20State(seed: 11)

        init() throws {
            folder = try makeTemporaryFolder()
            path = folder + "/last.h5"
            var checkpoint = makeFullCheckpoint()
            checkpoint.model = StateRecord(model)
            // A recognisable constant tensor, so a test can find its bytes in the file.
            checkpoint.model.parameters[0].tensor = Tensor(repeating: 1234.5, shape: [16, 3, 3, 3])
            try checkpoint.write(to: path)
        }

        /// Reads and loads the file into the model, returning the error and checking its description.
        func failure(mentioning fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) -> CheckpointError? {
            let error = checkpointError(sourceLocation: sourceLocation) {
                try Checkpoint.read(from: path).loadModel(into: model)
            }
            expectNoOpenHDF5Objects(in: folder, sourceLocation: sourceLocation)
            if let error {
                for fragment in fragments {
                    #expect(error.description.contains(fragment), "'\(error)' should mention '\(fragment)'",
                            sourceLocation: sourceLocation)
                }
            }
            return error
        }

        @Test func theGoodFileLoads() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try Checkpoint.read(from: path).loadModel(into: model)
            #expect(model.parameters[0].parameter.value == Tensor(repeating: 1234.5, shape: [16, 3, 3, 3]))
        }

        @Test func truncatedFile() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try modifyBytes(path) { $0.removeLast($0.count / 2) }
            let error = failure(mentioning: [path, "truncated"])
            guard case .truncated = error else { Issue.record("expected .truncated, got \(String(describing: error))"); return }
        }

        @Test func flippedSignatureByte() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try modifyBytes(path) { $0[1] ^= 0xFF }
            #expect(failure(mentioning: ["not an HDF5 file"]) == .notHDF5(file: path))
        }

        @Test func flippedByteInTensorData() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try modifyBytes(path) { bytes in
                let pattern = withUnsafeBytes(of: Float(1234.5).bitPattern.littleEndian) { Array($0) }
                let offset = try #require(firstOffset(of: pattern + pattern, in: bytes))
                bytes[offset + 100] ^= 0x01
            }
            let error = failure(mentioning: ["damaged", "/model/parameters/conv1.weight", "Fletcher32"])
            guard case .damaged = error else { Issue.record("expected .damaged, got \(String(describing: error))"); return }
        }

        @Test func flippedByteInMetadata() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            // The architecture text lives in the checksummed object header of /model.
            try modifyBytes(path) { bytes in
                let offset = try #require(firstOffset(of: Array("width: 1.0".utf8), in: bytes))
                bytes[offset] ^= 0x20
            }
            let error = failure(mentioning: ["damaged", "/model", "checksum"])
            guard case .damaged = error else { Issue.record("expected .damaged, got \(String(describing: error))"); return }
        }

        @Test func droppedDataset() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try editHDF5File(path) { try #require(H5Ldelete($0, "/model/parameters/layer2.1.bn1.bias", hid_t(H5P_DEFAULT)) >= 0) }
            #expect(failure(mentioning: ["'layer2.1.bn1.bias'", "missing"])
                    == .missingTensor(file: path, name: "layer2.1.bn1.bias"))
        }

        @Test func unexpectedTensor() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            var smaller = ModuleState()
            for (name, parameter) in model.parameters where name != "fc.bias" { smaller.add(name, parameter) }
            for (name, buffer) in model.buffers { smaller.add(name, buffer) }
            let error = checkpointError { try Checkpoint.read(from: path).loadModel(into: smaller) }
            #expect(error == .unexpectedTensor(file: path, name: "fc.bias"))
            #expect(error?.description.contains("'fc.bias' is in the file but not in the model") == true)
        }

        @Test func changedShape() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let shapes = cifarResNetShapes(blocksPerStage: 3, classes: 100)
            try Checkpoint(model: makeModelState(parameters: shapes.parameters, buffers: shapes.buffers, seed: 1),
                           architecture: "model: resnet20", numClasses: 100).write(to: path)
            let error = failure(mentioning: ["tensor 'fc.weight' has shape [100, 64] in the file, the model expects [10, 64]"])
            #expect(error == .shapeMismatch(file: path, name: "fc.weight", found: [100, 64], expected: [10, 64]))
        }

        @Test func changedDtypeOfAParameter() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try editHDF5File(path) { try replaceWithFloat64Dataset(file: $0, path: "/model/parameters/fc.weight", shape: [10, 64]) }
            #expect(failure(mentioning: ["'fc.weight'", "float64", "float32"])
                    == .dtypeMismatch(file: path, object: "tensor 'fc.weight' in /model/parameters", found: "float64",
                                      expected: "float32"))
        }

        @Test func int64BufferStoredAsFloat() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            var checkpoint = try Checkpoint.read(from: path)
            let index = try #require(checkpoint.model.buffers.firstIndex { $0.name == "bn1.num_batches_tracked" })
            checkpoint.model.buffers[index].value = .float32(Tensor(shape: [], scalars: [7]))
            try checkpoint.write(to: path)
            #expect(failure(mentioning: ["'bn1.num_batches_tracked'", "dtype float32", "expected int64"])
                    == .dtypeMismatch(file: path, object: "tensor 'bn1.num_batches_tracked'", found: "float32",
                                      expected: "int64"))
        }

        @Test func otherFormatAttribute() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try editHDF5File(path) { try replaceRootAttribute(file: $0, name: "format", string: "keras-weights") }
            #expect(failure(mentioning: ["not an Epicycle checkpoint", "'keras-weights'"])
                    == .wrongFormat(file: path, found: "keras-weights"))
        }

        @Test func missingFormatAttribute() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try editHDF5File(path) { file in
                let root = H5Gopen2(file, "/", hid_t(H5P_DEFAULT))
                defer { H5Gclose(root) }
                try #require(H5Adelete(root, "format") >= 0)
            }
            #expect(failure(mentioning: ["no format attribute"]) == .wrongFormat(file: path, found: nil))
        }

        @Test func newerFormatVersion() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try editHDF5File(path) { try replaceRootAttribute(file: $0, name: "format_version", integer: 2) }
            #expect(failure(mentioning: ["version 2", "newer Epicycle"])
                    == .unsupportedVersion(file: path, found: 2, supported: 1))
        }

        @Test func missingGroup() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try editHDF5File(path) { try #require(H5Ldelete($0, "/model/buffers", hid_t(H5P_DEFAULT)) >= 0) }
            #expect(failure(mentioning: ["'/model/buffers' group"])
                    == .missingEntry(file: path, object: "'/model/buffers' group"))
        }

        @Test func wrongAttributeType() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try editHDF5File(path) { try replaceRootAttribute(file: $0, name: "created", integer: 20260514) }
            #expect(failure(mentioning: ["attribute 'created' of '/'", "int64", "string"])
                    == .dtypeMismatch(file: path, object: "attribute 'created' of '/'", found: "int64", expected: "string"))
        }

        @Test func plainTextFile() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try "epoch,loss\n0,2.3\n".write(toFile: path, atomically: false, encoding: .utf8)
            #expect(failure(mentioning: ["not an HDF5 file"]) == .notHDF5(file: path))
        }

        @Test func emptyFile() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try Data().write(to: URL(fileURLWithPath: path))
            #expect(failure(mentioning: ["not an HDF5 file"]) == .notHDF5(file: path))
        }

        @Test func missingFileAndFolder() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let error = checkpointError { _ = try Checkpoint.read(from: folder + "/nothing.h5") }
            #expect(error == .fileNotFound(file: folder + "/nothing.h5"))
            #expect(checkpointError { _ = try Checkpoint.read(from: folder) } == .notReadable(file: folder))
        }
    }
}

extension CheckpointTests {
    @Suite struct Integrity {
        /// Small checkpoints of different shapes: every section with awkward values; a model alone (no
        /// optimizer or training state) whose groups hold more than 8 links, which HDF5 keeps in a
        /// fractal heap indexed by B-trees; a model with optimizer state (more than 8 attributes: dense
        /// attribute storage) and training state with metrics, without adapters.
        static func checkpoint(named name: String) -> Checkpoint {
            switch name {
            case "model-only":
                let model = makeModelState(parameters: (0..<12).map { ("layer\($0).weight", [2]) },
                                           buffers: (0..<10).map { ("bn\($0).running_mean", $0 % 3 == 0 ? nil : [3]) },
                                           seed: 3)
                return Checkpoint(model: model, architecture: "model: plain-cnn\n", numClasses: 2,
                                  created: "2026-05-14T09:30:12Z")
            case "with-optimizer":
                var checkpoint = Checkpoint(model: makeModelState(parameters: [("fc.weight", [2, 3]), ("fc.bias", [2])],
                                                                  seed: 4),
                                            architecture: "model: linear\n", numClasses: 2, created: "2026-05-14T09:30:12Z")
                checkpoint.optimizer = OptimizerRecord(
                    kind: "adamw",
                    hyperparameters: Dictionary(uniqueKeysWithValues: (0..<9).map { ("beta\($0)", 1 / Double($0 + 2)) }),
                    counters: ["step": 12, "epoch": 3],
                    tensors: checkpoint.model.parameters.flatMap { parameter in
                        ["exp_avg", "exp_avg_sq"].map { (parameter.name + "." + $0, parameter.tensor) }
                    })
                checkpoint.training = makeFullCheckpoint().training
                checkpoint.training?.bestTop1 = nil
                return checkpoint
            default:
                return makeFullCheckpoint()
            }
        }

        /// Every stored byte is covered by a checksum (Fletcher-32 on tensor chunks, HDF5's own on
        /// metadata, compact layout for scalars), so flipping a bit either makes the read fail with a
        /// `CheckpointError` or hits unused space and changes nothing; either way the read leaves no
        /// HDF5 identifier of the file open. Every byte, one bit each (the bit cycles with the offset).
        @Test(arguments: ["full", "model-only", "with-optimizer"])
        func everyFlippedByteIsCaughtOrHarmless(file name: String) throws {
            let original = Self.checkpoint(named: name)
            let folder = try makeTemporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let path = folder + "/\(name).h5"
            try original.write(to: path)
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            // One byte at a time in place, unsynced: rewriting the file with Data.write syncs it to disk.
            let descriptor = open(path, O_RDWR)
            try #require(descriptor >= 0)
            defer { close(descriptor) }
            func overwrite(_ offset: Int, with byte: UInt8) throws {
                var byte = byte
                try #require(pwrite(descriptor, &byte, 1, off_t(offset)) == 1)
            }
            var caught = 0
            for offset in bytes.indices {
                try overwrite(offset, with: bytes[offset] ^ 1 << (offset % 8))
                defer { try? overwrite(offset, with: bytes[offset]) }
                do {
                    let read = try Checkpoint.read(from: path)
                    let found = checkpointDifferences(read, original)
                    #expect(found.isEmpty, "flipping byte \(offset) of \(name) went unnoticed: \(found)")
                } catch is CheckpointError {
                    caught += 1
                } catch {
                    Issue.record("flipping byte \(offset) of \(name) threw \(error), not a CheckpointError")
                }
                expectNoOpenHDF5Objects(in: folder)
            }
            // Most of a file is data or metadata; only free space (of which B-tree nodes and heaps for
            // dense storage leave plenty) may flip harmlessly.
            #expect(caught > bytes.count / 2, "\(caught) of \(bytes.count) flips caught in \(name)")
        }
    }
}
