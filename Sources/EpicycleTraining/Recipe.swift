import EpicycleData
import EpicycleRuntime
import EpicycleSchedules

/// The whole description of a run (see DESIGN.md, "Recipes"). One recipe format serves `pretrain`
/// (needs `pretrain:`), `finetune` (needs `finetune:`) and `cycle` (needs both): knobs at the top
/// level apply to every phase, and a phase's own `knobs:` override them for that phase. `distill`
/// uses `pretrain:` as the student's phase and its own `distill:` section (see `DistillRecipe`).
public struct Recipe: Decodable, Sendable {
    public var name: String?
    public var seed: UInt64
    public var model: ModelRecipe
    public var optimizer: OptimizerRecipe
    public var loss: LossRecipe
    public var knobs: KnobSchedules
    public var pretrain: PhaseRecipe?
    public var finetune: PhaseRecipe?
    /// The teacher and the loss terms of `epicycle distill`.
    public var distill: DistillRecipe?
    /// Where checkpoints and metrics go; default `Checkpoints/<name>`.
    public var output: String?
    /// Also keep `epoch-N.h5` every this many epochs (0: only `last.h5` and `best.h5`).
    public var checkpointEvery: Int
    /// Threads for matrix products; default: all cores.
    public var threads: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, seed, model, optimizer, loss, knobs, pretrain, finetune, distill, output
        case checkpointEvery = "checkpoint_every", threads
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.text(forKey: .name, maxLength: RecipeLimits.nameLength)
        if let name, !isSafeRunName(name) {
            throw RecipeError(path: "name", problem: "becomes a folder name under Checkpoints/: use letters, digits, '-', '_' and '.', not starting with '.', got '\(shortenedForMessage(name))'")
        }
        seed = try container.decodeIfPresent(UInt64.self, forKey: .seed) ?? 0
        model = try container.decode(ModelRecipe.self, forKey: .model)
        optimizer = try container.decodeIfPresent(OptimizerRecipe.self, forKey: .optimizer) ?? OptimizerRecipe()
        loss = try container.decodeIfPresent(LossRecipe.self, forKey: .loss) ?? LossRecipe()
        knobs = try container.decodeIfPresent(KnobSchedules.self, forKey: .knobs) ?? KnobSchedules()
        pretrain = try container.decodeIfPresent(PhaseRecipe.self, forKey: .pretrain)
        finetune = try container.decodeIfPresent(PhaseRecipe.self, forKey: .finetune)
        distill = try container.decodeIfPresent(DistillRecipe.self, forKey: .distill)
        output = try container.text(forKey: .output)
        if let output, output.isEmpty || output.hasPrefix("/") || output.split(separator: "/").contains("..") {
            throw RecipeError(path: "output", problem: "must be a folder inside the working folder (relative, without '..'), got '\(shortenedForMessage(output))'; --output writes anywhere")
        }
        checkpointEvery = try container.wholeNumber(forKey: .checkpointEvery, in: RecipeLimits.checkpointEvery) ?? 0
        threads = try container.wholeNumber(forKey: .threads, in: RecipeLimits.threads)
        if distill != nil && pretrain == nil {
            throw RecipeError(path: "distill", problem: "the student trains on the recipe's 'pretrain' phase; add one (pretrain: {data: …, epochs: …})")
        }
        if pretrain == nil && finetune == nil {
            throw RecipeError(path: "", problem: "a recipe needs a 'pretrain' or a 'finetune' phase (or both, for 'cycle')")
        }
        if loss.kind != .cyclicalFocal && knobs.schedules[.focalMix] != nil {
            throw RecipeError(path: "knobs.focal_mix", problem: "only applies with loss.kind: cyclical_focal")
        }
    }

    /// The knobs in force during a phase, defaults filled in.
    public func knobs(for phase: Phase) -> KnobSchedules {
        let own = (phase == .pretrain ? pretrain : finetune)?.knobs ?? KnobSchedules()
        var all = knobs.merging(own).withDefaults
        if loss.kind == .cyclicalFocal && all.schedules[.focalMix] == nil {
            all.schedules[.focalMix] = .constant(0.5)
        }
        return all
    }
}

/// The two halves of the cycle.
public enum Phase: String, Sendable {
    case pretrain, finetune
}

public struct ModelRecipe: Decodable, Sendable, Equatable {
    public var architecture: String
    public var shortcut: ModelSpec.Shortcut
    public var dropout: Float

