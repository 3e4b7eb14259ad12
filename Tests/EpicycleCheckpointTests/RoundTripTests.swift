import EpicycleCheckpoint
import EpicycleRuntime
import Foundation
import Testing
import TestSupport

/// Every suite of this target runs inside this one. Tests run in parallel, as the other targets' do:
/// every HDF5 call, the raw edits in `Fixtures.swift` included, holds the library's lock.
@Suite struct CheckpointTests {}

extension CheckpointTests {
    @Suite struct RoundTrip {
        @Test func everyTensorAndAttributeSurvivesBitExactly() throws {
            let folder = try makeTemporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let original = makeFullCheckpoint()
            let path = folder + "/full.h5"
            try original.write(to: path)
            let restored = try Checkpoint.read(from: path)
            expectIdentical(restored, original)
            #expect(restored.source == path)
            // Writing what was read gives the same content again (nothing is lost or added on read).
            try restored.write(to: path)
            expectIdentical(try Checkpoint.read(from: path), original)
        }

        @Test func midEpochSumsRoundTripAndAreChecked() throws {
            let folder = try makeTemporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            var original = makeFullCheckpoint()
            original.training?.epochProgress = EpochProgress(images: 384, lossSum: 0.1 + 0.2, top1Correct: 301, top5Correct: 384,
                                                             droppedSamples: 97)
            let path = folder + "/mid-epoch.h5"
            try original.write(to: path)
            expectIdentical(try Checkpoint.read(from: path), original)
            #expect(try Checkpoint.read(from: path).training?.epochProgress?.droppedSamples == 97)

            original.training?.epochProgress?.droppedSamples = 385
            try original.write(to: path)
            #expect(checkpointError { _ = try Checkpoint.read(from: path) }
                    == .invalidValue(file: path, object: "attribute 'epoch_dropped' of '/training'",
                                     reason: "is 385, expected 0…384 (epoch_images)"))

            original.training?.epochProgress?.droppedSamples = 0
            original.training?.epochProgress?.top1Correct = 385
            try original.write(to: path)
            #expect(checkpointError { _ = try Checkpoint.read(from: path) }
                    == .invalidValue(file: path, object: "attribute 'epoch_top1_correct' of '/training'",
                                     reason: "is 385, expected 0…384 (epoch_images)"))
        }

        /// `/averaging/swa` and `/averaging/ema` with their update counts, and every optional test score.
        @Test func weightAveragesAndTheirTestScoresRoundTrip() throws {
            let folder = try makeTemporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            var original = makeFullCheckpoint()
            original.averages = [AveragedWeights(name: "swa", updates: 3, model: makeFullCheckpoint(seed: 2).model),
                                 AveragedWeights(name: "ema", updates: 1200, model: makeFullCheckpoint(seed: 3).model)]
            var test = TestScores(last: SplitScore(images: 500, loss: 0.5, top1: 81, top5: 99),
                                  best: SplitScore(images: 500, loss: 0.4, top1: 82, top5: 99.2), bestEpoch: 3)
            test.swa = SplitScore(images: 500, loss: 0.3, top1: 83.4, top5: 99.4)
            test.ema = SplitScore(images: 500, loss: 0.35, top1: 82.6, top5: 99.6)
            test.snapshotEnsemble = SplitScore(images: 500, loss: 0.33, top1: 83.8, top5: 99.8)
            test.snapshots = 4
            original.training?.test = test
            let path = folder + "/averaged.h5"
            try original.write(to: path)
            let restored = try Checkpoint.read(from: path)
            expectIdentical(restored, original)
            #expect(restored.averages.map(\.name) == ["swa", "ema"] && restored.averages.map(\.updates) == [3, 1200])
            #expect(restored.training?.test == test)
            #expect(restored.summary().contains("averaging: ema after 1200 updates"))
            #expect(restored.summary().contains("SWA 83.40 %, EMA 82.60 %, snapshot ensemble of 4 83.80 %"))

            original.averages[0].name = "s/wa"
            #expect(checkpointError { try original.write(to: path) }
                    == .invalidRecord(file: path, reason: "tensor name 's/wa' in /averaging is empty, '.' or contains '/'"))
        }

        @Test func modelOnlyCheckpointHasNoOptionalSections() throws {
            let folder = try makeTemporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let state = makeResNet20State(seed: 3)
            let original = Checkpoint(model: state, architecture: "model: resnet20", numClasses: 10)
            try original.write(to: folder + "/model.h5")
            let restored = try Checkpoint.read(from: folder + "/model.h5")
            expectIdentical(restored, original)
            #expect(restored.optimizer == nil && restored.training == nil && restored.adapters == nil)
            #expect(restored.model.parameters.count == 59)
            #expect(restored.model.parameterCount == 269_722)
        }

        @Test func loadCopiesEveryTensorIntoTheModel() throws {
            let folder = try makeTemporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let trained = makeResNet20State(seed: 5)
            try Checkpoint(model: trained, architecture: "model: resnet20", numClasses: 10).write(to: folder + "/a.h5")
            let fresh = makeResNet20State(seed: 99)
            try Checkpoint.read(from: folder + "/a.h5").loadModel(into: fresh)
            #expect(fresh.parameters.map(\.parameter.value) == trained.parameters.map(\.parameter.value))
            #expect(fresh.buffers.map(\.buffer.value) == trained.buffers.map(\.buffer.value))
            #expect(fresh.parameters.map(\.parameter.value) != makeResNet20State(seed: 99).parameters.map(\.parameter.value))
        }

        @Test func adaptersLoadSeparatelyFromTheModel() throws {
            let folder = try makeTemporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let checkpoint = makeFullCheckpoint()
            try checkpoint.write(to: folder + "/kd.h5")
            let restored = try Checkpoint.read(from: folder + "/kd.h5")
            var adapters = ModuleState()
            let weight = Parameter(Tensor(zeros: [8, 4, 1, 1]), decays: true)
            let mean = Buffer(.float32(Tensor(zeros: [8])))
            let count = Buffer(.int64(0))
            adapters.add("regressors.0.conv.weight", weight)
            adapters.add("regressors.0.bn.running_mean", mean)
            adapters.add("regressors.0.bn.num_batches_tracked", count)
            try restored.loadAdapters(into: adapters)
            #expect(weight.value == checkpoint.adapters?.parameters[0].tensor)
            #expect(mean.value == checkpoint.adapters?.buffers[0].value)
            #expect(count.value == .int64(3))

            let withoutAdapters = Checkpoint(model: makeResNet20State(seed: 1), architecture: "resnet20", numClasses: 10)
            try withoutAdapters.write(to: folder + "/plain.h5")
            let error = checkpointError { try Checkpoint.read(from: folder + "/plain.h5").loadAdapters(into: adapters) }
            #expect(error == .missingEntry(file: folder + "/plain.h5", object: "'/adapters' group"))
        }

        @Test func metricsTableAppendsAndReadsColumns() {
            var table = MetricsTable(columns: ["epoch", "val_top1"])
            table.append([0, 40])
            table.append([1, 55.5])
            #expect(table.column("val_top1") == [40, 55.5])
            #expect(table.column("missing") == nil)
        }
    }
}
