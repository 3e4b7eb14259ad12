import EpicycleSchedules
import Foundation
import Testing

private func decode(_ json: String) throws -> Schedule {
    try JSONDecoder().decode(Schedule.self, from: Data(json.utf8))
}

/// The message of the `ScheduleError` decoding `json` throws, or a description of what happened instead.
private func decodingError(_ json: String) -> String {
    do {
        return "decoded \(try decode(json))"
    } catch let error as ScheduleError {
        return error.description
    } catch {
        return "other error: \(error)"
    }
}

@Suite struct ScheduleCodingTests {
    @Test func decodesEveryForm() throws {
        let cases: [(String, Schedule)] = [
            ("0.1", .constant(0.1)),
            ("5e-4", .constant(5e-4)),
            (#"{"constant": 0.1}"#, .constant(0.1)),
            (#"{"cyclical": {"easy": 0.5, "hard": 2.0, "factor": 1}}"#, .cyclical(easy: 0.5, hard: 2, factor: 1, granularity: .epoch)),
            (#"{"cyclical": {"easy": 1e-5, "hard": 8e-5, "factor": 2, "per": "step"}}"#,
             .cyclical(easy: 1e-5, hard: 8e-5, factor: 2, granularity: .step)),
            (#"{"cyclical": {"easy": 4, "hard": 10}}"#, .cyclical(easy: 4, hard: 10, factor: nil, granularity: .epoch)),
            (#"{"cyclical": {"easy": 4, "hard": 10, "factor": null}}"#, .cyclical(easy: 4, hard: 10)),
            (#"{"step": {"initial": 0.1, "milestones": [30, 60], "gamma": 0.1}}"#,
             .step(initial: 0.1, milestones: [30, 60], gamma: 0.1)),
            (#"{"step": {"initial": 0.1, "milestones": [30]}}"#, .step(initial: 0.1, milestones: [30], gamma: 0.1)),
            (#"{"cosine": {"peak": 0.1, "final": 0, "warmup_epochs": 3}}"#,
             .cosine(peak: 0.1, final: 0, warmupEpochs: 3, warmupStart: 0, granularity: .epoch)),
            (#"{"cosine": {"peak": 0.1, "warmup_epochs": 2, "warmup_start": 1e-5, "per": "step"}}"#,
             .cosine(peak: 0.1, final: 0, warmupEpochs: 2, warmupStart: 1e-5, granularity: .step)),
            (#"{"warm_restarts": {"maximum": 0.1, "first_period": 10.0}}"#,
             .warmRestarts(maximum: 0.1, minimum: 0, firstPeriod: 10, periodMultiplier: 1, granularity: .epoch)),
            (#"{"warm_restarts": {"maximum": 0.1, "minimum": 1e-4, "first_period": 10, "period_multiplier": 2, "per": "step"}}"#,
             .warmRestarts(maximum: 0.1, minimum: 1e-4, firstPeriod: 10, periodMultiplier: 2, granularity: .step)),
            (#"{"one_cycle": {"peak": 0.1}}"#,
             .oneCycle(peak: 0.1, divFactor: 25, finalDivFactor: 1e4, pctStart: 0.3, granularity: .step)),
            (#"{"one_cycle": {"peak": 0.4, "div_factor": 10, "final_div_factor": 100, "pct_start": 0.25, "per": "epoch"}}"#,
             .oneCycle(peak: 0.4, divFactor: 10, finalDivFactor: 100, pctStart: 0.25, granularity: .epoch)),
            (#"{"triangular": {"base": 0.001, "maximum": 0.006, "step_size": 2000}}"#,
             .triangular(base: 0.001, maximum: 0.006, stepSize: 2000, granularity: .step)),
            (#"{"triangular": {"base": 0.001, "maximum": 0.006, "step_size": 4, "per": "epoch"}}"#,
             .triangular(base: 0.001, maximum: 0.006, stepSize: 4, granularity: .epoch)),
            (#"{"rampup": {"value": 1, "epochs": 10}}"#, .rampUp(value: 1, epochs: 10, granularity: .epoch)),
            (#"{"rampup": {"value": 2, "epochs": 3, "per": "step"}}"#, .rampUp(value: 2, epochs: 3, granularity: .step)),
        ]
        for (json, expected) in cases {
            #expect(try decode(json) == expected, "\(json)")
        }
    }

    @Test(arguments: [
        // Ranges.
        (#"{"cyclical": {"easy": 0.5, "hard": 2, "factor": 0.5}}"#, "cyclical.factor: must be ≥ 1, got 0.5"),
        (#"{"step": {"initial": 0.1, "milestones": [], "gamma": 0.1}}"#,
         "step.milestones: must list at least one epoch (for no steps, use a constant)"),
        (#"{"step": {"initial": 0.1, "milestones": [60, 30]}}"#, "step.milestones: must be strictly increasing, got [60, 30]"),
        (#"{"step": {"initial": 0.1, "milestones": [30, 30]}}"#, "step.milestones: must be strictly increasing, got [30, 30]"),
        (#"{"step": {"initial": 0.1, "milestones": [-5, 30]}}"#, "step.milestones: must be epochs from 0 to 100000, got [-5, 30]"),
        (#"{"step": {"initial": 0.1, "milestones": [30], "gamma": 0}}"#, "step.gamma: must be > 0, got 0"),
        (#"{"cosine": {"peak": 0.1, "warmup_epochs": -1}}"#, "cosine.warmup_epochs: must be a non-negative integer, got -1"),
        (#"{"warm_restarts": {"maximum": 0.1, "first_period": -3}}"#,
         "warm_restarts.first_period: must be a positive integer, got -3"),
        (#"{"warm_restarts": {"maximum": 0.1, "first_period": 0}}"#,
         "warm_restarts.first_period: must be a positive integer, got 0"),
        (#"{"warm_restarts": {"maximum": 0.1, "first_period": 10, "period_multiplier": 0}}"#,
         "warm_restarts.period_multiplier: must be a positive integer, got 0"),
        (#"{"one_cycle": {"peak": 0.1, "pct_start": 1.5}}"#, "one_cycle.pct_start: must be in [0, 1], got 1.5"),
        (#"{"one_cycle": {"peak": 0.1, "div_factor": 0}}"#, "one_cycle.div_factor: must be > 0, got 0"),
        (#"{"one_cycle": {"peak": 0.1, "final_div_factor": -2}}"#, "one_cycle.final_div_factor: must be > 0, got -2"),
        (#"{"triangular": {"base": 0.001, "maximum": 0.006, "step_size": 0}}"#,
         "triangular.step_size: must be a positive integer, got 0"),
        (#"{"rampup": {"value": 1, "epochs": 0}}"#, "rampup.epochs: must be a positive integer, got 0"),
        (#"{"rampup": {"value": 1}}"#, "rampup.epochs: missing; rampup needs value, epochs"),
        (#"{"rampup": {"value": 1, "epochs": 200000}}"#, "rampup.epochs: must be at most 100000, got 200000"),
        // Upper bounds, so that no epoch or step arithmetic on a recipe's numbers can overflow or hang.
        (#"{"cyclical": {"easy": 0.5, "hard": 2, "factor": 1e300}}"#, "cyclical.factor: must be at most 1000, got 1e+300"),
        (#"{"step": {"initial": 0.1, "milestones": [30, 9223372036854775807]}}"#,
         "step.milestones: must be epochs from 0 to 100000, got [30, 9223372036854775807]"),
        (#"{"cosine": {"peak": 0.1, "warmup_epochs": 1000000}}"#, "cosine.warmup_epochs: must be at most 100000, got 1000000"),
        (#"{"warm_restarts": {"maximum": 0.1, "first_period": 10, "period_multiplier": 100000}}"#,
         "warm_restarts.period_multiplier: must be at most 1000, got 100000"),
        (#"{"triangular": {"base": 0.001, "maximum": 0.006, "step_size": 100000000000000}}"#,
         "triangular.step_size: must be at most 1000000000, got 100000000000000"),
        (#"{"cosine": {"peak": 0.1, "warmup_epochs": 1e30}}"#, "cosine.warmup_epochs: must be a non-negative integer, got 1e+30"),
        // Unknown and missing keys.
        (#"{"cyclical": {"eazy": 0.5, "hard": 2}}"#, "cyclical.eazy: unknown key; expected easy, hard, factor, cycles, per"),
        (#"{"cosine": {"peak": 0.1, "warmup": 3}}"#,
         "cosine.warmup: unknown key; expected peak, final, warmup_epochs, warmup_start, per"),
        (#"{"cyclical": {"easy": 0.5}}"#, "cyclical.hard: missing; cyclical needs easy, hard"),
        (#"{"warm_restarts": {"maximum": 0.1}}"#, "warm_restarts.first_period: missing; warm_restarts needs maximum, first_period"),
        (#"{"cosin": {"peak": 0.1}}"#,
         "cosin: unknown kind of schedule; expected constant, cyclical, step, cosine, warm_restarts, one_cycle, triangular, rampup"),
        (#"{"cosine": {"peak": 0.1}, "step": {"initial": 0.1, "milestones": [3]}}"#,
         "expected one kind of schedule, got 2: cosine, step"),
        ("{}", "expected a number or a schedule (one of constant, cyclical, step, cosine, warm_restarts, one_cycle, "
            + "triangular, rampup), got an empty mapping"),
        // Wrong types.
        (#""fast""#, #"expected a number or a schedule such as {cyclical: {easy: 0.5, hard: 2}}, got "fast""#),
        ("[1, 2]", "expected a number or a schedule such as {cyclical: {easy: 0.5, hard: 2}}, got a list"),
        ("true", "expected a number or a schedule such as {cyclical: {easy: 0.5, hard: 2}}, got true"),
        (#"{"constant": "x"}"#, #"constant: must be a number, got "x""#),
        (#"{"cyclical": 3}"#, "cyclical: expected a mapping with keys easy, hard, factor, cycles, per, got 3"),
        (#"{"cyclical": {"easy": "low", "hard": 2}}"#, #"cyclical.easy: must be a number, got "low""#),
        (#"{"cyclical": {"easy": 0.5, "hard": [1, 2]}}"#, "cyclical.hard: must be a number, got [1, 2]"),
        (#"{"cyclical": {"easy": 0.5, "hard": {"x": 1}}}"#, "cyclical.hard: must be a number, got a mapping"),
        (#"{"cyclical": {"easy": 0.5, "hard": null}}"#, "cyclical.hard: must be a number, got null"),
        (#"{"cyclical": {"easy": 0.5, "hard": 2, "per": "batch"}}"#, #"cyclical.per: must be epoch or step, got "batch""#),
        (#"{"warm_restarts": {"maximum": 0.1, "first_period": 2.5}}"#,
         "warm_restarts.first_period: must be a positive integer, got 2.5"),
        (#"{"step": {"initial": 0.1, "milestones": 30}}"#, "step.milestones: must be a list of epochs such as [30, 60], got 30"),
        (#"{"step": {"initial": 0.1, "milestones": [30.5]}}"#,
         "step.milestones: must be a list of epochs such as [30, 60], got [30.5]"),
    ])
    func validationMessages(json: String, message: String) {
        #expect(decodingError(json) == message)
    }

    @Test func errorsNestUnderTheRecipeKeyAndPassThroughOuterDecoding() {
        let error = ScheduleError(path: "cyclical.factor", problem: "must be ≥ 1, got 0.5")
        #expect(error.nested(in: "knobs.temperature").description == "knobs.temperature.cyclical.factor: must be ≥ 1, got 0.5")
        #expect(ScheduleError(path: "", problem: "must be a finite number, got inf").nested(in: "weight_decay").description
                == "weight_decay: must be a finite number, got inf")
        // Inside a larger document the error reaches the caller unchanged, to be nested by the recipe layer.
        let json = #"{"temperature": {"cyclical": {"easy": 0.5, "hard": 2, "factor": 0.5}}}"#
        #expect(throws: error) { try JSONDecoder().decode([String: Schedule].self, from: Data(json.utf8)) }
    }

    @Test func validateChecksSchedulesBuiltInCode() {
        func message(_ schedule: Schedule) -> String {
            do { try schedule.validate(); return "valid" } catch { return error.description }
        }
        #expect(message(.constant(.infinity)) == "must be a finite number, got inf")
        #expect(message(.cyclical(easy: .nan, hard: 1)) == "cyclical.easy: must be a finite number, got nan")
        #expect(message(.oneCycle(peak: 0.1, pctStart: -0.1)) == "one_cycle.pct_start: must be in [0, 1], got -0.1")
        #expect(message(.cosine(peak: 0.1, final: -.infinity)) == "cosine.final: must be a finite number, got -inf")
        #expect(message(.step(initial: 0.1, milestones: [30, 60])) == "valid")
    }

    @Test func encodesTheRecipeShapeAndRoundTrips() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        func json(_ schedule: Schedule) throws -> String { String(decoding: try encoder.encode(schedule), as: UTF8.self) }
        #expect(try json(.constant(0.1)) == "0.1")
        #expect(try json(.cyclical(easy: 0.5, hard: 2, factor: 1)) == #"{"cyclical":{"easy":0.5,"factor":1,"hard":2,"per":"epoch"}}"#)
        #expect(try json(.cyclical(easy: 0.5, hard: 2)) == #"{"cyclical":{"easy":0.5,"hard":2,"per":"epoch"}}"#)
        #expect(try json(.step(initial: 0.1, milestones: [30, 60])) == #"{"step":{"gamma":0.1,"initial":0.1,"milestones":[30,60]}}"#)
        let schedules: [Schedule] = [
            .constant(5e-4),
            .cyclical(easy: 1e-5, hard: 8e-5, factor: 2, granularity: .step),
            .cyclical(easy: 4, hard: 10),
            .step(initial: 0.1, milestones: [30, 60, 90], gamma: 0.2),
            .cosine(peak: 0.1, final: 1e-4, warmupEpochs: 3, warmupStart: 1e-5, granularity: .step),
            .warmRestarts(maximum: 0.1, minimum: 1e-4, firstPeriod: 10, periodMultiplier: 2),
            .oneCycle(peak: 0.4, divFactor: 10, finalDivFactor: 100, pctStart: 0.25, granularity: .epoch),
            .triangular(base: 0.001, maximum: 0.006, stepSize: 2000),
            .rampUp(value: 0.5, epochs: 7, granularity: .step),
        ]
        for schedule in schedules {
            #expect(try JSONDecoder().decode(Schedule.self, from: encoder.encode(schedule)) == schedule, "\(schedule)")
        }
    }
}
