import CProcess
import EpicycleMPI
import EpicycleTraining
import Foundation
import Synchronization

/// What `runComparison` did and where it wrote the results.
public struct ComparisonResult: Sendable {
    /// The aggregated tables and the run records they came from.
    public var report: ComparisonReport
    /// Runs trained (or continued) by this call, as "variant/seed-N", in the order they were started.
    public var executed: [String]
    /// Runs already finished by an earlier call, left as they were.
    public var skipped: [String]
    /// Runs that ended in an error (their `run.json` and `log.txt` say why).
    public var failed: [RunRecord]
    public var tablePath: String
    /// `table.csv`: the table's figures unrounded.
    public var tableCSVPath: String
    public var csvPath: String
    /// `tradeoff.csv`: every run's accuracy-vs-budget points.
    public var tradeoffCSVPath: String
    public var reportPath: String
}

/// `epicycle compare`: trains every variant × seed of `experiment` that is not finished yet, then
/// writes `table.md`, `table.csv`, `runs.csv`, `tradeoff.csv` and `report.html` to the experiment's results folder.
///
/// Each run lives in `<results>/runs/<variant>/seed-<seed>/`: `recipe.yaml` (base recipe + the
/// variant's overrides + seed, resolved: every default written out, as every run folder keeps it),
/// `run.json`, checkpoints and metrics, and `log.txt` for child runs.
/// A run whose `recipe.yaml` no longer matches the experiment (the variant was edited) is started
/// afresh; an unfinished one continues from its last checkpoint; a failed run is retried. Runs that
/// fail do not stop the others.
///
/// - Parameters:
///   - jobs: runs at a time. With an executable each run is a child process given max(1, cores / jobs)
///     threads for every pool (a recipe's own `threads:` may ask for fewer, not more), so up to
///     `jobs` ≤ cores the comparison never has more busy threads than the machine has cores.
///   - executable: the `epicycle` tool. When given, every run is a child process
///     `<executable> compare-run <run folder> --threads <n> --parent-process <this process>` (a crash
///     stays in its run, and the runs end when this process does); when nil, runs
///     go one after another in this process and `jobs` must be 1.
///   - command: the command line to print in the report.
///   - groups: under `mpirun` with several processes, this is process 0, which hands the runs out
///     to the groups of the others (`serveComparisonRuns`) instead of running them itself; `jobs` must then be 1.
///   - log: receives one line per run started or ended.
public func runComparison(experiment: Experiment, jobs: Int = 1, executable: String? = nil, command: String = "",
                          groups: RunGroups? = nil, log: (String) -> Void = { _ in }) throws -> ComparisonResult {
    guard RecipeLimits.threads.contains(jobs) else {
        throw RecipeError(path: "", problem: "--jobs must be from 1 to \(RecipeLimits.threads.upperBound), got \(jobs)")
    }
    guard executable != nil || jobs == 1 else {
        throw RecipeError(path: "", problem: "running \(jobs) jobs at once needs child processes: pass the epicycle executable")
    }
    guard groups == nil || jobs == 1 else {
        throw RecipeError(path: "", problem: "--jobs is for one process: under mpirun every process but the first trains one run at a time; launch more processes instead")
    }
    let fileManager = FileManager.default
    // One comparison at a time per results folder; each run's program locks the run's own folder.
    let lock = try RunFolderLock(experiment.results)
    defer { withExtendedLifetime(lock) {} }
    try fileManager.createDirectory(atPath: experiment.results + "/runs", withIntermediateDirectories: true)

    var pending: [(folder: String, label: String)] = []
    var skipped: [String] = []
    for variant in experiment.variants {
        for seed in experiment.seeds {
            let folder = experiment.runFolder(variant: variant.name, seed: seed)
            let source = try experiment.runRecipe(variant: variant, seed: seed)
            let recipe = try experiment.program.resolvedText(source, in: folder)
            let label = "\(variant.name)/seed-\(seed)"
            let storedRecipe = try? String(contentsOfFile: folder + "/recipe.yaml", encoding: .utf8)
            // A run prepared before run folders kept the resolved recipe holds the recipe as generated:
            // the same run, whose checkpoints store that text, so it is left as it is.
            let sameRun = try storedRecipe == recipe || storedRecipe == source.relocated(to: folder).text
            if sameRun, RunRecord.read(folder: folder)?.status == .finished {
                skipped.append(label)
                continue
            }
            if storedRecipe != nil && !sameRun {
                log("\(label): the experiment changed this run's recipe; starting it afresh")
                try fileManager.removeItem(atPath: folder)
            }
            try fileManager.createDirectory(atPath: folder, withIntermediateDirectories: true)
            if !sameRun { try recipe.write(toFile: folder + "/recipe.yaml", atomically: true, encoding: .utf8) }
            try RunRecord(variant: variant.name, seed: seed, program: experiment.program.rawValue, status: .running)
                .write(folder: folder)
            pending.append((folder, label))
        }
    }
    if !skipped.isEmpty { log("\(skipped.count) of \(skipped.count + pending.count) runs already finished") }

    if let groups {
        distributeRuns(pending, experiment: experiment, groups: groups, log: log)
    } else if let executable {
        let cores = ProcessInfo.processInfo.activeProcessorCount, threads = max(1, cores / jobs)
        if jobs > cores { log("\(jobs) jobs on \(cores) cores: the runs will take turns on the cores, each slower") }
        try runChildren(pending, executable: executable, jobs: jobs, threads: threads, log: log)
    } else {
        for (index, run) in pending.enumerated() {
            log("[\(index + 1)/\(pending.count)] \(run.label) started")
            do {
                log("[\(index + 1)/\(pending.count)] \(outcome(try executeRun(folder: run.folder)))")
            } catch let error as TrainingError {
                if case .interrupted = error { throw error }
                log("[\(index + 1)/\(pending.count)] \(run.label) failed: \(error)")
            } catch {
                log("[\(index + 1)/\(pending.count)] \(run.label) failed: \(error)")
            }
        }
    }

    let records = experiment.variants.flatMap { variant in
        experiment.seeds.map { seed in
            RunRecord.read(folder: experiment.runFolder(variant: variant.name, seed: seed))
                ?? RunRecord(variant: variant.name, seed: seed, program: experiment.program.rawValue, status: .failed,
                             error: "run.json is missing or unreadable")
        }
    }
    let report = ComparisonReport(experiment: experiment, runs: records, command: command)
    let result = ComparisonResult(
        report: report, executed: pending.map(\.label), skipped: skipped, failed: records.filter { $0.status != .finished },
        tablePath: experiment.results + "/table.md", tableCSVPath: experiment.results + "/table.csv",
        csvPath: experiment.results + "/runs.csv", tradeoffCSVPath: experiment.results + "/tradeoff.csv",
        reportPath: experiment.results + "/report.html")
    try report.markdown.write(toFile: result.tablePath, atomically: true, encoding: .utf8)
    try report.tableCSV.write(toFile: result.tableCSVPath, atomically: true, encoding: .utf8)
    try report.csv.write(toFile: result.csvPath, atomically: true, encoding: .utf8)
    try report.tradeoffCSV.write(toFile: result.tradeoffCSVPath, atomically: true, encoding: .utf8)
    try report.html.write(toFile: result.reportPath, atomically: true, encoding: .utf8)
    return result
}

