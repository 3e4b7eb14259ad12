import EpicycleCheckpoint
import EpicycleData
import EpicycleRuntime
import EpicycleSchedules
import Foundation

/// `averaging:` (at the top level, or a phase's own, which replaces it for that phase): running
/// averages of the weights kept beside the trained model, each scored on validation every epoch,
/// saved at the phase's end (`swa.h5`, `ema.h5`) and scored on the test split with the final model.
public struct AveragingRecipe: Decodable, Sendable, Equatable {
    public var swa: SWARecipe?
    public var ema: EMARecipe?

    enum CodingKeys: String, CodingKey, CaseIterable { case swa, ema }

    public init(swa: SWARecipe? = nil, ema: EMARecipe? = nil) {
        self.swa = swa
        self.ema = ema
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        swa = try container.decodeIfPresent(SWARecipe.self, forKey: .swa)
        ema = try container.decodeIfPresent(EMARecipe.self, forKey: .ema)
        guard swa != nil || ema != nil else {
            throw RecipeError(path: decoder.path, problem: "expected swa:, ema: or both")
        }
    }
}

/// Stochastic weight averaging (Izmailov et al. 2018, "Averaging Weights Leads to Wider Optima and
/// Better Generalization"), as `torch.optim.swa_utils` does it: the equal-weight running mean of the
/// parameters, w̄ ← w̄ + (w − w̄)/(n + 1) (`AveragedModel`), its batch-norm statistics recomputed
/// from training images before every use (`update_bn`), and optionally its own learning-rate schedule
/// from the start epoch on (`SWALR`'s role).
///
/// `start: N` averages the weights at the end of epochs N, N + 1, …, the phase's last (counted from
/// 1, as the epoch lines count); `start: cycle_ends` averages them at the end of each cycle
/// (`Trainer.cycleEnds`), where a cyclical schedule stands at its easy end.
public struct SWARecipe: Decodable, Sendable, Equatable {
    public enum Start: Equatable, Sendable {
        case epoch(Int)
        case cycleEnds
    }

    public var start: Start
    /// The learning rate from `start` on, in place of the `learning_rate` knob; nil: the knob's.
    public var learningRate: Schedule?

    enum CodingKeys: String, CodingKey, CaseIterable { case start, lr }

    public init(start: Start, learningRate: Schedule? = nil) {
        self.start = start
        self.learningRate = learningRate
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let path = decoder.path + ".start"
        if (try? container.decode(String.self, forKey: .start)) == "cycle_ends" {
            start = .cycleEnds
        } else if let epoch = try? container.decode(Int.self, forKey: .start) {
            guard RecipeLimits.epochs.contains(epoch) else { throw RecipeError(path: path, problem: outside(RecipeLimits.epochs, got: String(epoch))) }
            start = .epoch(epoch)
        } else if container.contains(.start) {
            throw RecipeError(path: path, problem: "expected an epoch (a whole number from 1) or cycle_ends, got \(container.summary(forKey: .start))")
        } else {
            throw RecipeError(path: path, problem: "is required: the first epoch averaged (from 1), or cycle_ends")
        }
        learningRate = try container.decodeSchedule(forKey: .lr)
        if learningRate != nil && start == .cycleEnds {
            throw RecipeError(path: decoder.path + ".lr", problem: "applies from an epoch given as start:; with start: cycle_ends "
                              + "the phase's own cyclical schedule chooses the points averaged")
        }
    }
}

/// An exponential moving average of the weights and the floating-point buffers (batch-norm running
/// statistics), updated after every optimizer step as timm's `ModelEmaV3` does (timm/utils/model_ema.py,
/// `update_after_step` 0, `min_decay` 0): the k-th update (from 1) uses
/// d_k = 0 for k = 1 (a copy), else `decay`, or with warm-up min(decay, 1 − (1 + (k − 1)/γ)^(−power)),
/// and sets w̄ ← d_k·w̄ + (1 − d_k)·w; integer buffers are copied. Defaults: decay 0.9998 (timm
/// train.py's `--model-ema-decay`), no warm-up, γ = 1 and power 2/3 (`ModelEmaV3`'s).
public struct EMARecipe: Decodable, Sendable, Equatable {
    public var decay = 0.9998
    public var warmup = false
    public var warmupGamma = 1.0
    public var warmupPower = 2.0 / 3.0

    enum CodingKeys: String, CodingKey, CaseIterable {
        case decay, warmup, warmupGamma = "warmup_gamma", warmupPower = "warmup_power"
    }

