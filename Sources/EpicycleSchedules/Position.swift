/// How often a schedule's value changes.
public enum Granularity: String, Hashable, Sendable, CaseIterable {
    /// Once per epoch: the value is constant within an epoch. The paper's reference code (lnsmith54/CFL,
    /// timm `train.py`) updates cyclical knobs this way.
    case epoch
    /// Once per optimizer step (batch).
    case step
}

/// Where training stands within a cycle: the argument of every schedule.
///
/// Per-epoch schedules read `epoch` and `totalEpochs`; per-step schedules read `step` and `totalSteps`.
/// Schedules whose parameters are in epochs (cosine warm-up, warm-restart periods) but update per step
/// use the fractional epoch `step · totalEpochs / totalSteps`, which is `step / stepsPerEpoch` when
/// every epoch has the same number of steps.
public struct Position: Hashable, Sendable {
    /// The epoch, counted from 0 at the start of the cycle.
    public var epoch: Int
    /// The number of epochs in the cycle (E).
    public var totalEpochs: Int
    /// The optimizer step, counted from 0 at the start of the cycle (not reset at epoch boundaries).
    public var step: Int
    /// The number of optimizer steps in the cycle.
    public var totalSteps: Int

    /// A position given by both counters; use it when epochs of the cycle differ in length (a joint
    /// pretraining + fine-tuning cycle over two datasets).
    public init(epoch: Int, totalEpochs: Int, step: Int, totalSteps: Int) {
        precondition(totalEpochs >= 1 && totalSteps >= 1, "Position: a cycle needs at least one epoch and one step")
        precondition(epoch >= 0 && step >= 0, "Position: epoch and step count from 0, got \(epoch) and \(step)")
        self.epoch = epoch
        self.totalEpochs = totalEpochs
        self.step = step
        self.totalSteps = totalSteps
    }

    /// A position in a run of `totalEpochs` epochs of `stepsPerEpoch` steps each, at step `stepInEpoch`
    /// of `epoch`.
    public init(epoch: Int, stepInEpoch: Int = 0, stepsPerEpoch: Int = 1, totalEpochs: Int) {
        precondition(stepsPerEpoch >= 1 && (0..<stepsPerEpoch).contains(stepInEpoch),
                     "Position: step \(stepInEpoch) within an epoch of \(stepsPerEpoch) steps")
        self.init(epoch: epoch, totalEpochs: totalEpochs,
                  step: epoch * stepsPerEpoch + stepInEpoch, totalSteps: totalEpochs * stepsPerEpoch)
    }

    /// The position of global step `step` in a run of `totalEpochs` epochs of `stepsPerEpoch` steps each.
    public init(step: Int, stepsPerEpoch: Int, totalEpochs: Int) {
        precondition(stepsPerEpoch >= 1 && step >= 0, "Position: step \(step) with \(stepsPerEpoch) steps per epoch")
        self.init(epoch: step / stepsPerEpoch, stepInEpoch: step % stepsPerEpoch, stepsPerEpoch: stepsPerEpoch,
                  totalEpochs: totalEpochs)
    }

    /// The same moment seen from a longer cycle that began `epochs` epochs (`steps` steps) earlier and
    /// spans `totalEpochs` epochs (`totalSteps` steps) in all.
    public func offset(byEpochs epochs: Int, steps: Int, inCycleOfEpochs totalEpochs: Int, steps totalSteps: Int)
        -> Position {
        Position(epoch: epoch + epochs, totalEpochs: totalEpochs, step: step + steps, totalSteps: totalSteps)
    }

    /// The counter a schedule of this granularity reads, and its length: (epoch, E) or (step, total steps).
    func counter(_ granularity: Granularity) -> (index: Int, count: Int) {
        switch granularity {
        case .epoch: (epoch, totalEpochs)
        case .step: (step, totalSteps)
        }
    }

    /// Elapsed time in epochs: whole epochs per epoch, fractional epochs per step.
    func elapsedEpochs(_ granularity: Granularity) -> Double {
        switch granularity {
        case .epoch: Double(epoch)
        case .step: Double(step) * Double(totalEpochs) / Double(totalSteps)
        }
    }
}

/// Pretraining followed by fine-tuning as one cycle (Smith 2022, §5.1): the cycle spans
/// `E_pre + E_fine` epochs and, by default, peaks at the end of pretraining, with factor
/// `f = (E_pre + E_fine) / E_pre`. Pretraining rises easy → hard, fine-tuning falls hard → easy.
///
/// With `t = e / (E − 1)` the peak `t = 1/f` lies at `e = E_pre · (E − 1) / E`, between the last
/// pretraining epoch and the first fine-tuning epoch, so at per-epoch granularity those two epochs are
/// the hardest ones (equally hard when both phases have the same length).
///
/// Steps are optimizer steps, the checkpoint's `step`: the position of batch `b` of epoch `e` is the
/// steps of all earlier epochs of the cycle plus `b`. Epochs may differ in length (a scheduled batch
/// size, two datasets), so the cycle keeps every epoch's step count.
public struct JointCycle: Hashable, Sendable {
    public let pretrainingEpochs: Int
    public let finetuningEpochs: Int
    /// The optimizer steps of each epoch, pretraining's then fine-tuning's (`totalEpochs` entries, each ≥ 1).
    public let epochSteps: [Int]
    // The step at which each epoch starts; one more entry, the total.
    private let epochStarts: [Int]

