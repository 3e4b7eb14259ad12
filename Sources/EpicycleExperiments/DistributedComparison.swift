import EpicycleMPI
import EpicycleTraining
import Foundation

// `mpirun -np N epicycle compare E.yaml`: process 0 prepares the runs exactly as a comparison on one
// machine does (`runComparison`), then hands them out one at a time to processes 1 … N−1, each of which
// trains its run alone, in its own process, and asks for the next when done; process 0 writes the
// tables once every run has ended. The runs' folders must be on a file system every process sees.
// Every message is a few integers: a worker's "ready" carries the run it finished (or −1 at first) and
// whether it finished; process 0's answer is the next run's index among the experiment's variant × seed
// runs, or −1 for "stop".

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

/// Process 0's part: hands `pending` out to the other processes until each has ended, logging as
/// `runChildren` does.
func distributeRuns(_ pending: [(folder: String, label: String)], experiment: Experiment, communicator: Communicator,
                    log: (String) -> Void) {
    let folders = experiment.runFolders
    var next = 0, stopped = 0
    var startedAt: [Int: Int] = [:]  // run index → its place in `pending`
    while stopped < communicator.size - 1 {
        let (message, worker) = communicator.receive(count: 2, tag: ComparisonTag.ready)
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
            communicator.send([noRun], to: worker, tag: ComparisonTag.work)
            stopped += 1
            continue
        }
        startedAt[index] = next
        communicator.send([Int64(index)], to: worker, tag: ComparisonTag.work)
        log("[\(next + 1)/\(pending.count)] \(pending[next].label) started (MPI process \(worker))")
        next += 1
    }
}

/// The part of every process but 0 in `mpirun … epicycle compare`: trains the runs process 0 hands
/// out, one after another in this process, each alone with `threads` threads, until told to stop.
/// A run's failure is recorded in its `run.json` (as `executeRun` does) and reported to process 0.
public func serveComparisonRuns(experiment: Experiment, communicator: Communicator, threads: Int) {
    let folders = experiment.runFolders
    var finished: [Int64] = [noRun, 0]
    while true {
        communicator.send(finished, to: 0, tag: ComparisonTag.ready)
        let index = communicator.receive(count: 1, tag: ComparisonTag.work, from: 0).values[0]
        guard index != noRun, folders.indices.contains(Int(index)) else { return }
        let succeeded = (try? executeRun(folder: folders[Int(index)], threads: threads)) != nil
        finished = [index, succeeded ? 1 : 0]
    }
}
