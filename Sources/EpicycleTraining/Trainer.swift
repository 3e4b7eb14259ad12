import EpicycleCheckpoint
import EpicycleData
import EpicycleMPI
import EpicycleRuntime
import EpicycleSchedules
import Foundation
import Logging

/// Why a run stopped early.
public enum TrainingError: Error, CustomStringConvertible {
    /// The loss became NaN/∞ or exploded; the last good checkpoint is left as it was.
    case diverged(epoch: Int, step: Int, loss: Float, lastGood: String?)
    /// Ctrl-C: the step in progress finished and the state was saved.
    case interrupted(savedTo: String)
    /// The model's outputs on a split were NaN or infinite.
    case nonFiniteOutputs(split: String, folder: String)
    /// The model's outputs on validation images were NaN/∞ (weights or batch-norm statistics overflowed
    /// while the training loss still looked finite): a divergence too, with no accuracy to report.
    case nonFiniteValidation(epoch: Int, step: Int, lastGood: String?)

    public var description: String {
        switch self {
        case let .diverged(epoch, step, loss, lastGood):
            let kept = lastGood.map { "the last good checkpoint, \($0), is unchanged" } ?? "no checkpoint was written yet"
            return "training diverged at epoch \(epoch + 1), step \(step): loss is \(loss). Stopped; \(kept). "
                + "Lower the learning rate or clip gradients (knobs.clip_norm)."
        case let .interrupted(path):
            return "interrupted: saved \(path); continue with --resume"
        case let .nonFiniteOutputs(split, folder):
            return "the model's outputs on the \(split) images are not finite (NaN or ∞), so no accuracy is reported: "
                + "the weights of \(folder) are damaged or have diverged (in training: lower the learning rate or clip gradients, knobs.clip_norm)"
        case let .nonFiniteValidation(epoch, step, lastGood):
            let kept = lastGood.map { "the last good checkpoint, \($0), is unchanged" } ?? "no checkpoint was written yet"
            return "training diverged at epoch \(epoch + 1), step \(step): the model's outputs on the validation images are "
                + "not finite (NaN or ∞), so the epoch has no accuracy. Stopped; \(kept). "
                + "Lower the learning rate or clip gradients (knobs.clip_norm)."
        }
    }
}

/// The result of one phase.
public struct PhaseResult: Sendable {
    public var history: [EpochRecord]
    /// Best and final validation top-1 (%).
    public var bestTop1: Double
    public var finalTop1: Double
    /// True when the recipe chose `validation: test`: then selection saw the test images, and every output says so.
    public var validatesOnTest: Bool
    /// The end-of-phase test scores (nil only while a phase has not finished).
    public var test: TestScores?
    public var folder: String
    public var seconds: Double
    /// One point per cycle end (`Trainer.cycleEnds`), as `tradeoff.csv` lists them.
    public var tradeoff: [TradeoffPoint]
}

/// Everything one phase of training needs. The training loop itself is `run()`; every program
/// (pretraining, fine-tuning, distillation) goes through it, differing only by its `objective`.
public final class Trainer {
    public let model: Model
    public let optimizer: any Optimizer
    let program: TrainingRecord.Program
    /// Which recipe phase runs (its knobs and data).
    let phase: Phase
    /// Which half of the joint cycle it occupies: the same as `phase`, except for a fine-tune of a
    /// model with no recorded pretraining, which is a cycle of its own.
    let cyclePhase: Phase
    public let cycle: JointCycle
    let knobs: KnobSchedules
    let recipe: Recipe
    let recipeText: String
    let data: PreparedData
    let epochs: Int
    let folder: String
    let progress: ProgressReporter
    /// What each step computes.
    public let objective: any TrainingObjective
    /// The objective's trainable extras, nil when it has none (then checkpoints have no `/adapters`).
    let adapters: ModuleState?
    /// The phase's epochs (from 0) that end one of its cycles, always including its last epoch
    /// (`KnobSchedules.cycleEnds(of:in:following:)`): where snapshots, SWA updates
    /// "every cycle end" and tradeoff points are taken.
    public let cycleEnds: [Int]

