import EpicycleCheckpoint
import EpicycleRuntime
@testable import EpicycleTraining
import Foundation
import Testing
import TestSupport

/// SWA, EMA and snapshots: the averages against hand-computed ones, the recipe's checks, and a short
/// real run whose files are checked against direct computations.
@Suite(.serialized) struct WeightAveragingTests {
    static let spec = ModelSpec(architecture: "plain-cnn", inputChannels: 1, numClasses: 3)

    /// A model whose every parameter and float buffer holds `value + index / 1000` (index within the
    /// tensor) and whose int64 buffers hold `count`.
    static func model(filledWith value: Float, count: Int64 = 0) throws -> Model {
        let model = try Model(spec, seed: 0)
        for (_, parameter) in model.state.parameters {
            parameter.value.scalars = parameter.value.scalars.indices.map { value + Float($0) / 1000 }
        }
        for (_, buffer) in model.state.buffers {
            switch buffer.value {
            case let .float32(tensor):
                buffer.value = .float32(Tensor(shape: tensor.shape, scalars: tensor.scalars.indices.map { value + Float($0) / 1000 }))
            case .int64: buffer.value = .int64(count)
            }
        }
        return model
    }

    @Test func emaDecayFollowsTimmModelEmaV3() {
        let plain = EMARecipe(decay: 0.9998)
        #expect(plain.decay(atUpdate: 1) == 0, "the first update copies the model")
        #expect(plain.decay(atUpdate: 2) == 0.9998 && plain.decay(atUpdate: 1000) == 0.9998)
        let warm = EMARecipe(decay: 0.9998, warmup: true, warmupGamma: 1, warmupPower: 2.0 / 3.0)
        #expect(warm.decay(atUpdate: 1) == 0)
        // 1 − (1 + s/γ)^(−2/3) with s = k − 1: s = 1 → 1 − 2^(−2/3) = 0.370039…, s = 7 → 1 − 8^(−2/3) = 0.75.
        #expect(abs(warm.decay(atUpdate: 2) - 0.37003947505256) < 1e-12)
        #expect(abs(warm.decay(atUpdate: 8) - 0.75) < 1e-12)
        let slow = EMARecipe(decay: 0.9998, warmup: true, warmupGamma: 10, warmupPower: 1)
        #expect(abs(slow.decay(atUpdate: 11) - 0.5) < 1e-12, "1 − (1 + 10/10)^(−1)")
        #expect(warm.decay(atUpdate: 100_000_000) == 0.9998, "capped at decay")
    }

    /// SWA of models filled with 1, 4 and 10: the running mean is 1, 2.5, then 5 everywhere (plus the
    /// index pattern); batch-norm statistics are not averaged (update_bn recomputes them), int64 copied.
    @Test func swaIsTheRunningMeanOfTheParameters() throws {
        let swa = try WeightAverage(.swa, spec: Self.spec)
        for (step, value) in [Float(1), 4, 10].enumerated() {
            swa.update(from: try Self.model(filledWith: value, count: Int64(step + 1)))
        }
        #expect(swa.updates == 3)
        for (name, parameter) in swa.model.state.parameters {
            let expected = parameter.value.scalars.indices.map { Float(5) + Float($0) / 1000 }
            expectClose(parameter.value.scalars, expected, rtol: 1e-6, atol: 1e-6, name)
        }
        for (name, buffer) in swa.model.state.buffers {
            switch buffer.value {
            case let .float32(tensor):
                #expect(tensor.scalars.first == 1, "\(name) stays the first model's until recalibrated")
            case let .int64(count): #expect(count == 3, "\(name) is the last model's")
            }
        }
    }

