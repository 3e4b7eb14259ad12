import EpicycleCheckpoint
import Foundation
import Testing
import TestSupport

/// Kill -9 and Ctrl-C at chosen moments of a `cycle` run (pretraining then fine-tuning, every epoch
/// checkpointed, validation held out), each followed by `--resume` until the run finishes: the folder
/// must then be what an uninterrupted run leaves — the same files, every checkpoint equal in every
/// tensor, attribute and metric but its creation time, and the same metrics files but for their
/// wall-clock columns. The moments come from the binary's test hook (`EPICYCLE_FAULT_KILL_AT`,
/// `EPICYCLE_FAULT_INTERRUPT_AT`: right after the n-th step, completed temporary file, rename or
/// metrics append), plus kills at random times.
@Suite struct InterruptionTests {
    static let recipe = """
        name: faults
        seed: 3
        threads: 1
        checkpoint_every: 1
        model: {architecture: resnet8}
        knobs:
          learning_rate: 0.05
          batch_size: 64
        pretrain:
          data: {classes: [0, 1, 2, 3, 4], first: 192, validation: 64}
          epochs: 2
        finetune:
          data: {classes: [5, 6, 7, 8, 9], per_class: 30, validation: 50}
          epochs: 2
        """

    static let arguments = ["cycle", "--recipe", "faults.yaml", "--output", "out", "--quiet"]

    /// A fresh folder holding the recipe.
    static func folder(_ name: String) throws -> String {
        let folder = CLITests.folder(name)
        try recipe.write(toFile: folder + "/faults.yaml", atomically: true, encoding: .utf8)
        return folder
    }

    /// The uninterrupted run's output folder and its wall-clock seconds, made once for every case.
    static let reference: Result<(folder: String, seconds: Double), any Error> = Result {
        let folder = try Self.folder("fault-reference")
        let began = Date()
        let run = try CLITests.run(arguments, in: folder)
        guard run.status == 0, !run.signalled else { throw Failure("the uninterrupted run failed: \(run.errors)") }
        return (folder + "/out", Date().timeIntervalSince(began))
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// Which signal the hook raises after which kind of event, and at which events: the listed ones,
    /// or (with `every`) the 1st, (1 + every)-th, … until the run has no such event left.
    struct Fault: Sendable, CustomTestStringConvertible {
        var variable: String
        var event: String
        var every = 1
        var listed: [Int]?

        static func kill(_ event: String, every: Int = 1, at listed: [Int]? = nil) -> Fault {
            Fault(variable: "EPICYCLE_FAULT_KILL_AT", event: event, every: every, listed: listed)
        }

        static func interrupt(_ event: String, at listed: [Int]) -> Fault {
            Fault(variable: "EPICYCLE_FAULT_INTERRUPT_AT", event: event, listed: listed)
        }

        var isKill: Bool { variable.hasSuffix("KILL_AT") }
        var testDescription: String {
            "\(isKill ? "SIGKILL" : "SIGINT") after \(event) " + (listed.map { "\($0)" } ?? "every \(every)")
        }
    }

    // The run has 12 steps (3 per epoch, 2 epochs per phase), 11 checkpoint files written (5 in
    // pretraining, whose second epoch does not improve) and 8 metrics appends (4 per phase).
    // Every moment between two files is struck with SIGKILL; SIGINT strikes mid-epoch (steps 2, 8),
    // on an epoch's last step (3, 6, 12: 6 ends pretraining), and during the saves, among them
    // pretraining's last file and append (rename 5, metrics 4), just before the fine-tune would start.
    @Test(arguments: [
        Fault.kill("rename"), .kill("metrics"), .kill("tmp", every: 2), .kill("step", at: [2, 7]),
        .interrupt("step", at: [2, 3, 6, 8, 12]), .interrupt("rename", at: [1, 5]), .interrupt("metrics", at: [3, 4, 8]),
    ])
    func faultAtChosenMoments(_ fault: Fault) throws {
        let reference = try Self.reference.get().folder
        var struck = 0
        for n in fault.listed ?? Array(stride(from: 1, through: 200, by: fault.every)) {
            let folder = try Self.folder("fault")
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let first = try CLITests.run(Self.arguments, in: folder, environment: [fault.variable: "\(fault.event):\(n)"])
            let moment = "\(fault.isKill ? "SIGKILL" : "SIGINT") after \(fault.event) \(n)"
            guard first.errors.contains("fault injection:") else {
                // Fewer events than n: the run went through untouched.
                #expect(fault.listed == nil, "\(moment): the run has no such event")
                #expect(first.status == 0 && !first.signalled, "\(moment): \(first.errors)")
                break
            }
            struck += 1
            if fault.isKill {
                #expect(first.signalled && first.status == SIGKILL, "\(moment): \(first.status) \(first.errors)")
            } else {
                #expect(!first.signalled && first.status == 130 && first.errors.contains("continue with --resume"),
                        "\(moment): the Ctrl-C must stop the run (status \(first.status), \(first.errors))")
            }
            try resumeToTheEnd(in: folder, moment)
            try expectSameRun(folder + "/out", reference, moment)
        }
        #expect(struck >= (fault.listed?.count ?? 2), "\(fault.testDescription): struck \(struck) times")
    }

