import EpicycleSchedules
import EpicycleTraining

/// A recipe's `distill:` section: the teacher and the terms of the student's loss.
///
/// The student is the recipe's `model:` and trains on the recipe's `pretrain:` phase (its data,
/// epochs and knobs), exactly as `epicycle pretrain` would train it, with the loss replaced by the
/// weighted sum of `losses`. There is no other place for the student's data or epochs. Every weight
/// and temperature is a constant or a schedule, evaluated at the same cycle position as the knobs;
/// a weight defaults to 1, a temperature to 4. Feature names are those `Model.featureNames` lists.
/// Every epoch's metrics (`metrics.csv`, `metrics.jsonl`) log each term's weight and temperature beside
/// the knobs: `labels.weight`, `logits.weight`, `logits.temperature`, `hint.layer2.weight`,
/// `attention.layer3.weight`, `spatial_softmax.layer3.temperature`… (`DistillationObjective.scheduledValues`).
///
///     distill:
///       teacher: ../Checkpoints/teacher/best.h5   # relative to the recipe file; --teacher overrides it
///       losses:
///         - {kind: labels, weight: 1}             # loss: and knobs.temperature apply
///         - {kind: logits, weight: 1, temperature: {cyclical: {easy: 1, hard: 4}}}
///         - {kind: hint, student: layer2, teacher: layer2, weight: 1}
///         - {kind: attention, student: layer3, teacher: layer3, weight: 1000}
///         - {kind: spatial_softmax, student: layer3, teacher: layer3, weight: 1, temperature: 4}
public struct DistillRecipe: RecipeSection {
    public static let key = "distill"

    /// The teacher checkpoint; nil when only the command line names it.
    public var teacher: String?
    public var losses: [DistillTermRecipe]

    enum CodingKeys: String, CodingKey, CaseIterable { case teacher, losses }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        teacher = try container.text(forKey: .teacher)
        guard let losses = try container.list(of: DistillTermRecipe.self, forKey: .losses, maxCount: RecipeLimits.listLength) else {
            throw RecipeError(path: decoder.path + ".losses", problem: "is required: a list of loss terms such as [{kind: labels, weight: 1}]")
        }
        self.losses = losses
        guard !losses.isEmpty else { throw RecipeError(path: decoder.path + ".losses", problem: "must list at least one loss term") }
        for kind in [DistillTermRecipe.Kind.labels, .logits] where losses.filter({ $0.kind == kind }).count > 1 {
            throw RecipeError(path: decoder.path + ".losses", problem: "lists '\(kind.rawValue)' twice; give it one weight")
        }
    }

    /// The section of a recipe decoded for distillation, which must also have the student's `pretrain:` phase.
    /// - Throws: `RecipeError` naming `distill` or `pretrain` when either is missing.
    public static func required(in recipe: Recipe) throws -> DistillRecipe {
        guard let section = recipe.section(DistillRecipe.self) else {
            throw RecipeError(path: key, problem: "is required for distillation (the teacher and the loss terms)")
        }
        guard recipe.pretrain != nil else { throw missingPretrain }
        return section
    }

    static let missingPretrain = RecipeError(path: key, problem: "the student trains on the recipe's 'pretrain' phase; add one (pretrain: {data: …, epochs: …})")

    /// Checks every weight (≥ 0) and temperature (> 0) at the first and last step of every epoch of the cycle, naming the key.
    func validate(over cycle: JointCycle) throws {
        for (index, term) in losses.enumerated() {
            let path = "distill.losses[\(index)]."
            try check(term.weight, over: cycle, path: path + "weight", requirement: "≥ 0") { $0 >= 0 }
            if let temperature = term.temperature {
                try check(temperature, over: cycle, path: path + "temperature", requirement: "> 0") { $0 > 0 }
            }
        }
    }

    private func check(_ schedule: Schedule, over cycle: JointCycle, path: String, requirement: String,
                       _ valid: (Double) -> Bool) throws {
        for position in cycle.epochBoundaries {
            let value = cycle.value(of: schedule, at: position)
            guard valid(value), value.isFinite else {
                throw RecipeError(path: path, problem: "must be \(requirement), got \(formatNumber(value)) (\(schedule) at epoch \(position.epoch))")
            }
        }
    }
}

