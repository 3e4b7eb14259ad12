import CHDF5
import EpicycleCheckpoint
import EpicycleRuntime
import Foundation
import Testing
import TestSupport

/// Sets the int64 (or float64) attribute `name` of the object at `object`, replacing any old one.
func setAttribute(file: hid_t, object: String, name: String, int64: Int64? = nil, double: Double? = nil) throws {
    let location = H5Oopen(file, object, hid_t(H5P_DEFAULT))
    try #require(location >= 0)
    defer { H5Oclose(location) }
    if H5Aexists(location, name) > 0 { try #require(H5Adelete(location, name) >= 0) }
    let space = H5Screate(H5S_SCALAR)
    defer { H5Sclose(space) }
    let type = int64 != nil ? epicycle_H5T_NATIVE_INT64() : epicycle_H5T_NATIVE_DOUBLE()
    let attribute = H5Acreate2(location, name, type, space, hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT))
    try #require(attribute >= 0)
    defer { H5Aclose(attribute) }
    if var value = int64 { try #require(H5Awrite(attribute, type, &value) >= 0) }
    if var value = double { try #require(H5Awrite(attribute, type, &value) >= 0) }
}

/// Replaces the dataset at `path` by a float32 one of `shape`, chunked as `chunk` and never written
/// (so HDF5 allocates no storage), optionally through the deflate filter and written.
func replaceWithCraftedDataset(file: hid_t, path: String, shape: [UInt64], chunk: [UInt64], deflate: Bool = false) throws {
    try #require(H5Ldelete(file, path, hid_t(H5P_DEFAULT)) >= 0)
    let space = H5Screate_simple(Int32(shape.count), shape, nil)
    defer { H5Sclose(space) }
    let properties = H5Pcreate(epicycle_H5P_DATASET_CREATE())
    defer { H5Pclose(properties) }
    try #require(H5Pset_chunk(properties, Int32(chunk.count), chunk) >= 0)
    if deflate { try #require(H5Pset_deflate(properties, 9) >= 0) }
    let dataset = H5Dcreate2(file, path, epicycle_H5T_NATIVE_FLOAT(), space, hid_t(H5P_DEFAULT), properties, hid_t(H5P_DEFAULT))
    try #require(dataset >= 0, "creating \(path) \(shape)")
    defer { H5Dclose(dataset) }
    if deflate {
        let zeros = [Float](repeating: 0, count: Int(shape.reduce(1, *)))
        try #require(H5Dwrite(dataset, epicycle_H5T_NATIVE_FLOAT(), epicycle_H5S_ALL(), epicycle_H5S_ALL(), hid_t(H5P_DEFAULT), zeros) >= 0)
    }
}

extension CheckpointTests {
    /// Files crafted to make a trusting reader allocate without bound, trap, hang or accept nonsense:
    /// each must fail with an error that names the file and the object.
    @Suite struct CraftedFiles {
        let folder: String
        let path: String

        init() throws {
            folder = try makeTemporaryFolder()
            path = folder + "/last.h5"
            try makeFullCheckpoint().write(to: path)
        }

        func expectRefused(_ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) {
            let error = checkpointError(sourceLocation: sourceLocation) { _ = try Checkpoint.read(from: path) }
            let message = error?.description ?? ""
            #expect(message.hasPrefix(path + ": "), "'\(message)'", sourceLocation: sourceLocation)
            for fragment in fragments {
                #expect(message.contains(fragment), "'\(message)' should mention '\(fragment)'", sourceLocation: sourceLocation)
            }
            expectNoOpenHDF5Objects(in: folder, sourceLocation: sourceLocation)
        }

        @Test func hugeUnallocatedTensor() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            // 2^62 elements: the byte count wraps; it once sized the read buffer.
            try editHDF5File(path) {
                try replaceWithCraftedDataset(file: $0, path: "/model/parameters/fc.weight", shape: [1 << 62], chunk: [1024])
            }
            expectRefused(["'/model/parameters/fc.weight'", "has shape [4611686018427387904]", "more than the whole file"])
        }

        @Test func unallocatedTensorWithinTheFileSize() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try editHDF5File(path) {
                try replaceWithCraftedDataset(file: $0, path: "/model/parameters/fc.weight", shape: [64], chunk: [64])
            }
            expectRefused(["'/model/parameters/fc.weight'", "256 bytes of values but 0 bytes stored"])
        }

        @Test func overflowingShapeProduct() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try editHDF5File(path) {
                try replaceWithCraftedDataset(file: $0, path: "/model/parameters/fc.weight", shape: [1 << 31, 1 << 31, 1 << 31],
                                              chunk: [1, 1, 1])
            }
            expectRefused(["'/model/parameters/fc.weight'", "more than the whole file"])
        }

        @Test func compressedTensor() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try editHDF5File(path) {
                try replaceWithCraftedDataset(file: $0, path: "/model/parameters/fc.weight", shape: [2, 4], chunk: [2, 4], deflate: true)
            }
            expectRefused(["'/model/parameters/fc.weight'", "filter 1 (compression)"])
        }

        @Test func externalLink() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try editHDF5File(path) { file in
                try #require(H5Ldelete(file, "/model/parameters/fc.bias", hid_t(H5P_DEFAULT)) >= 0)
                try #require(H5Lcreate_external("/dev/zero", "/x", file, "/model/parameters/fc.bias", hid_t(H5P_DEFAULT),
                                                hid_t(H5P_DEFAULT)) >= 0)
            }
            expectRefused(["'/model/parameters/fc.bias'", "soft or external link"])
        }

        /// Attributes out of range, each naming the attribute and the range.
        static let attributes: [(object: String, name: String, value: Int64, words: String)] = [
            ("/training", "epoch", -1, "attribute 'epoch' of '/training' is -1, expected 0…1048576"),
            ("/training", "epoch", 1 << 62, "attribute 'epoch' of '/training' is 4611686018427387904"),
            ("/training", "epoch", 3, "'/training/metrics' has 2 rows for epoch 3"),
            ("/training", "step", 1 << 62, "attribute 'step' of '/training' is 4611686018427387904, expected 0…1099511627776"),
            ("/model", "num_classes", 0, "attribute 'num_classes' of '/model' is 0, expected a whole number in 2…1048576"),
            ("/model", "num_classes", 1 << 40, "attribute 'num_classes' of '/model' is 1099511627776"),
            ("/optimizer", "step", -5, "attribute 'step' of '/optimizer' is -5"),
            ("/training", "seed", -1, "attribute 'seed' of '/training' is -1"),
        ]

        @Test(arguments: attributes.indices)
        func attributeOutOfRange(case index: Int) throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let crafted = Self.attributes[index]
            try editHDF5File(path) { try setAttribute(file: $0, object: crafted.object, name: crafted.name, int64: crafted.value) }
            expectRefused([crafted.words])
        }

        @Test func nonFiniteCyclePositionAndHyperParameter() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try editHDF5File(path) { try setAttribute(file: $0, object: "/training", name: "cycle_position", double: .nan) }
            expectRefused(["attribute 'cycle_position' of '/training' is nan"])
            try makeFullCheckpoint().write(to: path)
            try editHDF5File(path) { try setAttribute(file: $0, object: "/optimizer", name: "lr", double: .infinity) }
            expectRefused(["attribute 'lr' of '/optimizer' is inf, expected a finite number"])
        }

        @Test func metricsStepsContradictTheRecord() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            var checkpoint = makeFullCheckpoint()
            checkpoint.training?.metrics = MetricsTable(columns: ["epoch", "step"], rows: [[1, 100], [2, 50]])
            let error = checkpointError { try checkpoint.write(to: path) }
            #expect(error?.description.contains("'/training/metrics' has step 50.0 in row 1, expected a whole number in 100…4680") == true,
                    "\(String(describing: error))")
        }

        @Test func notRegularFilesAreRefusedWithoutHanging() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let fifo = folder + "/pipe.h5"
            try #require(mkfifo(fifo, 0o600) == 0)
            #expect(checkpointError { _ = try Checkpoint.read(from: fifo) } == .notReadable(file: fifo))
            #expect(checkpointError { _ = try Checkpoint.read(from: "/dev/zero") } == .notReadable(file: "/dev/zero"))
        }

        @Test func nonFiniteWeightsAreADamagedFileOnLoad() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let state = makeResNet20State(seed: 4)
            state.parameters[3].parameter.value.scalars[5] = .nan
            try Checkpoint(model: state, architecture: "model: resnet20", numClasses: 10).write(to: path)
            let checkpoint = try Checkpoint.read(from: path)
            let target = makeResNet20State(seed: 5)
            let error = checkpointError { try checkpoint.loadModel(into: target) }
            let name = state.parameters[3].name
            #expect(error == .nonFinite(file: path, tensor: "model/parameters/\(name)", value: "NaN"))
            #expect(error?.description.hasPrefix("\(path): tensor model/parameters/\(name) has NaN values") == true)
            // Nothing was copied.
            #expect(target.parameters[0].parameter.value == makeResNet20State(seed: 5).parameters[0].parameter.value)
        }

        @Test func resumeChecksEpochsAndSteps() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            var record = try #require(makeFullCheckpoint().training)
            record.metrics = MetricsTable(columns: ["epoch", "step"], rows: [[1, 100], [2, 200]])
            record.step = 230
            try record.checkResumable(file: path, epochs: 5) { _ in 100 }
            let tooFar = checkpointError { try record.checkResumable(file: path, epochs: 1) { _ in 100 } }
            #expect(tooFar?.description == "\(path): attribute 'epoch' of '/training' is 2, but the recipe's phase has 1 epochs")
            record.step = 1 << 40
            let steps = checkpointError { try record.checkResumable(file: path, epochs: 5) { _ in 100 } }
            #expect(steps?.description.contains("attribute 'step' of '/training' is 1099511627776") == true)
            record.step = 201
            let finished = checkpointError { try record.checkResumable(file: path, epochs: 2) { _ in 100 } }
            #expect(finished?.description.contains("no batches left") == true)
        }

        @Test func resumeNeedsTheOptimizerSection() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            var checkpoint = makeFullCheckpoint()
            checkpoint.optimizer = nil
            try checkpoint.write(to: path)
            let error = checkpointError { _ = try Checkpoint.read(from: path).resumableOptimizer() }
            #expect(error == .missingEntry(file: path, object: "'/optimizer' group"))
        }
    }
}
