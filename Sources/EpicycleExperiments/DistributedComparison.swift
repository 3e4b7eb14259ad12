import EpicycleMPI
import EpicycleTraining
import Foundation

// `mpirun -np N epicycle compare E.yaml [--ranks-per-run k]`: process 0 prepares the runs exactly as a
// comparison on one machine does (`runComparison`), then hands them out one at a time to the (N − 1)/k
// groups of processes 1 … N−1 (`RunGroups`), each of which trains its run (alone, or data-parallel over
// its k processes) and asks for the next when done; process 0 writes the tables once every run has
// ended. The runs' folders must be on a file system every process sees. Every message is a few
// integers between process 0 and a group's first process: "ready" carries the run it finished (or −1
// at first) and whether it finished; process 0's answer is the next run's index among the
// experiment's variant × seed runs, or −1 for "stop", which the group's first process passes on to
// the rest of its group.

private enum ComparisonTag {
    static let ready: Int32 = 71, work: Int32 = 72
}

private let noRun: Int64 = -1

extension Experiment {
    /// Every run's folder, variants × seeds in order: what a run index names.
    var runFolders: [String] {
        variants.flatMap { variant in seeds.map { runFolder(variant: variant.name, seed: $0) } }
    }
}

/// How a distributed comparison divides the processes of its launch: process 0 schedules, and
/// processes 1 … N−1 form (N − 1)/k groups of k consecutive processes (1 … k, k+1 … 2k, …), each
/// training one run at a time, data-parallel over its k processes when k > 1. N − 1 must be a
/// multiple of k, so that every group is whole.
public struct RunGroups: Sendable {
    public let world: Communicator
    public let ranksPerRun: Int
    /// This process's group (process 0 is alone in its own, which it does not use).
    public let group: Communicator

    /// Splits `world` into its groups; every process of the launch calls it, and every one throws
    /// the same error when N − 1 is not a multiple of `ranksPerRun`.
    public init(world: Communicator, ranksPerRun: Int) throws {
        let workers = world.size - 1
        guard ranksPerRun >= 1, workers >= ranksPerRun, workers % ranksPerRun == 0 else {
            throw RecipeError(path: "", problem: "--ranks-per-run \(ranksPerRun) needs the \(workers) processes after process 0 (which schedules) to form whole groups of \(ranksPerRun); launch 1 + a multiple of \(ranksPerRun) processes (mpirun -np \(1 + ranksPerRun), \(1 + 2 * ranksPerRun), …)")
        }
        self.world = world
        self.ranksPerRun = ranksPerRun
        group = world.split(color: world.rank == 0 ? 0 : 1 + (world.rank - 1) / ranksPerRun, key: world.rank)
    }

    var count: Int { (world.size - 1) / ranksPerRun }

    /// The processes of the group whose first process is `leader`, for the log.
    func describe(leader: Int) -> String {
        ranksPerRun == 1 ? "MPI process \(leader)" : "MPI processes \(leader)–\(leader + ranksPerRun - 1)"
    }
}

/// Process 0's part: hands `pending` out to the groups until each has ended, logging as `runChildren` does.
func distributeRuns(_ pending: [(folder: String, label: String)], experiment: Experiment, groups: RunGroups,
                    log: (String) -> Void) {
    let folders = experiment.runFolders
    var next = 0, stopped = 0
    var startedAt: [Int: Int] = [:]  // run index → its place in `pending`
    while stopped < groups.count {
        let (message, leader) = groups.world.receive(count: 2, tag: ComparisonTag.ready)
        if message[0] != noRun, let place = startedAt.removeValue(forKey: Int(message[0])) {
            let run = pending[place]
            let prefix = "[\(place + 1)/\(pending.count)]"
            if let record = RunRecord.read(folder: run.folder), record.status == .finished {
                log("\(prefix) \(outcome(record))")
            } else {
                log("\(prefix) \(run.label) failed: \(RunRecord.read(folder: run.folder)?.error ?? "unknown error")")
            }
        }
        guard next < pending.count, let index = folders.firstIndex(of: pending[next].folder) else {
            groups.world.send([noRun], to: leader, tag: ComparisonTag.work)
            stopped += 1
            continue
        }
        startedAt[index] = next
        groups.world.send([Int64(index)], to: leader, tag: ComparisonTag.work)
        log("[\(next + 1)/\(pending.count)] \(pending[next].label) started (\(groups.describe(leader: leader)))")
        next += 1
    }
}

/// The part of every process but 0 in `mpirun … epicycle compare`: trains the runs process 0 hands
/// out to this process's group, one after another, each with `threads` threads per process, until
/// told to stop. A run's failure is recorded in its `run.json` (as `executeRun` does) and reported to
/// process 0. A data-parallel run's failure is thrown instead, ending the launch: a process that
/// failed alone would leave its group waiting for it forever.
public func serveComparisonRuns(experiment: Experiment, groups: RunGroups, threads: Int) throws {
    let folders = experiment.runFolders
    let group = groups.group, leads = group.rank == 0
    var finished: [Int64] = [noRun, 0]
    while true {
        var index = noRun
        if leads {
            groups.world.send(finished, to: 0, tag: ComparisonTag.ready)
            index = groups.world.receive(count: 1, tag: ComparisonTag.work, from: 0).values[0]
        }
        index = group.broadcast(index)
        guard index != noRun, folders.indices.contains(Int(index)) else { return }
        let folder = folders[Int(index)]
        if group.size == 1 {
            let succeeded = (try? executeRun(folder: folder, threads: threads)) != nil
            finished = [index, succeeded ? 1 : 0]
        } else {
            do {
                _ = try executeRun(folder: folder, threads: threads, communicator: group)
            } catch {
                throw RecipeError(path: "", problem: "the data-parallel run \(folder) failed (\(errorMessage(error))); the comparison stops, since its processes cannot go on without each other; run it again to retry")
            }
            finished = [index, 1]
        }
    }
}
