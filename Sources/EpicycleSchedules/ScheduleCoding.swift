// Schedules in recipes: a plain number, or a mapping with one key naming the kind of schedule, e.g.
//
//     weight_decay: 5e-4
//     temperature: {cyclical: {easy: 0.5, hard: 2.0, factor: 1}}
//     learning_rate: {cosine: {peak: 0.1, final: 0, warmup_epochs: 3}}
//
// Keys are the snake_case forms of the case labels; `per: epoch | step` sets the granularity.

/// At most the first 60 characters of `text`, then "…": messages quote values, never whole files.
public func shortenedForMessage(_ text: String) -> String {
    let limit = 60
    // Counting the prefix only: a long value is not walked to its end.
    return text.prefix(limit + 1).count <= limit ? text : text.prefix(limit) + "…"
}

/// The largest values a schedule's parameters may take (README, "Recipes"): far beyond any real run,
/// and small enough that no epoch or step arithmetic on them can overflow.
public enum ScheduleLimits {
    /// Epoch counts: milestones, warm-up epochs, warm-restart periods.
    public static let epochs = 100_000
    /// Step counts: the triangular schedule's half cycle.
    public static let steps = 1_000_000_000
    /// Milestones of a step schedule.
    public static let milestones = 1000
    /// The cyclical factor f and the warm-restart period multiplier.
    public static let factor = 1000
    /// Cycles of a repeated cyclical schedule.
    public static let cycles = 1000
}

/// A schedule in a recipe that cannot be read or is out of range.
public struct ScheduleError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The dotted key path relative to the schedule, e.g. "cyclical.factor"; empty for the schedule as
    /// a whole.
    public var path: String
    /// What is wrong, e.g. "must be ≥ 1, got 0.5".
    public var problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    /// The same error seen from the recipe, which holds the schedule under the dotted key path `key`
    /// (e.g. "knobs.temperature").
    public func nested(in key: String) -> ScheduleError {
        ScheduleError(path: path.isEmpty ? key : key + "." + path, problem: problem)
    }

    public var description: String { path.isEmpty ? problem : "\(path): \(problem)" }
}

extension Schedule {
    /// The recipe keys of the kinds of schedule, as listed in messages.
    static let kindNames = ["constant", "cyclical", "step", "cosine", "warm_restarts", "one_cycle", "triangular", "rampup"]

    /// This schedule's recipe key.
    var kindName: String {
        switch self {
        case .constant: "constant"
        case .cyclical, .repeatedCyclical: "cyclical"
        case .step: "step"
        case .cosine: "cosine"
        case .warmRestarts: "warm_restarts"
        case .oneCycle: "one_cycle"
        case .triangular: "triangular"
        case .rampUp: "rampup"
        }
    }