    private let trainingLoader: DataLoader
    private let validationLoader: DataLoader
    private let trainableParameters: [Parameter]
    /// The first un-augmented training images, which batch-norm statistics are recomputed on.
    private let batchNormImages: DataLoader
    /// `batchNormImages` when the phase recalibrates before each validation; nil when it keeps its
    /// moving averages (see `PreciseBNRecipe`).
    private let recalibrationLoader: DataLoader?
    /// The phase's SWA and EMA (`averaging:`), made when `run()` starts; nil without any.
    private var averages: WeightAverages?
    /// The processes this phase's batches are spread over; nil for one process.
    private let dataParallel: DataParallel?
    /// Whether this process writes the run's files (the only process, or process 0 of a data-parallel run).
    private var isWriter: Bool { dataParallel?.isWriter ?? true }

    /// - Parameters:
    ///   - optimizer: over the model's parameters and the objective's adapters.
    ///   - program: what checkpoints record as having trained the model.
    ///   - cyclePhase: the half of `cycle` the phase occupies (see `cyclePhase`).
    ///   - recipeText: the recipe as checkpoints store it, relative paths relative to `folder` (a resume must match it).
    ///   - objective: what a step computes (a program's choice: `phaseObjective` for pretraining and
    ///     fine-tuning).
    ///   - communicator: the processes to train data-parallel over (`DataParallel`); nil or one process: alone.
    public init(model: Model, optimizer: any Optimizer, program: TrainingRecord.Program, phase: Phase, cyclePhase: Phase,
                cycle: JointCycle, recipe: Recipe, recipeText: String, data: PreparedData, folder: String,
                progress: ProgressReporter, objective: any TrainingObjective, communicator: Communicator? = nil) {
        self.model = model
        self.optimizer = optimizer
        self.program = program
        self.phase = phase
        self.cyclePhase = cyclePhase
        self.cycle = cycle
        self.knobs = recipe.knobs(for: phase)
        self.recipe = recipe
        self.recipeText = recipeText
        self.data = data
        self.epochs = cyclePhase == .pretrain ? cycle.pretrainingEpochs : cycle.finetuningEpochs
        self.folder = folder
        dataParallel = communicator.flatMap { $0.size > 1 ? DataParallel($0) : nil }
        self.progress = dataParallel?.isWriter == false ? ProgressReporter(quiet: true) : progress
        self.objective = objective
        objective.usePrecision(resolvedPrecision(recipe.precision))
        adapters = objective.adapters.parameters.isEmpty ? nil : objective.adapters
        trainingLoader = data.trainingLoader(seed: recipe.seed &+ (phase == .pretrain ? 0 : 1))
        validationLoader = data.validationLoader()
        trainableParameters = (model.state.parameters + (adapters?.parameters ?? [])).map(\.parameter).filter(\.trainable)
        let recalibrates = switch recipe.preciseBN.when {
        case .always: true
        case .never: false
        case .auto: !knobs.standAtEasyEnd(of: cycle, at: Self.lastPosition(of: cyclePhase, in: cycle))
        }
        cycleEnds = knobs.cycleEnds(of: cyclePhase, in: cycle, following: recipe.cycleEndsOf).epochs
        batchNormImages = data.loader(for: data.training.samples(
            at: Array(0..<min(recipe.preciseBN.images, data.training.count)),
            name: "\(data.training.name), first \(recipe.preciseBN.images) for batch-norm recalibration"))
        recalibrationLoader = recalibrates ? batchNormImages : nil
        attachStatisticsReducer()
    }

    /// Synchronises the batch norms of the model and the adapters over the processes (none alone).
    private func attachStatisticsReducer() {
        for norm in model.batchNorms + objective.adapterBatchNorms { norm.statisticsReducer = dataParallel }
        model.rowGatherer = dataParallel
    }

