import EpicycleSchedules
import Testing

/// `JointCycle.cycleEndEpochs(of:)`: the epochs at whose end a schedule's own cycle is over.
@Suite struct CycleEndsTests {
    // N = 10 epochs, n = 3 cycles [0, 3), [3, 6), [6, 10): last epochs ⌊(k+1)·10/3⌋ − 1 = 2, 5, 9.
    @Test func repeatedCyclicalEndsAtEachCyclesLastEpoch() {
        let cycle = JointCycle(pretrainingEpochs: 10, finetuningEpochs: 0)
        #expect(cycle.cycleEndEpochs(of: .repeatedCyclical(easy: 0, hard: 1, factor: 2, cycles: 3)) == [2, 5, 9])
    }

    // Per step, 5 epochs of 3 steps (15 steps), 2 cycles: last steps ⌊15/2⌋ − 1 = 6 (epoch 2) and 14 (epoch 4).
    @Test func perStepCyclesEndInTheEpochHoldingTheirLastStep() {
        let cycle = JointCycle(pretrainingEpochs: 5, pretrainingStepsPerEpoch: 3, finetuningEpochs: 0)
        let schedule = Schedule.repeatedCyclical(easy: 0, hard: 1, factor: 2, cycles: 2, granularity: .step)
        #expect(cycle.cycleEndEpochs(of: schedule) == [2, 4])
    }

    // T₀ = 2, T_mult = 2: periods of 2, 4, 8 epochs end after epochs 2, 6, 14 (counted from 1): the
    // 2·(2ᵏ − 1) sequence of Portes et al. (2022); 15 epochs end with a partial period, the run's end.
    @Test func warmRestartsEndWithEveryFullPeriod() {
        let cycle = JointCycle(pretrainingEpochs: 15, finetuningEpochs: 0)
        #expect(cycle.cycleEndEpochs(of: .warmRestarts(maximum: 0.1, firstPeriod: 2, periodMultiplier: 2)) == [1, 5, 13, 14])
        let constantPeriods = JointCycle(pretrainingEpochs: 9, finetuningEpochs: 0)
        #expect(constantPeriods.cycleEndEpochs(of: .warmRestarts(maximum: 0.1, firstPeriod: 3)) == [2, 5, 8])
    }

    // Half cycle of 2 epochs: back at the base value at epochs 4 and 8, so cycles end after epochs 3 and 7.
    @Test func triangularEndsBeforeEachReturnToTheBase() {
        let cycle = JointCycle(pretrainingEpochs: 9, finetuningEpochs: 0)
        #expect(cycle.cycleEndEpochs(of: .triangular(base: 0.01, maximum: 0.1, stepSize: 2, granularity: .epoch)) == [3, 7, 8])
    }

    @Test(arguments: [Schedule.constant(0.1), .cyclical(easy: 0, hard: 1), .cosine(peak: 0.1), .step(initial: 0.1, milestones: [2]),
                      .oneCycle(peak: 0.1), .rampUp(value: 1, epochs: 3)])
    func aScheduleWithoutCyclesEndsOnlyAtTheLastEpoch(schedule: Schedule) {
        let cycle = JointCycle(pretrainingEpochs: 4, pretrainingStepsPerEpoch: 2, finetuningEpochs: 3, finetuningStepsPerEpoch: 5)
        #expect(cycle.cycleEndEpochs(of: schedule) == [6])
    }

    // Epochs of 2 and 5 steps: steps 0–1 in epoch 0, 2–3 in epoch 1, 4–8 in epoch 2.
    @Test func stepsMapToTheirEpochs() {
        let cycle = JointCycle(pretrainingEpochSteps: [2, 2], finetuningEpochSteps: [5])
        #expect((0..<9).map(cycle.epoch(holdingStep:)) == [0, 0, 1, 1, 2, 2, 2, 2, 2])
    }
}