    /// Checks every parameter's range; the error names the recipe key (a plain constant has an empty
    /// path). Decoding calls this, so a decoded schedule is always valid.
    public func validate() throws(ScheduleError) {
        let kind = kindName
        func fail(_ key: String, _ problem: String) -> ScheduleError {
            ScheduleError(path: kind + "." + key, problem: problem)
        }
        func finite(_ key: String, _ value: Double) throws(ScheduleError) {
            guard value.isFinite else { throw fail(key, "must be a finite number, got \(formatted(value))") }
        }
        func positive(_ key: String, _ value: Double) throws(ScheduleError) {
            guard value > 0 else { throw fail(key, "must be > 0, got \(formatted(value))") }
        }
        func atLeast(_ minimum: Int, _ key: String, _ value: Int, atMost maximum: Int) throws(ScheduleError) {
            guard value >= minimum else {
                throw fail(key, "must be a \(minimum > 0 ? "positive" : "non-negative") integer, got \(value)")
            }
            guard value <= maximum else { throw fail(key, "must be at most \(maximum), got \(value)") }
        }
        func validFactor(_ factor: Double) throws(ScheduleError) {
            try finite("factor", factor)
            guard factor >= 1 else { throw fail("factor", "must be ≥ 1, got \(formatted(factor))") }
            guard factor <= Double(ScheduleLimits.factor) else {
                throw fail("factor", "must be at most \(ScheduleLimits.factor), got \(formatted(factor))")
            }
        }
        switch self {
        case let .constant(value):
            guard value.isFinite else {
                throw ScheduleError(path: "", problem: "must be a finite number, got \(formatted(value))")
            }
        case let .cyclical(easy, hard, factor, _):
            try finite("easy", easy)
            try finite("hard", hard)
            if let factor { try validFactor(factor) }
        case let .repeatedCyclical(easy, hard, factor, cycles, _):
            try finite("easy", easy)
            try finite("hard", hard)
            guard cycles >= 2 else { throw fail("cycles", "must be at least 2 here (one cycle is plain cyclical), got \(cycles)") }
            guard cycles <= ScheduleLimits.cycles else {
                throw fail("cycles", "must be at most \(ScheduleLimits.cycles), got \(cycles)")
            }
            try validFactor(factor)
            guard factor > 1 else {
                throw fail("factor", "must be > 1 with cycles: \(cycles), so every cycle falls back to its easy "
                           + "end (e.g. factor: 2), got \(formatted(factor))")
            }
        case let .step(initial, milestones, gamma):
            try finite("initial", initial)
            guard !milestones.isEmpty else {
                throw fail("milestones", "must list at least one epoch (for no steps, use a constant)")
            }
            guard milestones.count <= ScheduleLimits.milestones else {
                throw fail("milestones", "must list at most \(ScheduleLimits.milestones) epochs, got \(milestones.count)")
            }
            let list = shortenedForMessage("[" + milestones.map(String.init).joined(separator: ", ") + "]")
            guard milestones.allSatisfy({ (0...ScheduleLimits.epochs).contains($0) }) else {
                throw fail("milestones", "must be epochs from 0 to \(ScheduleLimits.epochs), got \(list)")
            }
            guard zip(milestones, milestones.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw fail("milestones", "must be strictly increasing, got \(list)")
            }
            try finite("gamma", gamma)
            try positive("gamma", gamma)
        case let .cosine(peak, final, warmupEpochs, warmupStart, _):
            try finite("peak", peak)
            try finite("final", final)
            try atLeast(0, "warmup_epochs", warmupEpochs, atMost: ScheduleLimits.epochs)
            try finite("warmup_start", warmupStart)
        case let .warmRestarts(maximum, minimum, firstPeriod, periodMultiplier, _):
            try finite("maximum", maximum)
            try finite("minimum", minimum)
            try atLeast(1, "first_period", firstPeriod, atMost: ScheduleLimits.epochs)
            try atLeast(1, "period_multiplier", periodMultiplier, atMost: ScheduleLimits.factor)
        case let .oneCycle(peak, divFactor, finalDivFactor, pctStart, _):
            try finite("peak", peak)
            try finite("div_factor", divFactor)
            try positive("div_factor", divFactor)
            try finite("final_div_factor", finalDivFactor)
            try positive("final_div_factor", finalDivFactor)
            guard (0...1).contains(pctStart) else {
                throw fail("pct_start", "must be in [0, 1], got \(formatted(pctStart))")
            }
        case let .triangular(base, maximum, stepSize, _):
            try finite("base", base)
            try finite("maximum", maximum)
            try atLeast(1, "step_size", stepSize, atMost: ScheduleLimits.steps)
        case let .rampUp(value, epochs, _):
            try finite("value", value)
            try atLeast(1, "epochs", epochs, atMost: ScheduleLimits.epochs)
        }
    }
}

extension Schedule {
    /// Checks what only the cycle's length tells: a repeated cyclical schedule needs at least one
    /// epoch (or step, per its granularity) per cycle.
    public func validate(totalEpochs: Int, totalSteps: Int) throws(ScheduleError) {
        guard case let .repeatedCyclical(_, _, _, cycles, granularity) = self else { return }
        let count = granularity == .epoch ? totalEpochs : totalSteps
        guard cycles <= count else {
            throw ScheduleError(path: "cyclical.cycles", problem: "\(cycles) cycles need at least \(cycles) "
                                + "\(granularity.rawValue)s, the cycle has \(count)")
        }
    }
}

