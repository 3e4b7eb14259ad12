import EpicycleExport
import Foundation

/// What a run logs besides the per-epoch metrics files: one `steps.jsonl` row per step (the loss and
/// every value in force at that step) and a TensorBoard event file with the same values per step
/// (tags `step/<name>`) and every epoch's record (tags `epoch/<column>`), both at the global step.
///
/// Resuming from a checkpoint at step S keeps the rows up to S and drops the later ones (a run killed
/// after its last checkpoint has logged steps the resumed run takes again); the new event file starts
/// with TensorBoard's restart marker at S + 1, which makes it drop the earlier files' events from there.
/// Event files carry wall times, so they are the one thing a resumed run does not reproduce exactly.
final class StepLog {
    let stepsURL: URL
    private let steps: FileHandle
    private let events: TensorBoardEventWriter

    /// - Parameter resumedStep: the resumed checkpoint's step, nil for a fresh start.
    init(folder: String, resumedStep: Int?) throws {
        stepsURL = URL(fileURLWithPath: folder + "/steps.jsonl")
        var kept = ""
        if let resumedStep, let text = try? String(contentsOf: stepsURL, encoding: .utf8) {
            for line in text.split(separator: "\n") where Self.step(ofRow: line).map({ $0 <= resumedStep }) ?? false {
                kept += line + "\n"
            }
        }
        try replaceFile(stepsURL, with: kept)
        steps = try FileHandle(forWritingTo: stepsURL)
        try steps.seekToEnd()
        events = try TensorBoardEventWriter(folder: folder)
        if let resumedStep { try events.sessionStart(step: resumedStep + 1) }
    }

    deinit {
        try? steps.close()
    }

    /// The `step` field of a `steps.jsonl` row, nil for a row cut short by a kill.
    private static func step(ofRow line: Substring) -> Int? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
        return object["step"] as? Int
    }

    /// Logs step `step` (counted from 1 over the phase) of epoch `epoch` (from 1).
    /// - Parameter values: knob values and the objective's values at the step, by name.
    func step(_ step: Int, epoch: Int, loss: Double, values: [String: Double]) throws {
        let row = values.merging(["step": Double(step), "epoch": Double(epoch), "loss": loss]) { _, fixed in fixed }
        try steps.write(contentsOf: Data(try jsonLine(row).utf8))
        try events.scalars(Dictionary(uniqueKeysWithValues: row.filter { $0.key != "step" }.map { ("step/" + $0.key, $0.value) }),
                           step: step)
    }

    /// Logs an epoch's record at the step that ended it.
    func epoch(_ record: EpochRecord) throws {
        let fixed = ["train_loss": record.trainLoss, "train_top1": record.trainTop1, "val_loss": record.validationLoss,
                     "val_top1": record.validationTop1, "val_top5": record.validationTop5, "epoch": Double(record.epoch)]
        let values = record.knobs.merging(fixed) { _, fixed in fixed }
        try events.scalars(Dictionary(uniqueKeysWithValues: values.map { ("epoch/" + $0.key, $0.value) }), step: record.step)
    }
}
