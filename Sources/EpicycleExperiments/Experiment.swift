import EpicycleDistillation
import EpicycleSchedules
import EpicycleTraining
import Foundation
import Yams

/// The program every run of an experiment executes. Its raw value is the name experiment files use.
public enum ExperimentProgram: String, CaseIterable, Sendable {
    case pretrain, cycle, distill

    /// Checks that `recipe` decodes for this program, so a bad variant fails before any run starts.
    func validate(_ recipe: RecipeSource) throws {
        switch self {
        case .pretrain:
            guard try recipe.decode(Recipe.self).pretrain != nil else {
                throw RecipeError(path: "pretrain", problem: "is required for pretraining")
            }
        case .distill:
            _ = try DistillRecipe.required(in: recipe.decodeRecipe(sections: [DistillRecipe.self]))
        case .cycle:
            let decoded = try recipe.decode(Recipe.self)
            guard decoded.pretrain != nil, decoded.finetune != nil else {
                throw RecipeError(path: "", problem: "a cycle recipe needs both a 'pretrain' and a 'finetune' phase")
            }
        }
    }

    /// The recipe as the run folder keeps it (`recipe.yaml`): decoded as this program reads it, every
    /// default written out, relative paths relative to `folder`. It decodes back to the same recipe.
    func resolvedText(_ recipe: RecipeSource, in folder: String) throws -> String {
        let sections: [any RecipeSection.Type] = self == .distill ? [DistillRecipe.self] : []
        return try resolvedRecipeText(recipe.decodeRecipe(sections: sections), source: recipe.relocated(to: folder))
    }

    /// Runs the program, checkpoints and metrics going to `options.output`.
    func run(_ recipe: RecipeSource, options: RunOptions) throws -> ProgramResult {
        switch self {
        case .pretrain: return try EpicycleTraining.pretrain(recipe: recipe, options: options)
        case .cycle: return try EpicycleTraining.cycle(recipe: recipe, options: options)
        case .distill: return try EpicycleDistillation.distill(teacher: nil, recipe: recipe, options: options)
        }
    }

    /// Sub-folders of a run's output holding one phase's `metrics.jsonl` each, in training order.
    var phaseFolders: [String] {
        switch self {
        case .pretrain, .distill: return [""]
        case .cycle: return ["pretrain", "finetune"]
        }
    }
}

/// One named variant of the base recipe: `--set`-style overrides applied on top of it.
public struct Variant: Equatable, Sendable {
    public var name: String
    /// `key.path=value` strings, the value YAML (as `epicycle pretrain --set` takes them).
    public var overrides: [String]

    public init(name: String, overrides: [String]) {
        self.name = name
        self.overrides = overrides
    }
}

/// A comparison of recipe variants over seeds (see DESIGN.md, "Recipes"), read from YAML:
///
///     name: cyclical-wd-fmnist
///     program: pretrain                 # pretrain | cycle | distill
///     recipe: teacher-resnet20.yaml     # relative to this file; or `base:` with the recipe inline
///     seeds: [0, 1, 2]
///     baseline: constant                # default: the first variant
///     variants:
///       constant: {}
///       cyclical: {knobs.weight_decay: {cyclical: {easy: 1e-5, hard: 8e-5, factor: 2}}}
///     results: results/cyclical-wd-fmnist   # relative to this file; this is the default
///
/// Every run is the base recipe, the variant's overrides and `seed: <seed>`. A relative path in the
/// base recipe is relative to its file, one in a variant to the experiment file (`RecipePaths`); a
/// run's `recipe.yaml` gives them relative to the run folder, so the whole tree can move.
public struct Experiment: Sendable {
    public var name: String
    public var program: ExperimentProgram
    /// The base recipe, as read (file or inline mapping).
    public var recipe: RecipeSource
    public var seeds: [UInt64]
    public var baseline: String
    /// In the order the file lists them.
    public var variants: [Variant]
    /// The folder for runs, tables and the report.
    public var results: String
    /// The experiment file, for messages and the report.
    public var origin: String
    /// The absolute folder the variants' relative paths are relative to: the experiment file's.
    public var folder: String

    static let keys = ["name", "program", "recipe", "base", "seeds", "baseline", "variants", "results"]
    /// Recipe keys the runner sets itself.
    static let reservedRecipeKeys = ["seed", "output", "threads"]