    /// SIGKILL at random moments, the first resume killed again at random, then resumed to the end.
    @Test(arguments: 0..<2)
    func killAtRandomTimes(_ index: Int) throws {
        let (reference, seconds) = try Self.reference.get()
        let folder = try Self.folder("fault-random")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var delays: [Double] = []
        for arguments in [Self.arguments, Self.arguments + ["--resume"]] {
            let delay = Double.random(in: 0.2...max(0.3, seconds))
            delays.append(delay)
            let deadline = Date().addingTimeInterval(delay)
            _ = try CLITests.run(arguments, in: folder, signal: SIGKILL) { _ in Date() >= deadline }
        }
        let moment = "SIGKILL after \(delays.map { String(format: "%.2f s", $0) }.joined(separator: ", then "))"
        try resumeToTheEnd(in: folder, moment)
        try expectSameRun(folder + "/out", reference, moment)
    }

    /// A save that fails (as on a full disk) stops the run with the file's name, and the metrics
    /// files hold no epoch that `last.h5` does not: here the second epoch's numbered copy cannot be
    /// written, because a folder sits where its temporary file goes.
    @Test func failedSaveLeavesNoMetricsAheadOfTheCheckpoint() throws {
        let folder = try Self.folder("fault-save")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let out = folder + "/out"
        // Blocked once the run has opened its folder (opening removes stale temporary files); signal 0
        // sends nothing, the condition's side effect is the fault.
        let failed = try CLITests.run(["pretrain", "--recipe", "faults.yaml", "--output", "out", "--quiet"], in: folder,
                                      signal: 0) { _ in
            guard FileManager.default.fileExists(atPath: out + "/metrics.jsonl") else { return false }
            return (try? FileManager.default.createDirectory(atPath: out + "/epoch-0002.h5.tmp",
                                                              withIntermediateDirectories: false)) != nil
        }
        #expect(failed.status != 0 && failed.errors.contains("epoch-0002.h5"), "\(failed.status): \(failed.errors)")
        let saved = try #require(try Checkpoint.read(from: out + "/last.h5").training)
        #expect(saved.epoch == 1)
        let csv = try Self.csvRows(out + "/metrics.csv").filter { $0 != [""] }
        #expect(csv.count - 1 == saved.metrics.rows.count, "metrics.csv has \(csv.count - 1) epochs, last.h5 \(saved.metrics.rows.count)")
        #expect(try Self.jsonRows(out + "/metrics.jsonl").count == saved.metrics.rows.count)
    }

    /// `--resume` until a run exits 0 (no hook is set, so once should do).
    func resumeToTheEnd(in folder: String, _ moment: String) throws {
        for _ in 0..<3 {
            let resumed = try CLITests.run(Self.arguments + ["--resume"], in: folder)
            if resumed.status == 0 && !resumed.signalled { return }
            Issue.record("\(moment): --resume failed (status \(resumed.status)): \(resumed.errors)")
        }
    }

    /// The files of two run folders, relative and sorted.
    static func files(_ folder: String) -> [String] {
        (FileManager.default.enumerator(atPath: folder)?.allObjects as? [String] ?? [])
            .filter { path in
                var isFolder: ObjCBool = false
                return FileManager.default.fileExists(atPath: folder + "/" + path, isDirectory: &isFolder) && !isFolder.boolValue
            }.sorted()
    }

    /// Columns that hold wall-clock figures, which no two runs share.
    static let clockColumns: Set<String> = ["seconds", "img_per_s", "train_seconds"]

    /// TensorBoard event files carry wall times and a resumed run adds one, so only the folders that
    /// hold them are compared.
    func expectSameRun(_ folder: String, _ reference: String, _ moment: String) throws {
        func isEventFile(_ name: String) -> Bool { URL(fileURLWithPath: name).lastPathComponent.hasPrefix("events.out.tfevents.") }
        func eventFolders(_ names: [String]) -> Set<String> {
            Set(names.filter(isEventFile).map { ($0 as NSString).deletingLastPathComponent })
        }
        let all = Self.files(folder), names = all.filter { !isEventFile($0) }
        #expect(names == Self.files(reference).filter { !isEventFile($0) }, "\(moment): the run folder holds other files")
        #expect(eventFolders(all) == eventFolders(Self.files(reference)), "\(moment): event files are missing")
        for name in names where FileManager.default.fileExists(atPath: reference + "/" + name) {
            let differences: [String]
            if name.hasSuffix(".h5") {
                differences = checkpointDifferences(try Checkpoint.read(from: folder + "/" + name),
                                                    try Checkpoint.read(from: reference + "/" + name),
                                                    comparingCreated: false, ignoringColumns: Self.clockColumns)
            } else if name.hasSuffix(".csv") {
                differences = try Self.csvRows(folder + "/" + name) == Self.csvRows(reference + "/" + name) ? [] : ["rows differ"]
            } else if name.hasSuffix(".jsonl") {
                differences = try Self.jsonRows(folder + "/" + name) == Self.jsonRows(reference + "/" + name) ? [] : ["rows differ"]
            } else {
                differences = []
            }
            #expect(differences.isEmpty, "\(moment): \(name): \(differences.prefix(5).joined(separator: "; "))")
        }
    }

    /// The CSV's rows with the clock columns blanked.
    static func csvRows(_ path: String) throws -> [[String]] {
        let rows = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let masked = Set((rows.first ?? []).indices.filter { clockColumns.contains(rows[0][$0]) })
        return rows.map { row in row.indices.map { masked.contains($0) ? "" : row[$0] } }
    }

    /// The JSON lines' objects without the clock keys.
    static func jsonRows(_ path: String) throws -> [NSDictionary] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { line in
            guard var object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw Failure("\(path): a line is not a JSON object: \(line)")
            }
            for key in clockColumns { object[key] = nil }
            // Columns beside the knobs (`train_seconds`) sit in the record's `knobs` object.
            if var knobs = object["knobs"] as? [String: Any] {
                for key in clockColumns { knobs[key] = nil }
                object["knobs"] = knobs
            }
            return object as NSDictionary
        }
    }
}
