import CHDF5
@testable import EpicycleCheckpoint
import EpicycleRuntime
import Foundation
import Testing
import TestSupport

extension CheckpointTests {
    /// The `/data` group: written with the checkpoint, read back exactly, optional for older files,
    /// and checked on both sides.
    @Suite struct InputPipelineStorage {
        let folder: String
        let path: String

        init() throws {
            folder = try makeTemporaryFolder()
            path = folder + "/last.h5"
        }

        @Test func roundTripsExactly() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let original = makeFullCheckpoint()
            try original.write(to: path)
            let restored = try Checkpoint.read(from: path)
            #expect(restored.input == makeInputPipeline())
            #expect(restored.input?.mean.map(\.bitPattern) == makeInputPipeline().mean.map(\.bitPattern))
        }

        @Test func filesWithoutDataReadAsNil() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try makeFullCheckpoint().write(to: path)
            try editHDF5File(path) { try #require(H5Ldelete($0, "/data", hid_t(H5P_DEFAULT)) >= 0) }
            let restored = try Checkpoint.read(from: path)
            #expect(restored.input == nil)
            #expect(restored.model.parameters.count == makeFullCheckpoint().model.parameters.count)
        }

        /// Each broken pipeline, paired with the words its error must contain; writing refuses it and
        /// reading a file that holds it (written by raw HDF5 below) names `/data` and the problem.
        static let broken: [(String, @Sendable (inout InputPipeline) -> Void, String)] = [
            ("channels", { $0.channels = 0 }, "0 channels"),
            ("mean length", { $0.mean = [0.5] }, "1 means and 3 standard deviations for 3 channels"),
            ("std zero", { $0.standardDeviation[1] = 0 }, "std[1] = 0.0"),
            ("std NaN", { $0.standardDeviation[2] = .nan }, "std[2] = nan"),
            ("mean infinite", { $0.mean[0] = .infinity }, "mean[0] = inf"),
            ("classes count", { $0.classes = [1, 2, 3] }, "3 classes, but the model's num_classes is 2"),
            ("negative label", { $0.classes[0] = -1 }, "classes[0] = -1"),
            ("duplicate label", { $0.classes = [4, 4] }, "label twice"),
            ("names count", { $0.classNames = ["cat"] }, "1 class names for 2 classes"),
            ("height", { $0.height = 1 << 20 }, "height 1048576"),
        ]

        @Test(arguments: broken.indices)
        func brokenPipelinesAreRefusedOnWriteAndOnRead(case index: Int) throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let (name, breakIt, words) = Self.broken[index]
            var checkpoint = makeFullCheckpoint()
            breakIt(&checkpoint.input!)
            let writeError = checkpointError { try checkpoint.write(to: path) }
            #expect(writeError?.description.contains(words) == true, "\(name): \(String(describing: writeError))")
            #expect(!FileManager.default.fileExists(atPath: path) && !FileManager.default.fileExists(atPath: path + ".tmp"))

            // The same pipeline put into a good file directly, as another writer could.
            try makeFullCheckpoint().write(to: path)
            let bad = checkpoint.input!
            try editHDF5File(path) { file in
                try #require(H5Ldelete(file, "/data", hid_t(H5P_DEFAULT)) >= 0)
                let group = try HDF5Handle(H5Gcreate2(file, "/data", hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT)),
                                           closer: H5Gclose, action: "creating /data")
                let location = HDF5Location(handle: group, path: "/data")
                try location.writeAttribute("dataset", string: bad.dataset)
                for (key, value) in [("height", bad.height), ("width", bad.width), ("channels", bad.channels)] {
                    try location.writeAttribute(key, int64: Int64(value))
                }
                try location.writeAttribute("class_names", strings: bad.classNames)
                for (key, values) in [("mean", bad.mean), ("std", bad.standardDeviation)] {
                    _ = try values.withUnsafeBytes {
                        try location.writeDataset(key, shape: [values.count], fileType: epicycle_H5T_IEEE_F32LE(),
                                                  memoryType: epicycle_H5T_NATIVE_FLOAT(), data: $0.baseAddress)
                    }
                }
                let classes = bad.classes.map(Int64.init)
                _ = try classes.withUnsafeBytes {
                    try location.writeDataset("classes", shape: [classes.count], fileType: epicycle_H5T_STD_I64LE(),
                                              memoryType: epicycle_H5T_NATIVE_INT64(), data: $0.baseAddress)
                }
            }
            let readError = checkpointError { _ = try Checkpoint.read(from: path) }
            let message = readError?.description ?? ""
            #expect(message.hasPrefix("\(path): the input pipeline '/data' ") && message.contains(words),
                    "\(name): \(message)")
            expectNoOpenHDF5Objects(in: folder)
        }

        @Test func wrongDtypeOfMeanIsNamed() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try makeFullCheckpoint().write(to: path)
            try editHDF5File(path) { file in
                try #require(H5Ldelete(file, "/data/mean", hid_t(H5P_DEFAULT)) >= 0)
                let type = H5Tcopy(epicycle_H5T_C_S1())
                defer { H5Tclose(type) }
                H5Tset_size(type, 4)
                let space = H5Screate_simple(1, [3], nil)
                defer { H5Sclose(space) }
                let dataset = H5Dcreate2(file, "/data/mean", type, space, hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT))
                try #require(dataset >= 0)
                H5Dclose(dataset)
            }
            let error = checkpointError { _ = try Checkpoint.read(from: path) }
            #expect(error == .dtypeMismatch(file: path, object: "'/data/mean'", found: "string [3]", expected: "float32 [channels]"))
        }
    }
}