    /// The last step of the phase that occupies `cyclePhase` of the cycle.
    static func lastPosition(of cyclePhase: Phase, in cycle: JointCycle) -> Position {
        let epoch = cyclePhase == .pretrain ? cycle.pretrainingEpochs - 1 : cycle.totalEpochs - 1
        return cycle.position(epoch: epoch, stepInEpoch: cycle.epochSteps[epoch] - 1)
    }

    /// How the epoch line names the validation figures: the split, and "BN recal." when batch norm was
    /// recalibrated before them.
    private var validationName: String {
        (data.validatesOnTest ? "val (= test)" : "val") + (recalibrationLoader != nil ? " (BN recal.)" : "")
    }

    /// The position of batch `batch` of this phase's epoch `epoch` in the whole cycle (see `JointCycle`).
    func position(epoch: Int, batch: Int) -> Position {
        cyclePhase == .pretrain ? cycle.pretrainingPosition(epoch: epoch, stepInEpoch: batch)
            : cycle.finetuningPosition(epoch: epoch, stepInEpoch: batch)
    }

    /// The knobs at `position`, the learning rate SWA's own where `averaging.swa.lr` applies.
    func knobValues(at position: Position) -> KnobValues {
        var values = knobs.values(at: position, in: cycle)
        let epoch = position.epoch - (cyclePhase == .pretrain ? 0 : cycle.pretrainingEpochs)
        if let learningRate = averages?.learningRate(epoch: epoch) { values.learningRate = cycle.value(of: learningRate, at: position) }
        return values
    }

    /// Epochs from the cycle's start at the end of `epoch` (what the checkpoint records).
    func cycleEpochs(afterEpoch epoch: Int) -> Double {
        Double((cyclePhase == .pretrain ? 0 : cycle.pretrainingEpochs) + epoch)
    }

    /// Recomputes batch-norm statistics from the recalibration images when the phase asks for it.
    private func recalibrateIfAsked() throws {
        guard let recalibrationLoader else { return }
        // Every process recalibrates on all the images, so alone: their statistics come out the same.
        for norm in model.batchNorms { norm.statisticsReducer = nil }
        defer { attachStatisticsReducer() }
        try model.recalibrateBatchNorm(on: recalibrationLoader.epoch(0, batchSize: Self.evaluationBatchSize).lazy.map(\.images))
    }

    /// Images per batch when scoring: validation, test, `eval` and `predict`.
    public static let evaluationBatchSize = 256
    /// The metrics column of the share in [0, 1] of an epoch's samples that data selection left out of
    /// the gradient (weighted 0, or above `sample_loss_clip`).
    static let droppedShareName = "dropped_share"

    /// Whether the phase selects samples: then every epoch logs `dropped_share`.
    private var selectsSamples: Bool { selectionKnob != nil }

    /// The first data selection knob the phase schedules, if any.
    private var selectionKnob: Knob? {
        [Knob.sampleLossThreshold, .keepFraction, .sampleLossClip].first { knobs.schedules[$0] != nil }
    }

