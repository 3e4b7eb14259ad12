// HDF5 checkpoints of models, optimizer state and training state (see DESIGN.md, "Checkpoint layout").
import EpicycleRuntime
import Foundation

/// The version of Epicycle recorded in the checkpoints it writes.
public let epicycleSoftwareVersion = "0.1.0"

/// Everything a run saves: the model, and optionally the optimizer, the training state and the
/// distillation adapters. A plain value: build it from live state, `write(to:)` it, `read(from:)` it
/// back and `loadModel(into:filter:)` to copy the tensors into a model.
///
/// File layout (HDF5, version 1; every group lists its links in creation order):
///
///     /                     attrs format = "epicycle-checkpoint", format_version = 1,
///                                 created (ISO 8601), software_version
///     /model                attrs architecture (model spec, YAML text), num_classes
///     /model/parameters/<name>   float32, PyTorch state_dict names and shapes ("layer1.0.conv1.weight")
///     /model/buffers/<name>      float32 (running_mean, running_var) or int64 0-d (num_batches_tracked)
///     /data                 attrs dataset (string), height, width, channels (int64), class_names
///                                 (strings [K], "" where the dataset names none); when present
///     /data/mean, /data/std      float32 [channels]: x = (pixel / 255 − mean[c]) / std[c]
///     /data/classes              int64 [K], K = num_classes: output i stands for the original label classes[i]
///     /optimizer            attrs kind (string), each hyper-parameter (float64), each counter (int64)
///     /optimizer/state/<name>    float32; name = "<parameter name>.<state>", e.g.
///                                "layer1.0.conv1.weight.momentum_buffer" (PyTorch's state keys)
///     /training             attrs program, epoch, step, cycle_position, seed, recipe, best_top1 (when known);
///                           in a mid-epoch (Ctrl-C) save also epoch_images, epoch_loss_sum,
///                           epoch_top1_correct, epoch_top5_correct (the epoch's running sums)
///     /training/rng_state   uint64 words
///     /training/metrics     float64 [epochs, columns], attr columns (strings)
///     /adapters/parameters/<name>, /adapters/buffers/<name>   as under /model, when present
///     /averaging/<name>     attr updates (int64): a running average of the model's weights (swa, ema),
///                           with parameters/ and buffers/ as under /model; in a run's checkpoints only
///
/// With h5py: `d = f["data"]; d["mean"][:]`, `d["classes"][:]`, `[n.decode() for n in d.attrs["class_names"]]`.
///
/// Every stored byte is checksummed, so damage is reported rather than loaded: non-empty tensors are
/// single chunks with a Fletcher-32 checksum; scalars and empty tensors sit in compact layout inside
/// their object header; metadata carries HDF5's own checksums (file format 1.10). Text attributes
/// are fixed-length UTF-8 strings for the same reason (h5py reads them as `bytes`: `.decode()`).
public struct Checkpoint {
    /// The model spec as YAML text.
    public var architecture: String
    public var numClasses: Int
    public var model: StateRecord
    public var optimizer: OptimizerRecord?
    public var training: TrainingRecord?
    /// Distillation regressors and other trainable extras beside the model.
    public var adapters: StateRecord?
    /// The input pipeline the model was trained with (`/data`); nil in checkpoints written before it existed.
    public var input: InputPipeline?
    /// The running weight averages of the run (`/averaging`), so a resume continues them exactly.
    public var averages: [AveragedWeights] = []
    /// When the checkpoint was made, ISO 8601 (UTC).
    public var created: String
    public var softwareVersion: String
    /// The file this checkpoint was read from, named in error messages; empty when built in memory.
    public internal(set) var source: String = ""

    public init(architecture: String, numClasses: Int, model: StateRecord, optimizer: OptimizerRecord? = nil,
                training: TrainingRecord? = nil, adapters: StateRecord? = nil, input: InputPipeline? = nil,
                created: String = Checkpoint.timestamp(), softwareVersion: String = epicycleSoftwareVersion) {
        self.architecture = architecture
        self.numClasses = numClasses
        self.model = model
        self.optimizer = optimizer
        self.training = training
        self.adapters = adapters
        self.input = input
        self.created = created
        self.softwareVersion = softwareVersion
    }

