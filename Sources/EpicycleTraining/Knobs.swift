import EpicycleSchedules

/// The hyper-parameters a recipe may put on a schedule (`knobs:` in a recipe).
///
/// Which end is "easy" follows Smith (2022, §3–5): small weight decay, small softmax temperature
/// (confident), small clipping threshold, *large* batch size, no augmentation, small learning rate,
/// small sample loss threshold, keep fraction and sample loss clip (hard samples excluded, §4.2).
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
    /// λ_u, the weight of the unlabeled-data loss of a phase with `unlabeled:` data (easy end 0:
    /// labeled data only). Default 1 (FixMatch) there; refused elsewhere.
    case unlabeledWeight = "unlabeled_weight"
    /// τ, the confidence a pseudo-label (or a teacher's prediction) needs to count in the unlabeled
    /// loss. Default 0.95 (FixMatch) in a phase with `unlabeled:` data; refused elsewhere.
    case confidenceThreshold = "confidence_threshold"
    /// Samples whose label loss exceeds it get zero weight in the step (cyclical data selection, §4.2:
    /// easy = low, hard samples excluded). Absent: off.
    case sampleLossThreshold = "sample_loss_threshold"
    /// φ in (0, 1]: each step learns from the easiest ⌈φ·N⌉ samples of its batch (easy = small, e.g.
    /// cyclical 0.5 → 1 → 0.5). Absent: off (every sample).
    case keepFraction = "keep_fraction"
    /// c: each sample's label loss is clipped to min(loss, c), so samples above c add no gradient (the
    /// soft form of data selection; easy = small). Absent: off.
    case sampleLossClip = "sample_loss_clip"

    /// The value a recipe gets when it does not mention the knob (`KnobValues`' initial values); nil
    /// for knobs that are off unless set (clipping) or that only one loss reads (`focal_mix`:
    /// `defaultFocalMix`).
    public var defaultValue: Double? { KnobValues()[self] }

    /// What is wrong with `value` for this knob, or nil.
    func problem(with value: Double) -> String? {
        let shown = formatNumber(value)
        let largest = RecipeLimits.knobMagnitude
        switch self {
        case .learningRate, .weightDecay, .unlabeledWeight:
            return (0...largest).contains(value) ? nil : "must be in [0, \(formatNumber(largest))], got \(shown)"
        case .momentum:
            return (0..<1).contains(value) ? nil : "must be in [0, 1), got \(shown)"
        case .batchSize:
            let sizes = RecipeLimits.batchSize
            return value.isFinite && value >= Double(sizes.lowerBound) && value <= Double(sizes.upperBound) ? nil
                : outside(sizes, got: shown)
        case .temperature, .clipValue, .clipNorm, .sampleLossThreshold, .sampleLossClip:
            return value > 0 && value <= largest ? nil : "must be in (0, \(formatNumber(largest))], got \(shown)"
        case .augmentationStrength, .focalMix, .confidenceThreshold:
            return (0...1).contains(value) ? nil : "must be in [0, 1], got \(shown)"
        case .keepFraction:
            return value > 0 && value <= 1 ? nil : "must be in (0, 1], got \(shown)"
        }
    }

    public static func < (lhs: Knob, rhs: Knob) -> Bool { lhs.rawValue < rhs.rawValue }

    /// ξ of `cyclical_focal` when the recipe does not set it: cyclical over the run's cycle from 1 (the
    /// high-confidence term alone, the easy end) to 0 (the focal term alone) and, with a factor > 1, back
    /// to 1 — ξ = 1 − δ(t), as the reference code (lnsmith54/CFL, `Cyclical_FocalLoss`) moves its η once
    /// per epoch (Smith 2022, "Cyclical Focal Loss", arXiv 2202.08978). The factor is the run's: 1 for a
    /// run on its own (the reference's factor-1 variant), peaking at the end of pretraining in a cycle.
    static let defaultFocalMix = Schedule.cyclical(easy: 1, hard: 0)

    /// The semi-supervised knobs' values in a phase with `unlabeled:` data that does not set them:
    /// FixMatch's λ_u = 1 and τ = 0.95 (Sohn et al. 2020, §4).
    static let semiSupervisedDefaults: [Knob: Schedule] = [.unlabeledWeight: .constant(1), .confidenceThreshold: .constant(0.95)]
}

