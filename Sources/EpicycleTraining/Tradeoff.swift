import Foundation

/// One point of a one-run accuracy-vs-budget curve (Portes et al. 2022, *Fast Benchmarking of Accuracy
/// vs. Training Time with Cyclic Learning Rates*): the model at the end of one of a phase's cycles
/// (`Trainer.cycleEnds`; with warm restarts and T_mult = 2 after epochs T₀, 3T₀, 7T₀, …) stands in
/// for a full run with that budget.
public struct TradeoffPoint: Codable, Equatable, Sendable {
    /// Epochs of the phase completed (from 1).
    public var epoch: Int
    /// Training samples seen since the phase began (NaN for epochs of a checkpoint written before
    /// the budget columns existed).
    public var images: Double
    /// Wall-clock seconds of training since the phase began, evaluation (validation, test, batch-norm
    /// recalibration) and checkpoint writes excluded; after `--resume` only the attempts' training time.
    public var seconds: Double
    public var validationTop1: Double
    /// Test top-1 at this cycle end: for the curve only, never for selection.
    public var testTop1: Double

    enum CodingKeys: String, CodingKey {
        case epoch, images, seconds, validationTop1 = "val_top1", testTop1 = "test_top1"
    }
}

/// The metrics columns a phase keeps its budget and cycle-end test scores in, so that the checkpoint
/// holds every point and `--resume` keeps the earlier ones.
public enum TradeoffColumns {
    /// Training samples seen since the phase began, after each epoch.
    public static let images = "images_seen"
    /// Training seconds since the phase began, after each epoch (see `TradeoffPoint.seconds`).
    public static let seconds = "train_seconds"
    /// Test top-1 after a cycle end other than the phase's last epoch (whose test score is the
    /// phase's own, in `test.json`); NaN in every other epoch.
    public static let testTop1 = "cycle_end_test_top1"
    public static let all = [images, seconds, testTop1]

    /// The columns of the epoch after `previous` (nil for the phase's first epoch) that trained on
    /// `images` samples in `seconds`.
    /// The cycle-end test score only at a cycle end: elsewhere the table holds NaN, which reads back as
    /// no value (`EpochRecord(columns:values:)`).
    static func values(after previous: EpochRecord?, images: Int, seconds: Double, cycleEndTestTop1: Double?) -> [String: Double] {
        [Self.images: (previous?.knobs[Self.images] ?? 0) + Double(images),
         Self.seconds: (previous?.knobs[Self.seconds] ?? 0) + seconds]
            .merging(cycleEndTestTop1.map { [testTop1: $0] } ?? [:]) { value, _ in value }
    }
}

/// The tradeoff points of a finished phase: one per cycle end (epochs from 0), the last with the
/// phase's test score of its final weights. Epochs of a checkpoint written before the budget
/// columns existed give NaN figures.
func tradeoffPoints(history: [EpochRecord], cycleEnds: [Int], finalTestTop1: Double) -> [TradeoffPoint] {
    cycleEnds.filter { history.indices.contains($0) }.map { epoch in
        let record = history[epoch]
        return TradeoffPoint(epoch: record.epoch, images: record.knobs[TradeoffColumns.images] ?? .nan,
                             seconds: record.knobs[TradeoffColumns.seconds] ?? .nan, validationTop1: record.validationTop1,
                             testTop1: epoch == history.count - 1 ? finalTestTop1 : record.knobs[TradeoffColumns.testTop1] ?? .nan)
    }
}

/// Writes `tradeoff.csv` (point, epoch, images, seconds, val_top1, test_top1) to a phase's folder.
func writeTradeoffCSV(_ points: [TradeoffPoint], folder: String) throws {
    var text = "point,epoch,images,seconds,val_top1,test_top1\n"
    for (index, point) in points.enumerated() {
        text += "\(index + 1),\(point.epoch)," + String(format: "%.0f,%.3f,%.4f,%.4f\n", point.images, point.seconds,
                                                          point.validationTop1, point.testTop1)
    }
    try Data(text.utf8).write(to: URL(fileURLWithPath: folder + "/tradeoff.csv"), options: .atomic)
}
