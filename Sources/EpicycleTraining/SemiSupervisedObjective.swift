import EpicycleCheckpoint
import EpicycleData
import EpicycleRuntime
import EpicycleSchedules

/// Semi-supervised training of a phase with `unlabeled:` data (Smith 2022, §4.3):
///
///     L = L_labeled + λ_u · L_unlabeled
///
/// with L_labeled the recipe's loss on the labeled batch and L_unlabeled FixMatch's consistency loss
/// (`FixMatchLoss`, Sohn et al. 2020) on μ·B unlabeled images: the pseudo-label of each image's weak
/// view, kept where its confidence reaches τ, is the target of its strong view. λ_u is
/// `knobs.unlabeled_weight` and τ `knobs.confidence_threshold`, both at the step's cycle position; a
/// cyclical λ_u from 0 starts and ends on labeled data only.
///
/// The labeled batch and both views go through the model as one batch in training mode, so batch
/// norm normalises them together, as FixMatch's reference code does; the weak view's rows get no
/// gradient. Steps with λ_u = 0 draw no unlabeled images and are plain labeled steps.
///
/// With a teacher (`unlabeled.teacher`), the targets are its soft predictions on the weak view
/// (`SoftTargetConsistencyLoss` at the section's temperature, kept where the teacher's confidence
/// reaches τ); only the labeled batch and the strong view then go through the student.
///
/// Data-parallel, a process with rows a..<b of the labeled batch takes rows μa..<μb of the unlabeled
/// one: both losses are means over rows, so the process's shares of the two batches are equal and the
/// data-parallel reduction's weighting gives the whole batches' L; the logged counts are summed over
/// the processes.
///
/// The pool's held-back labels are read only to count, for the log, how many confident
/// pseudo-labels are right: nothing that training computes depends on them. `phaseObjective` chooses
/// it for every phase with `unlabeled:` data.
/// The objective of a pretraining or fine-tuning phase: `SemiSupervisedObjective` where the phase has
/// `unlabeled:` data (with its teacher, when it names one), else `LabelObjective`, both with the
/// recipe's `loss:`.
public func phaseObjective(model: Model, recipe: Recipe, data: PreparedData, phase: Phase) throws -> any TrainingObjective {
    guard let pool = data.unlabeled, let unlabeled = (phase == .pretrain ? recipe.pretrain : recipe.finetune)?.unlabeled else {
        return LabelObjective(model: model, loss: recipe.loss)
    }
    let teacher = try unlabeled.teacher.map { path in
        try UnlabeledTeacher(path: path, recipePath: "\(phase.rawValue).unlabeled.teacher", data: data,
                             temperature: Float(unlabeled.temperature))
    }
    // The offset keeps the unlabeled images' order and views apart from the labeled loader's streams.
    return SemiSupervisedObjective(model: model, loss: recipe.loss, pool: pool, normalization: data.normalization,
                                   seed: recipe.seed &+ (phase == .pretrain ? 0 : 1) &+ 0x554E_4C41_4245_4C44, teacher: teacher)
}

/// The frozen model of `unlabeled.teacher`, fed the unlabeled images normalised as it was trained.
public struct UnlabeledTeacher {
    public let model: Model
    public let temperature: Float
    // Per channel, x_teacher = scale·x + shift takes an image normalised with the phase's statistics
    // to the teacher's: scale = σ_phase/σ_teacher, shift = (μ_phase − μ_teacher)/σ_teacher.
    private let scale: [Float], shift: [Float]