    public init(decay: Double = 0.9998, warmup: Bool = false, warmupGamma: Double = 1, warmupPower: Double = 2.0 / 3.0) {
        self.decay = decay
        self.warmup = warmup
        self.warmupGamma = warmupGamma
        self.warmupPower = warmupPower
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        decay = try container.decodeIfPresent(Double.self, forKey: .decay) ?? decay
        warmup = try container.decodeIfPresent(Bool.self, forKey: .warmup) ?? warmup
        warmupGamma = try container.decodeIfPresent(Double.self, forKey: .warmupGamma) ?? warmupGamma
        warmupPower = try container.decodeIfPresent(Double.self, forKey: .warmupPower) ?? warmupPower
        let path = decoder.path
        guard decay >= 0 && decay < 1 else { throw RecipeError(path: path + ".decay", problem: "must be in [0, 1), got \(decay)") }
        for (key, value) in [("warmup_gamma", warmupGamma), ("warmup_power", warmupPower)] where !(value > 0 && value <= 1e6) {
            throw RecipeError(path: path + "." + key, problem: "must be in (0, 1e6], got \(value)")
        }
        if !warmup && (container.contains(.warmupGamma) || container.contains(.warmupPower)) {
            throw RecipeError(path: path + (container.contains(.warmupGamma) ? ".warmup_gamma" : ".warmup_power"),
                              problem: "applies only with warmup: true")
        }
    }

    /// d_k of the k-th update, k from 1.
    public func decay(atUpdate update: Int) -> Double {
        let step = update - 1
        guard step > 0 else { return 0 }
        guard warmup else { return decay }
        return min(decay, 1 - pow(1 + Double(step) / warmupGamma, -warmupPower))
    }
}

/// One running average of a model's weights: a model of the same architecture holding it, and how
/// many updates made it.
final class WeightAverage {
    enum Kind {
        case swa
        case ema(EMARecipe)
    }

    let kind: Kind
    let model: Model
    private(set) var updates = 0

    init(_ kind: Kind, spec: ModelSpec) throws {
        self.kind = kind
        model = try Model(spec, seed: 0)
    }

    /// "swa" or "ema": the checkpoint group, the file (`swa.h5`) and the metrics columns' prefix.
    var name: String {
        switch kind {
        case .swa: "swa"
        case .ema: "ema"
        }
    }

    /// Folds `source`'s current weights into the average. The first update copies them (both SWA and
    /// EMA start from the model, not from zero); SWA then takes the float32 `w̄ + (w − w̄)/(n + 1)` of
    /// `AveragedModel`, EMA `torch.lerp(w̄, w, 1 − d)`, both element by element in float32 as PyTorch.
    func update(from source: Model) {
        updates += 1
        let weight: Float? = switch kind {
        case .swa: nil
        case let .ema(recipe): Float(1 - recipe.decay(atUpdate: updates))
        }
        let count = Float(updates)
        func fold(_ average: inout Tensor, _ value: Tensor) {
            guard updates > 1, weight != 1 else {
                average = value
                return
            }
            average.scalars.withUnsafeMutableBufferPointer { a in
                value.scalars.withUnsafeBufferPointer { w in
                    if let weight {
                        // torch.lerp: start + weight·(end − start) below one half, end − (end − start)·(1 − weight) above.
                        for index in a.indices {
                            a[index] = weight < 0.5 ? a[index] + weight * (w[index] - a[index])
                                : w[index] - (w[index] - a[index]) * (1 - weight)
                        }
                    } else {
                        for index in a.indices { a[index] += (w[index] - a[index]) / count }
                    }
                }
            }
        }
        for (average, parameter) in zip(model.state.parameters, source.state.parameters) {
            fold(&average.parameter.value, parameter.parameter.value)
        }
        for (average, buffer) in zip(model.state.buffers, source.state.buffers) {
            switch (average.buffer.value, buffer.buffer.value, kind) {
            case (.float32(var tensor), let .float32(value), .ema):
                fold(&tensor, value)
                average.buffer.value = .float32(tensor)
            case (.float32, .float32, .swa):
                // Recomputed from training images before every use (`update_bn`).
                if updates == 1 { average.buffer.value = buffer.buffer.value }
            default:
                average.buffer.value = buffer.buffer.value
            }
        }
    }

    var record: AveragedWeights {
        AveragedWeights(name: name, updates: updates, model: StateRecord(model.state))
    }

    /// Continues from a checkpoint's record of this average.
    func restore(_ record: AveragedWeights, file: String) throws {
        do {
            try Checkpoint(architecture: "", numClasses: model.spec.numClasses, model: record.model).loadModel(into: model.state)
        } catch {
            throw CheckpointError.invalidValue(file: file, object: "'/averaging/\(name)'", reason: "does not fit the model: \(error)")
        }
        updates = record.updates
    }
}

/// The phase's weight averages and when they are updated: EMA after every optimizer step, SWA at the
/// end of the epochs its `start` names. The trainer calls these hooks; checkpoints carry `records`.
final class WeightAverages {
    let recipe: AveragingRecipe
    let swa: WeightAverage?
    let ema: WeightAverage?
    /// The phase's epochs (from 0) at whose end SWA folds in the weights.
    let swaEpochs: Set<Int>
    /// The images SWA's batch-norm statistics are recomputed on.
    private let batchNormImages: DataLoader

