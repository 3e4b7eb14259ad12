import Foundation

/// The files a run keeps in its folder: `last.h5` after every save, `best.h5` whenever validation
/// top-1 improves, and optionally `epoch-<n>.h5` every `everyEpochs` epochs. Each write is atomic.
public struct CheckpointKeeper {
    public let directory: String
    /// Keep a numbered copy when the completed epoch count is a multiple of this; nil keeps none.
    public let everyEpochs: Int?
    /// The best validation top-1 (percent) saved so far.
    public private(set) var bestTop1: Double?

    /// Creates `directory` (and its parents) if needed.
    /// - Parameter bestTop1: the best so far when resuming, from the resumed checkpoint's training record.
    /// - Precondition: `everyEpochs`, if given, is positive.
    public init(directory: String, everyEpochs: Int? = nil, bestTop1: Double? = nil) throws {
        precondition(everyEpochs.map { $0 > 0 } ?? true, "CheckpointKeeper: everyEpochs must be positive")
        self.directory = directory
        self.everyEpochs = everyEpochs
        self.bestTop1 = bestTop1
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CheckpointError.writeFailed(file: directory, action: "creating the checkpoint folder",
                                              detail: error.localizedDescription)
        }
    }

    public var lastPath: String { directory + "/last.h5" }
    public var bestPath: String { directory + "/best.h5" }
    /// The numbered copy after `epoch` completed epochs, e.g. `epoch-0010.h5`.
    public func epochPath(_ epoch: Int) -> String {
        directory + String(format: "/epoch-%04d.h5", epoch)
    }

    /// Saves `checkpoint` as `last.h5`, as `best.h5` when `validationTop1` beats every earlier value,
    /// and as `epoch-<n>.h5` when its training record's epoch is a multiple of `everyEpochs`. The
    /// training record's `bestTop1` is set to the best so far (this one included) before writing.
    /// - Returns: the paths written, in order.
    @discardableResult
    public mutating func save(_ checkpoint: Checkpoint, validationTop1: Double?) throws -> [String] {
        var checkpoint = checkpoint
        let improved = validationTop1.map { top1 in bestTop1.map { top1 > $0 } ?? true } ?? false
        let best = improved ? validationTop1 : bestTop1
        checkpoint.training?.bestTop1 = best

        var written = [lastPath]
        try checkpoint.write(to: lastPath)
        if improved {
            try checkpoint.write(to: bestPath)
            written.append(bestPath)
        }
        bestTop1 = best
        if let everyEpochs, let epoch = checkpoint.training?.epoch, epoch > 0, epoch % everyEpochs == 0 {
            try checkpoint.write(to: epochPath(epoch))
            written.append(epochPath(epoch))
        }
        return written
    }
}