    /// Trains from `start` (a resumed checkpoint's record, or nil for a fresh start) to the phase's end.
    /// - Parameter start: from `resumeState`.
    public func run(resumingFrom start: TrainingRecord?) throws -> PhaseResult {
        // Before anything is written, so that a refused run leaves its folder as it was.
        if dataParallel != nil { try refuseWhatDataParallelCannotSplit() }
        let began = Date()
        var history = start.map { record in record.metrics.rows.map { EpochRecord(columns: record.metrics.columns, values: $0) } } ?? []
        var keeper = isWriter ? try CheckpointKeeper(directory: folder, everyEpochs: recipe.checkpointEvery > 0 ? recipe.checkpointEvery : nil,
                                                     bestTop1: start?.bestTop1) : nil
        let lastPath = folder + "/last.h5"
        try startAverages(resuming: start == nil ? nil : lastPath)
        // The run folder keeps the recipe with every default written out, beside the checkpoints.
        if isWriter { try writeResolvedRecipe(recipe, source: RecipeSource(text: recipeText, origin: folder + "/recipe.yaml", folder: folder), folder: folder) }
        // The objective's names are fixed for a run: those it logs at the first step.
        let knobNames = knobs.schedules.keys.map(\.rawValue)
            + objective.loggedValues(at: CyclePosition(position(epoch: 0, batch: 0), in: cycle)).keys.sorted()
            + (selectsSamples ? [Self.droppedShareName] : []) + (averages?.columnNames ?? []) + TradeoffColumns.all
        let log = isWriter ? try MetricsLog(folder: URL(fileURLWithPath: folder), knobNames: knobNames, history: history) : nil
        let stepLog = isWriter ? try StepLog(folder: folder, resumedStep: start?.step) : nil
        var step = start?.step ?? 0
        let firstEpoch = start?.epoch ?? 0
        // A checkpoint saved by Ctrl-C mid-epoch has steps beyond the last finished epoch's: those
        // batches are skipped (the epoch's data order depends only on the seed and the epoch).
        var batchesToSkip = step - (history.last?.step ?? 0)
        try start?.checkResumable(file: lastPath, epochs: epochs) { epoch in
            trainingLoader.batchCount(batchSize: knobValues(at: position(epoch: epoch, batch: 0)).batchSize)
        }
        if let dataParallel {
            try dataParallel.checkSameRun(program: program.rawValue, recipeText: recipeText)
            try dataParallel.checkBatchesCoverProcesses(
                samples: data.training.count, batchSizes: (0..<epochs).map { knobValues(at: position(epoch: $0, batch: 0)).batchSize },
                path: "knobs.batch_size")
        }
        let interrupt = InterruptFlag.shared
        interrupt.arm()
        defer { interrupt.disarm() }

        for epoch in firstEpoch..<epochs {
            let epochStart = Date()
            let first = knobValues(at: position(epoch: epoch, batch: 0))
            let batchSize = first.batchSize
            let strength = Float(first.augmentationStrength)
            let batches = trainingLoader.batchCount(batchSize: batchSize)
            // What the epoch's batches hold in all, whichever process or resume counted them.
            let epochImages = trainingLoader.dropLast ? batches * batchSize : trainingLoader.dataset.count
            // A mid-epoch checkpoint carries the epoch's sums so far, so its figures cover every batch.
            let saved = epoch == firstEpoch ? start?.epochProgress : nil
            var metrics = RunningMetrics(continuing: dataParallel.map { $0.localShare(of: saved) } ?? saved)
            var batchIndex = 0
            for globalBatch in trainingLoader.epoch(epoch, batchSize: batchSize, strength: strength) {
                if batchesToSkip > 0 {
                    batchesToSkip -= 1
                    batchIndex += 1
                    continue
                }
                let batch = dataParallel?.shard(globalBatch) ?? globalBatch
                model.setDropoutFirstRow(dataParallel?.rows(ofBatch: globalBatch.count).lowerBound ?? 0)
                let stepPosition = position(epoch: epoch, batch: batchIndex)
                let values = knobValues(at: stepPosition)
                values.bind(to: optimizer)
                optimizer.zeroGradients()
                let droppedBefore = objective.droppedSamples
                let (loss, logits, logitsFinite, stopAsked) = try trainingStep(batch, values, stepPosition)
                // A −∞ logit leaves the loss finite, but not the backward pass that follows.
                guard loss.isFinite, loss < 1e4, logitsFinite else {
                    throw TrainingError.diverged(epoch: epoch, step: step, loss: loss,
                                                 lastGood: FileManager.default.fileExists(atPath: lastPath) ? lastPath : nil)
                }
                metrics.add(loss: loss, logits: logits, labels: batch.labels, dropped: objective.droppedSamples - droppedBefore)
                averages?.afterStep(model)
                step += 1
                try stepLog?.step(step, epoch: epoch + 1, loss: Double(loss), values: values.named
                    .merging(objective.loggedValues(at: CyclePosition(stepPosition, in: cycle))) { knob, _ in knob }
                    .merging(objective.stepValues) { knob, _ in knob })
                if FaultInjection.reached(.step), let parameter = trainableParameters.first {
                    parameter.value.scalars[0] = parameter.value.scalars[0].nextUp
                }
                try dataParallel?.checkAgreement([model.state, objective.adapters], step: step)
                batchIndex += 1
                let elapsed = Date().timeIntervalSince(epochStart)
                progress.step(phase: program.rawValue, epoch: epoch, epochs: epochs, batch: batchIndex, batches: batches,
                              images: metrics.images, elapsed: elapsed, loss: metrics.loss, knobs: values.named,
                              extra: objective.progressNote)
                // Alone, the flag as it stands now (a Ctrl-C during the progress line counts); data-parallel,
                // as the processes agreed in the step's all-reduce, so that they all stop at the same step.
                if (dataParallel == nil ? interrupt.isSet : stopAsked) && batchIndex < batches {
                    // The step is done: save it (last.h5 only) and stop; --resume continues from here.
                    let progress = dataParallel?.reduce(metrics.progress) ?? metrics.progress
                    try keeper?.saveMidEpoch(checkpoint(epoch: epoch, step: step, history: history, knobNames: knobNames,
                                                        epochProgress: progress))
                    throw TrainingError.interrupted(savedTo: lastPath)
                }
            }
            let trainSeconds = Date().timeIntervalSince(epochStart)
            if let dataParallel { metrics = RunningMetrics(continuing: dataParallel.reduce(metrics.progress)) }
            try recalibrateIfAsked()
            let validation: SplitScore
            do {
                validation = try score(model, on: validationLoader, split: data.validatesOnTest ? "test (as validation)" : "validation")
            } catch TrainingError.nonFiniteOutputs {
                throw TrainingError.nonFiniteValidation(
                    epoch: epoch, step: step, lastGood: FileManager.default.fileExists(atPath: lastPath) ? lastPath : nil)
            }
            let averaged = try averages?.afterEpoch(epoch, model: model) { average in
                try score(average, on: validationLoader, split: data.validatesOnTest ? "test (as validation)" : "validation")
            } ?? [:]
            // The last epoch's test score is the phase's own, scored once below.
            let cycleEndTest = cycleEnds.dropLast().contains(epoch) ? try score(model, on: data.testLoader(), split: "test").top1 : nil
            let record = EpochRecord(
                epoch: epoch + 1, step: step, trainLoss: metrics.loss, trainTop1: metrics.top1,
                validationLoss: validation.loss, validationTop1: validation.top1, validationTop5: validation.top5,
                seconds: Date().timeIntervalSince(epochStart), imagesPerSecond: Double(metrics.images) / max(trainSeconds, 1e-9),
                knobs: first.named.merging(objective.loggedValues(at: CyclePosition(position(epoch: epoch, batch: 0), in: cycle))) { knob, _ in knob }
                    .merging(selectsSamples ? [Self.droppedShareName: metrics.droppedShare] : [:]) { knob, _ in knob }
                    // Before an average's first update its figures are NaN: no value, as a resumed history reads them.
                    .merging(averaged.filter { !$0.value.isNaN }) { knob, _ in knob }
                    .merging(TradeoffColumns.values(after: history.last, images: epochImages, seconds: trainSeconds,
                                                    cycleEndTestTop1: cycleEndTest)) { knob, _ in knob })
            history.append(record)
            // Before last.h5 moves past the epoch, so a resume never skips a snapshot.
            try saveSnapshot(after: epoch, step: step, history: history, knobNames: knobNames)
            // The checkpoints first: the metrics files must never hold an epoch last.h5 does not.
            try keeper?.save(checkpoint(epoch: epoch + 1, step: step, history: history, knobNames: knobNames),
                             validationTop1: validation.top1)
            try log?.append(record)
            try stepLog?.epoch(record)
            let left = Date().timeIntervalSince(began) / Double(epoch + 1 - firstEpoch) * Double(epochs - epoch - 1)
            // Top-5 of five classes or fewer is 100 % by construction.
            let top5 = model.spec.numClasses > 5 ? String(format: " top-5 %.2f", validation.top5) : ""
            progress.epochFinished(
                String(format: "%@ epoch %d/%d  train loss %.4f top-1 %.2f  %@ loss %.4f top-1 %.2f%@  %.0f img/s  %@",
                       program.rawValue, epoch + 1, epochs, metrics.loss, metrics.top1, validationName, validation.loss,
                       validation.top1, top5, record.imagesPerSecond,
                       formatKnobs(record.knobs.filter { averaged[$0.key] == nil && !TradeoffColumns.all.contains($0.key) }))
                    + (objective.progressNote.isEmpty ? "" : "  " + objective.progressNote)
                    + (WeightAverages.progressNote(averaged, names: averages?.all.map(\.name) ?? []).map { "  " + $0 } ?? ""),
                secondsLeft: left)
            // A Ctrl-C during the last batch, the validation or the saves: everything is saved, so stop here.
            if interrupted(interrupt) { throw TrainingError.interrupted(savedTo: lastPath) }
        }
        let test = try start?.test ?? scoreTestSplit(history: history)
        // A Ctrl-C during the test scoring: last.h5 records the scores (or will be scored again on resume).
        if interrupted(interrupt) { throw TrainingError.interrupted(savedTo: lastPath) }
        let best = history.map(\.validationTop1).max() ?? .nan
        let tradeoff = tradeoffPoints(history: history, cycleEnds: cycleEnds, finalTestTop1: test.last.top1)
        if isWriter { try writeTradeoffCSV(tradeoff, folder: folder) }
        return PhaseResult(history: history, bestTop1: best, finalTop1: history.last?.validationTop1 ?? .nan,
                           validatesOnTest: data.validatesOnTest, test: test, folder: folder,
                           seconds: Date().timeIntervalSince(began), tradeoff: tradeoff)
    }

