import Foundation
import EpicycleSchedules
import Testing

@Suite struct StandardScheduleTests {
    @Test func constant() {
        for position in [Position(epoch: 0, totalEpochs: 1), Position(step: 77, stepsPerEpoch: 10, totalEpochs: 9)] {
            #expect(Schedule.constant(0.1).value(at: position) == 0.1)
        }
    }

    // torch MultiStepLR's documented example: milestones [30, 80], gamma 0.1 from 0.05 gives 0.05 for
    // epochs < 30, 0.005 for 30 ≤ epoch < 80, 0.0005 from 80.
    @Test func step() {
        let schedule = Schedule.step(initial: 0.05, milestones: [30, 80], gamma: 0.1)
        let expected = [0: 0.05, 29: 0.05, 30: 0.005, 79: 0.005, 80: 0.0005, 150: 0.0005]
        for (epoch, value) in expected {
            expectNear(schedule.value(at: Position(epoch: epoch, totalEpochs: 100)), value, tolerance: 1e-15, "epoch \(epoch)")
        }
    }

    // peak 0.1, final 0, 3 warm-up epochs, E = 10: warm-up 0, 0.1/3, 0.2/3 at e = 0, 1, 2; then torch
    // CosineAnnealingLR with T_max = 7: 0.1·(1 + cos(π·(e − 3)/7))/2 — e = 3 → 0.1,
    // e = 5 → 0.1·(1 + cos(2π/7))/2 = 0.0811745, e = 9 → 0.1·(1 + cos(6π/7))/2 = 0.0049516 (the last
    // epoch stays above final, as in torch with T_max = E − W).
    @Test func cosineWithWarmup() {
        let schedule = Schedule.cosine(peak: 0.1, final: 0, warmupEpochs: 3)
        let expected: [Int: Double] = [0: 0, 1: 0.1 / 3, 2: 0.2 / 3, 3: 0.1, 5: 0.08117449009293669, 9: 0.004951556604879049]
        for (epoch, value) in expected {
            expectNear(schedule.value(at: Position(epoch: epoch, totalEpochs: 10)), value, "epoch \(epoch)")
        }
        // Per step with 2 steps per epoch the time is fractional: step 1 = epoch 0.5 → 0.1·0.5/3;
        // step 13 = epoch 6.5, halfway through the annealing → 0.05. Per epoch, step 13 reads epoch 6.
        let perStep = Schedule.cosine(peak: 0.1, final: 0, warmupEpochs: 3, granularity: .step)
        expectNear(perStep.value(at: Position(step: 1, stepsPerEpoch: 2, totalEpochs: 10)), 0.1 * 0.5 / 3)
        expectNear(perStep.value(at: Position(step: 13, stepsPerEpoch: 2, totalEpochs: 10)), 0.05)
        expectNear(schedule.value(at: Position(step: 13, stepsPerEpoch: 2, totalEpochs: 10)),
                   schedule.value(at: Position(epoch: 6, totalEpochs: 10)))
        // Warm-up from a start value: 0.1 → 1 over 2 epochs, epoch 1 → 0.55. Without warm-up, a cosine
        // from 1 to 0.1 over E = 4 at e = 2 is 0.1 + 0.9·(1 + cos(π/2))/2 = 0.55. Past the end: final.
        let started = Schedule.cosine(peak: 1, final: 0.1, warmupEpochs: 2, warmupStart: 0.1)
        expectNear(started.value(at: Position(epoch: 1, totalEpochs: 10)), 0.55)
        let plain = Schedule.cosine(peak: 1, final: 0.1)
        expectNear(plain.value(at: Position(epoch: 0, totalEpochs: 4)), 1)
        expectNear(plain.value(at: Position(epoch: 2, totalEpochs: 4)), 0.55)
        expectNear(plain.value(at: Position(epoch: 7, totalEpochs: 4)), 0.1)
    }

