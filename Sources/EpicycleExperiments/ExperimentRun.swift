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
    /// Wall time of the attempt that finished the run (data loading included).
    public var wallSeconds: Double?
    /// Whether that attempt continued from a checkpoint of an earlier, interrupted one.
    public var resumed: Bool
    public var phases: [PhaseHistory]
    public var error: String?

    public init(variant: String, seed: UInt64, program: String, status: Status, finalTop1: Double? = nil,
                bestTop1: Double? = nil, wallSeconds: Double? = nil, resumed: Bool = false, phases: [PhaseHistory] = [],
                error: String? = nil) {
        self.variant = variant
        self.seed = seed
        self.program = program
        self.status = status
        self.finalTop1 = finalTop1
        self.bestTop1 = bestTop1
        self.wallSeconds = wallSeconds
        self.resumed = resumed
        self.phases = phases
        self.error = error
    }

    enum CodingKeys: String, CodingKey {
        case variant, seed, program, status, finalTop1 = "final_top1", bestTop1 = "best_top1", wallSeconds = "wall_seconds"
        case resumed, phases, error
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
/// - Parameter threads: BLAS threads for the run's matrix products (nil: the library's default).
/// - Returns: the finished record. Throws the program's error after recording it as `failed`.
@discardableResult
public func executeRun(folder: String, threads: Int? = nil) throws -> RunRecord {
    guard var record = RunRecord.read(folder: folder) else {
        throw RecipeError(path: "", problem: "\(folder)/run.json is missing or unreadable; run the comparison again to prepare the run")
    }
    guard let program = ExperimentProgram(rawValue: record.program) else {
        throw RecipeError(path: "", problem: "\(folder)/run.json names an unknown program '\(record.program)'")
    }
    let began = Date()
    record.status = .running
    record.resumed = program.phaseFolders.contains { name in
        FileManager.default.fileExists(atPath: (name.isEmpty ? folder : "\(folder)/\(name)") + "/last.h5")
    }
    do {
        if let threads { setBLASThreads(threads) }
        let recipe = try RecipeSource(contentsOf: folder + "/recipe.yaml")
        let result = try program.run(recipe, options: RunOptions(output: folder, resume: true, quiet: true))
        record.phases = try program.phaseFolders.map { name in
            RunRecord.PhaseHistory(name: name, history: try readMetrics(folder: name.isEmpty ? folder : "\(folder)/\(name)"))
        }
        record.finalTop1 = result.phases.last?.finalTop1
        record.bestTop1 = result.phases.last?.bestTop1
        record.wallSeconds = Date().timeIntervalSince(began)
        record.status = .finished
        record.error = nil
        try record.write(folder: folder)
        return record
    } catch {
        record.status = .failed
        record.error = errorMessage(error)
        record.wallSeconds = Date().timeIntervalSince(began)
        try? record.write(folder: folder)
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