/// The batch size a scheduled value trains with: rounded half away from zero (a cyclical 256 → 100
/// passes 197.5, which trains at 198), at least 1, and at most 2³¹ − 1 so that it converts.
func wholeBatchSize(_ value: Double) -> Int {
    // NaN and out-of-range values are refused by the knob checks; until then they must not trap here.
    guard value.isFinite else { return 1 }
    return Int(max(1, min(value.rounded(.toNearestOrAwayFromZero), Double(Int32.max))))
}

/// A number as recipe messages show it: whole numbers without a fraction (`3`, not `3.0`).
public func formatNumber(_ value: Double) -> String {
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
        switch schedules[.batchSize] {
        case let .constant(value)? where value != value.rounded():
            throw RecipeError(path: decoder.path + ".batch_size", problem: "must be a whole number, got \(formatNumber(value))")
        case let schedule? where schedule.granularity == .step:
            // Each epoch's length must be known before training, for the per-step position of every knob.
            throw RecipeError(path: decoder.path + ".batch_size",
                              problem: "changes once per epoch, at its first batch; give the schedule per: epoch")
        default:
            break
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

    /// Every knob's value at a position of `cycle`, the batch size made whole (`wholeBatchSize`): what
    /// training applies and logs, and what `epicycle schedule` prints. A knob without a schedule keeps
    /// its default, or is absent when optional (`KnobValues`' subscript).
    public func values(at position: Position, in cycle: JointCycle) -> KnobValues {
        var values = KnobValues()
        for knob in Knob.allCases { values[knob] = schedules[knob].map { cycle.value(of: $0, at: position) } }
        return values
    }

    /// Checks every knob's value at the first and last step of every epoch of the cycle, so a
    /// schedule that leaves a knob's range anywhere is caught before any work starts.
    func validate(over cycle: JointCycle, pathPrefix: String) throws {
        for knob in schedules.keys.sorted() {
            let schedule = schedules[knob]!
            for position in cycle.epochBoundaries {
                let value = cycle.value(of: schedule, at: position)
                if let problem = knob.problem(with: value) {
                    throw RecipeError(path: pathPrefix + knob.rawValue,
                                      problem: "\(problem) (\(schedule) at epoch \(position.epoch))")
                }
            }
        }
    }
}

extension KnobSchedules {
    /// The knob whose own cycles mark a phase's cycle ends: `named` (the recipe's `cycle_ends_of`)
    /// when given, else the learning rate when its schedule has cycles of its own, else the first knob
    /// (in `Knob.allCases` order) whose schedule has, else the learning rate (its only end is the last
    /// epoch).
    public func cycleEndKnob(named: Knob?, in cycle: JointCycle) -> Knob {
        if let named { return named }
        let repeating = Knob.allCases.filter { knob in
            schedules[knob].map { cycle.cycleEndEpochs(of: $0).count > 1 } ?? false
        }
        return repeating.contains(.learningRate) ? .learningRate : repeating.first ?? .learningRate
    }

    /// The epochs (from 0) of the phase that occupies `cyclePhase` of `cycle` which end one of the
    /// cycles of `cycleEndKnob(named:in:)`, always with the phase's last epoch.
    public func cycleEnds(of cyclePhase: Phase, in cycle: JointCycle, following named: Knob?) -> (knob: Knob, epochs: [Int]) {
        let knob = cycleEndKnob(named: named, in: cycle)
        let first = cyclePhase == .pretrain ? 0 : cycle.pretrainingEpochs
        let count = cyclePhase == .pretrain ? cycle.pretrainingEpochs : cycle.finetuningEpochs
        let joint = schedules[knob].map { cycle.cycleEndEpochs(of: $0) } ?? []
        return (knob, Set(joint.map { $0 - first }.filter { (0..<count).contains($0) } + [count - 1]).sorted())
    }
}

extension JointCycle {
    /// The position of `epoch`'s first step, where recipe checks sample every schedule.
    func startOfEpoch(_ epoch: Int) -> Position {
        Position(epoch: epoch, totalEpochs: totalEpochs, step: epoch * max(totalSteps / max(totalEpochs, 1), 1),
                 totalSteps: totalSteps)
    }
}