extension Schedule: Decodable {
    /// Reads a plain number or a single-key mapping naming the schedule; throws `ScheduleError` for
    /// unknown kinds or keys, missing keys, wrong types and values out of range.
    public init(from decoder: any Decoder) throws {
        if let single = try? decoder.singleValueContainer(), let value = try? single.decode(Double.self) {
            self = .constant(value)
        } else {
            guard let mapping = try? decoder.container(keyedBy: RecipeKey.self) else {
                throw ScheduleError(path: "", problem: "expected a number or a schedule such as "
                                    + "{cyclical: {easy: 0.5, hard: 2}}, got \(describeValue(in: decoder))")
            }
            let kinds = mapping.allKeys.map(\.stringValue).sorted()
            guard kinds.count == 1, let kind = kinds.first else {
                throw ScheduleError(path: "", problem: kinds.isEmpty
                    ? "expected a number or a schedule (one of \(Self.kindNames.joined(separator: ", "))), "
                        + "got an empty mapping"
                    : "expected one kind of schedule, got \(kinds.count): \(shortenedForMessage(kinds.joined(separator: ", ")))")
            }
            self = try Self.decode(kind: kind, from: mapping)
        }
        try validate()
    }

    private static func decode(kind: String, from mapping: KeyedDecodingContainer<RecipeKey>) throws -> Schedule {
        switch kind {
        case "constant":
            guard let value = try? mapping.decode(Double.self, forKey: RecipeKey(kind)) else {
                throw ScheduleError(path: kind, problem: "must be a number, got "
                                    + describeValue(in: mapping, forKey: RecipeKey(kind)))
            }
            return .constant(value)
        case "cyclical":
            let fields = try Fields(kind, in: mapping, keys: ["easy", "hard", "factor", "cycles", "per"],
                                    required: ["easy", "hard"])
            let easy = try fields.number("easy"), hard = try fields.number("hard")
            let factor = try fields.optionalNumber("factor"), granularity = try fields.granularity(default: .epoch)
            let cycles = try fields.optionalInteger("cycles", "a positive integer") ?? 1
            guard cycles != 1 else { return .cyclical(easy: easy, hard: hard, factor: factor, granularity: granularity) }
            guard cycles >= 1 else { throw ScheduleError(path: "cyclical.cycles", problem: "must be a positive integer, got \(cycles)") }
            guard let factor else {
                throw ScheduleError(path: "cyclical.factor", problem: "missing; cycles: \(cycles) needs a factor > 1 "
                                    + "so every cycle falls back to its easy end (e.g. factor: 2)")
            }
            return .repeatedCyclical(easy: easy, hard: hard, factor: factor, cycles: cycles, granularity: granularity)
        case "step":
            let fields = try Fields(kind, in: mapping, keys: ["initial", "milestones", "gamma"],
                                    required: ["initial", "milestones"])
            return .step(initial: try fields.number("initial"), milestones: try fields.epochs("milestones"),
                         gamma: try fields.optionalNumber("gamma") ?? 0.1)
        case "cosine":
            let fields = try Fields(kind, in: mapping, keys: ["peak", "final", "warmup_epochs", "warmup_start", "per"],
                                    required: ["peak"])
            return .cosine(peak: try fields.number("peak"), final: try fields.optionalNumber("final") ?? 0,
                           warmupEpochs: try fields.optionalInteger("warmup_epochs", "a non-negative integer") ?? 0,
                           warmupStart: try fields.optionalNumber("warmup_start") ?? 0,
                           granularity: try fields.granularity(default: .epoch))
        case "warm_restarts":
            let fields = try Fields(kind, in: mapping,
                                    keys: ["maximum", "minimum", "first_period", "period_multiplier", "per"],
                                    required: ["maximum", "first_period"])
            return .warmRestarts(maximum: try fields.number("maximum"), minimum: try fields.optionalNumber("minimum") ?? 0,
                                 firstPeriod: try fields.integer("first_period", "a positive integer"),
                                 periodMultiplier: try fields.optionalInteger("period_multiplier",
                                                                              "a positive integer") ?? 1,
                                 granularity: try fields.granularity(default: .epoch))
        case "one_cycle":
            let fields = try Fields(kind, in: mapping, keys: ["peak", "div_factor", "final_div_factor", "pct_start", "per"],
                                    required: ["peak"])
            return .oneCycle(peak: try fields.number("peak"), divFactor: try fields.optionalNumber("div_factor") ?? 25,
                             finalDivFactor: try fields.optionalNumber("final_div_factor") ?? 1e4,
                             pctStart: try fields.optionalNumber("pct_start") ?? 0.3,
                             granularity: try fields.granularity(default: .step))
        case "triangular":
            let fields = try Fields(kind, in: mapping, keys: ["base", "maximum", "step_size", "per"],
                                    required: ["base", "maximum", "step_size"])
            return .triangular(base: try fields.number("base"), maximum: try fields.number("maximum"),
                               stepSize: try fields.integer("step_size", "a positive integer"),
                               granularity: try fields.granularity(default: .step))
        case "rampup":
            let fields = try Fields(kind, in: mapping, keys: ["value", "epochs", "per"], required: ["value", "epochs"])
            return .rampUp(value: try fields.number("value"), epochs: try fields.integer("epochs", "a positive integer"),
                           granularity: try fields.granularity(default: .epoch))
        default:
            throw ScheduleError(path: shortenedForMessage(kind),
                                problem: "unknown kind of schedule; expected \(kindNames.joined(separator: ", "))")
        }
    }
}

