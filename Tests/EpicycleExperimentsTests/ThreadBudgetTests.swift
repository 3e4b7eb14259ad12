import Foundation
import Testing

/// The threads of process `pid` that are running or ready to run (state `R` in
/// `/proc/<pid>/task/<tid>/stat`), as "pid/tid"; none once the process is gone.
private func runningThreads(of pid: Int32) -> [String] {
    let tasks = "/proc/\(pid)/task"
    guard let ids = try? FileManager.default.contentsOfDirectory(atPath: tasks) else { return [] }
    return ids.filter { id in
        guard let stat = try? String(contentsOfFile: "\(tasks)/\(id)/stat", encoding: .utf8),
              let end = stat.lastIndex(of: ")") else { return false }
        // "tid (comm) S …": the state follows the command name, which may itself hold spaces and ')'.
        return stat[stat.index(after: end)...].split(separator: " ").first == "R"
    }.map { "\(pid)/\($0)" }
}

/// The processes whose parent is `pid`.
private func children(of pid: Int32) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { entry in
        guard let child = Int32(entry),
              let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
              let end = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        return fields.count > 1 && Int32(fields[1]) == pid ? child : nil
    }
}

@Suite(.serialized) struct ThreadBudgetTests {
    /// `compare --jobs 2` runs its runs two at a time; with every pool of a run (kernels, BLAS, loader)
    /// sized by its share of the cores, the comparison never has more busy threads than the machine
    /// has cores. Sampled every ~10 ms over a whole comparison of four short ResNet-8 runs; a thread
    /// is busy when it is running (or waiting for a core) in two samples in a row. One sample alone
    /// also catches threads that run for microseconds, such as the dispatch thread that cancels a
    /// run's Ctrl-C handler as it ends: on a loaded machine they wait for a core long enough to be seen.
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

        var samples = 0, peak = 0, worst: (count: Int, sample: Int) = (0, 0)
        var previous: Set<String> = []
        while comparison.isRunning {
            let pid = comparison.processIdentifier
            let running = Set(([pid] + children(of: pid)).flatMap(runningThreads))
            let busy = running.intersection(previous).count
            previous = running
            samples += 1
            peak = max(peak, busy)
            if busy > cores && busy > worst.count { worst = (busy, samples) }
            usleep(10_000)
        }
        comparison.waitUntilExit()
        #expect(comparison.terminationStatus == 0, "see \(folder.path)/results/runs/*/*/log.txt")
        #expect(samples >= 50, "the comparison should take a while; it ended after \(samples) samples")
        #expect(peak >= min(2, cores), "two jobs at once should keep two threads busy; the peak was \(peak)")
        #expect(worst.count == 0, "\(worst.count) threads were busy at sample \(worst.sample) of \(samples), on \(cores) cores")
    }
}