    /// EMA with decay 0.5 (no warm-up) of models filled with 2, 6, 10: a copy, then 0.5·2 + 0.5·6 = 4,
    /// then 0.5·4 + 0.5·10 = 7, in the parameters and the float buffers alike.
    @Test func emaIsTheExponentialMovingAverageOfParametersAndBuffers() throws {
        let ema = try WeightAverage(.ema(EMARecipe(decay: 0.5)), spec: Self.spec)
        var expected: [Float] = []
        for (step, value) in [Float(2), 6, 10].enumerated() {
            ema.update(from: try Self.model(filledWith: value, count: Int64(10 * (step + 1))))
            expected.append([2, 4, 7][step])
        }
        for (name, parameter) in ema.model.state.parameters {
            expectClose(parameter.value.scalars, parameter.value.scalars.indices.map { 7 + Float($0) / 1000 }, rtol: 1e-6, atol: 1e-6, name)
        }
        for (name, buffer) in ema.model.state.buffers {
            switch buffer.value {
            case let .float32(tensor):
                expectClose(tensor.scalars, tensor.scalars.indices.map { 7 + Float($0) / 1000 }, rtol: 1e-6, atol: 1e-6, name)
            case let .int64(count): #expect(count == 30, "\(name) is copied")
            }
        }
        // With warm-up the second update weighs the new model by 2^(−2/3).
        let warm = try WeightAverage(.ema(EMARecipe(decay: 0.9998, warmup: true)), spec: Self.spec)
        warm.update(from: try Self.model(filledWith: 0))
        warm.update(from: try Self.model(filledWith: 1))
        let weight = Float(pow(2.0, -2.0 / 3.0))
        let first = warm.model.state.parameters[0].parameter.value.scalars
        expectClose(first, first.indices.map { Float($0) / 1000 + weight }, rtol: 1e-6, atol: 1e-6, "warm-up")
    }

    @Test func recipeChecksNameTheKey() throws {
        func problem(_ extra: String) -> String? {
            let text = """
                model: {architecture: resnet8}
                pretrain: {epochs: 4}
                \(extra)
                """
            do {
                _ = try RecipeSource(text: text, origin: "r.yaml").decodeRecipe()
                return nil
            } catch {
                return "\(error)"
            }
        }
        #expect(problem("averaging: {swa: {start: 2, lr: 0.01}, ema: {decay: 0.999, warmup: true, warmup_gamma: 5}}\nsnapshots: cycle_ends") == nil)
        #expect(problem("averaging: {swa: {start: 5}}")?.hasPrefix("averaging.swa.start: is epoch 5, after the last of pretrain's 4 epochs") == true)
        #expect(problem("averaging: {swa: {start: 0}}")?.hasPrefix("averaging.swa.start: must be a whole number from 1") == true)
        #expect(problem("averaging: {swa: {start: soon}}")?.hasPrefix("averaging.swa.start: expected an epoch") == true)
        #expect(problem("averaging: {swa: {lr: 0.1}}")?.hasPrefix("averaging.swa.start: is required") == true)
        #expect(problem("averaging: {swa: {start: cycle_ends, lr: 0.1}}")?.hasPrefix("averaging.swa.lr: applies from an epoch") == true)
        #expect(problem("averaging: {ema: {decay: 1}}")?.hasPrefix("averaging.ema.decay: must be in [0, 1)") == true)
        #expect(problem("averaging: {ema: {warmup_power: 0.75}}")?.hasPrefix("averaging.ema.warmup_power: applies only with warmup: true") == true)
        #expect(problem("averaging: {}")?.hasPrefix("averaging: expected swa:, ema: or both") == true)
        #expect(problem("averaging: {swa: {start: 1}, sma: {}}")?.hasPrefix("averaging.sma: unknown key") == true)
        #expect(problem("snapshots: every_epoch")?.hasPrefix("snapshots: expected cycle_ends, got 'every_epoch'") == true)
    }

    static let runRecipe = """
        seed: 5
        threads: 2
        model: {architecture: resnet8}
        knobs:
          learning_rate: {warm_restarts: {maximum: 0.05, minimum: 0.001, first_period: 1, period_multiplier: 2}}
          batch_size: 64
        averaging:
          swa: {start: cycle_ends}
          ema: {decay: 0.9, warmup: true}
        snapshots: cycle_ends
        pretrain:
          data: {classes: [0, 1, 2], first: 192, validation: 64}
          epochs: 3
        """