    /// - Parameter folder: what the variants' relative paths are relative to (the experiment file's
    ///   folder); nil: the working folder.
    public init(name: String, program: ExperimentProgram, recipe: RecipeSource, seeds: [UInt64], baseline: String,
                variants: [Variant], results: String, origin: String = "<inline>", folder: String? = nil) throws {
        self.folder = folder.map { RecipePaths.absolutePath(of: $0, in: RecipePaths.workingFolder) } ?? RecipePaths.workingFolder
        self.name = name
        self.program = program
        self.recipe = recipe
        self.seeds = seeds
        self.baseline = baseline
        self.variants = variants
        self.results = results
        self.origin = origin
        try validate()
    }

    public init(contentsOf path: String) throws {
        try self.init(text: try readRecipeText(path, kind: "experiment"), origin: path)
    }

    /// - Parameter origin: the experiment file's path; relative `recipe` and `results` paths are
    ///   resolved against its folder.
    public init(text: String, origin: String) throws {
        let root = try composeRecipe(text, origin: origin)
        guard let mapping = root.mapping else { throw RecipeError(path: "", problem: "\(origin): expected a mapping of \(Self.keys.joined(separator: ", "))") }
        for key in mapping.keys where !Self.keys.contains(key.string ?? "") {
            throw RecipeError(path: shortenedForMessage(key.string ?? "\(key)"), problem: "unknown key; expected one of \(Self.keys.joined(separator: ", "))")
        }
        let folder = RecipePaths.folder(of: origin)
        func resolve(_ path: String) -> String { RecipePaths.absolutePath(of: path, in: folder) }
        func string(_ key: String) throws -> String? {
            guard let node = mapping[key] else { return nil }
            guard case .scalar = node, let value = node.string, !value.isEmpty else {
                throw RecipeError(path: key, problem: "expected text, got \(node.mapping != nil ? "a mapping" : node.sequence != nil ? "a list" : "nothing")")
            }
            guard value.count <= RecipeLimits.textLength else {
                throw RecipeError(path: key, problem: "must be at most \(RecipeLimits.textLength) characters, got '\(shortenedForMessage(value))'")
            }
            return value
        }

        let name = try string("name") ?? URL(fileURLWithPath: origin).deletingPathExtension().lastPathComponent
        guard isSafeRunName(name) else {
            throw RecipeError(path: "name", problem: "names the results folder: use letters, digits, '-', '_' and '.', not starting with '.', got '\(shortenedForMessage(name))'")
        }
        guard let programName = try string("program") else {
            throw RecipeError(path: "program", problem: "is required: one of \(ExperimentProgram.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let program = ExperimentProgram(rawValue: programName) else {
            throw RecipeError(path: "program", problem: "expected one of \(ExperimentProgram.allCases.map(\.rawValue).joined(separator: ", ")), got '\(shortenedForMessage(programName))'")
        }

        let recipe: RecipeSource
        switch (try string("recipe"), mapping["base"]) {
        case let (path?, nil):
            do {
                recipe = try RecipeSource(contentsOf: resolve(path))
            } catch let error as RecipeError where error.path.isEmpty {
                throw RecipeError(path: "recipe", problem: error.problem)
            }
        case let (nil, base?):
            guard case .mapping = base else { throw RecipeError(path: "base", problem: "expected the recipe as a mapping") }
            recipe = try RecipeSource(text: try Yams.serialize(node: base), origin: origin + ": base", folder: folder)
        case (nil, nil): throw RecipeError(path: "", problem: "an experiment needs 'recipe: <file>' or an inline 'base:' recipe")
        case (_?, _?): throw RecipeError(path: "", problem: "set recipe or base, not both")
        }

        guard let seedsNode = mapping["seeds"] else { throw RecipeError(path: "seeds", problem: "is required, e.g. [0, 1, 2]") }
        guard let seedNodes = seedsNode.sequence, !seedNodes.isEmpty else { throw RecipeError(path: "seeds", problem: "expected a non-empty list of whole numbers") }
        guard seedNodes.count <= RecipeLimits.listLength else {
            throw RecipeError(path: "seeds", problem: "must list at most \(RecipeLimits.listLength) seeds, got \(seedNodes.count)")
        }
        let seeds = try seedNodes.enumerated().map { index, node in
            guard let value = node.string.flatMap({ UInt64($0) }) else {
                throw RecipeError(path: "seeds[\(index)]", problem: "expected a whole number ≥ 0, got '\(shortenedForMessage(node.string ?? "\(node)"))'")
            }
            return value
        }

        guard let variantsNode = mapping["variants"] else { throw RecipeError(path: "variants", problem: "is required: a mapping of variant name to overrides") }
        guard let variantMapping = variantsNode.mapping, !variantMapping.isEmpty else {
            throw RecipeError(path: "variants", problem: "expected a non-empty mapping of variant name to overrides, e.g. {constant: {}}")
        }
        guard variantMapping.count <= RecipeLimits.listLength, variantMapping.count * seedNodes.count <= RecipeLimits.runs else {
            throw RecipeError(path: "variants", problem: "must list at most \(RecipeLimits.listLength) variants and \(RecipeLimits.runs) runs with the seeds, got \(variantMapping.count) × \(seedNodes.count)")
        }
        var variants: [Variant] = []
        for (key, value) in variantMapping {
            let variantName = key.string ?? "\(key)"
            var overrides: [String] = []
            switch value {
            case let .mapping(entries):
                for (path, setting) in entries {
                    let valueText = try setting.scalar.map(\.string)
                        ?? Yams.serialize(node: flowStyled(setting), width: -1).trimmingCharacters(in: .whitespacesAndNewlines)
                    overrides.append("\(path.string ?? "\(path)")=\(valueText)")
                }
            case .scalar where value.string?.isEmpty ?? false || value.null != nil:
                break
            default:
                throw RecipeError(path: "variants.\(shortenedForMessage(variantName))", problem: "expected a mapping of key.path: value (or {} for the base recipe)")
            }
            variants.append(Variant(name: variantName, overrides: overrides))
        }
        try self.init(name: name, program: program, recipe: recipe, seeds: seeds,
                      baseline: try string("baseline") ?? variants[0].name, variants: variants,
                      results: resolve(try string("results") ?? "results/\(name)"), origin: origin, folder: folder)
    }

    private func validate() throws {
        guard !seeds.isEmpty else { throw RecipeError(path: "seeds", problem: "must not be empty") }
        if let repeated = seeds.first(where: { seed in seeds.filter { $0 == seed }.count > 1 }) {
            throw RecipeError(path: "seeds", problem: "lists seed \(repeated) twice")
        }
        guard !variants.isEmpty else { throw RecipeError(path: "variants", problem: "must not be empty") }
        for (index, variant) in variants.enumerated() {
            let path = "variants.\(shortenedForMessage(variant.name))"
            guard isSafeRunName(variant.name) else {
                throw RecipeError(path: path, problem: "a variant name becomes a folder name: use letters, digits, '-', '_' and '.'")
            }
            guard !variants[..<index].contains(where: { $0.name == variant.name }) else {
                throw RecipeError(path: path, problem: "appears twice")
            }
            for override in variant.overrides {
                let key = override.prefix { $0 != "=" }
                if Self.reservedRecipeKeys.contains(String(key)) {
                    throw RecipeError(path: "\(path).\(key)", problem: "is set by the experiment runner (seeds, run folders, threads); remove it from the variant")
                }
            }
            do {
                try program.validate(try runRecipe(variant: variant, seed: seeds[0]))
            } catch let error as RecipeError {
                throw RecipeError(path: error.path.isEmpty ? path : "\(path): \(error.path)", problem: error.problem)
            }
        }
        guard variants.contains(where: { $0.name == baseline }) else {
            throw RecipeError(path: "baseline", problem: "'\(shortenedForMessage(baseline))' is not a variant; expected one of \(variants.map(\.name).joined(separator: ", "))")
        }
    }

    /// The recipe of one run: the base, the variant's overrides, and the seed.
    public func runRecipe(variant: Variant, seed: UInt64) throws -> RecipeSource {
        try RecipeSource(text: recipe.text, origin: "\(origin): variant \(variant.name), seed \(seed)", folder: recipe.folder,
                         overrides: variant.overrides + ["seed=\(seed)"], overridesFolder: folder)
    }

    /// Where a run's recipe, checkpoints, metrics and `run.json` go.
    public func runFolder(variant: String, seed: UInt64) -> String {
        "\(results)/runs/\(variant)/seed-\(seed)"
    }
}

/// The node with every mapping and sequence in flow style, so an override reads as one line
/// (`knobs.weight_decay={cyclical: {easy: 1e-5, hard: 8e-5}}`).
private func flowStyled(_ node: Node) -> Node {
    switch node {
    case let .mapping(mapping):
        return .mapping(Node.Mapping(mapping.map { (flowStyled($0.key), flowStyled($0.value)) }, mapping.tag, .flow))
    case let .sequence(sequence):
        return .sequence(Node.Sequence(sequence.map(flowStyled), sequence.tag, .flow))
    default:
        return node
    }
}
