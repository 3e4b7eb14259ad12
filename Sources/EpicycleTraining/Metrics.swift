import EpicycleCheckpoint
import EpicycleRuntime
import Foundation

/// How many rows of `logits` ([N, classes]) have their label among the `k` largest logits.
/// Ties count against the sample (a label tied with the k-th largest is not "in" the top k), so a
/// constant output never scores.
public func topKCorrect(logits: Tensor, labels: [Int32], k: Int) -> Int {
    precondition(logits.rank == 2 && logits.shape[0] == labels.count, "topKCorrect: logits \(logits.shape) for \(labels.count) labels")
    let classes = logits.shape[1]
    var correct = 0
    logits.scalars.withUnsafeBufferPointer { z in
        for row in 0..<labels.count {
            let base = row * classes
            let target = z[base + Int(labels[row])]
            var larger = 0
            for j in 0..<classes where j != Int(labels[row]) && z[base + j] >= target { larger += 1 }
            if larger < k { correct += 1 }
        }
    }
    return correct
}

/// Sums over an epoch's batches, weighted by batch size.
public struct RunningMetrics {
    public private(set) var images = 0
    private var lossSum = 0.0
    private var top1Correct = 0
    private var top5Correct = 0
    private var droppedSamples = 0

    public init() {}

    /// Continues the sums a mid-epoch checkpoint saved; nil starts from zero.
    public init(continuing progress: EpochProgress?) {
        guard let progress else { return }
        images = progress.images
        lossSum = progress.lossSum
        top1Correct = progress.top1Correct
        top5Correct = progress.top5Correct
        droppedSamples = progress.droppedSamples
    }

    /// The sums so far, as a mid-epoch checkpoint stores them.
    public var progress: EpochProgress {
        EpochProgress(images: images, lossSum: lossSum, top1Correct: top1Correct, top5Correct: top5Correct,
                      droppedSamples: droppedSamples)
    }

    /// - Parameter dropped: how many of the batch's samples data selection left out of the gradient.
    public mutating func add(loss: Float, logits: Tensor, labels: [Int32], dropped: Int = 0) {
        images += labels.count
        droppedSamples += dropped
        lossSum += Double(loss) * Double(labels.count)
        top1Correct += topKCorrect(logits: logits, labels: labels, k: 1)
        top5Correct += topKCorrect(logits: logits, labels: labels, k: min(5, logits.shape[1]))
    }

    public var loss: Double { images == 0 ? .nan : lossSum / Double(images) }
    /// Percent.
    public var top1: Double { images == 0 ? .nan : 100 * Double(top1Correct) / Double(images) }
    /// Percent (top-k with k = min(5, classes)).
    public var top5: Double { images == 0 ? .nan : 100 * Double(top5Correct) / Double(images) }
    /// The share in [0, 1] of the epoch's samples that data selection left out of the gradient.
    public var droppedShare: Double { images == 0 ? .nan : Double(droppedSamples) / Double(images) }
}

/// One row of the metrics history: an epoch's training and validation figures and the knob values
/// that were in force.
public struct EpochRecord: Codable, Equatable, Sendable {
    public var epoch: Int
    public var step: Int
    public var trainLoss: Double
    public var trainTop1: Double
    public var validationLoss: Double
    public var validationTop1: Double
    public var validationTop5: Double
    public var seconds: Double
    public var imagesPerSecond: Double
    /// Knob name → value during this epoch (per-step knobs: the value at the epoch's first step), and
    /// the objective's scheduled values the same way (distillation: `logits.temperature`, `hint.layer2.weight`…).
    public var knobs: [String: Double]

    public init(epoch: Int, step: Int, trainLoss: Double, trainTop1: Double, validationLoss: Double,
                validationTop1: Double, validationTop5: Double, seconds: Double, imagesPerSecond: Double,
                knobs: [String: Double]) {
        self.epoch = epoch
        self.step = step
        self.trainLoss = trainLoss
        self.trainTop1 = trainTop1
        self.validationLoss = validationLoss
        self.validationTop1 = validationTop1
        self.validationTop5 = validationTop5
        self.seconds = seconds
        self.imagesPerSecond = imagesPerSecond
        self.knobs = knobs
    }

