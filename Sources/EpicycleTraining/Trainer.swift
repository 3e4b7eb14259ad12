import EpicycleCheckpoint
import EpicycleData
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

    public var description: String {
        switch self {
        case let .diverged(epoch, step, loss, lastGood):
            let kept = lastGood.map { "the last good checkpoint, \($0), is unchanged" } ?? "no checkpoint was written yet"
            return "training diverged at epoch \(epoch + 1), step \(step): loss is \(loss). Stopped; \(kept). "
                + "Lower the learning rate or clip gradients (knobs.clip_norm)."
        case let .interrupted(path):
            return "interrupted: saved \(path); continue with --resume"
        }
    }
}

/// Loss and accuracy of one model on one split.
public struct SplitScore: Codable, Equatable, Sendable {
    public var images: Int
    public var loss: Double
    /// Percent.
    public var top1: Double
    /// Percent (top-k with k = min(5, classes)).
    public var top5: Double

    public init(images: Int, loss: Double, top1: Double, top5: Double) {
        self.images = images
        self.loss = loss
        self.top1 = top1
        self.top5 = top5
    }
}

/// The test split scored once at the end of a phase: the final weights, and `best.h5` (chosen on validation).
public struct TestScores: Codable, Equatable, Sendable {
    public var last: SplitScore
    public var best: SplitScore
    /// The epoch (1-based) whose weights `best.h5` holds.
    public var bestEpoch: Int

    public init(last: SplitScore, best: SplitScore, bestEpoch: Int) {
        self.last = last
        self.best = best
        self.bestEpoch = bestEpoch
    }

    enum CodingKeys: String, CodingKey { case last, best, bestEpoch = "best_epoch" }
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
}

