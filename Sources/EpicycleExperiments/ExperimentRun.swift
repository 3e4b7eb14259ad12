import EpicycleMPI
import EpicycleRuntime
import EpicycleTraining
import Foundation

/// What a run's `run.json` records: which run it is, how it ended and its learning curves.
///
/// A run is *finished* when its `run.json` says `finished` and its `recipe.yaml` is the recipe the
/// experiment generates for it now. The runner writes `finished` only after the program returned,
/// i.e. after every epoch of every phase was trained, validated and checkpointed; a run killed
/// earlier is left `running` (or `failed`) and is continued from its `last.h5` the next time.
public struct RunRecord: Codable, Equatable, Sendable {
    public enum Status: String, Codable, Sendable {
        case running, finished, failed
    }

    /// One training phase's metrics history (`metrics.jsonl`).
    public struct PhaseHistory: Codable, Equatable, Sendable {
        /// "" for a single-phase program, else the phase's folder name (`pretrain`, `finetune`).
        public var name: String
        public var history: [EpochRecord]

        public init(name: String, history: [EpochRecord]) {
            self.name = name
            self.history = history
        }
    }

    public var variant: String
    public var seed: UInt64
    public var program: String
    public var status: Status
    /// Validation top-1 (%) after the last epoch of the last phase.
    public var finalTop1: Double?
    /// The best validation top-1 (%) over the last phase's epochs.
    public var bestTop1: Double?
    /// Test top-1 (%) of the last phase's final weights, scored once at its end (`test_top1`); nil in
    /// a run.json written before test scoring.
    public var testTop1: Double?
    /// Test top-1 (%) of the last phase's `best.h5`, the epoch chosen on validation (`test_top1_best`).
    public var testTop1Best: Double?
    /// Test top-1 (%) of the last phase's other models, when its recipe kept them (`OtherModel`): SWA
    /// and EMA of the weights, the ensemble of the snapshots at the cycle ends.
    public var testTop1SWA: Double?
    public var testTop1EMA: Double?
    public var testTop1SnapshotEnsemble: Double?
    /// Whether any phase validated on the test split, so that selection saw the test images
    /// (`validates_on_test`); nil in a run.json written before it was recorded.
    public var validatesOnTest: Bool?
    /// Wall time of the attempt that finished the run (data loading included).
    public var wallSeconds: Double?
    /// Whether that attempt continued from a checkpoint of an earlier, interrupted one.
    public var resumed: Bool
    public var phases: [PhaseHistory]
    /// The last phase's points of a one-run accuracy-vs-budget curve, one per cycle end (its
    /// `tradeoff.csv`); nil in a run.json written before they were recorded.
    public var tradeoff: [TradeoffPoint]?
    public var error: String?

    public init(variant: String, seed: UInt64, program: String, status: Status, finalTop1: Double? = nil,
                bestTop1: Double? = nil, testTop1: Double? = nil, testTop1Best: Double? = nil, validatesOnTest: Bool? = nil,
                wallSeconds: Double? = nil, resumed: Bool = false, phases: [PhaseHistory] = [], tradeoff: [TradeoffPoint]? = nil,
                error: String? = nil) {
        self.variant = variant
        self.seed = seed
        self.program = program
        self.status = status
        self.finalTop1 = finalTop1
        self.bestTop1 = bestTop1
        self.testTop1 = testTop1
        self.testTop1Best = testTop1Best
        self.validatesOnTest = validatesOnTest
        self.wallSeconds = wallSeconds
        self.resumed = resumed
        self.phases = phases
        self.tradeoff = tradeoff
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case variant, seed, program, status, finalTop1 = "final_top1", bestTop1 = "best_top1", wallSeconds = "wall_seconds"
        case testTop1 = "test_top1", testTop1Best = "test_top1_best", validatesOnTest = "validates_on_test"
        case testTop1SWA = "test_top1_swa", testTop1EMA = "test_top1_ema", testTop1SnapshotEnsemble = "test_top1_snapshot_ensemble"
        case resumed, phases, tradeoff, error
    }

