#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A schedulable number: a constant, the general cyclical schedule of Smith (2022), or one of the
/// standard learning-rate schedules. A schedule is a pure function of the `Position`.
///
/// Positions past the end of the cycle hold the final value (cyclical, cosine, one-cycle); warm restarts
/// and the triangular schedule are periodic and simply continue.
public enum Schedule: Hashable, Sendable {
    /// The same value everywhere.
    case constant(Double)

    /// General cyclical training (Smith 2022): with `t = e / (E − 1)` and factor `f ≥ 1`, the hardness
    /// `δ(t)` rises as `f·t` until it reaches 1, then falls as `(1 − t)·f/(f − 1)`; the value is
    /// `easy + δ(t)·(hard − easy)` (see `cyclicalHardness(progress:factor:)`).
    /// `f = 1` rises all the way, `f = 2` is a symmetric triangle, `f = 4` peaks at a quarter.
    /// A `nil` factor peaks at the end of pretraining: `f = (E_pre + E_fine) / E_pre` in a `JointCycle`,
    /// which is 1 for a run on its own. `e`, `E` count epochs or steps according to `granularity`.
    case cyclical(easy: Double, hard: Double, factor: Double? = nil, granularity: Granularity = .epoch)

    /// `cycles` easy → hard → easy cycles of the general cyclical schedule over the phase (recipe
    /// `cyclical: {…, cycles: n}`, n ≥ 2). With `i` the epoch (or step), `N` their number in the whole
    /// cycle and `n` cycles, cycle `k` (from 0) spans `⌊k·N/n⌋ ≤ i < ⌊(k+1)·N/n⌋`, so lengths differ by at
    /// most one; within it `e = i − ⌊k·N/n⌋`, `E` its length, and the value is the cyclical one at
    /// `t = e/(E − 1)` (`t = 0` when `E = 1`). `factor > 1` makes every cycle end at its easy value.
    case repeatedCyclical(easy: Double, hard: Double, factor: Double, cycles: Int, granularity: Granularity = .epoch)

    /// `initial · gamma^k`, k the number of milestones (epochs) reached: torch `MultiStepLR`.
    /// Milestones are epochs, so the value changes at epoch boundaries.
    case step(initial: Double, milestones: [Int], gamma: Double = 0.1)

    /// Linear warm-up from `warmupStart` to `peak` over `warmupEpochs` epochs (timm's `warmup_lr_init`
    /// convention: the value at epoch 0 is `warmupStart`), then cosine annealing from `peak` towards
    /// `final` over the remaining `E − W` epochs: `final + (peak − final)·(1 + cos(π·(p − W)/(E − W)))/2`.
    /// That is torch `CosineAnnealingLR` with `T_max = E − W` after the warm-up, so the last epoch
    /// still trains slightly above `final`. Per step, `p` is the fractional epoch. With the default
    /// `warmupStart = 0` and per-epoch updates, the first warm-up epoch trains at 0; warm up per step
    /// or give a start value to avoid that.
    case cosine(peak: Double, final: Double = 0, warmupEpochs: Int = 0, warmupStart: Double = 0,
                granularity: Granularity = .epoch)

    /// SGDR (Loshchilov & Hutter 2017), as torch `CosineAnnealingWarmRestarts`: within a period of
    /// `T_i` epochs (`T_0 = firstPeriod`, each next period `periodMultiplier` times longer), the value
    /// is `minimum + (maximum − minimum)·(1 + cos(π·T_cur/T_i))/2` with `T_cur` the epochs since the
    /// last restart (fractional per step, as torch's `scheduler.step(epoch + i / iters)`).
    case warmRestarts(maximum: Double, minimum: Double = 0, firstPeriod: Int, periodMultiplier: Int = 1,
                      granularity: Granularity = .epoch)

    /// One-cycle (Smith & Topin 2019), torch `OneCycleLR` with cosine annealing and two phases: from
    /// `peak / divFactor` up to `peak` by step `pctStart·N − 1`, then down to
    /// `peak / divFactor / finalDivFactor` at the last step `N − 1`, each phase along
    /// `end + (start − end)·(1 + cos(π·pct))/2`. Per step by default, like torch (N = total steps).
    case oneCycle(peak: Double, divFactor: Double = 25, finalDivFactor: Double = 1e4, pctStart: Double = 0.3,
                  granularity: Granularity = .step)

    /// Triangular cyclical learning rate (Smith 2017): `cycle = ⌊1 + i/(2·stepSize)⌋`,
    /// `x = |i/stepSize − 2·cycle + 1|`, value `base + (maximum − base)·max(0, 1 − x)`. `i` and
    /// `stepSize` (half a cycle) count steps, or epochs when `granularity` is `.epoch`.
    case triangular(base: Double, maximum: Double, stepSize: Int, granularity: Granularity = .step)