    /// A snapshot of a live model (and adapters), sharing tensor storage until either side changes.
    public init(model state: ModuleState, architecture: String, numClasses: Int, optimizer: OptimizerRecord? = nil,
                training: TrainingRecord? = nil, adapters: ModuleState? = nil, input: InputPipeline? = nil,
                created: String = Checkpoint.timestamp()) {
        self.init(architecture: architecture, numClasses: numClasses, model: StateRecord(state), optimizer: optimizer,
                  training: training, adapters: adapters.map(StateRecord.init), input: input, created: created)
    }

    /// The current time as ISO 8601 in UTC, e.g. "2026-05-14T09:30:12Z".
    public static func timestamp(_ date: Date = Date()) -> String {
        ISO8601DateFormatter().string(from: date)
    }

    /// The `format` attribute every Epicycle checkpoint carries.
    public static let formatName = "epicycle-checkpoint"
    /// The layout version this code writes and reads.
    public static let formatVersion = 1
}

/// A running average of a model's weights as a checkpoint keeps it (`/averaging/<name>`).
public struct AveragedWeights {
    /// "swa" or "ema".
    public var name: String
    /// How many times the average was updated (SWA: models averaged; EMA: optimizer steps).
    public var updates: Int
    public var model: StateRecord

    public init(name: String, updates: Int, model: StateRecord) {
        self.name = name
        self.updates = updates
        self.model = model
    }
}

/// Named parameters and buffers, as in a `ModuleState` but holding values rather than live objects.
public struct StateRecord {
    public var parameters: [(name: String, tensor: Tensor)]
    public var buffers: [(name: String, value: Buffer.Value)]

    public init(parameters: [(name: String, tensor: Tensor)] = [], buffers: [(name: String, value: Buffer.Value)] = []) {
        self.parameters = parameters
        self.buffers = buffers
    }

    public init(_ state: ModuleState) {
        parameters = state.parameters.map { ($0.name, $0.parameter.value) }
        buffers = state.buffers.map { ($0.name, $0.buffer.value) }
    }

    /// The number of scalars in the parameters.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.tensor.count } }
}

/// An optimizer's state in plain values, filled by the optimizer and read back on resume.
public struct OptimizerRecord {
    /// The optimizer, e.g. "sgd", "adamw".
    public var kind: String
    /// Hyper-parameters by PyTorch's names: "lr", "momentum", "weight_decay", "beta1", …
    public var hyperparameters: [String: Double]
    /// Integer state such as Adam's step count.
    public var counters: [String: Int64]
    /// Per-parameter state named "<parameter name>.<state>", with PyTorch's state names:
    /// "momentum_buffer" (SGD), "exp_avg" and "exp_avg_sq" (Adam, AdamW).
    public var tensors: [(name: String, tensor: Tensor)]

    public init(kind: String, hyperparameters: [String: Double] = [:], counters: [String: Int64] = [:],
                tensors: [(name: String, tensor: Tensor)] = []) {
        self.kind = kind
        self.hyperparameters = hyperparameters
        self.counters = counters
        self.tensors = tensors
    }
}

/// Where a run stands, so it can resume exactly or a fine-tune can continue the cycle.
public struct TrainingRecord {
    public enum Program: String, CaseIterable, Sendable {
        case pretrain, finetune, distill
    }

