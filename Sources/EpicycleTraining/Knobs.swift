import EpicycleSchedules

/// The hyper-parameters a recipe may put on a schedule (`knobs:` in a recipe).
///
/// Which end is "easy" follows Smith (2022, §3–5): small weight decay, small softmax temperature
/// (confident), small clipping threshold, *large* batch size, no augmentation, small learning rate.
public enum Knob: String, CaseIterable, CodingKey, Sendable, Comparable {
    case learningRate = "learning_rate"
    case weightDecay = "weight_decay"
    case momentum
    case batchSize = "batch_size"
    /// Softmax temperature of the cross-entropy on labels (cyclical softmax temperature, CST).
    case temperature
    /// Clip every gradient element to [−t, t] (cyclical gradient clipping, CGC). Absent: no clipping.
    case clipValue = "clip_value"
    /// Rescale gradients whose global L2 norm exceeds t. Absent: no clipping.
    case clipNorm = "clip_norm"
    /// Strength in [0, 1] of the recipe's augmentation policy.
    case augmentationStrength = "augmentation_strength"
    /// ξ of the cyclical focal loss: the weight of the high-confidence term.
    case focalMix = "focal_mix"

    /// The value a recipe gets when it does not mention the knob; nil for knobs that are off unless set
    /// (clipping) or that only one loss reads (`focal_mix`, whose default the loss recipe supplies).
    public var defaultValue: Double? {
        switch self {
        case .learningRate: return 0.1
        case .weightDecay: return 5e-4
        case .momentum: return 0.9
        case .batchSize: return 128
        case .temperature: return 1
        case .augmentationStrength: return 0
        case .focalMix, .clipValue, .clipNorm: return nil
        }
    }

    /// What is wrong with `value` for this knob, or nil.
    func problem(with value: Double) -> String? {
        let shown = formatNumber(value)
        let largest = RecipeLimits.knobMagnitude
        switch self {
        case .learningRate, .weightDecay:
            return (0...largest).contains(value) ? nil : "must be in [0, \(formatNumber(largest))], got \(shown)"
        case .momentum:
            return (0..<1).contains(value) ? nil : "must be in [0, 1), got \(shown)"
        case .batchSize:
            let sizes = RecipeLimits.batchSize
            return value >= Double(sizes.lowerBound) && value <= Double(sizes.upperBound) && value == value.rounded() ? nil
                : outside(sizes, got: shown)
        case .temperature, .clipValue, .clipNorm:
            return value > 0 && value <= largest ? nil : "must be in (0, \(formatNumber(largest))], got \(shown)"
        case .augmentationStrength, .focalMix:
            return (0...1).contains(value) ? nil : "must be in [0, 1], got \(shown)"
        }
    }

    public static func < (lhs: Knob, rhs: Knob) -> Bool { lhs.rawValue < rhs.rawValue }
}

func formatNumber(_ value: Double) -> String {
    value == value.rounded() && abs(value) < 1e9 ? String(Int(value)) : "\(value)"
}

/// The schedules a recipe (or one phase of it) sets, by knob.
public struct KnobSchedules: Decodable, Equatable, Sendable {
    public var schedules: [Knob: Schedule]

    public init(_ schedules: [Knob: Schedule] = [:]) {
        self.schedules = schedules
    }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(Knob.self)
        let container = try decoder.container(keyedBy: Knob.self)
        schedules = [:]
        for knob in Knob.allCases {
            if let schedule = try container.decodeSchedule(forKey: knob) { schedules[knob] = schedule }
        }
        if schedules[.clipValue] != nil && schedules[.clipNorm] != nil {
            throw RecipeError(path: decoder.path, problem: "set clip_value or clip_norm, not both")
        }
    }

    /// These schedules with `overrides` replacing any knob they set (a phase's own knobs).
    public func merging(_ overrides: KnobSchedules) -> KnobSchedules {
        KnobSchedules(schedules.merging(overrides.schedules) { $1 })
    }

    /// Every knob a run uses: the recipe's, and the defaults for the rest.
    public var withDefaults: KnobSchedules {
        var all = schedules
        for knob in Knob.allCases where all[knob] == nil {
            if let value = knob.defaultValue { all[knob] = .constant(value) }
        }
        if all[.clipNorm] != nil { all[.clipValue] = nil }
        return KnobSchedules(all)
    }

    /// Checks every knob's value at every epoch (and its first and last step) of the cycle, so a
    /// schedule that leaves a knob's range anywhere is caught before any work starts.
    func validate(over cycle: JointCycle, pathPrefix: String) throws {
        for knob in schedules.keys.sorted() {
            let schedule = schedules[knob]!
            for epoch in 0..<cycle.totalEpochs {
                let value = cycle.value(of: schedule, at: cycle.startOfEpoch(epoch))
                if let problem = knob.problem(with: value) {
                    throw RecipeError(path: pathPrefix + knob.rawValue,
                                      problem: "\(problem) (\(schedule) at epoch \(epoch))")
                }
            }
        }
    }
}

extension JointCycle {
    /// The position of `epoch`'s first step, where recipe checks sample every schedule.
    func startOfEpoch(_ epoch: Int) -> Position {
        Position(epoch: epoch, totalEpochs: totalEpochs, step: epoch * max(totalSteps / max(totalEpochs, 1), 1),
                 totalSteps: totalSteps)
    }
}