    enum CodingKeys: String, CodingKey {
        case epoch, step, trainLoss = "train_loss", trainTop1 = "train_top1", validationLoss = "val_loss",
             validationTop1 = "val_top1", validationTop5 = "val_top5", seconds, imagesPerSecond = "img_per_s", knobs
    }

    /// Fixed columns then the knobs in name order: the CSV header and the checkpoint's table columns.
    public static func columns(knobs: [String]) -> [String] {
        ["epoch", "step", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "seconds", "img_per_s"] + knobs.sorted()
    }

    public func values(knobs: [String]) -> [Double] {
        [Double(epoch), Double(step), trainLoss, trainTop1, validationLoss, validationTop1, validationTop5, seconds,
         imagesPerSecond] + knobs.sorted().map { self.knobs[$0] ?? .nan }
    }

    public init(columns: [String], values: [Double]) {
        var byName: [String: Double] = [:]
        for (name, value) in zip(columns, values) { byName[name] = value }
        let fixed = Set(Self.columns(knobs: []))
        self.init(epoch: Int(byName["epoch"] ?? 0), step: Int(byName["step"] ?? 0), trainLoss: byName["train_loss"] ?? .nan,
                  trainTop1: byName["train_top1"] ?? .nan, validationLoss: byName["val_loss"] ?? .nan,
                  validationTop1: byName["val_top1"] ?? .nan, validationTop5: byName["val_top5"] ?? .nan,
                  seconds: byName["seconds"] ?? .nan, imagesPerSecond: byName["img_per_s"] ?? .nan,
                  // NaN is how `values(knobs:)` writes a column the epoch has no value for.
                  knobs: byName.filter { !fixed.contains($0.key) && !$0.value.isNaN })
    }
}

/// Appends each epoch's record to `metrics.csv` and `metrics.jsonl` in a run's folder. The trainer
/// appends a record only once `last.h5` holds it, and opening the log rewrites both files from the
/// history (the resumed `last.h5`'s metrics table), so they are never ahead of the checkpoint and,
/// after a kill between the checkpoint and the appends or in the middle of one, a resume brings
/// them back to exactly its epochs.
public struct MetricsLog {
    public let folder: URL
    private let knobNames: [String]

    public init(folder: URL, knobNames: [String], history: [EpochRecord]) throws {
        self.folder = folder
        self.knobNames = knobNames
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var csv = EpochRecord.columns(knobs: knobNames).joined(separator: ",") + "\n"
        var jsonl = ""
        for record in history {
            csv += Self.csvLine(record, knobNames)
            jsonl += try jsonLine(record)
        }
        try replaceFile(csvURL, with: csv)
        try replaceFile(jsonlURL, with: jsonl)
    }

    public var csvURL: URL { folder.appendingPathComponent("metrics.csv") }
    public var jsonlURL: URL { folder.appendingPathComponent("metrics.jsonl") }

    public func append(_ record: EpochRecord) throws {
        try appendText(Self.csvLine(record, knobNames), to: csvURL)
        FaultInjection.reached(.metrics)
        try appendText(try jsonLine(record), to: jsonlURL)
        FaultInjection.reached(.metrics)
    }

    private static func csvLine(_ record: EpochRecord, _ knobNames: [String]) -> String {
        record.values(knobs: knobNames).map { value in
            value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(format: "%.6g", value)
        }.joined(separator: ",") + "\n"
    }

    private func appendText(_ text: String, to url: URL) throws {
        let handle = try FileHandle(forWritingTo: url)
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(text.utf8))
    }
}

/// Writes `text` to `<file>.tmp` and renames it over `url`: a kill leaves the old file or the new
/// one, and at worst that `.tmp`, which the next rewrite reuses (Foundation's atomic write would
/// leave a temporary file under a new name each time).
func replaceFile(_ url: URL, with text: String) throws {
    let temporary = url.appendingPathExtension("tmp")
    try Data(text.utf8).write(to: temporary)
    guard rename(temporary.path, url.path) == 0 else {
        throw CocoaError(.fileWriteUnknown, userInfo: [
            NSFilePathErrorKey: url.path,
            NSLocalizedDescriptionKey: "cannot rename '\(temporary.path)' to '\(url.path)': \(String(cString: strerror(errno)))",
        ])
    }
}

/// One JSON Lines row: `value` with sorted keys, non-finite numbers as "inf", "-inf" and "nan".
func jsonLine(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return String(decoding: try encoder.encode(value), as: UTF8.self) + "\n"
}