    public var program: Program
    /// Epochs completed when the checkpoint was written (a resumed run starts at this epoch).
    public var epoch: Int
    /// Optimizer steps completed.
    public var step: Int
    /// Position in the hyper-parameter cycle, in epochs from the cycle's start (fractional for
    /// per-step schedules). A fine-tune started from a pretraining checkpoint continues from here.
    public var cyclePosition: Double
    public var seed: UInt64
    /// The random generators' state words, e.g. `RandomGenerator.stateWords` of each stream in turn.
    public var rngState: [UInt64]
    /// The full recipe as YAML text.
    public var recipe: String
    /// Best validation top-1 accuracy so far, in percent (as timm reports it); nil before any validation.
    public var bestTop1: Double?
    /// One row per evaluated epoch.
    public var metrics: MetricsTable
    /// The end-of-phase test scores, recorded once the phase is complete (attrs `test_*`).
    public var test: TestScores?
    /// The training figures of the epoch in progress when the checkpoint was saved mid-epoch; nil at an epoch's end.
    public var epochProgress: EpochProgress?

    public init(program: Program, epoch: Int, step: Int, cyclePosition: Double, seed: UInt64, rngState: [UInt64],
                recipe: String, bestTop1: Double? = nil, metrics: MetricsTable = MetricsTable(columns: []),
                epochProgress: EpochProgress? = nil) {
        self.program = program
        self.epoch = epoch
        self.step = step
        self.cyclePosition = cyclePosition
        self.seed = seed
        self.rngState = rngState
        self.recipe = recipe
        self.bestTop1 = bestTop1
        self.metrics = metrics
        self.epochProgress = epochProgress
    }
}

/// The running sums of a part-finished epoch's training batches, so that an epoch resumed after a
/// Ctrl-C reports the same training loss and accuracy as one that ran through.
public struct EpochProgress: Equatable, Sendable {
    public var images: Int
    /// Σ batch loss × batch size.
    public var lossSum: Double
    public var top1Correct: Int
    public var top5Correct: Int
    /// Samples the step's data selection left out of the gradient (attr `epoch_dropped`; 0 without selection).
    public var droppedSamples: Int

    public init(images: Int, lossSum: Double, top1Correct: Int, top5Correct: Int, droppedSamples: Int = 0) {
        self.images = images
        self.lossSum = lossSum
        self.top1Correct = top1Correct
        self.top5Correct = top5Correct
        self.droppedSamples = droppedSamples
    }
}

/// A table of numbers with named columns, stored as a float64 dataset with a `columns` attribute so
/// h5py users can write `pandas.DataFrame(d[:], columns=d.attrs["columns"])`. Missing values are NaN.
public struct MetricsTable: Equatable {
    public var columns: [String]
    /// Each row has one value per column.
    public var rows: [[Double]]

    public init(columns: [String], rows: [[Double]] = []) {
        self.columns = columns
        self.rows = rows
    }

    /// Appends one row.
    /// - Precondition: one value per column.
    public mutating func append(_ row: [Double]) {
        precondition(row.count == columns.count, "MetricsTable: \(row.count) values for \(columns.count) columns")
        rows.append(row)
    }

    /// The values of the named column, or nil if there is no such column.
    public func column(_ name: String) -> [Double]? {
        columns.firstIndex(of: name).map { index in rows.map { $0[index] } }
    }
}

/// How images are turned into the model's input, so a reader of the checkpoint needs nothing else
/// (stored under `/data`): the image shape, per-channel normalisation of pixels scaled to [0, 1]
/// (`x = (pixel / 255 − mean[c]) / std[c]`, channels last), and which original labels the outputs stand for.
public struct InputPipeline: Equatable, Sendable {
    /// The dataset's catalogue name or folder, e.g. "fashion-mnist".
    public var dataset: String
    public var height: Int
    public var width: Int
    public var channels: Int
    public var mean: [Float]  // [channels]
    public var standardDeviation: [Float]  // [channels]
    /// Output index i stands for the dataset's original label `classes[i]`.
    public var classes: [Int]
    /// The class names, one per output index ("" where the dataset has none).
    public var classNames: [String]