    init(path: String, recipePath: String, data: PreparedData, temperature: Float) throws {
        let input: InputPipeline?
        do {
            (model, input) = try loadFrozenModel(from: path)
        } catch let error as CheckpointError {
            throw RecipeError(path: recipePath, problem: "\(path) is not a model checkpoint: \(error.description)")
        } catch let error as RecipeError {
            throw RecipeError(path: recipePath, problem: "\(path) is not a model checkpoint: \(error.problem)")
        }
        guard model.spec.inputChannels == data.channels, model.spec.numClasses == data.classCount else {
            throw RecipeError(path: recipePath, problem: "\(path) takes \(model.spec.inputChannels)-channel images and predicts "
                + "\(model.spec.numClasses) classes; the phase has \(data.channels)-channel images of \(data.classCount) classes")
        }
        if let input, input.classes != data.classes {
            throw RecipeError(path: recipePath, problem: "\(path) predicts the dataset's classes \(input.classes) (its /data input "
                + "pipeline) but the phase trains on \(data.classes)")
        }
        let own = data.normalization, theirs = input?.normalization ?? own
        scale = (0..<data.channels).map { own.standardDeviation[$0] / theirs.standardDeviation[$0] }
        shift = (0..<data.channels).map { (own.mean[$0] - theirs.mean[$0]) / theirs.standardDeviation[$0] }
        self.temperature = temperature
    }

    /// The teacher's logits `[N, K]` on images `[N, H, W, C]` normalised with the phase's statistics.
    func logits(_ images: Tensor) throws -> Tensor {
        var renormalised = images
        let channels = scale.count
        renormalised.scalars.withUnsafeMutableBufferPointer { x in
            for i in x.indices { x[i] = scale[i % channels] * x[i] + shift[i % channels] }
        }
        return try model.forward(renormalised, mode: .inference).logits
    }
}

public final class SemiSupervisedObjective: TrainingObjective {
    public let model: Model
    public let loader: UnlabeledLoader
    /// μ.
    public let ratio: Int
    private let labels: LabelObjective
    private let heldBackLabels: [Int32]?
    private let teacher: UnlabeledTeacher?
    // The current epoch's tallies, for the logged mask rate and pseudo-label accuracy.
    private var tallyEpoch = -1
    private var unlabeledImages = 0, confidentImages = 0, correctPseudoLabels = 0

    public func usePrecision(_ precision: Precision) {
        model.precision = precision
        teacher?.model.precision = precision
    }

    /// The names of the values it logs per epoch, beside the knobs.
    public static let maskRateName = "unlabeled.mask_rate", accuracyName = "unlabeled.pseudo_label_accuracy"

    /// - Parameters:
    ///   - loss: the recipe's loss on the labeled images.
    ///   - normalization: the labeled images', so that both feed the model alike.
    ///   - seed: the root of the unlabeled images' order and views.
    ///   - teacher: whose soft targets replace the pseudo-labels; nil for FixMatch.
    public init(model: Model, loss: LossRecipe, pool: UnlabeledPool, normalization: ChannelStatistics, seed: UInt64,
                teacher: UnlabeledTeacher? = nil) {
        self.model = model
        labels = LabelObjective(model: model, loss: loss)
        loader = UnlabeledLoader(pool: pool.images, normalization: normalization, weakPolicy: pool.weakPolicy,
                                 strongPolicy: pool.strongPolicy, seed: seed)
        ratio = pool.ratio
        heldBackLabels = pool.heldBackLabels
        self.teacher = teacher
    }

