import EpicycleData
import EpicycleRuntime
import EpicycleSchedules

/// The whole description of a run (see DESIGN.md, "Recipes"). One recipe format serves `pretrain`
/// (needs `pretrain:`), `finetune` (needs `finetune:`) and `cycle` (needs both): knobs at the top
/// level apply to every phase, and a phase's own `knobs:` override them for that phase. An objective
/// from another module adds its own top-level section (`distill:`, a `RecipeSection`), which only a
/// recipe decoded for it may hold (`RecipeSource.decodeRecipe(sections:)`).
public struct Recipe: Decodable, Sendable {
    public var name: String?
    public var seed: UInt64
    public var model: ModelRecipe
    public var optimizer: OptimizerRecipe
    public var loss: LossRecipe
    public var knobs: KnobSchedules
    public var pretrain: PhaseRecipe?
    public var finetune: PhaseRecipe?
    /// Where checkpoints and metrics go; default `Checkpoints/<name>`.
    public var output: String?
    /// Also keep `epoch-N.h5` every this many epochs (0: only `last.h5` and `best.h5`).
    public var checkpointEvery: Int
    /// Threads of every pool the run uses (kernels, OpenBLAS; batches are prepared on the training
    /// thread); default: all cores. In a comparison, at most the run's share of the cores.
    public var threads: Int?
    /// When batch-norm running statistics are recomputed before validation and saving.
    public var preciseBN: PreciseBNRecipe
    /// The knob whose own cycles mark the cycle ends (snapshots, SWA, tradeoff points); nil: see
    /// `KnobSchedules.cycleEndKnob(named:)`.
    public var cycleEndsOf: Knob?
    /// Weight averages kept beside the model (SWA, EMA) in every phase without its own `averaging:`.
    public var averaging: AveragingRecipe?
    /// Checkpoints at every cycle end (`snapshots: cycle_ends`) in every phase without its own `snapshots:`.
    public var snapshots: SnapshotPolicy?
    /// The number format of the convolutions' products, teacher's included (see `Precision`); bf16 on a
    /// CPU without AVX512-BF16 runs fp32 and says so.
    public var precision: Precision
    /// The objectives' sections the recipe holds, by key.
    var sections: [String: any RecipeSection]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, seed, model, optimizer, loss, knobs, pretrain, finetune, output
        case checkpointEvery = "checkpoint_every", threads, preciseBN = "precise_bn", cycleEndsOf = "cycle_ends_of"
        case averaging, snapshots, precision
    }

    public init(from decoder: any Decoder) throws {
        let sectionTypes = decoder.userInfo[.recipeSections] as? RecipeSectionTypes ?? RecipeSectionTypes()
        if !sectionTypes.ignoresOthers {
            do {
                try decoder.rejectUnknownKeys(CodingKeys.self, besides: sectionTypes.types.map { $0.key })
            } catch var error as RecipeError where error.path == "distill" {
                // The one objective section of another module: say which command reads it.
                error.problem = "is read only by `epicycle distill` (and by a comparison with program: distill); "
                    + "pretrain, finetune and cycle do not distill"
                throw error
            }
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let sectionContainer = try decoder.container(keyedBy: AnyKey.self)
        sections = [:]
        for type in sectionTypes.types {
            if let section = try Self.decodeSection(type, from: sectionContainer) { sections[type.key] = section }
        }
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
        output = try container.text(forKey: .output)
        if let output, output.isEmpty || output.hasPrefix("/") || output.split(separator: "/").contains("..") {
            throw RecipeError(path: "output", problem: "must be a folder inside the working folder (relative, without '..'), got '\(shortenedForMessage(output))'; --output writes anywhere")
        }
        preciseBN = try container.decodeIfPresent(PreciseBNRecipe.self, forKey: .preciseBN) ?? PreciseBNRecipe()
        checkpointEvery = try container.wholeNumber(forKey: .checkpointEvery, in: RecipeLimits.checkpointEvery) ?? 0
        threads = try container.wholeNumber(forKey: .threads, in: RecipeLimits.threads)
        precision = try container.text(forKey: .precision).map { text in
            guard let precision = Precision(rawValue: text) else {
                throw RecipeError(path: "precision", problem: "must be fp32 or bf16, got '\(shortenedForMessage(text))'")
            }
            return precision
        } ?? .fp32
        cycleEndsOf = try container.knobName(forKey: .cycleEndsOf)
        if let knob = cycleEndsOf, ![knobs, pretrain?.knobs, finetune?.knobs].contains(where: { $0?.schedules[knob] != nil }) {
            throw RecipeError(path: "cycle_ends_of", problem: "names \(knob.rawValue), which no knobs: section schedules; "
                + "its cycle ends would be the last epoch only")
        }
        if pretrain == nil && finetune == nil {
            throw RecipeError(path: "", problem: "a recipe needs a 'pretrain' or a 'finetune' phase (or both, for 'cycle')")
        }
        averaging = try container.decodeIfPresent(AveragingRecipe.self, forKey: .averaging)
        snapshots = try container.decodeIfPresent(SnapshotPolicy.self, forKey: .snapshots)
        for (name, phase) in [("pretrain", pretrain), ("finetune", finetune)] {
            guard let phase, case let .epoch(start) = (phase.averaging ?? averaging)?.swa?.start, start > phase.epochs else { continue }
            throw RecipeError(path: (phase.averaging == nil ? "" : name + ".") + "averaging.swa.start",
                              problem: "is epoch \(start), after the last of \(name)'s \(phase.epochs) epochs")
        }
        try refuseIgnoredKnobs()
    }

    private static func decodeSection<Section: RecipeSection>(_ type: Section.Type,
                                                               from container: KeyedDecodingContainer<AnyKey>) throws -> Section? {
        try container.decodeIfPresent(type, forKey: AnyKey(stringValue: type.key))
    }

    /// The recipe's section of type `Section`, nil when the recipe has none or was not decoded for it.
    public func section<Section: RecipeSection>(_ type: Section.Type) -> Section? {
        sections[type.key] as? Section
    }

    /// Knobs this configuration would not use are errors, not silently dropped settings.
    private func refuseIgnoredKnobs() throws {
        let sections: [(prefix: String, knobs: KnobSchedules)] = [("knobs.", knobs)]
            + [("pretrain.knobs.", pretrain?.knobs), ("finetune.knobs.", finetune?.knobs)].compactMap { prefix, knobs in
                knobs.map { (prefix, $0) }
            }
        let semiSupervised = [pretrain, finetune].map { $0?.unlabeled != nil }
        // The strength scales a phase's augmentation policy and its unlabeled views' policies.
        let augmented = [pretrain, finetune].map { phase in
            phase.map { $0.unlabeled != nil || (try? AugmentationPolicy(parsing: $0.data.augmentation))?.augmentations.isEmpty == false }
                ?? false
        }
        for (prefix, own) in sections {
            let phase = prefix == "knobs." ? nil : (prefix == "pretrain.knobs." ? 0 : 1)
            let phases = phase.map { [semiSupervised[$0]] } ?? semiSupervised
            for knob in [Knob.unlabeledWeight, .confidenceThreshold] where own.schedules[knob] != nil && !phases.contains(true) {
                throw RecipeError(path: prefix + knob.rawValue, problem: "only applies to a phase with unlabeled data (its unlabeled: section)")
            }
            if own.schedules[.augmentationStrength] != nil && !(phase.map { [augmented[$0]] } ?? augmented).contains(true) {
                let which = phase.map { $0 == 0 ? "pretrain.data sets no" : "finetune.data sets no" } ?? "no phase's data sets an"
                throw RecipeError(path: prefix + Knob.augmentationStrength.rawValue,
                                  problem: "has nothing to scale: \(which) augmentation policy; add one such as augmentation: \"crop,flip\"")
            }
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

    /// The weight averages a phase keeps: its own `averaging:`, else the recipe's.
    public func averaging(for phase: Phase) -> AveragingRecipe? {
        (phase == .pretrain ? pretrain : finetune)?.averaging ?? averaging
    }

    /// Whether a phase saves a snapshot at each cycle end: its own `snapshots:`, else the recipe's.
    public func snapshots(for phase: Phase) -> SnapshotPolicy? {
        (phase == .pretrain ? pretrain : finetune)?.snapshots ?? snapshots
    }

    /// The knobs in force during a phase, defaults filled in.
    public func knobs(for phase: Phase) -> KnobSchedules {
        let own = (phase == .pretrain ? pretrain : finetune)?.knobs ?? KnobSchedules()
        var all = knobs.merging(own).withDefaults
        if loss.kind == .cyclicalFocal && all.schedules[.focalMix] == nil {
            all.schedules[.focalMix] = Knob.defaultFocalMix
        }
        if phase == .pretrain ? pretrain?.unlabeled != nil : finetune?.unlabeled != nil {
            all.schedules.merge(Knob.semiSupervisedDefaults) { set, _ in set }
        } else {
            // A shared semi-supervised knob does not reach a phase without unlabeled data.
            for knob in Knob.semiSupervisedDefaults.keys { all.schedules[knob] = nil }
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
    /// Lookahead around the optimizer (`lookahead: {k: 5, alpha: 0.5}`), if any.
    public var lookahead: LookaheadRecipe?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, nesterov, decoupledWeightDecay = "decoupled_weight_decay", beta1, beta2, epsilon
        case noDecayOnNormAndBias = "no_decay_on_norm_and_bias", lookahead
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
        lookahead = try container.decodeIfPresent(LookaheadRecipe.self, forKey: .lookahead)
        for (key, value) in [("beta1", beta1), ("beta2", beta2)] where !(0..<1).contains(value) {
            throw RecipeError(path: decoder.path + "." + key, problem: "must be in [0, 1), got \(value)")
        }
        guard epsilon > 0 && epsilon <= 1 else {
            throw RecipeError(path: decoder.path + ".epsilon", problem: "must be in (0, 1], got \(epsilon)")
        }
        let ignored: [CodingKeys] = kind == .sgd ? [.beta1, .beta2, .epsilon] : [.nesterov, .decoupledWeightDecay]
        for key in ignored where container.contains(key) {
            throw RecipeError(path: decoder.path + "." + key.rawValue,
                              problem: kind == .sgd ? "applies only to kind: adamw" : "applies only to kind: sgd (AdamW always decouples weight decay)")
        }
    }
}

/// Lookahead (Zhang et al. 2019): `k` fast steps of the optimizer, then the slow weights move `alpha`
/// of the way toward the fast ones (see `Lookahead`). The paper's defaults are k = 5, α = 0.5.
public struct LookaheadRecipe: Decodable, Sendable, Equatable {
    public var k = 5
    public var alpha: Float = 0.5

    enum CodingKeys: String, CodingKey, CaseIterable { case k, alpha }

    public init(k: Int = 5, alpha: Float = 0.5) {
        self.k = k
        self.alpha = alpha
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        k = try container.wholeNumber(forKey: .k, in: 1...Lookahead<SGD>.maximumSynchronizationPeriod) ?? 5
        alpha = try container.decodeIfPresent(Float.self, forKey: .alpha) ?? 0.5
        guard alpha > 0 && alpha <= 1 else {
            throw RecipeError(path: decoder.path + ".alpha", problem: "must be in (0, 1], got \(alpha)")
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
    /// Unlabeled images for semi-supervised training (`UnlabeledRecipe`); nil: labeled data only.
    public var unlabeled: UnlabeledRecipe?
    /// The phase's own weight averages and snapshots, replacing the recipe's top-level ones.
    public var averaging: AveragingRecipe?
    public var snapshots: SnapshotPolicy?

    enum CodingKeys: String, CodingKey, CaseIterable { case data, epochs, knobs, freeze, unlabeled, averaging, snapshots }

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
        unlabeled = try container.decodeIfPresent(UnlabeledRecipe.self, forKey: .unlabeled)
        averaging = try container.decodeIfPresent(AveragingRecipe.self, forKey: .averaging)
        snapshots = try container.decodeIfPresent(SnapshotPolicy.self, forKey: .snapshots)
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
    /// Which images select the best epoch: held out of the training split (by default 10 %), or, only
    /// when asked for explicitly, the test split.
    public var validation: ValidationSplit = .default
    /// True when the recipe states `validation` (an image folder's `val/` then must not contradict it).
    /// Not part of equality: a resolved recipe states the default that another leaves out.
    public var validationIsStated = false
    /// Augmentation policy: `none`, `full`, or a list such as `crop,flip,cutout`.
    public var augmentation: String = "none"
    /// Image files (`format: folder` or `csv`): the side every image is fitted to (default 32) …
    public var imageSize: Int?
    /// … its channels, 1 (grey) or 3 (RGB, the default) …
    public var channels: Int?
    /// … and whether a file that cannot be decoded stops the run (`error`, the default) or is left out (`skip`).
    public var badImages: BadImagePolicy?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case dataset, folder, format, classes, first, perClass = "per_class", validation, augmentation
        case imageSize = "image_size", channels, badImages = "bad_images"
    }

    /// How image files are read, with the defaults filled in.
    public static func == (a: DataRecipe, b: DataRecipe) -> Bool {
        a.dataset == b.dataset && a.folder == b.folder && a.format == b.format && a.classes == b.classes && a.first == b.first
            && a.perClass == b.perClass && a.validation == b.validation && a.augmentation == b.augmentation
            && a.imageSize == b.imageSize && a.channels == b.channels && a.badImages == b.badImages
    }

    public var imageFiles: ImageFileOptions {
        ImageFileOptions(size: imageSize ?? ImageFileOptions.defaultSize, channels: channels ?? ImageFileOptions.defaultChannels,
                         badImages: badImages ?? .error)
    }

    /// The recipe's `image_size`, `channels` and `bad_images` keys that are set, for the error when the format reads no image files.
    var imageFileKeys: [String] {
        [imageSize.map { _ in "image_size" }, channels.map { _ in "channels" }, badImages.map { _ in "bad_images" }].compactMap { $0 }
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
        validation = try container.decodeIfPresent(ValidationSplit.self, forKey: .validation) ?? .default
        validationIsStated = container.contains(.validation)
        augmentation = try container.text(forKey: .augmentation, maxLength: 200) ?? "none"
        imageSize = try container.wholeNumber(forKey: .imageSize, in: ImageFileLimits.outputSide)
        channels = try container.wholeNumber(forKey: .channels, in: 1...3)
        let path = decoder.path
        if let channels, channels == 2 { throw RecipeError(path: path + ".channels", problem: "must be 1 (grey) or 3 (RGB), got 2") }
        if let policy = try container.text(forKey: .badImages, maxLength: 100) {
            guard let known = BadImagePolicy(rawValue: policy) else {
                throw RecipeError(path: path + ".bad_images", problem: "expected skip or error, got '\(shortenedForMessage(policy))'")
            }
            badImages = known
        }
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

/// Where a phase's validation images come from. Selection (`best.h5`, the "best" columns) reads
/// them; the test split is scored once at the end of a phase, so it must not be among them unless the
/// recipe says `validation: test`.
public enum ValidationSplit: Decodable, Sendable, Equatable, CustomStringConvertible {
    /// This many images held out of the training split (before `first` / `per_class` subsetting).
    case heldOut(count: Int)
    /// This share of the training split held out, rounded to the nearest image.
    case heldOutFraction(Double)
    /// The test split itself: every output then says that selection saw the test images.
    case test

    /// 10 % of the training split, as most PyTorch recipes hold out.
    public static let `default` = ValidationSplit.heldOutFraction(0.1)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let path = decoder.path
        let hint = "expected a number of images (e.g. 1000), a fraction in (0, 1) (e.g. 0.1) or 'test'"
        if let count = try? container.decode(Int.self) {
            guard count >= 1 else {
                throw RecipeError(path: path, problem: "must be ≥ 1 image, got \(count); to validate on the test split say 'validation: test'")
            }
            guard RecipeLimits.samples.contains(count) else { throw RecipeError(path: path, problem: outside(RecipeLimits.samples, got: "\(count)")) }
            self = .heldOut(count: count)
        } else if let fraction = try? container.decode(Double.self) {
            guard fraction > 0 && fraction < 1 else { throw RecipeError(path: path, problem: "\(hint), got \(fraction)") }
            self = .heldOutFraction(fraction)
        } else if let text = try? container.decode(String.self), text == "test" {
            self = .test
        } else {
            throw RecipeError(path: path, problem: hint)
        }
    }

    /// How many of `trainingCount` images are held out (nil for the test split).
    public func heldOutCount(of trainingCount: Int) -> Int? {
        switch self {
        case let .heldOut(count): return count
        case let .heldOutFraction(fraction): return Int((Double(trainingCount) * fraction).rounded())
        case .test: return nil
        }
    }

    public var description: String {
        switch self {
        case let .heldOut(count): return "\(count) held-out training images"
        case let .heldOutFraction(fraction): return String(format: "%g %% of the training images, held out", fraction * 100)
        case .test: return "the test split"
        }
    }
}

/// Batch-norm recalibration ("precise BN", Wu & Johnson 2021, *Rethinking "Batch" in BatchNorm*): before
/// each validation, the running statistics are recomputed as the plain average over the first
/// `images` un-augmented training images with the current weights. The moving averages lag weights
/// that move fast, and they were taken on augmented images: a phase that ends at the hard end of a
/// cycle (high learning rate, strong augmentation) is otherwise scored with stale statistics.
///
/// `precise_bn: auto` (the default) recalibrates a phase whose last epoch is not at the easy end of the
/// cycle: some cyclical knob is not back at its easy value, or some other schedule is not at the value
/// it ends the whole cycle with (every pretraining phase of a joint cycle). `true` / `false` force it;
/// the mapping form `{when: auto|always|never, images: N}` also sets the image count (default 2048).
public struct PreciseBNRecipe: Decodable, Sendable, Equatable {
    public enum When: String, Sendable { case auto, always, never }
    public var when: When = .auto
    public var images: Int = 2048

    enum CodingKeys: String, CodingKey, CaseIterable { case when, images }

    public init() {}

    public init(from decoder: any Decoder) throws {
        let path = decoder.path
        if let single = try? decoder.singleValueContainer() {
            if let flag = try? single.decode(Bool.self) {
                when = flag ? .always : .never
                return
            }
            if let text = try? single.decode(String.self) {
                guard let parsed = When(rawValue: text) else {
                    throw RecipeError(path: path, problem: "expected auto, true, false or {when: auto|always|never, images: N}, got '\(text.prefix(40))'")
                }
                when = parsed
                return
            }
        }
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let text = try container.decodeIfPresent(String.self, forKey: .when) ?? "auto"
        guard let parsed = When(rawValue: text) else {
            throw RecipeError(path: path + ".when", problem: "expected auto, always or never, got '\(text.prefix(40))'")
        }
        when = parsed
        images = try container.decodeIfPresent(Int.self, forKey: .images) ?? 2048
        guard (1...1_000_000).contains(images) else {
            throw RecipeError(path: path + ".images", problem: "must be in 1…1000000, got \(images)")
        }
    }
}
