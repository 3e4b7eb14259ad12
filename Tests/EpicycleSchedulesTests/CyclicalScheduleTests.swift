import EpicycleSchedules
import Testing

/// Records an issue when |actual − expected| > tolerance. Values here are sums of a few products of
/// doubles, so 1e-12 leaves ample room over rounding while catching any formula slip.
func expectNear(_ actual: Double, _ expected: Double, tolerance: Double = 1e-12, _ what: String = "",
                sourceLocation: SourceLocation = #_sourceLocation) {
    if !(abs(actual - expected) <= tolerance) {
        Issue.record("\(what): \(actual), expected \(expected) (tolerance \(tolerance))", sourceLocation: sourceLocation)
    }
}

/// The indices of the largest values; values within 1e-12 of each other count as tied, since the two
/// branches of δ compute equal values (e.g. 18/19) along different roundings.
func indicesOfMaximum(_ values: [Double]) -> [Int] {
    let largest = values.max() ?? 0
    return values.indices.filter { values[$0] >= largest - 1e-12 }
}

/// The hardness δ of a cyclical schedule from 0 (easy) to 1 (hard), at epoch `epoch` of `totalEpochs`.
func hardness(factor: Double, epoch: Int, totalEpochs: Int) -> Double {
    Schedule.cyclical(easy: 0, hard: 1, factor: factor).value(at: Position(epoch: epoch, totalEpochs: totalEpochs))
}

@Suite struct CyclicalScheduleTests {
    // E = 10: t = e/9.
    // f = 1: δ = e/9, rising all the way: 0 at e = 0, 4/9 at e = 4, 1 at e = 9.
    // f = 2: rising while 2e/9 < 1, i.e. e ≤ 4: δ(4) = 8/9; falling from e = 5: (1 − 5/9)·2 = 8/9. The
    //        continuous peak t = 1/2 is at e = 4.5, between them. δ(9) = 0.
    // f = 4: rising while 4e/9 < 1, i.e. e ≤ 2: δ(1) = 4/9, δ(2) = 8/9; falling from e = 3:
    //        (1 − 3/9)·4/3 = 8/9, δ(6) = (1/3)·(4/3) = 4/9, δ(9) = 0.
    @Test func tenEpochs() {
        let expected: [Double: [Int: Double]] = [
            1: [0: 0, 4: 4.0 / 9, 9: 1],
            2: [0: 0, 4: 8.0 / 9, 5: 8.0 / 9, 9: 0],
            4: [0: 0, 1: 4.0 / 9, 2: 8.0 / 9, 3: 8.0 / 9, 6: 4.0 / 9, 9: 0],
        ]
        for (factor, values) in expected {
            for (epoch, delta) in values {
                expectNear(hardness(factor: factor, epoch: epoch, totalEpochs: 10), delta, "f = \(factor), e = \(epoch)")
            }
        }
    }

    // E = 200: t = e/199.
    // f = 1: δ(0) = 0, δ(100) = 100/199, δ(199) = 1.
    // f = 2: rising while 2e/199 < 1, i.e. e ≤ 99: δ(99) = 198/199; falling at e = 100: (99/199)·2 = 198/199.
    // f = 4: rising while 4e/199 < 1, i.e. e ≤ 49: δ(49) = 196/199 ≈ 0.98492; falling at e = 50:
    //        (149/199)·(4/3) = 596/597 ≈ 0.99832, the hardest epoch; δ(199) = 0.
    @Test func twoHundredEpochs() {
        expectNear(hardness(factor: 1, epoch: 0, totalEpochs: 200), 0)
        expectNear(hardness(factor: 1, epoch: 100, totalEpochs: 200), 100.0 / 199)
        expectNear(hardness(factor: 1, epoch: 199, totalEpochs: 200), 1)
        expectNear(hardness(factor: 2, epoch: 0, totalEpochs: 200), 0)
        expectNear(hardness(factor: 2, epoch: 99, totalEpochs: 200), 198.0 / 199)
        expectNear(hardness(factor: 2, epoch: 100, totalEpochs: 200), 198.0 / 199)
        expectNear(hardness(factor: 2, epoch: 199, totalEpochs: 200), 0)
        expectNear(hardness(factor: 4, epoch: 0, totalEpochs: 200), 0)
        expectNear(hardness(factor: 4, epoch: 49, totalEpochs: 200), 196.0 / 199)
        expectNear(hardness(factor: 4, epoch: 50, totalEpochs: 200), 596.0 / 597)
        expectNear(hardness(factor: 4, epoch: 199, totalEpochs: 200), 0)
        // The hardest epochs are where the formula says: the last for f = 1, 99 and 100 for f = 2, 50 for f = 4.
        for (factor, peaks) in [(1.0, [199]), (2.0, [99, 100]), (4.0, [50])] {
            let values = Schedule.cyclical(easy: 0, hard: 1, factor: factor).samples(totalEpochs: 200)
            #expect(indicesOfMaximum(values) == peaks, "f = \(factor)")
        }
    }