    // torch CosineAnnealingWarmRestarts, maximum 0.1, minimum 0, T_0 = 10, T_mult = 2: periods
    // [0, 10), [10, 30), [30, 70). e = 5 → 0.05; e = 10 → restart, 0.1; e = 20 → T_cur 10 of 20 → 0.05;
    // e = 29 → 0.1·(1 + cos(19π/20))/2 = 0.000615583; e = 30 → restart, 0.1.
    @Test func warmRestarts() {
        let schedule = Schedule.warmRestarts(maximum: 0.1, minimum: 0, firstPeriod: 10, periodMultiplier: 2)
        let expected: [Int: Double] = [0: 0.1, 5: 0.05, 10: 0.1, 20: 0.05, 29: 0.0006155829702431171, 30: 0.1, 50: 0.05]
        for (epoch, value) in expected {
            expectNear(schedule.value(at: Position(epoch: epoch, totalEpochs: 100)), value, "epoch \(epoch)")
        }
        // The same formula with η_max = 0.005, η_min = 1e-7: epoch 1 → 1e-7 + (0.005 − 1e-7)·(1 + cos(π/10))/2
        // = 0.0048776437…; epoch 15 (T_cur 5 of 20) → … (1 + cos(π/4))/2 = 0.0042677816….
        let small = Schedule.warmRestarts(maximum: 0.005, minimum: 1e-7, firstPeriod: 10, periodMultiplier: 2)
        expectNear(small.value(at: Position(epoch: 1, totalEpochs: 100)), 0.004877643737912069)
        expectNear(small.value(at: Position(epoch: 15, totalEpochs: 100)), 0.00426778159762731)
        // T_mult = 1, T_0 = 4: e = 6 → T_cur 2 → 0.05; e = 8 → restart. Per step (torch's
        // `scheduler.step(epoch + i / iters)`), 2 steps per epoch: step 3 = epoch 1.5 →
        // 0.1·(1 + cos(3π/8))/2 = 0.0691342.
        let constantPeriod = Schedule.warmRestarts(maximum: 0.1, firstPeriod: 4)
        expectNear(constantPeriod.value(at: Position(epoch: 6, totalEpochs: 20)), 0.05)
        expectNear(constantPeriod.value(at: Position(epoch: 8, totalEpochs: 20)), 0.1)
        let perStep = Schedule.warmRestarts(maximum: 0.1, firstPeriod: 4, granularity: .step)
        expectNear(perStep.value(at: Position(step: 3, stepsPerEpoch: 2, totalEpochs: 20)), 0.0691341716182545)
    }

    // torch OneCycleLR, max_lr 0.1, div_factor 25, final_div_factor 1e4, pct_start 0.3, 30 steps:
    // initial 0.004, minimum 4e-7, rising up to step 0.3·30 − 1 = 8, falling over 29 − 8 = 21 steps.
    // Step 0 → 0.004; step 4 (halfway up, cos(π/2) = 0) → (0.004 + 0.1)/2 = 0.052; step 8 → 0.1;
    // step 15 (a third down, cos(π/3) = ½) → 4e-7 + (0.1 − 4e-7)·0.75 = 0.0750001; step 29 → 4e-7.
    @Test func oneCycle() {
        let schedule = Schedule.oneCycle(peak: 0.1)
        let expected: [Int: Double] = [0: 0.004, 4: 0.052, 8: 0.1, 15: 0.0750001, 29: 4e-7]
        for (step, value) in expected {
            expectNear(schedule.value(at: Position(step: step, stepsPerEpoch: 3, totalEpochs: 10)), value, "step \(step)")
            // Per epoch, the same numbers over 30 epochs.
            expectNear(Schedule.oneCycle(peak: 0.1, granularity: .epoch).value(at: Position(epoch: step, totalEpochs: 30)),
                       value, "epoch \(step)")
        }
        // Past the last step the minimum holds (torch raises instead).
        expectNear(schedule.value(at: Position(epoch: 40, totalEpochs: 10, step: 40, totalSteps: 30)), 4e-7)
    }

