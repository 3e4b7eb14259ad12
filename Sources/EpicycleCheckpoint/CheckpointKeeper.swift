import Foundation

/// The files a run keeps in its folder: `last.h5` after every save, `best.h5` whenever validation
/// top-1 improves, and optionally `epoch-<n>.h5` every `everyEpochs` epochs.
///
/// Why the set stays complete whenever the process dies: each file is replaced atomically (written
/// to `<file>.tmp`, synced, renamed), and `last.h5` is the only file `--resume` reads, so it is the
/// save's commit point and is written last. A kill before `last.h5` is renamed leaves the previous
/// `last.h5`; resume repeats the epoch, which is deterministic, and so writes the same `best.h5` and
/// `epoch-<n>.h5` again (a `best.h5` already written for that epoch is rewritten, because the older
/// record's best is lower). A kill after it finds those files complete. The caller appends to the
/// metrics files only after `save` returns, and rebuilds them from `last.h5` on resume, so they are
/// never ahead of it. Work after a phase's last save fits the same rule: it is redone on resume
/// unless `last.h5` records it. A mid-epoch save (Ctrl-C) writes `last.h5` alone, so the other files
/// only ever hold the state at an epoch's end. Opening the folder removes the `.tmp` files of writes
/// a kill cut short.
public struct CheckpointKeeper {
    public let directory: String
    /// Keep a numbered copy when the completed epoch count is a multiple of this; nil keeps none.
    public let everyEpochs: Int?
    /// The best validation top-1 (percent) saved so far.
    public private(set) var bestTop1: Double?

    /// Creates `directory` (and its parents) if needed and removes stale `*.h5.tmp` files from it.
    /// - Parameter bestTop1: the best so far when resuming, from the resumed checkpoint's training record.
    /// - Precondition: `everyEpochs`, if given, is positive.
    public init(directory: String, everyEpochs: Int? = nil, bestTop1: Double? = nil) throws {
        precondition(everyEpochs.map { $0 > 0 } ?? true, "CheckpointKeeper: everyEpochs must be positive")
        self.directory = directory
        self.everyEpochs = everyEpochs
        self.bestTop1 = bestTop1
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name.hasSuffix(".h5.tmp") {
                try FileManager.default.removeItem(atPath: directory + "/" + name)
            }
        } catch {
            throw CheckpointError.writeFailed(file: directory, action: "preparing the checkpoint folder",
                                              detail: error.localizedDescription)
        }
    }

    public var lastPath: String { directory + "/last.h5" }
    public var bestPath: String { directory + "/best.h5" }
    /// The numbered copy after `epoch` completed epochs, e.g. `epoch-0010.h5`.
    public func epochPath(_ epoch: Int) -> String {
        directory + String(format: "/epoch-%04d.h5", epoch)
    }

    /// Saves `checkpoint` at an epoch's end: as `best.h5` when `validationTop1` beats every earlier
    /// value, as `epoch-<n>.h5` when its training record's epoch is a multiple of `everyEpochs`, and
    /// then as `last.h5`. The training record's `bestTop1` is set to the best so far (this one
    /// included) before writing.
    /// - Returns: the paths written, in order.
    @discardableResult
    public mutating func save(_ checkpoint: Checkpoint, validationTop1: Double?) throws -> [String] {
        var checkpoint = checkpoint
        let improved = validationTop1.map { top1 in bestTop1.map { top1 > $0 } ?? true } ?? false
        let best = improved ? validationTop1 : bestTop1
        checkpoint.training?.bestTop1 = best

        var written: [String] = []
        if improved { written.append(bestPath) }
        if let everyEpochs, let epoch = checkpoint.training?.epoch, epoch > 0, epoch % everyEpochs == 0 {
            written.append(epochPath(epoch))
        }
        written.append(lastPath)
        for path in written { try checkpoint.write(to: path) }
        bestTop1 = best
        return written
    }

    /// Saves the state in the middle of an epoch (a Ctrl-C) as `last.h5` only, with the best so far recorded.
    public func saveMidEpoch(_ checkpoint: Checkpoint) throws {
        var checkpoint = checkpoint
        checkpoint.training?.bestTop1 = bestTop1
        try checkpoint.write(to: lastPath)
    }
}
