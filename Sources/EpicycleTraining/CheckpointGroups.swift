import EpicycleCheckpoint
import EpicycleRuntime
import EpicycleSchedules

/// Checkpoints that cannot be averaged or ensembled together; the message names the file and the
/// tensor or `/data` field that differs.
public struct IncompatibleCheckpoints: Error, CustomStringConvertible {
    public var description: String
}

/// Several checkpoints read for one soup or ensemble, with the data they are scored on: the first
/// one's dataset and splits (see `EvaluationSource`), which every other one must share.
struct CheckpointGroup {
    let paths: [String]
    let checkpoints: [Checkpoint]
    let source: EvaluationSource

    /// The most checkpoints one soup or ensemble takes.
    static let limit = RecipeLimits.listLength

    /// Reads `paths` and checks that they share the input pipeline (`/data`: dataset, image shape,
    /// normalisation, classes) and the splits they are scored on.
    /// - Parameter what: "soup" or "ensemble", for messages.
    init(_ paths: [String], what: String, dataset: String? = nil, folder: String? = nil, classes: [Int]? = nil) throws {
        guard paths.count >= 2 else {
            throw IncompatibleCheckpoints(description: "a \(what) needs at least 2 checkpoints, got \(paths.count)")
        }
        guard paths.count <= Self.limit else {
            throw IncompatibleCheckpoints(description: "a \(what) takes at most \(Self.limit) checkpoints, got \(paths.count)")
        }
        self.paths = paths
        checkpoints = try paths.map { try Checkpoint.read(from: $0) }
        let sources = zip(checkpoints, paths).map { EvaluationSource($0, path: $1, dataset: dataset, folder: folder, classes: classes) }
        source = sources[0]
        guard let reference = checkpoints[0].input else { throw Self.noInput(paths[0]) }
        for index in 1..<paths.count {
            guard let input = checkpoints[index].input else { throw Self.noInput(paths[index]) }
            let fields: [(name: String, first: String, other: String)] = [
                ("dataset", reference.dataset, input.dataset),
                ("height", String(reference.height), String(input.height)),
                ("width", String(reference.width), String(input.width)),
                ("channels", String(reference.channels), String(input.channels)),
                ("mean", "\(reference.mean)", "\(input.mean)"),
                ("std", "\(reference.standardDeviation)", "\(input.standardDeviation)"),
                ("classes", "\(reference.classes)", "\(input.classes)"),
                ("class_names", "\(reference.classNames)", "\(input.classNames)"),
            ]
            if let field = fields.first(where: { $0.first != $0.other }) {
                throw differs("/data field '\(field.name)'", index, field.first, field.other)
            }
            let (a, b) = (source.dataRecipe, sources[index].dataRecipe)
            let splits: [(name: String, first: String, other: String)] = [
                ("dataset", a.folder ?? a.dataset, b.folder ?? b.dataset),
                ("classes", a.classes.map { "\($0)" } ?? "all", b.classes.map { "\($0)" } ?? "all"),
                ("validation", a.validation.description, b.validation.description),
            ]
            if let field = splits.first(where: { $0.first != $0.other }) {
                throw differs("the recipe's data.\(field.name) (which decides the split scored)", index, field.first, field.other)
            }
        }
    }

    private static func noInput(_ path: String) -> IncompatibleCheckpoints {
        IncompatibleCheckpoints(description: "\(path) has no /data (input pipeline), so nothing shows it shares the others' "
                                + "inputs; it was written before /data existed")
    }

    /// "<what> differs: a.h5 has X, b.h5 has Y".
    func differs(_ what: String, _ index: Int, _ first: String, _ other: String) -> IncompatibleCheckpoints {
        IncompatibleCheckpoints(description: "\(what) differs: \(paths[0]) has \(shortenedForMessage(first)), "
                                + "\(paths[index]) has \(shortenedForMessage(other))")
    }

    /// The images the group is scored on, fed as the first checkpoint's `/data` says.
    func data(spec: ModelSpec) throws -> PreparedData {
        try source.data(for: checkpoints[0], path: paths[0], spec: spec)
    }
}