extension Schedule: Encodable {
    /// Writes the recipe form `decode` reads: a constant as a plain number, anything else as a mapping
    /// with every parameter spelled out (an unset cyclical factor stays unset).
    public func encode(to encoder: any Encoder) throws {
        if case let .constant(value) = self {
            var single = encoder.singleValueContainer()
            try single.encode(value)
            return
        }
        var outer = encoder.container(keyedBy: RecipeKey.self)
        var fields = outer.nestedContainer(keyedBy: RecipeKey.self, forKey: RecipeKey(kindName))
        switch self {
        case .constant:
            preconditionFailure("constant is written as a plain number above")
        case let .cyclical(easy, hard, factor, granularity):
            try fields.encode(easy, forKey: "easy")
            try fields.encode(hard, forKey: "hard")
            try fields.encodeIfPresent(factor, forKey: "factor")
            try fields.encode(granularity.rawValue, forKey: "per")
        case let .repeatedCyclical(easy, hard, factor, cycles, granularity):
            try fields.encode(easy, forKey: "easy")
            try fields.encode(hard, forKey: "hard")
            try fields.encode(factor, forKey: "factor")
            try fields.encode(cycles, forKey: "cycles")
            try fields.encode(granularity.rawValue, forKey: "per")
        case let .step(initial, milestones, gamma):
            try fields.encode(initial, forKey: "initial")
            try fields.encode(milestones, forKey: "milestones")
            try fields.encode(gamma, forKey: "gamma")
        case let .cosine(peak, final, warmupEpochs, warmupStart, granularity):
            try fields.encode(peak, forKey: "peak")
            try fields.encode(final, forKey: "final")
            try fields.encode(warmupEpochs, forKey: "warmup_epochs")
            try fields.encode(warmupStart, forKey: "warmup_start")
            try fields.encode(granularity.rawValue, forKey: "per")
        case let .warmRestarts(maximum, minimum, firstPeriod, periodMultiplier, granularity):
            try fields.encode(maximum, forKey: "maximum")
            try fields.encode(minimum, forKey: "minimum")
            try fields.encode(firstPeriod, forKey: "first_period")
            try fields.encode(periodMultiplier, forKey: "period_multiplier")
            try fields.encode(granularity.rawValue, forKey: "per")
        case let .oneCycle(peak, divFactor, finalDivFactor, pctStart, granularity):
            try fields.encode(peak, forKey: "peak")
            try fields.encode(divFactor, forKey: "div_factor")
            try fields.encode(finalDivFactor, forKey: "final_div_factor")
            try fields.encode(pctStart, forKey: "pct_start")
            try fields.encode(granularity.rawValue, forKey: "per")
        case let .triangular(base, maximum, stepSize, granularity):
            try fields.encode(base, forKey: "base")
            try fields.encode(maximum, forKey: "maximum")
            try fields.encode(stepSize, forKey: "step_size")
            try fields.encode(granularity.rawValue, forKey: "per")
        case let .rampUp(value, epochs, granularity):
            try fields.encode(value, forKey: "value")
            try fields.encode(epochs, forKey: "epochs")
            try fields.encode(granularity.rawValue, forKey: "per")
        }
    }
}

/// Any key of a recipe mapping.
struct RecipeKey: CodingKey, ExpressibleByStringLiteral {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ name: String) { stringValue = name }
    init(stringLiteral name: String) { stringValue = name }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// The parameters of one kind of schedule, read with error messages that name the key path.
private struct Fields {
    let kind: String
    let container: KeyedDecodingContainer<RecipeKey>

