import CHDF5
@testable import EpicycleCheckpoint
import EpicycleRuntime
import Foundation
import Testing
import TestSupport

/// A Python with h5py, for the h5py-written inputs; those are skipped without it.
private let fuzzPython = ProcessInfo.processInfo.environment["EPICYCLE_PYTHON"]

/// The full checkpoint with finite values only, so that a load of the unchanged file succeeds.
private func fuzzBase() -> Checkpoint {
    var checkpoint = makeFullCheckpoint()
    func finite(_ tensors: inout [(name: String, tensor: Tensor)]) {
        for index in tensors.indices { tensors[index].tensor.scalars = tensors[index].tensor.scalars.map { $0.isFinite ? $0 : 1 } }
    }
    finite(&checkpoint.model.parameters)
    finite(&checkpoint.optimizer!.tensors)
    return checkpoint
}

/// A live state with the record's names and shapes, to load into.
private func matchingState(_ record: StateRecord) -> ModuleState {
    var state = ModuleState()
    for (name, tensor) in record.parameters { state.add(name, Parameter(Tensor(zeros: tensor.shape), decays: false)) }
    for (name, value) in record.buffers {
        switch value {
        case let .float32(tensor): state.add(name, Buffer(.float32(Tensor(zeros: tensor.shape))))
        case .int64: state.add(name, Buffer(.int64(0)))
        }
    }
    return state
}

/// Generates h5py-written files with wrong names, shapes, dtypes, links and storage, from a seed.
private let h5pyFuzzWriter = #"""
import random, sys
import h5py, numpy as np

folder, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
dims = [0, 1, 2, 3, 7, 64, 2**20, 2**31, 2**40, 2**62]
for i in range(count):
    with h5py.File(f"{folder}/h5py-{i}.h5", "w") as f:
        f.attrs["format"] = rng.choice(["epicycle-checkpoint", b"epicycle-checkpoint", "other", 7])
        f.attrs["format_version"] = rng.choice([1, np.int32(1), 1.0, "1", -1, 2**62, np.uint64(2**64 - 1)])
        f.attrs["created"] = "2026-01-01T00:00:00Z"
        f.attrs["software_version"] = rng.choice(["0.1.0", "x" * 5000])
        model = f.create_group(rng.choice(["model", "model", "modell"]))
        model.attrs["architecture"] = rng.choice(["architecture: resnet8\n", "", "a" * 70000, 5])
        model.attrs["num_classes"] = rng.choice([2, 0, -3, 2**40, np.array([2, 3]), 2.5])
        parameters = model.create_group("parameters")
        for j in range(rng.randint(0, 4)):
            name = rng.choice(["fc.weight", "fc.bias", "conv1.weight", f"p{j}"])
            if name in parameters: continue
            kind = rng.randrange(7)
            if kind == 0:
                parameters.create_dataset(name, data=np.ones((2, 3), dtype=rng.choice(["f4", "f8", "i4", "u1", "f2"])))
            elif kind == 1:  # never written: HDF5 would fill it
                parameters.create_dataset(name, shape=(rng.choice(dims[1:]),), dtype="f4", chunks=(1,))
            elif kind == 2:
                parameters.create_dataset(name, data=np.zeros((64, 64), "f4"), compression="gzip")
            elif kind == 3:
                parameters[name] = h5py.SoftLink("/model")
            elif kind == 4:
                parameters[name] = h5py.ExternalLink("/dev/zero", "/x")
            elif kind == 5:
                parameters.create_dataset(name, data=np.array([b"text", b"more"]))
            else:
                parameters.create_group(name)
        if rng.random() < 0.8:
            model.create_group("buffers")
        if rng.random() < 0.5:
            training = f.create_group("training")
            training.attrs["program"] = rng.choice(["pretrain", "bogus"])
            training.attrs["epoch"] = rng.choice([0, 1, -1, 2**62])
            training.attrs["step"] = rng.choice([0, 10, -1, 2**62])
            training.attrs["cycle_position"] = rng.choice([0.0, float("nan"), float("inf"), -1.0])
            training.attrs["seed"] = rng.choice([0, -1, np.uint64(2**64 - 1)])
            training.attrs["recipe"] = "seed: 1\n"
            training.create_dataset("rng_state", data=np.zeros(rng.choice([(4,), (2, 2), (0,)]), rng.choice(["u8", "i8", "f4"])))
            metrics = training.create_dataset("metrics", data=np.zeros((rng.choice([0, 1, 2]), rng.choice([0, 1, 3])), "f8"))
            metrics.attrs["columns"] = rng.choice([["epoch"], ["epoch", "step", "x"], [], [b"epoch"] * 3])