    /// - Parameters:
    ///   - cycleEnds: the phase's cycle ends (`Trainer.cycleEnds`), for `start: cycle_ends`.
    ///   - batchNormImages: un-augmented training images for SWA's batch-norm statistics.
    init(_ recipe: AveragingRecipe, spec: ModelSpec, epochs: Int, cycleEnds: [Int], batchNormImages: DataLoader) throws {
        self.recipe = recipe
        swa = try recipe.swa.map { _ in try WeightAverage(.swa, spec: spec) }
        ema = try recipe.ema.map { try WeightAverage(.ema($0), spec: spec) }
        swaEpochs = switch recipe.swa?.start {
        case let .epoch(first): Set(first - 1..<max(first - 1, epochs))
        case .cycleEnds: Set(cycleEnds)
        case nil: []
        }
        self.batchNormImages = batchNormImages
    }

    var all: [WeightAverage] { [swa, ema].compactMap { $0 } }

    /// The metrics columns every epoch logs: `swa_val_loss`, `swa_val_top1`, `ema_val_loss`, `ema_val_top1`
    /// for the averages kept (NaN before an average's first update).
    var columnNames: [String] { all.flatMap { ["\($0.name)_val_loss", "\($0.name)_val_top1"] } }

    /// The learning rate SWA sets for `epoch` (from 0), nil where the knob's own applies.
    func learningRate(epoch: Int) -> Schedule? {
        guard case let .epoch(first) = recipe.swa?.start, epoch >= first - 1 else { return nil }
        return recipe.swa?.learningRate
    }

    func afterStep(_ model: Model) {
        ema?.update(from: model)
    }

    /// Folds the weights into SWA when `epoch` (from 0) is one it averages, recomputes its batch-norm
    /// statistics, and scores every average that has been updated.
    /// - Returns: the metrics columns' values (see `columnNames`).
    func afterEpoch(_ epoch: Int, model: Model, score: (Model) throws -> SplitScore) throws -> [String: Double] {
        if let swa, swaEpochs.contains(epoch) {
            swa.update(from: model)
            try recalibrate(swa)
        }
        var values: [String: Double] = [:]
        for average in all {
            let result = average.updates > 0 ? try score(average.model) : nil
            values["\(average.name)_val_loss"] = result?.loss ?? .nan
            values["\(average.name)_val_top1"] = result?.top1 ?? .nan
        }
        return values
    }

    private func recalibrate(_ average: WeightAverage) throws {
        try average.model.recalibrateBatchNorm(on: batchNormImages.epoch(0, batchSize: Trainer.evaluationBatchSize).lazy.map(\.images))
    }

    var records: [AveragedWeights] { all.map(\.record) }

    /// Continues the averages of a resumed checkpoint; every average the recipe keeps must be there.
    func restore(from checkpoint: Checkpoint, file: String) throws {
        for average in all {
            guard let record = checkpoint.averages.first(where: { $0.name == average.name }) else {
                throw CheckpointError.missingEntry(file: file, object: "'/averaging/\(average.name)' group (the recipe's averaging.\(average.name))")
            }
            try average.restore(record, file: file)
        }
    }

    /// The averages' validation figures for the epoch line ("swa top-1 91.20  ema top-1 90.85"), nil when none has any.
    static func progressNote(_ values: [String: Double], names: [String]) -> String? {
        let parts = names.compactMap { name in
            values["\(name)_val_top1"].flatMap { $0.isNaN ? nil : String(format: "%@ top-1 %.2f", name, $0) }
        }
        return parts.isEmpty ? nil : parts.joined(separator: "  ")
    }
}

/// `snapshots: cycle_ends`: a checkpoint `snapshot-K.h5` at the end of the phase's K-th cycle
/// (`Trainer.cycleEnds`), where a cyclical schedule stands at its easy end (the learning-rate trough
/// of warm restarts, the large-batch end of a cyclical batch size), and the test score of their
/// ensemble (mean softmax) beside the final model's: snapshot ensembles (Huang et al. 2017,
/// "Snapshot Ensembles: Train 1, get M for free"; Mu, Gholami et al. 2018 for cyclical batch sizes).
public enum SnapshotPolicy: String, Decodable, Sendable, Equatable {
    case cycleEnds = "cycle_ends"

    public init(from decoder: any Decoder) throws {
        let text = try? decoder.singleValueContainer().decode(String.self)
        guard let policy = text.flatMap(SnapshotPolicy.init(rawValue:)) else {
            throw RecipeError(path: decoder.path, problem: "expected cycle_ends, got \(text.map { "'\(shortenedForMessage($0))'" } ?? "another value")")
        }
        self = policy
    }

    /// The snapshot file of the K-th cycle end (K from 1).
    static func fileName(_ index: Int) -> String { "snapshot-\(index).h5" }
}