    // Easy 0.5 → hard 2 (the paper's softmax temperature range): h = 0.5 + 1.5·δ.
    // E = 10, f = 2: e = 0 → 0.5, e = 4 → 0.5 + 1.5·8/9 = 1.8333…, e = 9 → 0.5.
    @Test func valueMapsHardnessOntoTheRange() {
        let temperature = Schedule.cyclical(easy: 0.5, hard: 2, factor: 2)
        expectNear(temperature.value(at: Position(epoch: 0, totalEpochs: 10)), 0.5)
        expectNear(temperature.value(at: Position(epoch: 4, totalEpochs: 10)), 0.5 + 1.5 * 8 / 9)
        expectNear(temperature.value(at: Position(epoch: 9, totalEpochs: 10)), 0.5)
        // Batch size: the easy end is large, so the value falls while hardness rises. 512 → 128, f = 1,
        // E = 5: t = e/4, e = 1 → 512 − 384/4 = 416.
        let batch = Schedule.cyclical(easy: 512, hard: 128, factor: 1)
        expectNear(batch.value(at: Position(epoch: 1, totalEpochs: 5)), 416)
    }

    // At t = 1/f both branches equal 1; just before, f·t → 1; just after, (1 − t)·f/(f − 1) → 1.
    // Each branch has slope at most f/(f − 1) ≤ 3 for these f, so ε = 1e-9 moves δ by < 1e-8.
    @Test(arguments: [1.5, 2, 3, 4, 7.3])
    func fallingBranchIsContinuous(factor: Double) {
        let peak = 1 / factor, epsilon = 1e-9
        expectNear(cyclicalHardness(progress: peak, factor: factor), 1, tolerance: 1e-12)
        let before = cyclicalHardness(progress: peak - epsilon, factor: factor)
        let after = cyclicalHardness(progress: peak + epsilon, factor: factor)
        expectNear(before, 1, tolerance: 1e-8, "before the peak")
        expectNear(after, 1, tolerance: 1e-8, "after the peak")
        #expect(before < 1 && after < 1)
        expectNear(cyclicalHardness(progress: 1, factor: factor), 0, "back to easy at t = 1")
    }

    @Test func singleEpochAndPositionsPastTheEnd() {
        // E = 1: t is defined as 0, the easy value.
        let schedule = Schedule.cyclical(easy: 3, hard: 7, factor: 1)
        expectNear(schedule.value(at: Position(epoch: 0, totalEpochs: 1)), 3)
        // Past the last epoch t holds at 1: hard for f = 1, easy for f = 2.
        expectNear(schedule.value(at: Position(epoch: 12, totalEpochs: 10)), 7)
        expectNear(Schedule.cyclical(easy: 3, hard: 7, factor: 2).value(at: Position(epoch: 12, totalEpochs: 10)), 3)
        // No factor on its own run means f = 1 (peak at the end of pretraining, nothing follows):
        // E = 11, e = 5 → t = 1/2 → 3 + 4/2 = 5.
        expectNear(Schedule.cyclical(easy: 3, hard: 7).value(at: Position(epoch: 5, totalEpochs: 11)), 5)
    }

    // 3 epochs of 4 steps, easy 0 → hard 1, f = 1.
    // Per epoch: t = e/2, the same for every step of an epoch: 0, 0, 0, 0, ½, ½, ½, ½, 1, 1, 1, 1.
    // Per step: t = s/11 over the 12 steps: step 5 → 5/11, step 11 → 1.
    @Test func perStepAndPerEpoch() {
        let perEpoch = Schedule.cyclical(easy: 0, hard: 1, factor: 1, granularity: .epoch)
        let perStep = Schedule.cyclical(easy: 0, hard: 1, factor: 1, granularity: .step)
        #expect(perEpoch.samples(totalEpochs: 3, stepsPerEpoch: 4, per: .step) == [0, 0, 0, 0, 0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1])
        let middle = Position(epoch: 1, stepInEpoch: 1, stepsPerEpoch: 4, totalEpochs: 3)
        #expect(middle.step == 5 && middle.totalSteps == 12)
        expectNear(perEpoch.value(at: middle), 0.5)
        expectNear(perStep.value(at: middle), 5.0 / 11)
        expectNear(perStep.value(at: Position(step: 11, stepsPerEpoch: 4, totalEpochs: 3)), 1)
        let steps = perStep.samples(totalEpochs: 3, stepsPerEpoch: 4, per: .step)
        #expect(steps.count == 12)
        for (step, value) in steps.enumerated() { expectNear(value, Double(step) / 11, "step \(step)") }
        // Sampling per epoch reads each epoch's first step: steps 0, 4, 8 → 0, 4/11, 8/11.
        let epochs = perStep.samples(totalEpochs: 3, stepsPerEpoch: 4)
        #expect(epochs.count == 3)
        expectNear(epochs[1], 4.0 / 11)
        expectNear(epochs[2], 8.0 / 11)
    }
}