    public init(dataset: String, height: Int, width: Int, channels: Int, mean: [Float], standardDeviation: [Float],
                classes: [Int], classNames: [String]) {
        self.dataset = dataset
        self.height = height
        self.width = width
        self.channels = channels
        self.mean = mean
        self.standardDeviation = standardDeviation
        self.classes = classes
        self.classNames = classNames
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
    /// The weight averages' scores (`swa.h5`, `ema.h5`), when the run kept them.
    public var swa: SplitScore?
    public var ema: SplitScore?
    /// The snapshot ensemble's score (mean softmax of the `snapshot-K.h5`), and how many snapshots it averaged.
    public var snapshotEnsemble: SplitScore?
    public var snapshots: Int?

    public init(last: SplitScore, best: SplitScore, bestEpoch: Int) {
        self.last = last
        self.best = best
        self.bestEpoch = bestEpoch
    }

    /// The optional scores by the name of their attributes (`test_<name>_top1`) and JSON keys.
    public static var optionalScoreNames: [(name: String, score: WritableKeyPath<TestScores, SplitScore?>)] {
        [("swa", \.swa), ("ema", \.ema), ("snapshot_ensemble", \.snapshotEnsemble)]
    }

    enum CodingKeys: String, CodingKey {
        case last, best, bestEpoch = "best_epoch", swa, ema, snapshotEnsemble = "snapshot_ensemble", snapshots
    }

    /// The optional scores as they follow the final model's in summaries: ", SWA 91.20 %, EMA 90.85 %,
    /// snapshot ensemble of 3 91.40 %" (test top-1), "" without any.
    public var othersDescription: String {
        [("SWA", swa), ("EMA", ema), ("snapshot ensemble of \(snapshots ?? 0)", snapshotEnsemble)].compactMap { name, score in
            score.map { String(format: ", %@ %.2f %%", name, $0.top1) }
        }.joined()
    }
}

extension InputPipeline {
    /// What makes this pipeline unusable with a model of `numClasses` outputs, or nil when it is sound:
    /// writing and reading a checkpoint check the same rules.
    func problem(numClasses: Int) -> String? {
        let limits = CheckpointLimits.self
        guard dataset.utf8.count <= limits.textBytes else { return "names a dataset of more than \(limits.textBytes) bytes" }
        for (name, value) in [("height", height), ("width", width)] where !(1...limits.imageSide).contains(value) {
            return "has \(name) \(value), expected 1…\(limits.imageSide)"
        }
        guard (1...limits.imageChannels).contains(channels) else {
            return "has \(channels) channels, expected 1…\(limits.imageChannels)"
        }
        guard mean.count == channels, standardDeviation.count == channels else {
            return "has \(mean.count) means and \(standardDeviation.count) standard deviations for \(channels) channels"
        }
        if let bad = mean.firstIndex(where: { !$0.isFinite }) { return "has mean[\(bad)] = \(mean[bad]), expected a finite number" }
        if let bad = standardDeviation.firstIndex(where: { !($0.isFinite && $0 > 0) }) {
            return "has std[\(bad)] = \(standardDeviation[bad]), expected a finite number > 0"
        }
        guard classes.count == numClasses else { return "lists \(classes.count) classes, but the model's num_classes is \(numClasses)" }
        if let bad = classes.firstIndex(where: { !(0...limits.label).contains($0) }) {
            return "has classes[\(bad)] = \(classes[bad]), expected an original label in 0…\(limits.label)"
        }
        guard Set(classes).count == classes.count else { return "lists an original label twice in classes" }
        guard classNames.count == classes.count else { return "has \(classNames.count) class names for \(classes.count) classes" }
        if let bad = classNames.firstIndex(where: { $0.utf8.count > limits.textBytes }) {
            return "has class_names[\(bad)] longer than \(limits.textBytes) bytes"
        }
        return nil
    }
}

extension TrainingRecord {
    /// The first field that makes this record unusable, as (object, reason), or nil when it is sound:
    /// out of range, or contradicting the rest of the record. Writing and reading check the same rules.
    func problem() -> (object: String, reason: String)? {
        let limits = CheckpointLimits.self
        func attribute(_ name: String) -> String { "attribute '\(name)' of '/training'" }
        let table = "'/training/metrics'"
        guard (0...limits.epochs).contains(epoch) else { return (attribute("epoch"), "is \(epoch), expected 0…\(limits.epochs)") }
        guard (0...limits.steps).contains(step) else { return (attribute("step"), "is \(step), expected 0…\(limits.steps)") }
        guard cyclePosition.isFinite, (0...Double(2 * limits.epochs)).contains(cyclePosition) else {
            return (attribute("cycle_position"), "is \(cyclePosition), expected a finite number of epochs in 0…\(2 * limits.epochs)")
        }
        if let bestTop1, !(bestTop1.isFinite && (0...100).contains(bestTop1)) {
            return (attribute("best_top1"), "is \(bestTop1), expected a percentage in 0…100")
        }
        guard recipe.utf8.count <= limits.recipeBytes else {
            return (attribute("recipe"), "has \(recipe.utf8.count) bytes, expected at most \(limits.recipeBytes)")
        }
        guard metrics.rows.count == epoch else {
            return (table, "has \(metrics.rows.count) rows for epoch \(epoch); a checkpoint holds one row per completed epoch")
        }
        if let epochs = metrics.column("epoch"), let row = epochs.indices.first(where: { epochs[$0] != Double($0 + 1) }) {
            return (table, "has epoch \(epochs[row]) in row \(row), expected \(row + 1)")
        }
        if let steps = metrics.column("step") {
            // Whole step counts that never decrease and end at most at the record's step; the resumed
            // loop turns them into batch counts.
            var previous = 0.0
            for (row, value) in steps.enumerated() {
                guard value.rounded() == value, (previous...Double(step)).contains(value) else {
                    return (table, "has step \(value) in row \(row), expected a whole number in \(Int(previous))…\(step)")
                }
                previous = value
            }
        }
        return nil
    }