/// Everything one phase of training needs. The training loop itself is `run()`; every program
/// (pretraining, fine-tuning, distillation) goes through it.
package final class Trainer {
    package let model: Model
    package let optimizer: any Optimizer
    let program: TrainingRecord.Program
    /// Which recipe phase runs (its knobs and data).
    let phase: Phase
    /// Which half of the joint cycle it occupies: the same as `phase`, except for a fine-tune of a
    /// model with no recorded pretraining, which is a cycle of its own.
    let cyclePhase: Phase
    package let cycle: JointCycle
    let knobs: KnobSchedules
    let recipe: Recipe
    let recipeText: String
    let data: PreparedData
    let epochs: Int
    let folder: String
    let progress: ProgressReporter
    /// Extra per-step work for programs that add terms to the loss (distillation): given the batch,
    /// the knob values and the cycle position they were taken at, runs forward and backward and
    /// returns the loss and logits.
    package typealias StepFunction = (_ batch: Batch, _ knobs: [Knob: Double], _ position: Position) throws
        -> (loss: Float, logits: Tensor)
    package var customStep: StepFunction?
    /// Extra text for the progress line and the epoch line (distillation: the teacher's share of the time).
    package var progressNote: (() -> String)?
    /// Trainable extras beside the model (distillation regressors): clipped with the model's
    /// gradients and saved under `/adapters` in every checkpoint.
    let adapters: ModuleState?

    private let trainingLoader: DataLoader
    private let validationLoader: DataLoader
    private let trainableParameters: [Parameter]

    package init(model: Model, optimizer: any Optimizer, program: TrainingRecord.Program, phase: Phase, cyclePhase: Phase,
                 cycle: JointCycle, recipe: Recipe, recipeText: String, data: PreparedData, folder: String,
                 progress: ProgressReporter, adapters: ModuleState? = nil) {
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
        self.progress = progress
        self.adapters = adapters
        trainingLoader = data.trainingLoader(seed: recipe.seed &+ (phase == .pretrain ? 0 : 1))
        validationLoader = data.validationLoader()
        trainableParameters = (model.state.parameters + (adapters?.parameters ?? [])).map(\.parameter).filter(\.trainable)
    }

    /// The position of a step in the whole cycle. Batch size may change between epochs, so steps
    /// are counted in units of the cycle's nominal steps per epoch.
    func position(epoch: Int, batch: Int, batches: Int) -> Position {
        let nominal = cyclePhase == .pretrain ? cycle.pretrainingStepsPerEpoch : cycle.finetuningStepsPerEpoch
        let step = batches == 0 ? 0 : batch * nominal / batches
        return cyclePhase == .pretrain ? cycle.pretrainingPosition(epoch: epoch, stepInEpoch: step)
            : cycle.finetuningPosition(epoch: epoch, stepInEpoch: step)
    }

    func knobValues(at position: Position) -> [Knob: Double] {
        knobs.schedules.mapValues { cycle.value(of: $0, at: position) }
    }

    /// Epochs from the cycle's start at the end of `epoch` (what the checkpoint records).
    func cycleEpochs(afterEpoch epoch: Int) -> Double {
        Double((cyclePhase == .pretrain ? 0 : cycle.pretrainingEpochs) + epoch)
    }

    private func apply(_ values: [Knob: Double]) {
        optimizer.learningRate = Float(values[.learningRate]!)
        optimizer.setWeightDecay(Float(values[.weightDecay]!))
        if let sgd = optimizer as? SGD, let momentum = values[.momentum] { sgd.momentum = Float(momentum) }
    }

    /// The loss on labels for a batch, as the recipe asks (temperature, smoothing, focal, mixing).
    package func labelLoss(logits: Tensor, batch: Batch, knobs values: [Knob: Double]) throws -> LossResult {
        let temperature = Float(values[.temperature] ?? 1)
        let lossRecipe = recipe.loss
        switch lossRecipe.kind {
        case .crossEntropy:
            return try mixed(CrossEntropyLoss(temperature: temperature, labelSmoothing: lossRecipe.labelSmoothing), logits, batch)
        case .focal:
            return try mixed(FocalLoss(gamma: lossRecipe.gamma, temperature: temperature), logits, batch)
        case .cyclicalFocal:
            return try mixed(CyclicalFocalLoss(gammaHighConfidence: lossRecipe.gammaHighConfidence, gammaFocal: lossRecipe.gamma,
                                               xi: Float(values[.focalMix]!), temperature: temperature), logits, batch)
        }
    }

    private func mixed<L: ClassificationLoss>(_ loss: L, _ logits: Tensor, _ batch: Batch) throws -> LossResult {
        if let partners = batch.partnerLabels {
            return try loss(logits: logits, labels: batch.labels, partnerLabels: partners, mixWeight: batch.mixWeight)
        }
        return try loss(logits: logits, labels: batch.labels)
    }

    /// Validation loss (plain cross-entropy, T = 1), top-1 and top-5 in inference mode.
    func evaluate() throws -> RunningMetrics {
        var metrics = RunningMetrics()
        for batch in validationLoader.epoch(0, batchSize: 256) {
            let logits = try model.forward(batch.images, mode: .inference).logits
            let loss = try CrossEntropyLoss()(logits: logits, labels: batch.labels)
            metrics.add(loss: loss.value, logits: logits, labels: batch.labels)
        }
        return metrics
    }

    /// Trains from `start` (a resumed checkpoint's record, or nil for a fresh start) to the phase's end.
    package func run(resumingFrom start: TrainingRecord?) throws -> PhaseResult {
        let began = Date()
        var history = start.map { record in record.metrics.rows.map { EpochRecord(columns: record.metrics.columns, values: $0) } } ?? []
        var keeper = try CheckpointKeeper(directory: folder, everyEpochs: recipe.checkpointEvery > 0 ? recipe.checkpointEvery : nil,
                                          bestTop1: start?.bestTop1)
        let knobNames = knobs.schedules.keys.map(\.rawValue)
        let log = try MetricsLog(folder: URL(fileURLWithPath: folder), knobNames: knobNames, history: history)
        var step = start?.step ?? 0
        let firstEpoch = start?.epoch ?? 0
        // A checkpoint saved by Ctrl-C mid-epoch has steps beyond the last finished epoch's: those
        // batches are skipped (the epoch's data order depends only on the seed and the epoch).
        var batchesToSkip = step - (history.last?.step ?? 0)
        try start?.checkResumable(file: keeper.lastPath, epochs: epochs) { epoch in
            trainingLoader.batchCount(batchSize: Int(knobValues(at: position(epoch: epoch, batch: 0, batches: 1))[.batchSize]!))
        }
        let interrupt = InterruptFlag.shared
        interrupt.arm()
        defer { interrupt.disarm() }

        for epoch in firstEpoch..<epochs {
            let epochStart = Date()
            let first = knobValues(at: position(epoch: epoch, batch: 0, batches: 1))
            let batchSize = Int(first[.batchSize]!)
            let strength = Float(first[.augmentationStrength]!)
            let batches = trainingLoader.batchCount(batchSize: batchSize)
            var metrics = RunningMetrics()
            var batchIndex = 0
            for batch in trainingLoader.epoch(epoch, batchSize: batchSize, strength: strength) {
                if batchesToSkip > 0 {
                    batchesToSkip -= 1
                    batchIndex += 1
                    continue
                }
                let stepPosition = position(epoch: epoch, batch: batchIndex, batches: batches)
                let values = knobValues(at: stepPosition)
                apply(values)
                optimizer.zeroGradients()
                let (loss, logits) = try trainingStep(batch, values, stepPosition)
                guard loss.isFinite, loss < 1e4 else {
                    throw TrainingError.diverged(epoch: epoch, step: step, loss: loss,
                                                 lastGood: FileManager.default.fileExists(atPath: keeper.lastPath) ? keeper.lastPath : nil)
                }
                metrics.add(loss: loss, logits: logits, labels: batch.labels)
                step += 1
                batchIndex += 1
                let elapsed = Date().timeIntervalSince(epochStart)
                progress.step(phase: program.rawValue, epoch: epoch, epochs: epochs, batch: batchIndex, batches: batches,
                              imagesPerSecond: Double(metrics.images) / max(elapsed, 1e-9),
                              secondsLeft: elapsed / Double(batchIndex) * Double(batches - batchIndex),
                              loss: metrics.loss, knobs: Dictionary(uniqueKeysWithValues: values.map { ($0.key.rawValue, $0.value) }),
                              extra: progressNote?() ?? "")
                if interrupt.isSet && batchIndex < batches {
                    // The step is done: save it (last.h5 only) and stop; --resume continues from here.
                    // This epoch's training loss and accuracy then cover only the batches after the resume.
                    try keeper.save(checkpoint(epoch: epoch, step: step, history: history, knobNames: knobNames), validationTop1: nil)
                    throw TrainingError.interrupted(savedTo: keeper.lastPath)
                }
            }
            let trainSeconds = Date().timeIntervalSince(epochStart)
            let validation = try evaluate()
            let record = EpochRecord(
                epoch: epoch + 1, step: step, trainLoss: metrics.loss, trainTop1: metrics.top1,
                validationLoss: validation.loss, validationTop1: validation.top1, validationTop5: validation.top5,
                seconds: Date().timeIntervalSince(epochStart), imagesPerSecond: Double(metrics.images) / max(trainSeconds, 1e-9),
                knobs: Dictionary(uniqueKeysWithValues: first.map { ($0.key.rawValue, $0.value) }))
            history.append(record)
            try log.append(record)
            try keeper.save(checkpoint(epoch: epoch + 1, step: step, history: history, knobNames: knobNames),
                            validationTop1: validation.top1)
            let left = Date().timeIntervalSince(began) / Double(epoch + 1 - firstEpoch) * Double(epochs - epoch - 1)
            progress.epochFinished(
                String(format: "%@ epoch %d/%d  train loss %.4f top-1 %.2f  val loss %.4f top-1 %.2f top-5 %.2f  %.0f img/s  %@",
                       program.rawValue, epoch + 1, epochs, metrics.loss, metrics.top1, validation.loss, validation.top1,
                       validation.top5, record.imagesPerSecond, formatKnobs(record.knobs)) + (progressNote.map { "  " + $0() } ?? ""),
                secondsLeft: left)
        }
        let best = history.map(\.validationTop1).max() ?? .nan
        return PhaseResult(history: history, bestTop1: best, finalTop1: history.last?.validationTop1 ?? .nan,
                           validatesOnTest: false, test: nil, folder: folder, seconds: Date().timeIntervalSince(began))
    }

    private func trainingStep(_ batch: Batch, _ values: [Knob: Double], _ position: Position) throws -> (Float, Tensor) {
        let (loss, logits): (Float, Tensor)
        if let customStep {
            (loss, logits) = try customStep(batch, values, position)
        } else {
            let output = try model.forward(batch.images, mode: .training)
            let result = try labelLoss(logits: output.logits, batch: batch, knobs: values)
            model.backward(result.gradient)
            (loss, logits) = (result.value, output.logits)
        }
        if !loss.isFinite { return (loss, logits) }
        if let threshold = values[.clipValue] { clipGradientsByValue(trainableParameters, threshold: Float(threshold)) }
        if let maxNorm = values[.clipNorm] { clipGradientsByNorm(trainableParameters, maxNorm: Float(maxNorm)) }
        optimizer.step()
        return (loss, logits)
    }

    /// The checkpoint written after `epoch` completed epochs.
    func checkpoint(epoch: Int, step: Int, history: [EpochRecord], knobNames: [String]) throws -> Checkpoint {
        let columns = EpochRecord.columns(knobs: knobNames)
        var metrics = MetricsTable(columns: columns)
        for record in history { metrics.append(record.values(knobs: knobNames)) }
        let exported = optimizer.exportState()
        let training = TrainingRecord(
            program: program, epoch: epoch, step: step, cyclePosition: cycleEpochs(afterEpoch: epoch), seed: recipe.seed,
            rngState: model.randomStateWords, recipe: recipeText, metrics: metrics)
        return Checkpoint(model: model.state, architecture: try model.spec.yaml, numClasses: model.spec.numClasses,
                          optimizer: OptimizerRecord(exported), training: training, adapters: adapters)
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