    /// "variant/seed-N", as messages and tables name a run.
    public var label: String { "\(variant)/seed-\(seed)" }

    static func read(folder: String) -> RunRecord? {
        guard let data = FileManager.default.contents(atPath: folder + "/run.json") else { return nil }
        return try? jsonDecoder.decode(RunRecord.self, from: data)
    }

    func write(folder: String) throws {
        try jsonEncoder.encode(self).write(to: URL(fileURLWithPath: folder + "/run.json"), options: .atomic)
    }
}

private let jsonEncoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return encoder
}()

private let jsonDecoder: JSONDecoder = {
    let decoder = JSONDecoder()
    decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return decoder
}()

/// Runs one prepared run in this process and records the outcome in its `run.json`.
///
/// The folder holds the run's `recipe.yaml` and a `run.json` with status `running`, as
/// `runComparison` leaves them; checkpoints and metrics go to the same folder, and a `last.h5` left
/// by an interrupted attempt is continued. `epicycle compare-run` is this function in a child process.
/// - Parameters:
///   - threads: at most this many threads for every pool of the run (kernels, OpenBLAS), whatever
///     its recipe's `threads:` says (nil: the recipe's, else all cores).
///   - communicator: the processes to train the run data-parallel over (every one of them calls this);
///     nil: this process alone.
/// - Returns: the finished record. Throws the program's error after recording it as `failed`.
@discardableResult
public func executeRun(folder: String, threads: Int? = nil, communicator: Communicator? = nil) throws -> RunRecord {
    guard var record = RunRecord.read(folder: folder) else {
        throw RecipeError(path: "", problem: "\(folder)/run.json is missing or unreadable; run the comparison again to prepare the run")
    }
    guard let program = ExperimentProgram(rawValue: record.program) else {
        throw RecipeError(path: "", problem: "\(folder)/run.json names an unknown program '\(record.program)'")
    }
    // Data-parallel, process 0 of the run's processes writes, as it writes the run's other files.
    let writes = (communicator?.rank ?? 0) == 0
    let began = Date()
    record.status = .running
    record.resumed = program.phaseFolders.contains { name in
        FileManager.default.fileExists(atPath: (name.isEmpty ? folder : "\(folder)/\(name)") + "/last.h5")
    }
    do {
        let recipe = try RecipeSource(contentsOf: folder + "/recipe.yaml")
        let result = try program.run(recipe, options: RunOptions(output: folder, resume: true, quiet: true, threadLimit: threads,
                                                                 communicator: communicator))
        record.phases = try program.phaseFolders.map { name in
            RunRecord.PhaseHistory(name: name, history: try readMetrics(folder: name.isEmpty ? folder : "\(folder)/\(name)"))
        }
        record.finalTop1 = result.phases.last?.finalTop1
        record.bestTop1 = result.phases.last?.bestTop1
        record.testTop1 = result.phases.last?.test?.last.top1
        record.testTop1Best = result.phases.last?.test?.best.top1
        record.testTop1SWA = result.phases.last?.test?.swa?.top1
        record.testTop1EMA = result.phases.last?.test?.ema?.top1
        record.testTop1SnapshotEnsemble = result.phases.last?.test?.snapshotEnsemble?.top1
        record.validatesOnTest = result.phases.contains(where: \.validatesOnTest)
        record.tradeoff = result.phases.last?.tradeoff
        record.wallSeconds = Date().timeIntervalSince(began)
        record.status = .finished
        record.error = nil
        if writes { try record.write(folder: folder) }
        return record
    } catch {
        record.status = .failed
        record.error = errorMessage(error)
        record.wallSeconds = Date().timeIntervalSince(began)
        if writes { try? record.write(folder: folder) }
        throw error
    }
}

/// The epoch records of a phase's `metrics.jsonl`.
func readMetrics(folder: String) throws -> [EpochRecord] {
    let path = folder + "/metrics.jsonl"
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw RecipeError(path: "", problem: "cannot read \(path)")
    }
    return try text.split(separator: "\n").map { line in
        try jsonDecoder.decode(EpochRecord.self, from: Data(line.utf8))
    }
}
