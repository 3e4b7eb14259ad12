import EpicycleCheckpoint
import EpicycleRuntime
import Foundation
import Testing
import TestSupport

extension CheckpointTests {
    @Suite struct AtomicWrites {
        let folder: String
        let path: String
        let previous = makeFullCheckpoint(seed: 1)

        init() throws {
            folder = try makeTemporaryFolder()
            path = folder + "/last.h5"
            try previous.write(to: path)
        }

        /// The previous checkpoint is still there, intact, and no temporary file is left behind.
        func expectPreviousIntact(sourceLocation: SourceLocation = #_sourceLocation) throws {
            expectNoOpenHDF5Objects(in: folder, sourceLocation: sourceLocation)
            expectIdentical(try Checkpoint.read(from: path), previous, sourceLocation: sourceLocation)
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder).sorted() == ["last.h5"],
                    sourceLocation: sourceLocation)
        }

        @Test func failureMidwayKeepsThePreviousFile() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            // The adapters are written last, so the model, optimizer and training sections are
            // already in the temporary file when the duplicate name stops the save.
            var next = makeFullCheckpoint(seed: 2)
            next.adapters?.parameters.append(("regressors.0.conv.weight", Tensor(zeros: [1])))
            let error = checkpointError { try next.write(to: path) }
            #expect(error == .invalidRecord(file: path, reason: "tensor name 'regressors.0.conv.weight' appears twice "
                                                + "in /adapters/parameters"))
            try expectPreviousIntact()
        }

        @Test func unwritableTemporaryPathKeepsThePreviousFile() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            // A folder where the temporary file should go: creating it fails, even for root.
            try FileManager.default.createDirectory(atPath: path + ".tmp", withIntermediateDirectories: false)
            let error = checkpointError { try makeFullCheckpoint(seed: 2).write(to: path) }
            guard case let .writeFailed(file, action, _) = error else {
                Issue.record("expected .writeFailed, got \(String(describing: error))")
                return
            }
            #expect(file == path && action.contains("creating the temporary file '\(path).tmp'"))
            #expect(error?.description.contains("the previous file, if any, is unchanged") == true)
            try FileManager.default.removeItem(atPath: path + ".tmp")
            try expectPreviousIntact()
        }

        @Test func missingFolderFailsCleanly() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let error = checkpointError { try previous.write(to: folder + "/no/such/folder/last.h5") }
            guard case .writeFailed = error else { Issue.record("expected .writeFailed, got \(String(describing: error))"); return }
            try expectPreviousIntact()
        }

        @Test func successfulSaveReplacesTheFile() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let next = makeFullCheckpoint(seed: 2)
            try next.write(to: path)
            expectIdentical(try Checkpoint.read(from: path), next)
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["last.h5"])
        }

        @Test func invalidNamesAreRefused() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            for name in ["", ".", "layer1/conv.weight"] {
                let checkpoint = Checkpoint(architecture: "x", numClasses: 1,
                                            model: StateRecord(parameters: [(name, Tensor(zeros: [1]))]))
                let error = checkpointError { try checkpoint.write(to: path) }
                #expect(error == .invalidRecord(file: path, reason: "tensor name '\(name)' in /model/parameters is "
                                                    + "empty, '.' or contains '/'"))
            }
            var ragged = makeFullCheckpoint(seed: 2)
            ragged.training?.metrics.rows.append([1, 2])
            #expect(checkpointError { try ragged.write(to: path) }
                    == .invalidRecord(file: path, reason: "metrics row 2 has 2 values for 4 columns"))
            try expectPreviousIntact()
        }

        @Test func largeTextAttributesRoundTrip() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            // Beyond the 64 KiB an attribute can take inside an object header, HDF5 moves it to
            // dense storage; the recipe must still come back whole.
            var checkpoint = makeFullCheckpoint(seed: 3)
            checkpoint.training?.recipe = (0..<5000).map { "knob_\($0): {cyclical: {easy: 0.5, hard: 2.0}}" }
                .joined(separator: "\n")
            try checkpoint.write(to: path)
            expectIdentical(try Checkpoint.read(from: path), checkpoint)
        }
    }

    @Suite struct Keeper {
        @Test func keepsLastBestAndEveryNthEpoch() throws {
            let folder = try makeTemporaryFolder() + "/run"
            defer { try? FileManager.default.removeItem(atPath: folder) }
            var keeper = try CheckpointKeeper(directory: folder, everyEpochs: 2)
            var checkpoint = makeFullCheckpoint()
            var written: [[String]] = []
            // A record after `epoch` completed epochs has one metrics row per epoch.
            func complete(_ epoch: Int) {
                checkpoint.training?.epoch = epoch
                checkpoint.training?.metrics = MetricsTable(columns: ["epoch"], rows: (0..<epoch).map { [Double($0 + 1)] })
            }
            for (epoch, top1) in [(1, 50.0), (2, 60.0), (3, 55.0), (4, 58.0)] {
                complete(epoch)
                written.append(try keeper.save(checkpoint, validationTop1: top1).map { $0.replacingOccurrences(of: folder + "/", with: "") })
            }
            // last.h5, the file resume reads, comes last: a kill before it leaves the previous save in force.
            #expect(written == [["best.h5", "last.h5"], ["best.h5", "epoch-0002.h5", "last.h5"], ["last.h5"],
                                ["epoch-0004.h5", "last.h5"]])
            #expect(keeper.bestTop1 == 60)
            let best = try Checkpoint.read(from: keeper.bestPath).training
            #expect(best?.epoch == 2 && best?.bestTop1 == 60)
            let last = try Checkpoint.read(from: keeper.lastPath).training
            #expect(last?.epoch == 4 && last?.bestTop1 == 60)
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
                    == ["best.h5", "epoch-0002.h5", "epoch-0004.h5", "last.h5"])

            // A resumed run carries its best over: a lower accuracy does not replace best.h5.
            var resumed = try CheckpointKeeper(directory: folder, bestTop1: last?.bestTop1)
            complete(5)
            #expect(try resumed.save(checkpoint, validationTop1: 59).count == 1)
            #expect(try Checkpoint.read(from: resumed.bestPath).training?.epoch == 2)
        }

        @Test func midEpochSaveWritesOnlyLastAndKeepsTheBest() throws {
            let folder = try makeTemporaryFolder() + "/run"
            defer { try? FileManager.default.removeItem(atPath: folder) }
            var keeper = try CheckpointKeeper(directory: folder, everyEpochs: 1)
            var checkpoint = makeFullCheckpoint()  // after epoch 2
            try keeper.save(checkpoint, validationTop1: 40)
            let progress = EpochProgress(images: 96, lossSum: 150.25, top1Correct: 30, top5Correct: 90)
            checkpoint.training?.step += 3
            checkpoint.training?.epochProgress = progress
            try keeper.saveMidEpoch(checkpoint)
            let last = try Checkpoint.read(from: keeper.lastPath).training
            #expect(last?.epochProgress == progress && last?.bestTop1 == 40)
            for path in [keeper.bestPath, keeper.epochPath(2)] {
                #expect(try Checkpoint.read(from: path).training?.epochProgress == nil, "\(path) holds an epoch's end")
            }
        }

        @Test func openingTheFolderRemovesTemporaryFilesOfCutWrites() throws {
            let folder = try makeTemporaryFolder() + "/run"
            defer { try? FileManager.default.removeItem(atPath: folder) }
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for name in ["best.h5.tmp", "epoch-0003.h5.tmp", "last.h5.tmp", "notes.txt"] {
                #expect(FileManager.default.createFile(atPath: folder + "/" + name, contents: Data("x".utf8)))
            }
            _ = try CheckpointKeeper(directory: folder)
            #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["notes.txt"])
        }
    }

    @Suite struct Filters {
        let folder: String
        let checkpoint: Checkpoint
        let path: String

        init() throws {
            folder = try makeTemporaryFolder()
            path = folder + "/pretrained.h5"
            try Checkpoint(model: makeResNet20State(seed: 7), architecture: "model: resnet20", numClasses: 10).write(to: path)
            checkpoint = try Checkpoint.read(from: path)
        }

        /// A ResNet-20 with a 100-class head, as for fine-tuning on CIFAR-100.
        func fineTuneModel() -> ModuleState {
            let shapes = cifarResNetShapes(blocksPerStage: 3, classes: 100)
            return makeModelState(parameters: shapes.parameters, buffers: shapes.buffers, seed: 40)
        }

        @Test func allButTheHeadSwapsTheClassifier() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let model = fineTuneModel()
            let head = model.parameters.filter { $0.name.hasPrefix("fc.") }.map(\.parameter.value)
            try checkpoint.loadModel(into: model, filter: .allExcept(["fc.*"]))
            for (name, parameter) in model.parameters {
                if name.hasPrefix("fc.") { continue }
                #expect(parameter.value == checkpoint.model.parameters.first { $0.name == name }?.tensor, "\(name)")
            }
            #expect(model.parameters.filter { $0.name.hasPrefix("fc.") }.map(\.parameter.value) == head)
        }

        @Test func strictLoadRefusesTheOtherHeadAndChangesNothing() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let model = fineTuneModel()
            let before = model.parameters.map(\.parameter.value)
            #expect(checkpointError { try checkpoint.loadModel(into: model) }
                    == .shapeMismatch(file: path, name: "fc.weight", found: [10, 64], expected: [100, 64]))
            #expect(model.parameters.map(\.parameter.value) == before)
        }

        @Test func onlyLoadsTheMatchingNames() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let model = fineTuneModel()
            try checkpoint.loadModel(into: model, filter: .only(["conv1.*", "bn1.*"]))
            let loaded = model.parameters.filter { $0.name == "conv1.weight" || $0.name.hasPrefix("bn1.") }
            #expect(loaded.count == 3)
            for (name, parameter) in loaded {
                #expect(parameter.value == checkpoint.model.parameters.first { $0.name == name }?.tensor)
            }
            #expect(model.buffers.first { $0.name == "bn1.num_batches_tracked" }?.buffer.value
                    == checkpoint.model.buffers.first { $0.name == "bn1.num_batches_tracked" }?.value)
            #expect(model.parameters.first { $0.name == "layer1.0.conv1.weight" }?.parameter.value
                    != checkpoint.model.parameters.first { $0.name == "layer1.0.conv1.weight" }?.tensor)
        }

        @Test func aPatternThatMatchesNothingIsATypo() throws {
            defer { try? FileManager.default.removeItem(atPath: folder) }
            #expect(checkpointError { try checkpoint.loadModel(into: fineTuneModel(), filter: .allExcept(["classifier.*"])) }
                    == .filterMatchesNothing(file: path, pattern: "classifier.*"))
        }

        @Test(arguments: [
            ("fc.*", "fc.weight", true), ("fc.*", "fc.bias", true), ("fc.*", "fc", false), ("fc.*", "layer1.fc.weight", false),
            ("*.running_*", "layer1.0.bn1.running_var", true), ("layer?.0.*", "layer3.0.conv1.weight", true),
            ("layer?.0.*", "layer10.0.conv1.weight", false), ("*", "", true), ("a*b*c", "aXbYbZc", true), ("a*b*c", "aXbYc_", false),
        ])
        func globPatterns(pattern: String, name: String, matches: Bool) {
            #expect(LoadFilter.allExcept([pattern]).includes(name) == !matches)
            #expect(LoadFilter.only([pattern]).includes(name) == matches)
        }
    }
}