/// One term of the student's loss in a `distill:` section.
public struct DistillTermRecipe: Decodable, Sendable, Equatable {
    /// Which distillation method the term uses.
    public enum Kind: String, CaseIterable, Sendable {
        /// The recipe's `loss:` on the labels, at `knobs.temperature`.
        case labels
        /// Hinton et al. 2015: T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)).
        case logits
        /// FitNets (Romero et al. 2015): MSE after a learned 1×1 conv + BN regressor.
        case hint
        /// Attention transfer (Zagoruyko & Komodakis 2017), p = 2.
        case attention
        /// Channel-wise spatial-softmax distillation (Shu et al. 2021).
        case spatialSoftmax = "spatial_softmax"

        /// Whether the term compares a pair of named feature maps.
        public var matchesFeatures: Bool { self == .hint || self == .attention || self == .spatialSoftmax }
        /// Whether the term has its own temperature.
        public var hasTemperature: Bool { self == .logits || self == .spatialSoftmax }
    }

    public var kind: Kind
    public var weight: Schedule
    /// T for `logits`, τ for `spatial_softmax` (default 4 for both); nil for the other kinds.
    public var temperature: Schedule?
    /// The student's feature name (`layer1`…`layer3`, a block such as `layer2.0`, `stem`) for feature terms.
    public var student: String?
    /// The teacher's feature name for feature terms.
    public var teacher: String?

    /// The temperature a term gets when the recipe does not set one.
    public static let defaultTemperature = 4.0

    enum CodingKeys: String, CodingKey, CaseIterable { case kind, weight, temperature, student, teacher }

    public init(kind: Kind, weight: Schedule = .constant(1), temperature: Schedule? = nil, student: String? = nil,
                teacher: String? = nil) {
        self.kind = kind
        self.weight = weight
        self.temperature = temperature ?? (kind.hasTemperature ? .constant(Self.defaultTemperature) : nil)
        self.student = student
        self.teacher = teacher
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let path = decoder.path
        guard let kindText = try container.text(forKey: .kind) else {
            throw RecipeError(path: path + ".kind", problem: "is required: one of \(Kind.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let kind = Kind(rawValue: kindText) else {
            throw RecipeError(path: path + ".kind", problem: "expected one of \(Kind.allCases.map(\.rawValue).joined(separator: ", ")), got '\(shortenedForMessage(kindText))'")
        }
        self.kind = kind
        weight = try container.decodeSchedule(forKey: .weight) ?? .constant(1)
        let temperature = try container.decodeSchedule(forKey: .temperature)
        student = try container.text(forKey: .student, maxLength: RecipeLimits.nameLength)
        teacher = try container.text(forKey: .teacher, maxLength: RecipeLimits.nameLength)
        if temperature != nil && !kind.hasTemperature {
            let hint = kind == .labels ? " (the labels term uses knobs.temperature)" : ""
            throw RecipeError(path: path + ".temperature", problem: "does not apply to kind '\(kind.rawValue)'\(hint)")
        }
        self.temperature = temperature ?? (kind.hasTemperature ? .constant(Self.defaultTemperature) : nil)
        for (key, value) in [("student", student), ("teacher", teacher)] {
            if kind.matchesFeatures && value == nil {
                throw RecipeError(path: path + "." + key, problem: "is required for kind '\(kind.rawValue)': the \(key)'s feature name, e.g. layer2")
            }
            if !kind.matchesFeatures && value != nil {
                throw RecipeError(path: path + "." + key, problem: "does not apply to kind '\(kind.rawValue)', which compares no features")
            }
        }
    }
}

extension DistillRecipe {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode([(.teacher, teacher), (.losses, losses)])
    }
}

extension DistillTermRecipe: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode([(.kind, kind.rawValue), (.weight, weight), (.temperature, temperature), (.student, student),
                              (.teacher, teacher)])
    }
}