    /// Throws for what a data-parallel run cannot yet compute as one process would: dropout in a
    /// semi-supervised step, whose forward joins a block of each of three batches, so that a row's
    /// place there is not its place in one process's forward.
    private func refuseWhatDataParallelCannotSplit() throws {
        if data.unlabeled != nil && model.spec.dropout > 0 {
            throw RecipeError(path: "model.dropout", problem: "dropout with \(phase.rawValue).unlabeled data is not available in a data-parallel (mpirun) run yet; set it to 0 or run as one process")
        }
    }

    /// Scores the test split once, with the final weights and with `best.h5`'s, and records the scores
    /// in `test.json` and in `last.h5`'s training record (which marks the phase complete for `--resume`).
    /// Nothing before this reads a test image, unless the recipe validates on the test split, except
    /// the cycle-end scores of the tradeoff curve (`TradeoffColumns.testTop1`), which nothing selects on.
    private func scoreTestSplit(history: [EpochRecord]) throws -> TestScores {
        if let dataParallel, !dataParallel.isWriter {
            // Process 0 scores and records; the others get its scores (the output folder may be its own).
            return try PropertyListDecoder().decode(TestScores.self, from: Data(dataParallel.communicator.broadcast([])))
        }
        let loader = data.testLoader()
        let last = try score(model, on: loader, split: "test")
        var best = last
        let bestEpoch: Int
        if FileManager.default.fileExists(atPath: folder + "/best.h5") {
            let checkpoint = try Checkpoint.read(from: folder + "/best.h5")
            let bestModel = try Model(model.spec, seed: 0)
            bestModel.precision = model.precision
            try checkpoint.loadModel(into: bestModel.state)
            best = try score(bestModel, on: loader, split: "test")
            bestEpoch = checkpoint.training?.epoch ?? history.count
        } else {
            bestEpoch = history.count
        }
        var scores = TestScores(last: last, best: best, bestEpoch: bestEpoch)
        var final = try Checkpoint.read(from: folder + "/last.h5")
        try saveAndScoreAverages(&scores, final: final, on: loader)
        try scoreSnapshotEnsemble(&scores, on: loader)
        try TestReport(scores: scores, validation: data.validatesOnTest ? "test" : "held-out").write(folder: folder)
        final.training?.test = scores
        try final.write(to: folder + "/last.h5")
        let caveat = data.validatesOnTest ? " (validation: test — selection saw these images)" : ""
        progress.epochFinished(String(format: "%@ test: %d images, final top-1 %.2f %%, best (epoch %d, chosen on validation) %.2f %%%@%@",
                                      program.rawValue, last.images, last.top1, bestEpoch, best.top1, scores.othersDescription, caveat), secondsLeft: 0)
        // A binary property list keeps every Double as it is, NaN included.
        if let dataParallel { _ = dataParallel.communicator.broadcast(Array(try PropertyListEncoder.binary.encode(scores))) }
        return scores
    }