    enum CodingKeys: String, CodingKey, CaseIterable { case architecture, shortcut, dropout }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        guard let architecture = try container.text(forKey: .architecture) else {
            throw RecipeError(path: decoder.path + ".architecture", problem: "is required, e.g. resnet20")
        }
        self.architecture = architecture
        let shortcutText = try container.text(forKey: .shortcut) ?? "A"
        guard let shortcut = ModelSpec.Shortcut(rawValue: shortcutText.uppercased()) else {
            throw RecipeError(path: decoder.path + ".shortcut", problem: "expected A or B, got '\(shortenedForMessage(shortcutText))'")
        }
        self.shortcut = shortcut
        dropout = try container.decodeIfPresent(Float.self, forKey: .dropout) ?? 0
        do {
            try spec(inputChannels: 1, numClasses: 2).validate()
        } catch let error as RuntimeError {
            throw RecipeError(path: decoder.path, problem: error.description.replacingOccurrences(of: "invalid model spec: ", with: ""))
        }
    }

    public func spec(inputChannels: Int, numClasses: Int) -> ModelSpec {
        ModelSpec(architecture: architecture, inputChannels: inputChannels, numClasses: numClasses,
                  shortcut: shortcut, dropout: dropout)
    }
}

public struct OptimizerRecipe: Decodable, Sendable, Equatable {
    public enum Kind: String, Sendable { case sgd, adamw }
    public var kind: Kind = .sgd
    public var nesterov = false
    /// Weight decay as `p ← p − lr·wd·p` instead of L2 in the gradient (always so for AdamW).
    public var decoupledWeightDecay = false
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    /// Exempt batch-norm parameters and biases from weight decay (timm's default practice).
    public var noDecayOnNormAndBias = true

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, nesterov, decoupledWeightDecay = "decoupled_weight_decay", beta1, beta2, epsilon
        case noDecayOnNormAndBias = "no_decay_on_norm_and_bias"
    }

    public init() {}

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let kindText = try container.text(forKey: .kind) ?? "sgd"
        guard let kind = Kind(rawValue: kindText.lowercased()) else {
            throw RecipeError(path: decoder.path + ".kind", problem: "expected sgd or adamw, got '\(shortenedForMessage(kindText))'")
        }
        self.kind = kind
        nesterov = try container.decodeIfPresent(Bool.self, forKey: .nesterov) ?? false
        decoupledWeightDecay = try container.decodeIfPresent(Bool.self, forKey: .decoupledWeightDecay) ?? false
        beta1 = try container.decodeIfPresent(Float.self, forKey: .beta1) ?? 0.9
        beta2 = try container.decodeIfPresent(Float.self, forKey: .beta2) ?? 0.999
        epsilon = try container.decodeIfPresent(Float.self, forKey: .epsilon) ?? 1e-8
        noDecayOnNormAndBias = try container.decodeIfPresent(Bool.self, forKey: .noDecayOnNormAndBias) ?? true
        for (key, value) in [("beta1", beta1), ("beta2", beta2)] where !(0..<1).contains(value) {
            throw RecipeError(path: decoder.path + "." + key, problem: "must be in [0, 1), got \(value)")
        }
        guard epsilon > 0 && epsilon <= 1 else {
            throw RecipeError(path: decoder.path + ".epsilon", problem: "must be in (0, 1], got \(epsilon)")
        }
    }
}

public struct LossRecipe: Decodable, Sendable, Equatable {
    public enum Kind: String, Sendable {
        case crossEntropy = "cross_entropy", focal, cyclicalFocal = "cyclical_focal"
    }
    public var kind: Kind = .crossEntropy
    public var labelSmoothing: Float = 0
    /// γ of the focal term.
    public var gamma: Float = 2
    /// γ_hc of the cyclical focal loss's high-confidence term.
    public var gammaHighConfidence: Float = 3

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, labelSmoothing = "label_smoothing", gamma, gammaHighConfidence = "gamma_hc"
    }

    public init() {}

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let kindText = try container.text(forKey: .kind) ?? "cross_entropy"
        guard let kind = Kind(rawValue: kindText) else {
            throw RecipeError(path: decoder.path + ".kind", problem: "expected cross_entropy, focal or cyclical_focal, got '\(shortenedForMessage(kindText))'")
        }
        self.kind = kind
        labelSmoothing = try container.decodeIfPresent(Float.self, forKey: .labelSmoothing) ?? 0
        gamma = try container.decodeIfPresent(Float.self, forKey: .gamma) ?? 2
        gammaHighConfidence = try container.decodeIfPresent(Float.self, forKey: .gammaHighConfidence) ?? 3
        guard (0..<1).contains(labelSmoothing) else {
            throw RecipeError(path: decoder.path + ".label_smoothing", problem: "must be in [0, 1), got \(labelSmoothing)")
        }
        for (key, value) in [("gamma", gamma), ("gamma_hc", gammaHighConfidence)] where !(0...100).contains(value) {
            throw RecipeError(path: decoder.path + "." + key, problem: "must be in [0, 100], got \(value)")
        }
    }
}