    /// One step: forward and backward of the labeled batch and, while λ_u > 0, of its unlabeled batch;
    /// returns L and the labeled batch's logits.
    public func step(_ batch: Batch, knobs: KnobValues, at cyclePosition: CyclePosition) throws -> (loss: Float, logits: Tensor) {
        let position = cyclePosition.position
        if position.epoch != tallyEpoch {
            (tallyEpoch, unlabeledImages, confidentImages, correctPseudoLabels) = (position.epoch, 0, 0, 0)
        }
        // `Recipe.knobs(for:)` schedules both for every phase with unlabeled data.
        guard let lambda = knobs.unlabeledWeight, let threshold = knobs.confidenceThreshold else {
            throw RecipeError(path: "knobs.unlabeled_weight", problem: "is required in a phase with unlabeled data")
        }
        let weight = Float(lambda)
        guard weight > 0 else { return try labels.step(batch, knobs: knobs, at: cyclePosition) }
        let batchInEpoch = position.step - cyclePosition.cycle.position(epoch: position.epoch).step
        let unlabeled = loader.batch(batchInEpoch, epoch: position.epoch, size: ratio * (batch.block?.wholeCount ?? batch.count),
                                     strength: Float(knobs.augmentationStrength),
                                     rows: batch.block.map { (ratio * $0.rows.lowerBound)..<(ratio * $0.rows.upperBound) })
        // The student sees the labeled batch, then (FixMatch only) the weak view, then the strong view.
        let weakRows = teacher == nil ? unlabeled.count : 0
        let images = Tensor(shape: [batch.count + weakRows + unlabeled.count] + Array(batch.images.shape.dropFirst()),
                            scalars: batch.images.scalars + (teacher == nil ? unlabeled.weak.scalars : []) + unlabeled.strong.scalars)
        let logits = try model.forward(images, mode: .training).logits  // [B + (μB) + μB, K]
        let classes = logits.shape[1]
        func rows(_ start: Int, _ count: Int) -> Tensor {
            Tensor(shape: [count, classes], scalars: Array(logits.scalars[(start * classes)..<((start + count) * classes)]))
        }
        let labeledLogits = rows(0, batch.count)
        let labeled = try labels.labelLoss(logits: labeledLogits, batch: batch, knobs: knobs)
        let strongLogits = rows(batch.count + weakRows, unlabeled.count)
        let consistency = if let teacher {
            try SoftTargetConsistencyLoss(temperature: teacher.temperature, threshold: Float(threshold))(
                teacherLogits: teacher.logits(unlabeled.weak), studentLogits: strongLogits)
        } else {
            try FixMatchLoss(threshold: Float(threshold))(weakLogits: rows(batch.count, unlabeled.count), strongLogits: strongLogits)
        }
        // The weak view's rows stay zero: its pseudo-labels are targets, not predictions to train.
        model.backward(Tensor(shape: logits.shape,
                              scalars: labeled.gradient.scalars + [Float](repeating: 0, count: weakRows * classes)
                                  + consistency.loss.gradient.scalars.map { weight * $0 }))
        tally(consistency, samples: unlabeled.sampleIndices)
        return (Float(Double(labeled.value) + Double(weight) * Double(consistency.loss.value)), labeledLogits)
    }

    private func tally(_ result: ConsistencyResult, samples: [Int]) {
        var confident = 0, correct = 0
        for (row, sample) in samples.enumerated() where result.confident[row] {
            confident += 1
            if let heldBackLabels, heldBackLabels[sample] == result.pseudoLabels[row] { correct += 1 }
        }
        var counts = [Double(samples.count), Double(confident), Double(correct)]
        if let split = model.rowGatherer { counts = split.sum(counts) }
        unlabeledImages += Int(counts[0])
        confidentImages += Int(counts[1])
        correctPseudoLabels += Int(counts[2])
    }

    /// The labeled samples data selection dropped (`LabelObjective.droppedSamples`).
    public var droppedSamples: Int { labels.droppedSamples }

    /// The epoch's share (%) of unlabeled images whose pseudo-label passed τ, and the share (%) of those
    /// pseudo-labels that are right (NaN without held-back labels or before any confident one), logged
    /// as `unlabeled.mask_rate` and `unlabeled.pseudo_label_accuracy` at the end of each epoch.
    public func loggedValues(at position: CyclePosition) -> [String: Double] {
        [Self.maskRateName: maskRate, Self.accuracyName: pseudoLabelAccuracy]
    }

    private var maskRate: Double { unlabeledImages > 0 ? 100 * Double(confidentImages) / Double(unlabeledImages) : .nan }

    private var pseudoLabelAccuracy: Double {
        heldBackLabels != nil && confidentImages > 0 ? 100 * Double(correctPseudoLabels) / Double(confidentImages) : .nan
    }

    /// The progress and epoch lines' note: the mask rate and pseudo-label accuracy so far this epoch.
    public var progressNote: String {
        guard maskRate.isFinite else { return "unlabeled off (λ_u = 0)" }
        let accuracy = pseudoLabelAccuracy.isFinite ? String(format: "%.1f %%", pseudoLabelAccuracy) : "n/a"
        return String(format: "unlabeled mask %.1f %%, pseudo-labels right %@", maskRate, accuracy)
    }
}