    /// Makes the phase's averages, continuing those of the checkpoint at `resumedPath` when given.
    private func startAverages(resuming resumedPath: String?) throws {
        averages = try recipe.averaging(for: phase).map {
            try WeightAverages($0, spec: model.spec, epochs: epochs, cycleEnds: cycleEnds, batchNormImages: batchNormImages)
        }
        for average in [averages?.swa, averages?.ema].compactMap({ $0 }) { average.model.precision = model.precision }
        if let averages, let resumedPath { try averages.restore(from: try Checkpoint.read(from: resumedPath), file: resumedPath) }
    }

    /// Writes `swa.h5` and `ema.h5` (the final checkpoint with the average's weights, without optimizer
    /// state) and scores them on the test split.
    private func saveAndScoreAverages(_ scores: inout TestScores, final: Checkpoint, on loader: DataLoader) throws {
        for average in averages?.all ?? [] where average.updates > 0 {
            var saved = final
            saved.model = StateRecord(average.model.state)
            saved.optimizer = nil
            saved.averages = []
            try saved.write(to: "\(folder)/\(average.name).h5")
            let score = try score(average.model, on: loader, split: "test")
            switch average.kind {
            case .swa: scores.swa = score
            case .ema: scores.ema = score
            }
        }
    }

    /// `snapshot-K.h5` when `epoch` (from 0) ends the phase's K-th cycle and the phase keeps snapshots:
    /// the checkpoint after that epoch, without optimizer state or averages.
    private func saveSnapshot(after epoch: Int, step: Int, history: [EpochRecord], knobNames: [String]) throws {
        guard isWriter, recipe.snapshots(for: phase) != nil, let index = cycleEnds.firstIndex(of: epoch) else { return }
        var snapshot = try checkpoint(epoch: epoch + 1, step: step, history: history, knobNames: knobNames)
        snapshot.optimizer = nil
        snapshot.averages = []
        try snapshot.write(to: folder + "/" + SnapshotPolicy.fileName(index + 1))
    }