    /// Warm restarts of 1 then 2 epochs end cycles after epochs 1 and 3: snapshots exactly there, SWA
    /// the mean of those two snapshots with batch-norm statistics recomputed on the first training
    /// images, EMA updated at every step, and every test score recorded in test.json and last.h5.
    @Test func aRunKeepsSnapshotsAtCycleEndsAndScoresItsAverages() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("epicycle-swa-tests/\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let result = try pretrain(recipe: RecipeSource(text: Self.runRecipe, origin: "swa.yaml"), options: RunOptions(output: folder, quiet: true))
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".h5") }.sorted()
        #expect(files == ["best.h5", "ema.h5", "last.h5", "snapshot-1.h5", "snapshot-2.h5", "swa.h5"])
        let snapshots = try [1, 2].map { try Checkpoint.read(from: folder + "/snapshot-\($0).h5") }
        #expect(snapshots.map { $0.training?.epoch } == [1, 3])
        #expect(snapshots.allSatisfy { $0.optimizer == nil && $0.averages.isEmpty && $0.input != nil })
        let last = try Checkpoint.read(from: folder + "/last.h5")
        for (snapshot, parameter) in zip(snapshots[1].model.parameters, last.model.parameters) {
            #expect(snapshot.tensor == parameter.tensor, "the last snapshot is the final model: \(snapshot.name)")
        }

        // SWA at the cycle ends averages exactly the snapshots' weights.
        let swa = try Checkpoint.read(from: folder + "/swa.h5")
        let mean = averagedModelState(snapshots.map(\.model))
        for (averaged, expected) in zip(swa.model.parameters, mean.parameters) {
            expectClose(averaged.tensor.scalars, expected.tensor.scalars, rtol: 1e-6, atol: 1e-7, averaged.name)
        }
        // Its statistics are update_bn's: recomputed over the first 2048 training images (here all 128).
        let direct = try loadedModel(swa)
        let prepared = try PreparedRecipe(RecipeSource(text: Self.runRecipe, origin: "swa.yaml"), options: RunOptions(output: folder))
        let data = try #require(prepared.pretrainData)
        try direct.recalibrateBatchNorm(on: data.loader(for: data.training.samples(at: Array(0..<data.training.count), name: "all"))
            .epoch(0, batchSize: Trainer.evaluationBatchSize).lazy.map(\.images))
        #expect(StateRecord(direct.state).buffers.map(\.value) == swa.model.buffers.map(\.value), "recalibrated statistics")
        #expect(swa.optimizer == nil && swa.averages.isEmpty && swa.input == last.input)

        let averages = Dictionary(uniqueKeysWithValues: last.averages.map { ($0.name, $0) })
        #expect(averages["swa"]?.updates == 2 && averages["ema"]?.updates == last.training?.step)
        let ema = try Checkpoint.read(from: folder + "/ema.h5")
        #expect(ema.model.parameters.map(\.tensor) == averages["ema"]?.model.parameters.map(\.tensor))

        // The ensemble's score is `eval --ensemble`'s on the snapshots, which averages softmaxes.
        let test = try #require(result.phases.first?.test)
        let ensemble = try evaluateEnsemble(checkpoints: [1, 2].map { folder + "/snapshot-\($0).h5" })
        #expect(test.snapshotEnsemble == ensemble.score && test.snapshots == 2)
        #expect(test.swa == (try evaluate(checkpoint: folder + "/swa.h5")).score)
        #expect(test.ema == (try evaluate(checkpoint: folder + "/ema.h5")).score)
        #expect(last.training?.test == test, "last.h5 records every score")
        let json = try JSONDecoder().decode(TestReport.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/test.json")))
        #expect(json.scores == test)
        #expect(result.summary.contains(String(format: "SWA %.2f %%", test.swa!.top1)))

        let metrics = try String(contentsOfFile: folder + "/metrics.csv", encoding: .utf8).split(separator: "\n")
        let header = metrics[0].split(separator: ",").map(String.init)
        for column in ["swa_val_top1", "swa_val_loss", "ema_val_top1", "ema_val_loss"] { #expect(header.contains(column)) }
    }
}
