import EpicycleData
import EpicycleRuntime
import EpicycleSchedules

/// Where a step stands in the run's cycle, and how a schedule reads there: what an objective
/// evaluates its own schedules with (a loss weight, a temperature), at the same position as the knobs.
public struct CyclePosition: Sendable {
    public var position: Position
    public var cycle: JointCycle

    public init(_ position: Position, in cycle: JointCycle) {
        self.position = position
        self.cycle = cycle
    }

    /// The schedule's value here, a cyclical factor left unset taken from the cycle (`JointCycle.value(of:at:)`).
    public func value(of schedule: Schedule) -> Double {
        cycle.value(of: schedule, at: position)
    }
}

/// What one training step computes, and what the objective adds to a run beside the model.
///
/// The loop (`Trainer.run`) owns everything else: data order, knob values, zeroing gradients before
/// the step, divergence checks, clipping and the optimizer step after it, validation, checkpoints and
/// metrics. A program differs from another by its objective only: `LabelObjective` (pretraining,
/// fine-tuning) and distillation's objective in `EpicycleDistillation`.
public protocol TrainingObjective: AnyObject {
    /// The recipe section the objective reads beside the recipe's own keys (distillation: `distill:`);
    /// nil for one that needs none. A program decodes its recipe with it (`RecipeSource.decodeRecipe(sections:)`).
    static var recipeSection: (any RecipeSection.Type)? { get }

    /// Trainable extras beside the model (distillation's hint regressors): the program hands them to
    /// the optimizer, the loop clips them with the model's gradients and saves them under `/adapters`
    /// in every checkpoint. Empty for none.
    var adapters: ModuleState { get }

    /// The batch norms among the adapters, which a data-parallel run synchronises like the model's.
    var adapterBatchNorms: [BatchNorm2D] { get }

    /// One step: forward and backward passes over `batch`, accumulating into the gradients of the model
    /// and the adapters (zeroed before by the loop).
    /// - Parameters:
    ///   - knobs: this step's knob values (temperature, focal mix…; the loop binds the optimizer's itself).
    ///   - position: this step's place in the cycle, for the objective's own schedules.
    /// - Returns: the loss (what the loop logs and checks for divergence) and the model's logits.
    func step(_ batch: Batch, knobs: KnobValues, at position: CyclePosition) throws -> (loss: Float, logits: Tensor)

    /// Scheduled values of the objective by name, logged beside the knobs in every epoch's record at the
    /// epoch's first step (distillation: `logits.temperature`, `hint.layer2.weight`…). The names are fixed
    /// for a run: those returned at its first step.
    func loggedValues(at position: CyclePosition) -> [String: Double]

    /// Values of the last step by name, logged with it in `steps.jsonl` and TensorBoard (distillation:
    /// each term's loss, `<term>.loss`); empty for none.
    var stepValues: [String: Double] { get }

    /// Extra text for the progress line and the epoch line (distillation: the teacher's share of the
    /// time and each term's value); empty for none.
    var progressNote: String { get }

    /// How many samples data selection (`sample_loss_threshold`, `keep_fraction`, `sample_loss_clip`)
    /// has left out of the label loss's gradient since the objective was made: a running count, whose
    /// increase over a step the loop adds to the epoch's `dropped_share`. 0 for an objective without.
    var droppedSamples: Int { get }

    /// Sets the number format of every convolution the objective runs (see `Precision`): the model's,
    /// and a teacher's or an adapter's.
    func usePrecision(_ precision: Precision)
}

extension TrainingObjective {
    public static var recipeSection: (any RecipeSection.Type)? { nil }
    public var adapters: ModuleState { ModuleState() }
    public var adapterBatchNorms: [BatchNorm2D] { [] }
    public func loggedValues(at position: CyclePosition) -> [String: Double] { [:] }
    public var stepValues: [String: Double] { [:] }
    public var progressNote: String { "" }
    public var droppedSamples: Int { 0 }
}

/// The default objective: the recipe's `loss:` on the batch's labels (cross-entropy, focal or cyclical
/// focal, with label smoothing and mixed labels), at the step's `temperature` and `focal_mix`, weighted
/// per sample by the data selection knobs (`SampleSelection`).
public final class LabelObjective: TrainingObjective {
    public let model: Model
    public let loss: LossRecipe
    public private(set) var droppedSamples = 0

    public func usePrecision(_ precision: Precision) { model.precision = precision }

    public init(model: Model, loss: LossRecipe) {
        self.model = model
        self.loss = loss
    }

    public func step(_ batch: Batch, knobs: KnobValues, at position: CyclePosition) throws -> (loss: Float, logits: Tensor) {
        let output = try model.forward(batch.images, mode: .training)
        let result = try labelLoss(logits: output.logits, batch: batch, knobs: knobs)
        model.backward(result.gradient)
        return (result.value, output.logits)
    }

    /// The loss on the batch's labels for `logits` (any model's: distillation's labels term reuses it),
    /// with the samples data selection drops added to `droppedSamples`.
    /// - Throws: a loss's error, or `RecipeError` when `cyclical_focal` meets knob values without a focal mix.
    public func labelLoss(logits: Tensor, batch: Batch, knobs: KnobValues) throws -> LossResult {
        let temperature = Float(knobs.temperature)
        let selection = knobs.sampleSelection
        switch loss.kind {
        case .crossEntropy:
            return try selected(CrossEntropyLoss(temperature: temperature, labelSmoothing: loss.labelSmoothing), logits, batch, selection)
        case .focal:
            return try selected(FocalLoss(gamma: loss.gamma, temperature: temperature, labelSmoothing: loss.labelSmoothing),
                                logits, batch, selection)
        case .cyclicalFocal:
            // `Recipe.knobs(for:)` always schedules it for this loss.
            guard let focalMix = knobs.focalMix else {
                throw RecipeError(path: "knobs.focal_mix", problem: "is required with loss.kind: cyclical_focal")
            }
            return try selected(CyclicalFocalLoss(gammaHighConfidence: loss.gammaHighConfidence, gammaFocal: loss.gamma,
                                                  xi: Float(focalMix), temperature: temperature,
                                                  labelSmoothing: loss.labelSmoothing), logits, batch, selection)
        }
    }

    /// Without selection the batch mean, as always; with it, each sample's (mixed) loss weighted by `selection`.
    private func selected<L: ClassificationLoss>(_ loss: L, _ logits: Tensor, _ batch: Batch,
                                                 _ selection: SampleSelection) throws -> LossResult {
        let partners = batch.partnerLabels
        if selection.isOff {
            return try partners.map { try loss(logits: logits, labels: batch.labels, partnerLabels: $0, mixWeight: batch.mixWeight) }
                ?? loss(logits: logits, labels: batch.labels)
        }
        let losses = try partners.map { try loss.perSample(logits: logits, labels: batch.labels, partnerLabels: $0, mixWeight: batch.mixWeight) }
            ?? loss.perSample(logits: logits, labels: batch.labels)
        let (result, dropped) = selection.apply(to: losses, across: model.rowGatherer)
        droppedSamples += dropped
        return result
    }
}