/// One phase: what data, how long, and its own knob overrides.
public struct PhaseRecipe: Decodable, Sendable {
    public var data: DataRecipe
    public var epochs: Int
    public var knobs: KnobSchedules
    /// Parameter-name prefixes kept fixed (e.g. `[conv1, bn1, layer1]`); fine-tuning only.
    public var freeze: [String]

    enum CodingKeys: String, CodingKey, CaseIterable { case data, epochs, knobs, freeze }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        data = try container.decodeIfPresent(DataRecipe.self, forKey: .data) ?? DataRecipe()
        guard let epochs = try container.wholeNumber(forKey: .epochs, in: RecipeLimits.epochs) else {
            throw RecipeError(path: decoder.path + ".epochs", problem: "is required")
        }
        self.epochs = epochs
        knobs = try container.decodeIfPresent(KnobSchedules.self, forKey: .knobs) ?? KnobSchedules()
        freeze = try container.list(of: String.self, forKey: .freeze, maxCount: RecipeLimits.listLength) ?? []
    }
}

/// Which images a phase trains and validates on.
public struct DataRecipe: Decodable, Sendable, Equatable {
    /// A catalogue name (`fashion-mnist`, `mnist`, `kmnist`, `cifar10`, `cifar100`); ignored when `folder` is set.
    public var dataset: String = DatasetSource.defaultName
    public var folder: String?
    public var format: String?
    /// Keep these classes, relabelled 0..k−1 in the order given.
    public var classes: [Int]?
    /// Keep the first N training samples (the paper's "4K CIFAR-10": 4000) …
    public var first: Int?
    /// … or the first N of each class.
    public var perClass: Int?
    /// Hold out this many training samples for validation; 0 validates on the test split.
    public var validation: Int = 0
    /// Augmentation policy: `none`, `full`, or a list such as `crop,flip,cutout`.
    public var augmentation: String = "none"

    enum CodingKeys: String, CodingKey, CaseIterable {
        case dataset, folder, format, classes, first, perClass = "per_class", validation, augmentation
    }

    public init() {}

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        dataset = try container.text(forKey: .dataset, maxLength: RecipeLimits.nameLength) ?? DatasetSource.defaultName
        folder = try container.text(forKey: .folder)
        format = try container.text(forKey: .format)
        classes = try container.list(of: Int.self, forKey: .classes, maxCount: RecipeLimits.classLabel.count)
        first = try container.wholeNumber(forKey: .first, in: RecipeLimits.samples)
        perClass = try container.wholeNumber(forKey: .perClass, in: RecipeLimits.samples)
        validation = try container.wholeNumber(forKey: .validation, in: RecipeLimits.samples) ?? 0
        augmentation = try container.text(forKey: .augmentation, maxLength: 200) ?? "none"
        let path = decoder.path
        if let classes {
            guard !classes.isEmpty else { throw RecipeError(path: path + ".classes", problem: "must not be empty") }
            if let index = classes.firstIndex(where: { !RecipeLimits.classLabel.contains($0) }) {
                throw RecipeError(path: path + ".classes[\(index)]", problem: outside(RecipeLimits.classLabel, got: String(classes[index])))
            }
            guard Set(classes).count == classes.count else { throw RecipeError(path: path + ".classes", problem: "lists a class twice") }
        }
        if first != nil && perClass != nil { throw RecipeError(path: path, problem: "set first or per_class, not both") }
        if let first, first < 1 { throw RecipeError(path: path + ".first", problem: "must be ≥ 1 (an empty subset), got \(first)") }
        if let perClass, perClass < 1 { throw RecipeError(path: path + ".per_class", problem: "must be ≥ 1, got \(perClass)") }
        if let format, DatasetFormat(rawValue: format) == nil {
            throw RecipeError(path: path + ".format", problem: "expected one of \(DatasetFormat.allCases.map(\.rawValue).joined(separator: ", ")), got '\(shortenedForMessage(format))'")
        }
        let policy: AugmentationPolicy
        do {
            policy = try AugmentationPolicy(parsing: augmentation)
        } catch {
            throw RecipeError(path: path + ".augmentation", problem: "\(error)")
        }
        if let repeated = policy.augmentations.first(where: { one in policy.augmentations.filter { $0.name == one.name }.count > 1 }) {
            throw RecipeError(path: path + ".augmentation", problem: "lists '\(repeated.name)' twice")
        }
    }
}