    /// The sigmoid-shaped ramp-up of Temporal Ensembling (Laine & Aila 2017, §3.1 and appendix A) and
    /// Mean Teacher (Tarvainen & Valpola 2017) for an unlabeled-loss weight: `value · exp(−5(1 − t)²)`
    /// with `t = min(1, e / epochs)`, e the epochs since the start of the cycle (fractional per step).
    /// It starts at `value · e⁻⁵ ≈ 0.0067 · value` and holds `value` from epoch `epochs` on.
    case rampUp(value: Double, epochs: Int, granularity: Granularity = .epoch)

    /// The value at `position`.
    public func value(at position: Position) -> Double {
        switch self {
        case let .constant(value):
            return value

        case let .cyclical(easy, hard, factor, granularity):
            let (index, count) = position.counter(granularity)
            // E = 1 has no room to move: t = 0, the easy value (the first position of every cycle).
            let progress = count > 1 ? min(1, Double(index) / Double(count - 1)) : 0
            return easy + cyclicalHardness(progress: progress, factor: factor ?? 1) * (hard - easy)

        case let .repeatedCyclical(easy, hard, factor, cycles, granularity):
            let (index, count) = position.counter(granularity)
            // The last k with ⌊k·N/n⌋ ≤ i; positions past the end stay in the last cycle (its easy end).
            let cycle = min(cycles - 1, ((index + 1) * cycles - 1) / count)
            let start = cycle * count / cycles, length = (cycle + 1) * count / cycles - start
            let progress = length > 1 ? min(1, Double(index - start) / Double(length - 1)) : 0
            return easy + cyclicalHardness(progress: progress, factor: factor) * (hard - easy)

        case let .step(initial, milestones, gamma):
            let reached = milestones.count(where: { $0 <= position.epoch })
            return initial * pow(gamma, Double(reached))

        case let .cosine(peak, final, warmupEpochs, warmupStart, granularity):
            let elapsed = position.elapsedEpochs(granularity)
            let warmup = Double(warmupEpochs)
            if elapsed < warmup {
                return warmupStart + (peak - warmupStart) * elapsed / warmup
            }
            let annealing = Double(position.totalEpochs) - warmup
            let progress = annealing > 0 ? min(1, (elapsed - warmup) / annealing) : 1
            return cosineBetween(peak, final, progress: progress)

        case let .warmRestarts(maximum, minimum, firstPeriod, periodMultiplier, granularity):
            var sinceRestart = position.elapsedEpochs(granularity)
            var period = Double(firstPeriod)
            if periodMultiplier == 1 {
                sinceRestart = sinceRestart.truncatingRemainder(dividingBy: period)
            } else {
                // Walking the geometric periods is exact at restarts, where torch's log formula can
                // land a hair below the integer.
                while sinceRestart >= period {
                    sinceRestart -= period
                    period *= Double(periodMultiplier)
                }
            }
            return cosineBetween(maximum, minimum, progress: sinceRestart / period)

        case let .oneCycle(peak, divFactor, finalDivFactor, pctStart, granularity):
            let (index, count) = position.counter(granularity)
            let initial = peak / divFactor, minimum = initial / finalDivFactor
            let rising = pctStart * Double(count) - 1, falling = Double(count - 1) - rising
            let now = Double(min(index, count - 1))
            if now <= rising && rising > 0 {
                return cosineBetween(initial, peak, progress: now / rising)
            }
            return cosineBetween(peak, minimum, progress: falling > 0 ? min(1, (now - rising) / falling) : 1)

        case let .triangular(base, maximum, stepSize, granularity):
            let iteration = Double(position.counter(granularity).index), half = Double(stepSize)
            let cycle = (1 + iteration / (2 * half)).rounded(.down)
            let x = abs(iteration / half - 2 * cycle + 1)
            return base + (maximum - base) * max(0, 1 - x)

        case let .rampUp(value, epochs, granularity):
            let t = min(1, position.elapsedEpochs(granularity) / Double(epochs))
            return value * exp(-5 * (1 - t) * (1 - t))
        }
    }

    /// How often the value changes: `constant` and `step` (whose milestones are epochs) per epoch.
    public var granularity: Granularity {
        switch self {
        case .constant, .step: .epoch
        case let .cyclical(_, _, _, granularity), let .repeatedCyclical(_, _, _, _, granularity),
             let .cosine(_, _, _, _, granularity),
             let .warmRestarts(_, _, _, _, granularity), let .oneCycle(_, _, _, _, granularity),
             let .triangular(_, _, _, granularity), let .rampUp(_, _, granularity):
            granularity
        }
    }

