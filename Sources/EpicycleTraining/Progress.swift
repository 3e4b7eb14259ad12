import Foundation

/// Reports training progress. When standard error is a terminal: one line redrawn in place (`\r`
/// and clear-to-end-of-line), never wider than the terminal, in tqdm's shape —
/// `pretrain 3/30  45%|███▌    | 120/266 [00:12<00:15, 1232 img/s] loss 0.4321  learning_rate 0.08 …`.
/// Otherwise (logs, CI, pipes): the same text as a plain line every `plainInterval` seconds, and one
/// line per epoch.
public final class ProgressReporter {
    public let isTerminal: Bool
    private let quiet: Bool
    private let plainInterval: Double
    private var lastDraw = 0.0
    private var lastPlainLine: Double

    public init(quiet: Bool = false, isTerminal: Bool = isatty(STDERR_FILENO) == 1, plainInterval: Double = 60) {
        self.quiet = quiet
        self.isTerminal = isTerminal
        self.plainInterval = plainInterval
        lastPlainLine = ProcessInfo.processInfo.systemUptime
    }

    /// Called after each training step; redraws at most ten times a second.
    /// - Parameters:
    ///   - images: the images trained on so far this epoch; `elapsed`: the epoch's seconds so far.
    public func step(phase: String, epoch: Int, epochs: Int, batch: Int, batches: Int, images: Int, elapsed: Double,
                     loss: Double, knobs: [String: Double], extra: String = "") {
        guard !quiet else { return }
        let now = ProcessInfo.processInfo.systemUptime
        let status = ProgressStatus(phase: phase, epoch: epoch, epochs: epochs, batch: batch, batches: batches, images: images,
                                    elapsed: elapsed, loss: loss, knobs: knobs, extra: extra)
        if isTerminal {
            guard now - lastDraw >= 0.1 || batch == batches else { return }
            lastDraw = now
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + status.line(width: terminalColumns() - 1)).utf8))
        } else if now - lastPlainLine >= plainInterval && batch < batches {
            lastPlainLine = now
            FileHandle.standardError.write(Data((status.line(width: .max) + "\n").utf8))
        }
    }

    /// Called once per epoch with the finished line (and the time left for the run).
    public func epochFinished(_ text: String, secondsLeft: Double) {
        guard !quiet else { return }
        lastPlainLine = ProcessInfo.processInfo.systemUptime
        let eta = secondsLeft > 0 ? "  ETA \(formatDuration(secondsLeft))" : ""
        if isTerminal {
            // A terminal narrower than the line wraps it between fields, not inside a figure.
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + wrappedAtFields(text + eta, width: terminalColumns() - 1) + "\n").utf8))
        } else {
            FileHandle.standardError.write(Data((text + eta + "\n").utf8))
        }
    }
}

/// One step's figures and their text within a width.
struct ProgressStatus {
    var phase: String
    var epoch: Int, epochs: Int
    var batch: Int, batches: Int
    var images: Int
    var elapsed: Double
    var loss: Double
    var knobs: [String: Double]
    var extra: String

    /// The line in at most `width` characters. What gives way first: the knob values and the
    /// objective's note (cut with "…"), then the bar's length, and last the figures themselves.
    func line(width: Int) -> String {
        let share = batches > 0 ? Double(batch) / Double(batches) : 1
        let rate = Double(images) / max(elapsed, 1e-9)
        let left = batch > 0 ? elapsed / Double(batch) * Double(batches - batch) : 0
        let head = "\(phase) \(epoch + 1)/\(epochs) " + String(format: "%3.0f%%", 100 * share)
        let tail = " \(batch)/\(batches) [\(clock(elapsed))<\(clock(left)), \(Int(rate)) img/s] loss \(format(loss))"
        let details = ([formatKnobs(knobs)] + (extra.isEmpty ? [] : [extra])).filter { !$0.isEmpty }.joined(separator: "  ")
        let barRoom = width - head.count - tail.count - 2
        let barWidth = min(20, barRoom)
        guard barWidth >= 5 else { return String((head + tail).prefix(max(0, width))) }
        let core = head + "|" + bar(share, width: barWidth) + "|" + tail
        let room = width - core.count - 2
        guard !details.isEmpty, room >= 4 else { return core }
        return core + "  " + (details.count <= room ? details : details.prefix(room - 1) + "…")
    }
}

/// `text`, whose fields are separated by two spaces, broken into lines of at most `width` characters
/// between fields, each continuation indented by two spaces; a field wider than a line stands alone.
func wrappedAtFields(_ text: String, width: Int) -> String {
    guard text.count > width else { return text }
    var lines: [String] = [], line = ""
    for field in text.components(separatedBy: "  ") where !field.isEmpty {
        if line.isEmpty {
            line = field
        } else if line.count + 2 + field.count <= width {
            line += "  " + field
        } else {
            lines.append(line)
            line = "  " + field
        }
    }
    return (lines + [line]).joined(separator: "\n")
}

/// A bar of `width` cells filled to `share`, in eighths of a cell.
func bar(_ share: Double, width: Int) -> String {
    let eighths = Int((min(1, max(0, share)) * Double(width * 8)).rounded(.down))
    let partial = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"][eighths % 8]
    let full = String(repeating: "█", count: eighths / 8)
    return full + partial + String(repeating: " ", count: width - eighths / 8 - (partial.isEmpty ? 0 : 1))
}

/// "00:42", "03:07", "1:02:09", as tqdm writes times.
func clock(_ seconds: Double) -> String {
    let total = seconds.isFinite ? max(0, Int(seconds.rounded())) : 0
    if total >= 3600 { return String(format: "%d:%02d:%02d", total / 3600, total % 3600 / 60, total % 60) }
    return String(format: "%02d:%02d", total / 60, total % 60)
}

/// The terminal's width in columns: the kernel's window size of standard error, else `$COLUMNS`,
/// else 80.
func terminalColumns(environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
    var size = winsize()
    if ioctl(STDERR_FILENO, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 { return Int(size.ws_col) }
    if let columns = environment["COLUMNS"].flatMap(Int.init), columns > 0 { return min(columns, 10_000) }
    return 80
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