    /// The test score of the snapshots' ensemble (mean softmax), when the phase keeps snapshots.
    private func scoreSnapshotEnsemble(_ scores: inout TestScores, on loader: DataLoader) throws {
        guard recipe.snapshots(for: phase) != nil else { return }
        let members = try cycleEnds.indices.map { index in
            try loadedModel(try Checkpoint.read(from: folder + "/" + SnapshotPolicy.fileName(index + 1)), precision: model.precision)
        }
        scores.snapshotEnsemble = try evaluateEnsembleOutputs(members, on: loader, split: "test", source: folder).score
        scores.snapshots = members.count
    }

    /// `evaluateModel` on this phase's images, named after its folder in errors.
    func score(_ model: Model, on loader: DataLoader, split: String) throws -> SplitScore {
        try evaluateModel(model, on: loader, split: split, source: folder).score
    }

    /// One step: the objective's passes, the gradients all-reduced in a data-parallel run, clipping
    /// and the optimizer step.
    /// - Returns: the (whole batch's) loss, this process's logits, whether every process's logits were
    ///   finite, and whether a stop was asked for (in any process).
    private func trainingStep(_ batch: Batch, _ values: KnobValues,
                              _ position: Position) throws -> (Float, Tensor, logitsFinite: Bool, interrupted: Bool) {
        var (loss, logits) = try objective.step(batch, knobs: values, at: CyclePosition(position, in: cycle))
        var logitsFinite = logits.scalars.allSatisfy(\.isFinite)
        var interrupted = InterruptFlag.shared.isSet
        if let dataParallel {
            let outcome = dataParallel.reduceStep(trainableParameters, loss: loss, logitsFinite: logitsFinite, interrupted: interrupted)
            (loss, logitsFinite, interrupted) = (outcome.loss, outcome.logitsFinite, outcome.interrupted)
        }
        if !loss.isFinite { return (loss, logits, logitsFinite, interrupted) }
        values.clipGradients(trainableParameters)
        optimizer.step()
        return (loss, logits, logitsFinite, interrupted)
    }