    /// Checks that a phase of `epochs` epochs can continue from this record, as read from `file`:
    /// it ends no later than the phase, and the steps beyond the last completed epoch are fewer
    /// than the batches of the epoch they belong to (`batchesInEpoch(epoch)`, asked only then).
    public func checkResumable(file: String, epochs: Int, batchesInEpoch: (Int) -> Int) throws {
        guard epoch <= epochs else {
            throw CheckpointError.invalidValue(file: file, object: "attribute 'epoch' of '/training'",
                                               reason: "is \(epoch), but the recipe's phase has \(epochs) epochs")
        }
        let stepsAfterLastEpoch = step - Int(metrics.column("step")?.last ?? 0)
        let batches = epoch < epochs ? batchesInEpoch(epoch) : 1
        guard stepsAfterLastEpoch < batches else {
            throw CheckpointError.invalidValue(
                file: file, object: "attribute 'step' of '/training'",
                reason: "is \(step), \(stepsAfterLastEpoch) steps after the last completed epoch, but epoch \(epoch + 1) has "
                    + "\(epoch < epochs ? "\(batches) batches" : "no batches left"); the checkpoint is damaged")
        }
    }
}

/// The largest values a checkpoint may hold, so that nothing read from a file sizes an allocation or
/// a loop beyond what a real run produces. Chosen so that products the programs form (epochs × steps
/// per epoch, height × width × channels) stay far inside `Int`.
public enum CheckpointLimits {
    /// Classes of a model (ImageNet-21k has 21,841).
    public static let classes = 1 << 20
    /// An original label in a dataset.
    public static let label = 1 << 20
    /// Image height or width.
    public static let imageSide = 1 << 15
    /// Image channels.
    public static let imageChannels = 1 << 12
    /// Completed epochs of one phase.
    public static let epochs = 1 << 20
    /// Optimizer steps of one phase: 2^40 (a million steps a second for twelve days); epochs × steps stays below 2^63.
    public static let steps = 1 << 40
    /// The model spec (a few lines of YAML).
    public static let architectureBytes = 1 << 16
    /// The recipe text.
    public static let recipeBytes = 1 << 22
    /// Any other text: names, dates, versions.
    public static let textBytes = 1 << 12
}
