import ArgumentParser
import EpicycleExperiments
import EpicycleMPI
import EpicycleRuntime
import EpicycleTraining
import Foundation

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run every variant × seed of an experiment and compare them: table, CSV and an HTML report.",
        discussion: """
            An experiment (YAML) is a base recipe, named variants that override parts of it (key.path: value, \
            as --set) and a list of seeds. Each run gets its own folder under <results>/runs; finished runs are \
            skipped, so an interrupted comparison continues where it stopped. The results folder then holds \
            table.md and table.csv (test top-1 of the final model, mean ± std per variant; Δ against the baseline with \
            its 95 % confidence interval and p, paired by seed or Welch's; seeds for 80 % power), runs.csv and report.html.
            Example: epicycle compare Experiments/knobs-4k.yaml --jobs 2
            Under mpirun (mpirun -np N epicycle compare E.yaml), process 0 hands the runs out to the other \
            N − 1 processes, each training one run at a time with its share of its machine's cores; with \
            --ranks-per-run k, to (N − 1)/k groups of k consecutive processes, each training its run \
            data-parallel (N − 1 must be a multiple of k). The results folder must be shared by all of them.
            """)

    @Argument(help: ArgumentHelp("The experiment (YAML).", valueName: "experiment.yaml"))
    var experiment: String

    @Option(help: "Runs at a time, each a process with max(1, cores / jobs) threads (a recipe's threads: may ask for fewer).")
    var jobs = 1

    @Option(help: "Under mpirun: processes per run, training it data-parallel (the launch needs 1 + a multiple of this many).")
    var ranksPerRun = 1

    func validate() throws {
        try validateCount(jobs, option: "--jobs")
        try validateCount(ranksPerRun, option: "--ranks-per-run")
        if ranksPerRun > 1 && (Communicator.world?.size ?? 1) == 1 {
            throw ValidationError("--ranks-per-run \(ranksPerRun) needs an mpirun launch of 1 + a multiple of \(ranksPerRun) processes (mpirun -np \(1 + ranksPerRun) epicycle compare …)")
        }
    }

    func run() throws {
        let command = (["epicycle"] + CommandLine.arguments.dropFirst().map(shellQuoted)).joined(separator: " ")
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let world = Communicator.world.flatMap { $0.size > 1 ? $0 : nil }
        let groups = try world.map { world in try reporting { try RunGroups(world: world, ranksPerRun: ranksPerRun) } }
        if let groups, groups.world.rank > 0 {
            try reporting {
                try serveComparisonRuns(experiment: try Experiment(contentsOf: experiment), groups: groups,
                                        threads: max(1, onlineProcessorCount / groups.world.localSize))
            }
            return
        }
        let result = try reporting {
            try runComparison(experiment: try Experiment(contentsOf: experiment), jobs: jobs, executable: executable,
                              command: command, groups: groups) { print($0) }
        }
        print("\n" + result.report.markdown)
        print("wrote \(result.tablePath), \(result.tableCSVPath), \(result.csvPath) and \(result.reportPath)")
        if !result.failed.isEmpty {
            throw failure(message: "\(result.failed.count) run(s) did not finish: " + result.failed.map(\.label).joined(separator: ", "),
                          hint: "run the same command again to retry them")
        }
    }
}

/// One run of a comparison, in a child process of `epicycle compare`.
struct CompareRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare-run",
        abstract: "Train one prepared run of a comparison (started by epicycle compare).",
        shouldDisplay: false)

    @Argument(help: ArgumentHelp("The run's folder, holding recipe.yaml and run.json.", valueName: "folder"))
    var folder: String

    @Option(help: "At most this many threads for the run (kernels and BLAS).")
    var threads: Int?

    @Option(help: "End the run when this process (the comparison) exits.")
    var parentProcess: Int32?

    func validate() throws {
        if let threads { try validateCount(threads, option: "--threads") }
    }

    func run() throws {
        if let parentProcess { exitWhenParentExits(parent: parentProcess) }
        _ = try reporting { try executeRun(folder: folder, threads: threads) }
    }
}

/// Thread and job counts: at least 1, at most `RecipeLimits.threads`' bound.
func validateCount(_ value: Int, option: String) throws {
    guard RecipeLimits.threads.contains(value) else {
        throw ValidationError("\(option) must be from 1 to \(RecipeLimits.threads.upperBound), got \(value)")
    }
}

/// The argument as a POSIX shell reads it back: single-quoted unless it is plainly safe.
private func shellQuoted(_ argument: String) -> String {
    let safe = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_./=:,+@%"))
    if !argument.isEmpty && argument.unicodeScalars.allSatisfy(safe.contains) { return argument }
    return "'" + argument.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
