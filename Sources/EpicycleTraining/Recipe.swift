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
        name = try container.decodeIfPresent(String.self, forKey: .name)
        seed = try container.decodeIfPresent(UInt64.self, forKey: .seed) ?? 0
        model = try container.decode(ModelRecipe.self, forKey: .model)
        optimizer = try container.decodeIfPresent(OptimizerRecipe.self, forKey: .optimizer) ?? OptimizerRecipe()
        loss = try container.decodeIfPresent(LossRecipe.self, forKey: .loss) ?? LossRecipe()
        knobs = try container.decodeIfPresent(KnobSchedules.self, forKey: .knobs) ?? KnobSchedules()
        pretrain = try container.decodeIfPresent(PhaseRecipe.self, forKey: .pretrain)
        finetune = try container.decodeIfPresent(PhaseRecipe.self, forKey: .finetune)
        distill = try container.decodeIfPresent(DistillRecipe.self, forKey: .distill)
        output = try container.decodeIfPresent(String.self, forKey: .output)
        checkpointEvery = try container.decodeIfPresent(Int.self, forKey: .checkpointEvery) ?? 0
        threads = try container.decodeIfPresent(Int.self, forKey: .threads)
        guard checkpointEvery >= 0 else {
            throw RecipeError(path: "checkpoint_every", problem: "must be ≥ 0, got \(checkpointEvery)")
        }
        if let threads, threads < 1 { throw RecipeError(path: "threads", problem: "must be ≥ 1, got \(threads)") }
        if distill != nil && pretrain == nil {
            throw RecipeError(path: "distill", problem: "the student trains on the recipe's 'pretrain' phase; add one (pretrain: {data: …, epochs: …})")
        }
        if pretrain == nil && finetune == nil {
            throw RecipeError(path: "", problem: "a recipe needs a 'pretrain' or a 'finetune' phase (or both, for 'cycle')")
        }
        try refuseIgnoredKnobs()
    }

    /// Knobs this configuration would not use are errors, not silently dropped settings.
    private func refuseIgnoredKnobs() throws {
        let sections: [(prefix: String, knobs: KnobSchedules)] = [("knobs.", knobs)]
            + [("pretrain.knobs.", pretrain?.knobs), ("finetune.knobs.", finetune?.knobs)].compactMap { prefix, knobs in
                knobs.map { (prefix, $0) }
            }
        for (prefix, own) in sections {
            if loss.kind != .cyclicalFocal && own.schedules[.focalMix] != nil {
                throw RecipeError(path: prefix + "focal_mix", problem: "only applies with loss.kind: cyclical_focal")
            }
            if optimizer.kind == .adamw && own.schedules[.momentum] != nil {
                throw RecipeError(path: prefix + "momentum", problem: "applies only to optimizer.kind: sgd; AdamW's β1 is optimizer.beta1")
            }
        }
        // A phase's clip_value beside the shared clip_norm (or the reverse) would leave one of them unused.
        for (prefix, own) in sections.dropFirst() {
            for (knob, other) in [(Knob.clipValue, Knob.clipNorm), (.clipNorm, .clipValue)]
            where own.schedules[knob] != nil && knobs.schedules[other] != nil {
                throw RecipeError(path: prefix + knob.rawValue,
                                  problem: "knobs.\(other.rawValue) is set too; clip by value or by norm, not both")
            }
        }
    }

    /// The knobs in force during a phase, defaults filled in.
    public func knobs(for phase: Phase) -> KnobSchedules {
        let own = (phase == .pretrain ? pretrain : finetune)?.knobs ?? KnobSchedules()
        var all = knobs.merging(own).withDefaults
        if loss.kind == .cyclicalFocal && all.schedules[.focalMix] == nil {
            all.schedules[.focalMix] = Knob.defaultFocalMix
        }
        // Only SGD has a momentum knob (AdamW's β1 is fixed by `optimizer.beta1`).
        if optimizer.kind == .adamw { all.schedules[.momentum] = nil }
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
        architecture = try container.decode(String.self, forKey: .architecture)
        let shortcutText = try container.decodeIfPresent(String.self, forKey: .shortcut) ?? "A"
        guard let shortcut = ModelSpec.Shortcut(rawValue: shortcutText.uppercased()) else {
            throw RecipeError(path: decoder.path + ".shortcut", problem: "expected A or B, got '\(shortcutText)'")
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
        let kindText = try container.decodeIfPresent(String.self, forKey: .kind) ?? "sgd"
        guard let kind = Kind(rawValue: kindText.lowercased()) else {
            throw RecipeError(path: decoder.path + ".kind", problem: "expected sgd or adamw, got '\(kindText)'")
        }
        self.kind = kind
        nesterov = try container.decodeIfPresent(Bool.self, forKey: .nesterov) ?? false
        decoupledWeightDecay = try container.decodeIfPresent(Bool.self, forKey: .decoupledWeightDecay) ?? false
        beta1 = try container.decodeIfPresent(Float.self, forKey: .beta1) ?? 0.9
        beta2 = try container.decodeIfPresent(Float.self, forKey: .beta2) ?? 0.999
        epsilon = try container.decodeIfPresent(Float.self, forKey: .epsilon) ?? 1e-8
        noDecayOnNormAndBias = try container.decodeIfPresent(Bool.self, forKey: .noDecayOnNormAndBias) ?? true
        let ignored: [CodingKeys] = kind == .sgd ? [.beta1, .beta2, .epsilon] : [.nesterov, .decoupledWeightDecay]
        for key in ignored where container.contains(key) {
            throw RecipeError(path: decoder.path + "." + key.rawValue,
                              problem: kind == .sgd ? "applies only to kind: adamw" : "applies only to kind: sgd (AdamW always decouples weight decay)")
        }
        for (key, value) in [("beta1", beta1), ("beta2", beta2)] where !(0..<1).contains(value) {
            throw RecipeError(path: decoder.path + "." + key, problem: "must be in [0, 1), got \(value)")
        }
        guard epsilon > 0 else { throw RecipeError(path: decoder.path + ".epsilon", problem: "must be > 0, got \(epsilon)") }
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
        let kindText = try container.decodeIfPresent(String.self, forKey: .kind) ?? "cross_entropy"
        guard let kind = Kind(rawValue: kindText) else {
            throw RecipeError(path: decoder.path + ".kind", problem: "expected cross_entropy, focal or cyclical_focal, got '\(kindText)'")
        }
        self.kind = kind
        labelSmoothing = try container.decodeIfPresent(Float.self, forKey: .labelSmoothing) ?? 0
        gamma = try container.decodeIfPresent(Float.self, forKey: .gamma) ?? 2
        gammaHighConfidence = try container.decodeIfPresent(Float.self, forKey: .gammaHighConfidence) ?? 3
        guard (0..<1).contains(labelSmoothing) else {
            throw RecipeError(path: decoder.path + ".label_smoothing", problem: "must be in [0, 1), got \(labelSmoothing)")
        }
        for (key, value) in [("gamma", gamma), ("gamma_hc", gammaHighConfidence)] where value < 0 {
            throw RecipeError(path: decoder.path + "." + key, problem: "must be ≥ 0, got \(value)")
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
        epochs = try container.decode(Int.self, forKey: .epochs)
        knobs = try container.decodeIfPresent(KnobSchedules.self, forKey: .knobs) ?? KnobSchedules()
        freeze = try container.decodeIfPresent([String].self, forKey: .freeze) ?? []
        guard epochs >= 1 else { throw RecipeError(path: decoder.path + ".epochs", problem: "must be ≥ 1, got \(epochs)") }
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
        dataset = try container.decodeIfPresent(String.self, forKey: .dataset) ?? DatasetSource.defaultName
        folder = try container.decodeIfPresent(String.self, forKey: .folder)
        format = try container.decodeIfPresent(String.self, forKey: .format)
        classes = try container.decodeIfPresent([Int].self, forKey: .classes)
        first = try container.decodeIfPresent(Int.self, forKey: .first)
        perClass = try container.decodeIfPresent(Int.self, forKey: .perClass)
        validation = try container.decodeIfPresent(Int.self, forKey: .validation) ?? 0
        augmentation = try container.decodeIfPresent(String.self, forKey: .augmentation) ?? "none"
        let path = decoder.path
        if let classes {
            guard !classes.isEmpty else { throw RecipeError(path: path + ".classes", problem: "must not be empty") }
            guard Set(classes).count == classes.count else { throw RecipeError(path: path + ".classes", problem: "lists a class twice") }
        }
        if first != nil && perClass != nil { throw RecipeError(path: path, problem: "set first or per_class, not both") }
        if let first, first < 1 { throw RecipeError(path: path + ".first", problem: "must be ≥ 1 (an empty subset), got \(first)") }
        if let perClass, perClass < 1 { throw RecipeError(path: path + ".per_class", problem: "must be ≥ 1, got \(perClass)") }
        guard validation >= 0 else { throw RecipeError(path: path + ".validation", problem: "must be ≥ 0, got \(validation)") }
        if let format, DatasetFormat(rawValue: format) == nil {
            throw RecipeError(path: path + ".format", problem: "expected one of \(DatasetFormat.allCases.map(\.rawValue).joined(separator: ", ")), got '\(format)'")
        }
        do {
            _ = try AugmentationPolicy(parsing: augmentation)
        } catch {
            throw RecipeError(path: path + ".augmentation", problem: "\(error)")
        }
    }
}