@Suite struct JointCycleTests {
    // 10 + 10 epochs: f = 20/10 = 2, E = 20, t = e/19. Last pretraining epoch (joint 9): δ = 2·9/19 = 18/19;
    // first fine-tuning epoch (joint 10): (1 − 10/19)·2 = 18/19; last fine-tuning epoch (joint 19): 0.
    @Test func evenSplitPeaksAtTheBoundary() {
        let cycle = JointCycle(pretrainingEpochs: 10, finetuningEpochs: 10)
        #expect(cycle.defaultFactor == 2)
        #expect(cycle.totalEpochs == 20)
        let decay = Schedule.cyclical(easy: 1e-5, hard: 8e-5)
        func delta(_ position: Position) -> Double { (cycle.value(of: decay, at: position) - 1e-5) / 7e-5 }
        expectNear(delta(cycle.pretrainingPosition(epoch: 0)), 0)
        expectNear(delta(cycle.pretrainingPosition(epoch: 9)), 18.0 / 19)
        expectNear(delta(cycle.finetuningPosition(epoch: 0)), 18.0 / 19)
        expectNear(delta(cycle.finetuningPosition(epoch: 9)), 0)
        expectNear(cycle.value(of: decay, at: cycle.finetuningPosition(epoch: 9)), 1e-5, tolerance: 1e-18)
        let all = (0..<10).map { cycle.pretrainingPosition(epoch: $0) } + (0..<10).map { cycle.finetuningPosition(epoch: $0) }
        #expect(indicesOfMaximum(all.map(delta)) == [9, 10])
    }

    // 30 + 10 epochs: f = 40/30 = 4/3, E = 40, t = e/39, peak t = 3/4 at e = 29.25. Last pretraining
    // epoch 29: (4/3)·(29/39) = 116/117; first fine-tuning epoch 30: (9/39)·(4/3)/(1/3) = 36/39.
    // With 5 pretraining and 3 fine-tuning steps per epoch the cycle has 30·5 + 10·3 = 180 steps; step 1
    // of fine-tuning epoch 2 is joint step 150 + 2·3 + 1 = 157.
    @Test func unevenSplitAndStepCounting() {
        let cycle = JointCycle(pretrainingEpochs: 30, pretrainingStepsPerEpoch: 5,
                               finetuningEpochs: 10, finetuningStepsPerEpoch: 3)
        expectNear(cycle.defaultFactor, 4.0 / 3)
        expectNear(JointCycle.defaultFactor(pretrainingEpochs: 30, finetuningEpochs: 10), 4.0 / 3)
        let schedule = Schedule.cyclical(easy: 0, hard: 1)
        expectNear(cycle.value(of: schedule, at: cycle.pretrainingPosition(epoch: 29, stepInEpoch: 4)), 116.0 / 117)
        expectNear(cycle.value(of: schedule, at: cycle.finetuningPosition(epoch: 0)), 36.0 / 39)
        expectNear(cycle.value(of: schedule, at: cycle.finetuningPosition(epoch: 9, stepInEpoch: 2)), 0)
        let position = cycle.finetuningPosition(epoch: 2, stepInEpoch: 1)
        #expect(position == Position(epoch: 32, totalEpochs: 40, step: 157, totalSteps: 180))
        // The same position from offsetting a fine-tuning-only position.
        let local = Position(epoch: 2, stepInEpoch: 1, stepsPerEpoch: 3, totalEpochs: 10)
        #expect(local.offset(byEpochs: 30, steps: 150, inCycleOfEpochs: 40, steps: 180) == position)
        // A factor given in the recipe wins over the default: f = 1 still rising at e = 32 → 32/39.
        let given = Schedule.cyclical(easy: 0, hard: 1, factor: 1)
        expectNear(cycle.value(of: given, at: position), 32.0 / 39)
        // Other schedules are untouched by the default factor.
        #expect(Schedule.constant(0.1).withDefaultFactor(2) == .constant(0.1))
        #expect(schedule.withDefaultFactor(2) == .cyclical(easy: 0, hard: 1, factor: 2))
    }
}