    // Smith (2017) triangular CLR, base 0.001, maximum 0.006, step size 2000 iterations: 0.001 at 0,
    // 0.0035 at 1000 (x = |0.5 − 2 + 1| = ½), 0.006 at 2000, 0.0035 at 3000, 0.001 at 4000, and the
    // second cycle (cycle = ⌊1 + 5000/4000⌋ = 2, x = |2.5 − 4 + 1| = ½) 0.0035 at 5000.
    @Test func triangular() {
        let schedule = Schedule.triangular(base: 0.001, maximum: 0.006, stepSize: 2000)
        let expected: [Int: Double] = [0: 0.001, 1000: 0.0035, 2000: 0.006, 3000: 0.0035, 4000: 0.001, 5000: 0.0035]
        for (step, value) in expected {
            expectNear(schedule.value(at: Position(step: step, stepsPerEpoch: 500, totalEpochs: 20)), value,
                       tolerance: 1e-15, "iteration \(step)")
        }
        // Per epoch with a half cycle of 2 epochs: epochs 0…4 → base, mid, max, mid, base.
        let perEpoch = Schedule.triangular(base: 0, maximum: 1, stepSize: 2, granularity: .epoch)
        #expect(perEpoch.samples(totalEpochs: 5, stepsPerEpoch: 7) == [0, 0.5, 1, 0.5, 0])
    }

    // Laine & Aila (2017) / Tarvainen & Valpola (2017): value·exp(−5(1 − t)²), t = min(1, e/N). With
    // value 2 and N = 4: e = 0 → 2e⁻⁵ = 0.0134759…, e = 1 → 2e^(−5·9/16), e = 2 → 2e^(−5/4), e = 3 →
    // 2e^(−5/16), from e = 4 on → 2. Per step with 4 steps per epoch, step 6 is epoch 1.5: t = 3/8.
    @Test func rampUp() {
        let schedule = Schedule.rampUp(value: 2, epochs: 4)
        let expected: [Int: Double] = [0: 2 * exp(-5.0), 1: 2 * exp(-5.0 * 9 / 16), 2: 2 * exp(-1.25), 3: 2 * exp(-5.0 / 16),
                                       4: 2, 9: 2]
        for (epoch, value) in expected {
            expectNear(schedule.value(at: Position(epoch: epoch, totalEpochs: 10)), value, "epoch \(epoch)")
        }
        expectNear(schedule.value(at: Position(epoch: 0, totalEpochs: 10)), 0.013475893998170934)
        let perStep = Schedule.rampUp(value: 2, epochs: 4, granularity: .step)
        expectNear(perStep.value(at: Position(step: 6, stepsPerEpoch: 4, totalEpochs: 10)), 2 * exp(-5 * 0.625 * 0.625))
        // Per epoch, the same step reads epoch 1.
        expectNear(schedule.value(at: Position(step: 6, stepsPerEpoch: 4, totalEpochs: 10)), 2 * exp(-5.0 * 9 / 16))
        #expect(Schedule.rampUp(value: 1, epochs: 3).description == "ramp-up to 1 over 3 epochs, exp(−5(1 − t)²) (per epoch)")
    }

    @Test func descriptions() {
        #expect(Schedule.constant(5e-4).description == "constant 0.0005")
        #expect(Schedule.cyclical(easy: 0.5, hard: 2, factor: 1).description == "cyclical 0.5 → 2 (f = 1, per epoch)")
        #expect(Schedule.cyclical(easy: 4, hard: 10, granularity: .step).description
                == "cyclical 4 → 10 (f = (E_pre + E_fine) / E_pre, per step)")
        #expect(Schedule.step(initial: 0.1, milestones: [30, 60]).description == "step 0.1 × 0.1 at epochs 30, 60")
        #expect(Schedule.cosine(peak: 0.1, warmupEpochs: 3).description
                == "cosine linear 0 → 0.1 over 3 epochs, then 0.1 → 0 (per epoch)")
        #expect(Schedule.cosine(peak: 0.1, final: 0.001).description == "cosine 0.1 → 0.001 (per epoch)")
        #expect(Schedule.warmRestarts(maximum: 0.1, firstPeriod: 10, periodMultiplier: 2).description
                == "warm restarts 0.1 → 0 (T_0 = 10 epochs, T_mult = 2, per epoch)")
        #expect(Schedule.oneCycle(peak: 0.1).description == "one-cycle 0.004 → 0.1 → 4e-07 (pct_start 0.3, per step)")
        #expect(Schedule.triangular(base: 0.001, maximum: 0.006, stepSize: 2000).description
                == "triangular 0.001 ↔ 0.006 (half cycle 2000 steps)")
    }
}
