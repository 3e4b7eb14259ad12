import Foundation
import Testing

/// The threads of process `pid` that are running or ready to run (state `R` in
/// `/proc/<pid>/task/<tid>/stat`), as "pid/tid (name)", with the CPU time each has had so far
/// (nanoseconds, the first field of its `schedstat`); none once the process is gone.
private func runningThreads(of pid: Int32) -> [(thread: String, cpuNanoseconds: Int)] {
    let tasks = "/proc/\(pid)/task"
    guard let ids = try? FileManager.default.contentsOfDirectory(atPath: tasks) else { return [] }
    return ids.compactMap { id in
        guard let stat = try? String(contentsOfFile: "\(tasks)/\(id)/stat", encoding: .utf8),
              let open = stat.firstIndex(of: "("), let end = stat.lastIndex(of: ")"),
              let schedstat = try? String(contentsOfFile: "\(tasks)/\(id)/schedstat", encoding: .utf8),
              let cpu = schedstat.split(separator: " ").first.flatMap({ Int($0) }) else { return nil }
        // "tid (name) S …": the state follows the thread's name, which may itself hold spaces and ')'.
        guard stat[stat.index(after: end)...].split(separator: " ").first == "R" else { return nil }
        return ("\(pid)/\(id) \(stat[open...end])", cpu)
    }
}

/// The CPU time process `pid` has had so far, every thread it has had included (nanoseconds, from
/// `utime` and `stime` in `/proc/<pid>/stat`); 0 once the process is gone.
private func cpuNanoseconds(of pid: Int32) -> Int {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let end = stat.lastIndex(of: ")") else { return 0 }
    // After the name: state (field 3) … utime (14), stime (15), in clock ticks.
    let fields = stat[stat.index(after: end)...].split(separator: " ")
    guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return 0 }
    return (user + system) * 1_000_000_000 / sysconf(Int32(_SC_CLK_TCK))
}

/// The processes that any thread of `pid` started (`/proc/<pid>/task/<tid>/children`).
private func children(of pid: Int32) -> [Int32] {
    let tasks = "/proc/\(pid)/task"
    let ids = (try? FileManager.default.contentsOfDirectory(atPath: tasks)) ?? []
    return ids.flatMap { id in
        ((try? String(contentsOfFile: "\(tasks)/\(id)/children", encoding: .utf8)) ?? "").split(separator: " ").compactMap { Int32($0) }
    }
}

@Suite(.serialized) struct ThreadBudgetTests {
    /// `compare --jobs 2` runs its runs two at a time; with every pool of a run (kernels, BLAS, loader)
    /// sized by its share of the cores, the comparison never has more busy threads than the machine
    /// has cores. Sampled every ~10 ms over a whole comparison of four short ResNet-8 runs; a thread
    /// is busy when it is running (or waiting for a core) in two samples in a row and ran for at least
    /// 1 ms in between. The state alone also counts threads that need microseconds, such as the
    /// dispatch thread that cancels a run's Ctrl-C handler as it ends: on a machine loaded by others
    /// they wait tens of milliseconds for a core (measured: seen in two samples 29 ms apart).
    /// The comparison's own process is not counted against the cores: it only starts its runs and
    /// waits, yet one of its threads once ran for over 1 ms beside both runs' threads as they started
    /// (in CI, on a loaded machine). Instead its whole CPU time must
    /// stay a small share of the comparison's (measured: 0.14 s of CPU in 7.4 s).
    @Test func aComparisonWithTwoJobsNeverRunsMoreThreadsThanCores() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let experimentFile = folder.appendingPathComponent("threads.yaml").path
        try """
            name: threads
            program: pretrain
            base:
              model: {architecture: resnet8}
              knobs: {batch_size: 64, learning_rate: 0.05}
              pretrain:
                epochs: 2
                data: {first: 400, validation: 200, augmentation: "crop,flip"}
            seeds: [0, 1]
            baseline: constant
            variants:
              constant: {}
              decayed: {knobs.weight_decay: 1e-3}
            results: \(folder.path)/results
            """.write(toFile: experimentFile, atomically: true, encoding: .utf8)

        let cores = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let comparison = Process()
        comparison.executableURL = URL(fileURLWithPath: epicycleExecutable)
        comparison.arguments = ["compare", experimentFile, "--jobs", "2"]
        comparison.standardOutput = FileHandle.nullDevice
        comparison.standardError = FileHandle.nullDevice
        try comparison.run()
        defer { if comparison.isRunning { comparison.terminate() } }

        var samples = 0, peak = 0, worst: (busy: [String], sample: Int) = ([], 0)
        var previous: [String: Int] = [:]
        var parentNanoseconds = 0
        let start = Date()
        while comparison.isRunning {
            let pid = comparison.processIdentifier
            parentNanoseconds = max(parentNanoseconds, cpuNanoseconds(of: pid))
            let running = Dictionary(children(of: pid).flatMap(runningThreads), uniquingKeysWith: max)
            let busy = running.filter { thread, cpu in previous[thread].map { cpu - $0 >= 1_000_000 } ?? false }.keys
            previous = running
            samples += 1
            peak = max(peak, busy.count)
            if busy.count > cores && busy.count > worst.busy.count { worst = (busy.sorted(), samples) }
            usleep(10_000)
        }
        comparison.waitUntilExit()
        let wall = Date().timeIntervalSince(start)
        #expect(comparison.terminationStatus == 0, "see \(folder.path)/results/runs/*/*/log.txt")
        #expect(samples >= 50, "the comparison should take a while; it ended after \(samples) samples")
        #expect(peak >= min(2, cores), "two jobs at once should keep two threads busy; the peak was \(peak)")
        #expect(Double(parentNanoseconds) / 1e9 < 0.1 * wall,
                "the comparison's own process should only wait for its runs; it used \(Double(parentNanoseconds) / 1e9) s of CPU in \(wall) s")
        #expect(worst.busy.isEmpty, "\(worst.busy.count) threads were busy at sample \(worst.sample) of \(samples), on \(cores) cores: \(worst.busy.joined(separator: ", "))")
    }
}