    /// Opens `kind`'s mapping, rejecting keys outside `keys` and reporting the first of `required` missing.
    init(_ kind: String, in mapping: KeyedDecodingContainer<RecipeKey>, keys: [String], required: [String]) throws {
        self.kind = kind
        let expected = keys.joined(separator: ", ")
        guard let container = try? mapping.nestedContainer(keyedBy: RecipeKey.self, forKey: RecipeKey(kind)) else {
            throw ScheduleError(path: kind, problem: "expected a mapping with keys \(expected), "
                                + "got \(describeValue(in: mapping, forKey: RecipeKey(kind)))")
        }
        self.container = container
        if let unknown = container.allKeys.map(\.stringValue).sorted().first(where: { !keys.contains($0) }) {
            throw ScheduleError(path: kind + "." + shortenedForMessage(unknown), problem: "unknown key; expected \(expected)")
        }
        if let missing = required.first(where: { !container.contains(RecipeKey($0)) }) {
            throw ScheduleError(path: kind + "." + missing,
                                problem: "missing; \(kind) needs \(required.joined(separator: ", "))")
        }
    }

    private func error(_ key: String, must requirement: String) -> ScheduleError {
        ScheduleError(path: kind + "." + key,
                      problem: "must be \(requirement), got \(describeValue(in: container, forKey: RecipeKey(key)))")
    }

    /// Whether `key` has a value; an explicit null counts as absent.
    private func isPresent(_ key: String) -> Bool {
        container.contains(RecipeKey(key)) && (try? container.decodeNil(forKey: RecipeKey(key))) != true
    }

    func number(_ key: String) throws -> Double {
        guard let value = try? container.decode(Double.self, forKey: RecipeKey(key)) else {
            throw error(key, must: "a number")
        }
        return value
    }

    func optionalNumber(_ key: String) throws -> Double? {
        isPresent(key) ? try number(key) : nil
    }

    func integer(_ key: String, _ requirement: String) throws -> Int {
        if let value = try? container.decode(Int.self, forKey: RecipeKey(key)) { return value }
        // JSONDecoder reads 10.0 as an Int but a YAML decoder may not: accept whole numbers either way.
        guard let number = try? container.decode(Double.self, forKey: RecipeKey(key)),
              number == number.rounded(), abs(number) < 1e15 else {
            throw error(key, must: requirement)
        }
        return Int(number)
    }

    func optionalInteger(_ key: String, _ requirement: String) throws -> Int? {
        isPresent(key) ? try integer(key, requirement) : nil
    }

    /// A list of epochs, e.g. milestones `[30, 60]`.
    func epochs(_ key: String) throws -> [Int] {
        guard let values = try? container.decode([Int].self, forKey: RecipeKey(key)) else {
            throw error(key, must: "a list of epochs such as [30, 60]")
        }
        return values
    }

    func granularity(default fallback: Granularity) throws -> Granularity {
        guard isPresent("per") else { return fallback }
        guard let name = try? container.decode(String.self, forKey: "per"), let granularity = Granularity(rawValue: name)
        else { throw error("per", must: "epoch or step") }
        return granularity
    }
}

/// What a recipe holds under `key`, for messages: a number, a quoted string, "a list", "a mapping".
private func describeValue(in container: KeyedDecodingContainer<RecipeKey>, forKey key: RecipeKey) -> String {
    if (try? container.decodeNil(forKey: key)) == true { return "null" }
    if let number = try? container.decode(Double.self, forKey: key) { return formatted(number) }
    if let flag = try? container.decode(Bool.self, forKey: key) { return String(flag) }
    if let text = try? container.decode(String.self, forKey: key) { return "\"\(shortenedForMessage(text))\"" }
    if let list = try? container.decode([Double].self, forKey: key) {
        return shortenedForMessage("[" + list.map(formatted).joined(separator: ", ") + "]")
    }
    if (try? container.nestedUnkeyedContainer(forKey: key)) != nil { return "a list" }
    if (try? container.nestedContainer(keyedBy: RecipeKey.self, forKey: key)) != nil { return "a mapping" }
    return "a value of another type"
}

/// What a decoder holds, for messages (see the keyed version).
private func describeValue(in decoder: any Decoder) -> String {
    if let single = try? decoder.singleValueContainer() {
        if single.decodeNil() { return "null" }
        if let flag = try? single.decode(Bool.self) { return String(flag) }
        if let text = try? single.decode(String.self) { return "\"\(shortenedForMessage(text))\"" }
    }
    if (try? decoder.unkeyedContainer()) != nil { return "a list" }
    return "a value of another type"
}
