extension JointCycle {
    /// The epochs of this cycle (from 0) at whose end one of `schedule`'s own cycles is over: where
    /// snapshots, SWA updates "every cycle end" and the points of a one-run tradeoff curve are taken.
    ///
    /// - `cycles: n` (repeated cyclical): the last epoch of each of the n cycles; per step, the epoch
    ///   holding each cycle's last step.
    /// - Warm restarts: the last epoch of every period that fits, `T₀ − 1`, `T₀ + T₀·m − 1`, … (with
    ///   `T_mult = 2`: epochs T₀, 3T₀, 7T₀, … counted from 1, as Portes et al. 2022 read their curve).
    /// - Triangular: the last epoch before each return to the base value (every 2·step size).
    /// - Every schedule: the cycle's last epoch, so the full budget is always a point; a schedule
    ///   without cycles of its own (constant, step, cosine, one-cycle, ramp-up, one cyclical) has only that.
    ///
    /// The list is sorted and without repeats.
    public func cycleEndEpochs(of schedule: Schedule) -> [Int] {
        var ends: [Int] = []
        switch schedule {
        case let .repeatedCyclical(_, _, _, cycles, granularity):
            let count = granularity == .epoch ? totalEpochs : totalSteps
            for cycle in 1...cycles {
                let last = cycle * count / cycles - 1
                ends.append(granularity == .epoch ? last : epoch(holdingStep: last))
            }
        case let .warmRestarts(_, _, firstPeriod, periodMultiplier, _):
            // Decoding bounds the first period and the multiplier (ScheduleLimits), and the loop stops
            // once a period ends past the cycle, so the arithmetic stays far from overflow.
            var end = firstPeriod, period = firstPeriod
            while end <= totalEpochs {
                ends.append(end - 1)
                period *= periodMultiplier
                end += period
            }
        case let .triangular(_, _, stepSize, granularity):
            let count = granularity == .epoch ? totalEpochs : totalSteps
            var restart = 2 * stepSize
            while restart <= count {
                ends.append(granularity == .epoch ? restart - 1 : epoch(holdingStep: restart - 1))
                restart += 2 * stepSize
            }
        case .constant, .cyclical, .step, .cosine, .oneCycle, .rampUp:
            break
        }
        ends.append(totalEpochs - 1)
        return Array(Set(ends)).sorted()
    }

    /// The epoch (from 0) in which optimizer step `step` of the cycle falls.
    public func epoch(holdingStep step: Int) -> Int {
        precondition((0..<totalSteps).contains(step), "JointCycle: step \(step) of \(totalSteps)")
        var epoch = 0
        while position(epoch: epoch).step + epochSteps[epoch] <= step { epoch += 1 }
        return epoch
    }
}