    /// A cycle whose epochs have the given numbers of optimizer steps.
    public init(pretrainingEpochSteps: [Int], finetuningEpochSteps: [Int]) {
        precondition(!pretrainingEpochSteps.isEmpty, "JointCycle: needs ≥ 1 pretraining epoch")
        precondition((pretrainingEpochSteps + finetuningEpochSteps).allSatisfy { $0 >= 1 }, "JointCycle: an epoch has at least one step")
        pretrainingEpochs = pretrainingEpochSteps.count
        finetuningEpochs = finetuningEpochSteps.count
        epochSteps = pretrainingEpochSteps + finetuningEpochSteps
        var starts = [0]
        for steps in epochSteps { starts.append(starts.last! + steps) }
        epochStarts = starts
    }

    /// A cycle whose epochs have the same number of steps within each phase.
    public init(pretrainingEpochs: Int, pretrainingStepsPerEpoch: Int = 1,
                finetuningEpochs: Int, finetuningStepsPerEpoch: Int = 1) {
        precondition(pretrainingEpochs >= 1 && finetuningEpochs >= 0,
                     "JointCycle: needs ≥ 1 pretraining epoch and ≥ 0 fine-tuning epochs")
        self.init(pretrainingEpochSteps: Array(repeating: pretrainingStepsPerEpoch, count: pretrainingEpochs),
                  finetuningEpochSteps: Array(repeating: finetuningStepsPerEpoch, count: finetuningEpochs))
    }

    /// E = E_pre + E_fine.
    public var totalEpochs: Int { pretrainingEpochs + finetuningEpochs }

    public var totalSteps: Int { epochStarts.last! }

    /// The factor that puts the peak at the end of pretraining: `f = (E_pre + E_fine) / E_pre`
    /// (1 when nothing follows pretraining).
    public var defaultFactor: Double { Self.defaultFactor(pretrainingEpochs: pretrainingEpochs,
                                                          finetuningEpochs: finetuningEpochs) }

    /// `f = (E_pre + E_fine) / E_pre`.
    public static func defaultFactor(pretrainingEpochs: Int, finetuningEpochs: Int) -> Double {
        precondition(pretrainingEpochs >= 1 && finetuningEpochs >= 0,
                     "JointCycle.defaultFactor: needs ≥ 1 pretraining epoch and ≥ 0 fine-tuning epochs")
        return Double(pretrainingEpochs + finetuningEpochs) / Double(pretrainingEpochs)
    }

    /// The position of step `stepInEpoch` of epoch `epoch` of the whole cycle (both from 0).
    public func position(epoch: Int, stepInEpoch: Int = 0) -> Position {
        precondition((0..<totalEpochs).contains(epoch), "JointCycle: epoch \(epoch) of \(totalEpochs)")
        precondition((0..<epochSteps[epoch]).contains(stepInEpoch),
                     "JointCycle: step \(stepInEpoch) of an epoch of \(epochSteps[epoch]) steps")
        return Position(epoch: epoch, totalEpochs: totalEpochs, step: epochStarts[epoch] + stepInEpoch, totalSteps: totalSteps)
    }

    /// The joint-cycle position of step `stepInEpoch` of pretraining epoch `epoch` (both from 0).
    public func pretrainingPosition(epoch: Int, stepInEpoch: Int = 0) -> Position {
        precondition(epoch < pretrainingEpochs, "JointCycle: pretraining epoch \(epoch) of \(pretrainingEpochs)")
        return position(epoch: epoch, stepInEpoch: stepInEpoch)
    }

    /// The joint-cycle position of step `stepInEpoch` of fine-tuning epoch `epoch` (both from 0): the
    /// cycle continues after the last pretraining epoch.
    public func finetuningPosition(epoch: Int, stepInEpoch: Int = 0) -> Position {
        position(epoch: pretrainingEpochs + epoch, stepInEpoch: stepInEpoch)
    }

    /// The first and the last step of every epoch, in order: where a check of a schedule's range looks.
    public var epochBoundaries: [Position] {
        (0..<totalEpochs).flatMap { epoch in
            [position(epoch: epoch), position(epoch: epoch, stepInEpoch: epochSteps[epoch] - 1)]
        }
    }

    /// The value of `schedule` at a joint-cycle position, with a cyclical factor left unset taken to
    /// be `defaultFactor`.
    public func value(of schedule: Schedule, at position: Position) -> Double {
        schedule.withDefaultFactor(defaultFactor).value(at: position)
    }
}