    /// Values over a run of `totalEpochs` epochs of `stepsPerEpoch` steps: one per epoch (at its first
    /// step) or one per step, for tables and plots.
    public func samples(totalEpochs: Int, stepsPerEpoch: Int = 1, per granularity: Granularity = .epoch) -> [Double] {
        switch granularity {
        case .epoch:
            (0..<totalEpochs).map {
                value(at: Position(epoch: $0, stepsPerEpoch: stepsPerEpoch, totalEpochs: totalEpochs))
            }
        case .step:
            (0..<totalEpochs * stepsPerEpoch).map {
                value(at: Position(step: $0, stepsPerEpoch: stepsPerEpoch, totalEpochs: totalEpochs))
            }
        }
    }

    /// The same schedule with a cyclical factor left unset (`nil`) replaced by `factor`; other
    /// schedules are returned unchanged. `JointCycle` uses this with its `defaultFactor`.
    public func withDefaultFactor(_ factor: Double) -> Schedule {
        guard case let .cyclical(easy, hard, nil, granularity) = self else { return self }
        return .cyclical(easy: easy, hard: hard, factor: factor, granularity: granularity)
    }
}

/// The hardness `δ(t)` of general cyclical training (Smith 2022) at progress `t` in [0, 1] with
/// factor `f ≥ 1`: `f·t` while `f·t < 1` (rising), `(1 − t)·f/(f − 1)` afterwards (falling).
/// `f = 1` rises all the way to 1 at `t = 1`. The two branches meet at `t = 1/f` with δ = 1.
public func cyclicalHardness(progress t: Double, factor f: Double) -> Double {
    if f * t < 1 || f <= 1 { return min(f * t, 1) }
    return (1 - t) * f / (f - 1)
}

/// `end + (start − end)·(1 + cos(π·progress))/2`: `start` at progress 0, `end` at progress 1 (torch's
/// `_annealing_cos`).
func cosineBetween(_ start: Double, _ end: Double, progress: Double) -> Double {
    end + (start - end) * (1 + cos(Double.pi * progress)) / 2
}

extension Schedule: CustomStringConvertible {
    /// One line for logs and reports, e.g. "cyclical 0.5 → 2 (f = 1, per epoch)".
    public var description: String {
        switch self {
        case let .constant(value):
            return "constant \(formatted(value))"
        case let .cyclical(easy, hard, factor, granularity):
            let f = factor.map { "f = \(formatted($0))" } ?? "f = (E_pre + E_fine) / E_pre"
            return "cyclical \(formatted(easy)) → \(formatted(hard)) (\(f), per \(granularity.rawValue))"
        case let .repeatedCyclical(easy, hard, factor, cycles, granularity):
            return "cyclical \(formatted(easy)) → \(formatted(hard)) (f = \(formatted(factor)), \(cycles) cycles, "
                + "per \(granularity.rawValue))"
        case let .step(initial, milestones, gamma):
            return "step \(formatted(initial)) × \(formatted(gamma)) at epochs "
                + milestones.map(String.init).joined(separator: ", ")
        case let .cosine(peak, final, warmupEpochs, warmupStart, granularity):
            let warmup = warmupEpochs > 0
                ? "linear \(formatted(warmupStart)) → \(formatted(peak)) over \(warmupEpochs) epochs, then " : ""
            return "cosine \(warmup)\(formatted(peak)) → \(formatted(final)) (per \(granularity.rawValue))"
        case let .warmRestarts(maximum, minimum, firstPeriod, periodMultiplier, granularity):
            return "warm restarts \(formatted(maximum)) → \(formatted(minimum)) "
                + "(T_0 = \(firstPeriod) epochs, T_mult = \(periodMultiplier), per \(granularity.rawValue))"
        case let .oneCycle(peak, divFactor, finalDivFactor, pctStart, granularity):
            let initial = peak / divFactor
            return "one-cycle \(formatted(initial)) → \(formatted(peak)) → \(formatted(initial / finalDivFactor)) "
                + "(pct_start \(formatted(pctStart)), per \(granularity.rawValue))"
        case let .triangular(base, maximum, stepSize, granularity):
            return "triangular \(formatted(base)) ↔ \(formatted(maximum)) "
                + "(half cycle \(stepSize) \(granularity.rawValue)s)"
        case let .rampUp(value, epochs, granularity):
            return "ramp-up to \(formatted(value)) over \(epochs) epochs, exp(−5(1 − t)²) (per \(granularity.rawValue))"
        }
    }
}

/// A number as a person writes it: integers without ".0", others in Swift's shortest exact form.
func formatted(_ value: Double) -> String {
    if value.isFinite && value == value.rounded() && abs(value) < 1e15 { return String(Int(value)) }
    return String(value)
}
