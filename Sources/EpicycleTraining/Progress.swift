import Foundation

/// Reports training progress: a redrawn bar with ETA, throughput and the current knob values when
/// standard error is a terminal; one plain line per epoch otherwise (logs, CI, pipes).
public final class ProgressReporter {
    public let isTerminal: Bool
    private let quiet: Bool
    private var lastDraw = 0.0

    public init(quiet: Bool = false, isTerminal: Bool = isatty(STDERR_FILENO) == 1) {
        self.quiet = quiet
        self.isTerminal = isTerminal
    }

    /// Called after each training step; redraws at most ten times a second.
    public func step(phase: String, epoch: Int, epochs: Int, batch: Int, batches: Int, imagesPerSecond: Double,
                     secondsLeft: Double, loss: Double, knobs: [String: Double], extra: String = "") {
        guard isTerminal, !quiet else { return }
        let now = ProcessInfo.processInfo.systemUptime
        guard now - lastDraw >= 0.1 || batch == batches else { return }
        lastDraw = now
        let width = 24
        let filled = batches == 0 ? width : width * batch / batches
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let line = "\(phase) epoch \(epoch + 1)/\(epochs) \(bar) \(batch)/\(batches)  ETA \(formatDuration(secondsLeft))  "
            + "loss \(format(loss))  \(Int(imagesPerSecond)) img/s  \(formatKnobs(knobs))\(extra.isEmpty ? "" : "  " + extra)"
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
    }

    /// Called once per epoch with the finished line (and the time left for the run).
    public func epochFinished(_ text: String, secondsLeft: Double) {
        guard !quiet else { return }
        let eta = secondsLeft > 0 ? "  ETA \(formatDuration(secondsLeft))" : ""
        if isTerminal {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + text + eta + "\n").utf8))
        } else {
            FileHandle.standardError.write(Data((text + eta + "\n").utf8))
        }
    }
}

func format(_ value: Double) -> String {
    if value.isNaN { return "nan" }
    return abs(value) >= 1e-3 && abs(value) < 1e4 || value == 0 ? String(format: "%.4g", value) : String(format: "%.3e", value)
}

func formatKnobs(_ knobs: [String: Double]) -> String {
    knobs.keys.sorted().map { "\($0) \(format(knobs[$0]!))" }.joined(separator: "  ")
}

/// "1h 02m", "3m 07s", "42s".
public func formatDuration(_ seconds: Double) -> String {
    let total = Int(seconds.rounded())
    if total >= 3600 { return String(format: "%dh %02dm", total / 3600, total % 3600 / 60) }
    if total >= 60 { return String(format: "%dm %02ds", total / 60, total % 60) }
    return "\(total)s"
}