func outcome(_ record: RunRecord) -> String {
    let test = record.testTop1.map { String(format: "test top-1 %.2f %% (final model), ", $0) } ?? ""
    return record.label + " finished: " + test
        + String(format: "validation top-1 final %.2f %%, best %.2f %% (%@)", record.finalTop1 ?? .nan, record.bestTop1 ?? .nan,
                 formatDuration(record.wallSeconds ?? 0))
}

/// Runs each pending run as a child process, `jobs` at a time; a child's output goes to its `log.txt`.
/// The children are started from the calling thread, which waits for them all: Linux's parent-death
/// signal (see `exitWhenParentExits`) fires when the thread that started a child ends.
private func runChildren(_ pending: [(folder: String, label: String)], executable: String, jobs: Int, threads: Int,
                         log: (String) -> Void) throws {
    let ended = Mutex<[Int]>([])
    let signal = DispatchSemaphore(value: 0)
    var running: [Int: Process] = [:]
    var next = 0, done = 0
    while done < pending.count {
        while running.count < jobs && next < pending.count {
            let run = pending[next], index = next
            let logPath = run.folder + "/log.txt"
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
            let output = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = ["compare-run", run.folder, "--threads", String(threads),
                                 "--parent-process", String(getpid())]
            // OpenBLAS starts its threads as it loads, before the run can set their number, and they
            // spin for a while (~0.15 s measured) waiting for work; told here, it starts only those.
            // Under `mpirun -np 1` a child must not take itself for a rank of the launch.
            process.environment = Communicator.environmentWithoutLauncher(ProcessInfo.processInfo.environment)
                .merging(["OPENBLAS_NUM_THREADS": String(threads)]) { $1 }
            process.standardOutput = output
            process.standardError = output
            process.terminationHandler = { _ in
                ended.withLock { $0.append(index) }
                signal.signal()
            }
            try process.run()
            try output.close()
            running[index] = process
            log("[\(index + 1)/\(pending.count)] \(run.label) started (process \(process.processIdentifier), \(threads) threads)")
            next += 1
        }
        signal.wait()
        for index in ended.withLock({ list in defer { list.removeAll() }; return list }) {
            guard let process = running.removeValue(forKey: index) else { continue }
            done += 1
            let run = pending[index]
            let prefix = "[\(index + 1)/\(pending.count)]"
            if let record = RunRecord.read(folder: run.folder), record.status == .finished {
                log("\(prefix) \(outcome(record))")
                continue
            }
            guard var record = RunRecord.read(folder: run.folder) else {
                log("\(prefix) \(run.label) failed: its run.json is gone; see \(run.folder)/log.txt")
                continue
            }
            if record.status == .running {
                // The child died without recording why (a crash or a signal).
                let how = process.terminationReason == .uncaughtSignal
                    ? "was killed by signal \(process.terminationStatus)" : "exited with status \(process.terminationStatus)"
                record.status = .failed
                record.error = "the run's process \(how); see \(run.folder)/log.txt"
                try? record.write(folder: run.folder)
            }
            log("\(prefix) \(run.label) failed: \(record.error ?? "unknown error"); see \(run.folder)/log.txt")
        }
    }
}

/// Ends this process when `parent`, the `epicycle compare` that started it, exits, so the runs of a
/// killed comparison do not train on unobserved (the next `epicycle compare` continues them from their
/// last checkpoint). Nothing is left half-written: checkpoints, metrics and `run.json` are each written
/// to a temporary file and renamed into place.
///
/// On Linux the kernel kills this process the moment the parent exits, however loaded the machine is;
/// elsewhere a thread polls the parent's id. The parent passes its id: read here at start-up it could
/// already be the id of whoever adopted this process, had the parent died in between.
public func exitWhenParentExits(parent: pid_t) {
    guard epicycle_kill_when_parent_exits() == 0 else {
        Thread.detachNewThread {
            while getppid() == parent { usleep(50_000) }
            // `_exit`, not `exit`: exit's handlers can wait on locks the training threads hold.
            _exit(143)
        }
        return
    }
    // The parent may have exited before the kernel was asked to watch it.
    if getppid() != parent { _exit(143) }
}
