import Foundation

/// How many inputs a fuzz test tries: `EPICYCLE_FUZZ_ITERATIONS` when set (for a longer run), else
/// `count`, sized so that the test takes well under a minute.
public func fuzzIterations(default count: Int) -> Int {
    ProcessInfo.processInfo.environment["EPICYCLE_FUZZ_ITERATIONS"].flatMap(Int.init).map { max($0, 1) } ?? count
}

/// Bounds the time of each fuzz input: an input still running after `limit` seconds is reported on
/// standard error with its description and the process exits with status 3, so a hang fails the run
/// and names its input instead of stalling it.
public final class FuzzWatchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var current: (description: String, start: Date)?
    private var stopped = false
    private let limit: TimeInterval
    /// The longest an input took, in seconds.
    public private(set) var slowest: TimeInterval = 0

    public init(limit: TimeInterval) {
        self.limit = limit
        let thread = Thread { [weak self] in
            while let self, self.check() { Thread.sleep(forTimeInterval: 0.05) }
        }
        thread.start()
    }

    deinit { stop() }

    public func stop() {
        lock.lock()
        stopped = true
        lock.unlock()
    }

    /// Runs one input, described by `description` (e.g. its seed and mutation) for the report.
    public func run<Result>(_ description: @autoclosure () -> String, _ body: () throws -> Result) rethrows -> Result {
        lock.lock()
        current = (description(), Date())
        lock.unlock()
        defer {
            lock.lock()
            if let current { slowest = max(slowest, Date().timeIntervalSince(current.start)) }
            current = nil
            lock.unlock()
        }
        return try body()
    }

    private func check() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if let current, Date().timeIntervalSince(current.start) > limit {
            FileHandle.standardError.write(Data("fuzz input hung for more than \(limit) s: \(current.description)\n".utf8))
            exit(3)
        }
        return !stopped
    }
}