    /// Whether a stop was asked for, in any process of a data-parallel run (which then all stop here).
    private func interrupted(_ flag: InterruptFlag) -> Bool {
        guard let dataParallel else { return flag.isSet }
        return dataParallel.communicator.sum([flag.isSet ? 1 : 0])[0] > 0
    }

    /// The checkpoint written after `epoch` completed epochs (and, mid-epoch, the next epoch's sums so far).
    func checkpoint(epoch: Int, step: Int, history: [EpochRecord], knobNames: [String],
                    epochProgress: EpochProgress? = nil) throws -> Checkpoint {
        let columns = EpochRecord.columns(knobs: knobNames)
        var metrics = MetricsTable(columns: columns)
        for record in history { metrics.append(record.values(knobs: knobNames)) }
        let exported = optimizer.exportState()
        let training = TrainingRecord(
            program: program, epoch: epoch, step: step, cyclePosition: cycleEpochs(afterEpoch: epoch), seed: recipe.seed,
            rngState: model.randomStateWords, recipe: recipeText, metrics: metrics, epochProgress: epochProgress)
        var checkpoint = Checkpoint(model: model.state, architecture: try model.spec.yaml, numClasses: model.spec.numClasses,
                                    optimizer: OptimizerRecord(exported), training: training, adapters: adapters, input: data.inputPipeline)
        checkpoint.averages = averages?.records ?? []
        return checkpoint
    }
}

extension OptimizerRecord {
    /// The checkpoint form of an optimizer's exported state.
    init(_ state: OptimizerState) {
        self.init(kind: state.kind, hyperparameters: state.hyperParameters,
                  tensors: state.tensors.keys.sorted().map { ($0, state.tensors[$0]!) })
    }

    var optimizerState: OptimizerState {
        OptimizerState(kind: kind, hyperParameters: hyperparameters,
                       tensors: Dictionary(uniqueKeysWithValues: tensors.map { ($0.name, $0.tensor) }))
    }
}

extension PropertyListEncoder {
    static var binary: PropertyListEncoder {
        let encoder = PropertyListEncoder()
        encoder.outputFormat = .binary
        return encoder
    }
}

/// `test.json` in a phase's folder: the end-of-phase test scores, and which images selected `best.h5`.
struct TestReport: Codable {
    var split = "test"
    var scores: TestScores
    /// "held-out" (validation images held out of the training split) or "test" (`validation: test`).
    var validation: String

    func write(folder: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try encoder.encode(self).write(to: URL(fileURLWithPath: folder + "/test.json"), options: .atomic)
    }
}

extension KnobSchedules {
    /// Whether every knob stands at the cycle's easy end at `position`: each cyclical knob at its easy
    /// value, each other schedule at the value it ends the whole cycle with (constants always are).
    func standAtEasyEnd(of cycle: JointCycle, at position: Position) -> Bool {
        let end = cycle.finetuningEpochs > 0
            ? Trainer.lastPosition(of: .finetune, in: cycle) : Trainer.lastPosition(of: .pretrain, in: cycle)
        func same(_ a: Double, _ b: Double) -> Bool { abs(a - b) <= 1e-9 * max(1, abs(a), abs(b)) }
        return schedules.values.allSatisfy { schedule in
            switch schedule {
            case .constant: return true
            case let .cyclical(easy, _, _, _): return same(cycle.value(of: schedule, at: position), easy)
            default: return same(cycle.value(of: schedule, at: position), cycle.value(of: schedule, at: end))
            }
        }
    }
}
