import EpicycleSchedules
import Foundation
import Testing

/// `cyclical: {…, cycles: n}`: n easy → hard → easy cycles, cycle k over ⌊k·N/n⌋ ≤ i < ⌊(k+1)·N/n⌋,
/// each the cyclical schedule at t = e/(E − 1) over its own length.
@Suite struct RepeatedCyclicalScheduleTests {
    // N = 10 epochs, n = 3: cycles [0, 3), [3, 6), [6, 10) of lengths 3, 3, 4; f = 2.
    // Length 3, t = e/2: δ(0) = 0; δ(1): 2·½ = 1 is not < 1, so falling (1 − ½)·2 = 1; δ(2) = 0.
    // Length 4, t = e/3: δ(0) = 0; δ(1) = 2/3; δ(2) = (1 − 2/3)·2 = 2/3; δ(3) = 0.
    @Test func threeCyclesOverTenEpochs() {
        let values = Schedule.repeatedCyclical(easy: 0, hard: 1, factor: 2, cycles: 3).samples(totalEpochs: 10)
        let expected: [Double] = [0, 1, 0, 0, 1, 0, 0, 2.0 / 3, 2.0 / 3, 0]
        for (epoch, (value, want)) in zip(values, expected).enumerated() { expectNear(value, want, "epoch \(epoch)") }
    }

    // Per step over 5 epochs of 2 steps: N = 10 steps, n = 2 cycles of 5 steps, f = 4, t = e/4:
    // δ(0) = 0; δ(1): 4·¼ = 1, falling (¾)·4/3 = 1; δ(2) = ½·4/3 = 2/3; δ(3) = ¼·4/3 = 1/3; δ(4) = 0.
    // Easy 8, hard 2: value = 8 − 6·δ.
    @Test func twoCyclesPerStep() {
        let schedule = Schedule.repeatedCyclical(easy: 8, hard: 2, factor: 4, cycles: 2, granularity: .step)
        let values = schedule.samples(totalEpochs: 5, stepsPerEpoch: 2, per: .step)
        let hardness: [Double] = [0, 1, 2.0 / 3, 1.0 / 3, 0]
        for (step, value) in values.enumerated() { expectNear(value, 8 - 6 * hardness[step % 5], "step \(step)") }
    }

    /// Each cycle is the single cyclical schedule over its share, for shares that do and do not divide.
    @Test(arguments: [(200, 3, 2.0), (200, 4, 4.0), (17, 5, 1.5), (7, 7, 2.0)])
    func everyCycleIsTheCyclicalScheduleOverItsShare(epochs: Int, cycles: Int, factor: Double) {
        let values = Schedule.repeatedCyclical(easy: 0.5, hard: 2, factor: factor, cycles: cycles).samples(totalEpochs: epochs)
        for cycle in 0..<cycles {
            let start = cycle * epochs / cycles, end = (cycle + 1) * epochs / cycles
            let single = Schedule.cyclical(easy: 0.5, hard: 2, factor: factor)
            for epoch in start..<end {
                let expected = single.value(at: Position(epoch: epoch - start, totalEpochs: end - start))
                expectNear(values[epoch], expected, "cycle \(cycle), epoch \(epoch)")
            }
            // Every cycle ends at its easy end.
            expectNear(values[end - 1], 0.5, "end of cycle \(cycle)")
        }
    }

    @Test func positionsPastTheEndHoldTheEasyValue() {
        let schedule = Schedule.repeatedCyclical(easy: 3, hard: 7, factor: 2, cycles: 3)
        expectNear(schedule.value(at: Position(epoch: 15, totalEpochs: 10)), 3)
    }

    @Test func decodesEncodesAndDescribes() throws {
        let json = #"{"cyclical":{"cycles":3,"easy":0.5,"factor":2,"hard":2,"per":"step"}}"#
        let schedule = try JSONDecoder().decode(Schedule.self, from: Data(json.utf8))
        #expect(schedule == .repeatedCyclical(easy: 0.5, hard: 2, factor: 2, cycles: 3, granularity: .step))
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        #expect(String(decoding: try encoder.encode(schedule), as: UTF8.self) == json)
        #expect(schedule.description == "cyclical 0.5 → 2 (f = 2, 3 cycles, per step)")
        // One cycle is the plain cyclical schedule.
        let one = #"{"cyclical":{"easy":0.5,"hard":2,"cycles":1}}"#
        #expect(try JSONDecoder().decode(Schedule.self, from: Data(one.utf8)) == .cyclical(easy: 0.5, hard: 2))
    }

    @Test(arguments: [
        (#"{"cyclical": {"easy": 0, "hard": 1, "factor": 2, "cycles": 0}}"#, "cyclical.cycles: must be a positive integer, got 0"),
        (#"{"cyclical": {"easy": 0, "hard": 1, "factor": 2, "cycles": 2.5}}"#, "cyclical.cycles: must be a positive integer, got 2.5"),
        (#"{"cyclical": {"easy": 0, "hard": 1, "factor": 2, "cycles": 1001}}"#, "cyclical.cycles: must be at most 1000, got 1001"),
        (#"{"cyclical": {"easy": 0, "hard": 1, "cycles": 3}}"#,
         "cyclical.factor: missing; cycles: 3 needs a factor > 1 so every cycle falls back to its easy end (e.g. factor: 2)"),
        (#"{"cyclical": {"easy": 0, "hard": 1, "factor": 1, "cycles": 3}}"#,
         "cyclical.factor: must be > 1 with cycles: 3, so every cycle falls back to its easy end (e.g. factor: 2), got 1"),
        (#"{"cyclical": {"easy": 0, "hard": 1, "factor": 0.5, "cycles": 3}}"#, "cyclical.factor: must be ≥ 1, got 0.5"),
    ])
    func mistakesNameTheirKey(json: String, message: String) {
        do {
            _ = try JSONDecoder().decode(Schedule.self, from: Data(json.utf8))
            Issue.record("\(json) should be rejected")
        } catch {
            #expect("\(error)" == message)
        }
    }

    @Test func needsAnEpochOrStepPerCycle() throws {
        let perEpoch = Schedule.repeatedCyclical(easy: 0, hard: 1, factor: 2, cycles: 20)
        #expect(throws: ScheduleError(path: "cyclical.cycles", problem: "20 cycles need at least 20 epochs, the cycle has 10")) {
            try perEpoch.validate(totalEpochs: 10, totalSteps: 1000)
        }
        try perEpoch.validate(totalEpochs: 20, totalSteps: 20)
        let perStep = Schedule.repeatedCyclical(easy: 0, hard: 1, factor: 2, cycles: 20, granularity: .step)
        try perStep.validate(totalEpochs: 10, totalSteps: 1000)
    }
}