"""#

extension CheckpointTests {
    /// Seeded fuzzing of checkpoints through the entry points the CLI uses (`Checkpoint.read`, loading
    /// into a model, the resume checks). Every input is accepted or rejected with a `CheckpointError`
    /// whose message starts with the file, and for crafted fields names the field; no input may trap
    /// or take more than 10 s. `EPICYCLE_FUZZ_ITERATIONS` sets the number of inputs (default 3000).
    @Suite struct Fuzz {
        struct Outcome { var accepted = 0, rejected = 0 }

        /// Reads (and on success loads and checks for resuming) `path`; `field`, when known, must
        /// appear in a rejection's message.
        static func probe(_ path: String, field: String?, base: Checkpoint, outcome: inout Outcome,
                          sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                let checkpoint = try Checkpoint.read(from: path)
                try checkpoint.loadModel(into: matchingState(checkpoint.model))
                try checkpoint.training?.checkResumable(file: path, epochs: CheckpointLimits.epochs) { _ in 1 << 20 }
                _ = try checkpoint.resumableOptimizer()
                outcome.accepted += 1
            } catch let error as CheckpointError {
                outcome.rejected += 1
                #expect(error.description.hasPrefix(path + ": "), "\(error)", sourceLocation: sourceLocation)
                if let field {
                    #expect(error.description.contains(field), "'\(error)' should name \(field)", sourceLocation: sourceLocation)
                }
            } catch {
                Issue.record("\(path): \(error) is not a CheckpointError", sourceLocation: sourceLocation)
            }
        }

        static let attributes: [(object: String, name: String, isFloat: Bool)] = [
            ("/", "format_version", false), ("/model", "num_classes", false), ("/training", "epoch", false),
            ("/training", "step", false), ("/training", "seed", false), ("/training", "cycle_position", true),
            ("/training", "best_top1", true), ("/optimizer", "step", false), ("/optimizer", "lr", true),
            ("/data", "height", false), ("/data", "width", false), ("/data", "channels", false),
        ]
        static let datasets = ["/model/parameters/conv.weight", "/model/parameters/fc.bias", "/model/buffers/bn.running_var",
                               "/model/buffers/bn.num_batches_tracked", "/optimizer/state/fc.weight.momentum_buffer",
                               "/training/rng_state", "/training/metrics", "/data/mean", "/data/classes",
                               "/adapters/parameters/regressors.0.conv.weight"]
        static let extremes: [Int64] = [-1, 0, 1, 2, 3, 1 << 20, 1 << 31, 1 << 40, 1 << 62, .max, .min]
        static let dimensions: [UInt64] = [0, 1, 2, 3, 7, 64, 1 << 20, 1 << 31, 1 << 40, 1 << 62]

        @Test func mutatedCheckpointsAreAcceptedOrRejectedByName() throws {
            let folder = try makeTemporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let base = fuzzBase()
            let basePath = folder + "/base.h5"
            try base.write(to: basePath)
            let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: basePath)))
            let path = folder + "/fuzz.h5"
            var random = RandomGenerator(seed: 20_260_513)
            func pick(_ count: Int) -> Int { Int(random.next() % UInt64(count)) }
            let watchdog = FuzzWatchdog(limit: 10)
            defer { watchdog.stop() }
            var outcome = Outcome()
            let iterations = fuzzIterations(default: 3000)
            for iteration in 0..<iterations {
                var bytes = original
                var field: String? = nil
                let mutation = pick(6)
                switch mutation {
                case 0:  // flipped bytes
                    for _ in 0...pick(8) { bytes[pick(bytes.count)] ^= UInt8(1 + pick(255)) }
                case 1:  // truncated
                    bytes.removeLast(1 + pick(bytes.count - 1))
                default: break
                }
                try Data(bytes).write(to: URL(fileURLWithPath: path))
                if mutation >= 2 {
                    try editHDF5File(path) { file in
                        switch mutation {
                        case 2:  // an attribute set to an extreme value
                            let attribute = Self.attributes[pick(Self.attributes.count)]
                            // The version has its own message ("format version 2 is not supported").
                            field = attribute.name == "format_version" ? "format version" : attribute.name
                            let value = Self.extremes[pick(Self.extremes.count)]
                            try setAttribute(file: file, object: attribute.object, name: attribute.name,
                                             int64: attribute.isFloat ? nil : value,
                                             double: attribute.isFloat ? [Double.nan, .infinity, -1, 1e300, Double(value)][pick(5)] : nil)
                        case 3:  // a dataset replaced by one of a crafted shape, unwritten
                            let dataset = Self.datasets[pick(Self.datasets.count)]
                            let shape = (0..<(1 + pick(3))).map { _ in Self.dimensions[pick(Self.dimensions.count)] }
                            field = String(dataset.split(separator: "/").last!)
                            try replaceWithCraftedDataset(file: file, path: dataset, shape: shape,
                                                          chunk: shape.map { max(1, min($0, 1 << UInt64(pick(12)))) })
                        case 4:  // a dataset of another element type
                            let dataset = Self.datasets[pick(Self.datasets.count)]
                            field = String(dataset.split(separator: "/").last!)
                            try replaceWithFloat64Dataset(file: file, path: dataset, shape: [1 + pick(4)])
                        default:  // a link removed, or replaced by a link elsewhere
                            let dataset = Self.datasets[pick(Self.datasets.count)]
                            field = String(dataset.split(separator: "/").last!)
                            try #require(H5Ldelete(file, dataset, hid_t(H5P_DEFAULT)) >= 0)
                            if pick(2) == 0 {
                                try #require(H5Lcreate_external(["/dev/zero", folder + "/base.h5"][pick(2)], dataset, file, dataset,
                                                                hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT)) >= 0)
                            }
                        }
                    }
                }
                watchdog.run("iteration \(iteration), mutation \(mutation), field \(field ?? "-")") {
                    Self.probe(path, field: field, base: base, outcome: &outcome)
                }
                expectNoOpenHDF5Objects(in: folder)
            }
            #expect(outcome.accepted + outcome.rejected == iterations)
            print("checkpoint fuzz: \(iterations) inputs, \(outcome.accepted) accepted, \(outcome.rejected) rejected by name, "
                  + "0 crashes, slowest \(String(format: "%.3f", watchdog.slowest)) s")
        }

        @Test(.enabled(if: fuzzPython != nil, "set EPICYCLE_PYTHON to a Python with h5py"))
        func h5pyWrittenFilesAreAcceptedOrRejectedByName() throws {
            let folder = try makeTemporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let count = max(fuzzIterations(default: 3000) / 10, 20)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try #require(fuzzPython))
            process.arguments = ["-c", h5pyFuzzWriter, folder, String(count), "20260513"]
            try process.run()
            process.waitUntilExit()
            try #require(process.terminationStatus == 0, "the h5py writer failed")
            let watchdog = FuzzWatchdog(limit: 10)
            defer { watchdog.stop() }
            var outcome = Outcome()
            for index in 0..<count {
                let path = folder + "/h5py-\(index).h5"
                watchdog.run(path) { Self.probe(path, field: nil, base: fuzzBase(), outcome: &outcome) }
            }
            expectNoOpenHDF5Objects(in: folder)
            #expect(outcome.rejected > 0)
            print("h5py fuzz: \(count) files, \(outcome.accepted) accepted, \(outcome.rejected) rejected by name, 0 crashes")
        }
    }
}
