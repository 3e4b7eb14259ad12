import Foundation

/// Mean and sample standard deviation of a few values (one per seed).
public struct SampleSummary: Equatable, Sendable {
    public var count: Int
    public var mean: Double
    /// With Bessel's correction (divides by n − 1); nil for a single value, where it is undefined.
    public var standardDeviation: Double?

    /// - Precondition: `values` is not empty.
    public init(_ values: [Double]) {
        precondition(!values.isEmpty, "SampleSummary needs at least one value")
        count = values.count
        mean = values.reduce(0, +) / Double(values.count)
        standardDeviation = values.count < 2 ? nil : sampleVariance(values, mean: mean).squareRoot()
    }
}

func sampleVariance(_ values: [Double], mean: Double) -> Double {
    values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)
}

/// A two-sided t-test of a difference of means with its confidence interval: the paired test when two
/// variants ran the same seeds (same initialisation and data order), Welch's test otherwise.
///
/// - Paired (Student 1908): d_i = x_i − y_i over n shared seeds, t = d̄ / (s_d/√n), ν = n − 1.
/// - Welch (1947): t = (m₁ − m₂) / √(s₁²/n₁ + s₂²/n₂), with the Welch–Satterthwaite degrees of freedom
///   ν = (s₁²/n₁ + s₂²/n₂)² / ((s₁²/n₁)²/(n₁ − 1) + (s₂²/n₂)²/(n₂ − 1)).
///
/// The interval is difference ± t_{1−α/2, ν} · standard error.
public struct DifferenceTest: Equatable, Sendable {
    public enum Kind: String, Sendable {
        case paired, welch
    }

    public var kind: Kind
    /// Mean of the differences (paired) or difference of the means (Welch): first − second.
    public var difference: Double
    public var standardError: Double
    public var t: Double
    public var degreesOfFreedom: Double
    /// P(|T| ≥ |t|) under the null hypothesis of equal means.
    public var pValue: Double
    /// Seeds in the test: pairs for the paired test, the two sample sizes for Welch's.
    public var counts: [Int]
    /// Paired: the sample variance of the differences. Welch: the two samples' variances.
    let variances: [Double]

    /// The paired test of `first[i] − second[i]`; nil below two pairs. When the differences do not
    /// vary the statistic is degenerate: a zero mean gives p = 1, any other p = 0 (the limits as the
    /// spread shrinks), and the interval is the point itself.
    /// - Precondition: the arrays have the same length (one value per shared seed).
    public init?(paired first: [Double], _ second: [Double]) {
        precondition(first.count == second.count, "a paired test needs one value per seed on both sides")
        guard first.count >= 2 else { return nil }
        let differences = zip(first, second).map { $0 - $1 }
        let n = Double(differences.count)
        let mean = differences.reduce(0, +) / n
        let variance = sampleVariance(differences, mean: mean)
        self.init(kind: .paired, difference: mean, standardError: (variance / n).squareRoot(), degreesOfFreedom: n - 1,
                  counts: [differences.count], variances: [variance])
    }

    /// Welch's test of mean(first) − mean(second); nil when either sample has fewer than two values.
    /// When both samples have zero variance: equal means give p = 1, different means p = 0, with
    /// ν = n₁ + n₂ − 2.
    public init?(welch first: [Double], _ second: [Double]) {
        guard first.count >= 2, second.count >= 2 else { return nil }
        let n1 = Double(first.count), n2 = Double(second.count)
        let m1 = first.reduce(0, +) / n1, m2 = second.reduce(0, +) / n2
        let v1 = sampleVariance(first, mean: m1), v2 = sampleVariance(second, mean: m2)
        let a = v1 / n1, b = v2 / n2
        let nu = a + b > 0 ? (a + b) * (a + b) / (a * a / (n1 - 1) + b * b / (n2 - 1)) : n1 + n2 - 2
        self.init(kind: .welch, difference: m1 - m2, standardError: (a + b).squareRoot(), degreesOfFreedom: nu,
                  counts: [first.count, second.count], variances: [v1, v2])
    }

    private init(kind: Kind, difference: Double, standardError: Double, degreesOfFreedom: Double, counts: [Int],
                 variances: [Double]) {
        self.kind = kind
        self.difference = difference
        self.standardError = standardError
        self.degreesOfFreedom = degreesOfFreedom
        self.counts = counts
        self.variances = variances
        if standardError > 0 {
            t = difference / standardError
            pValue = studentTTwoSidedPValue(t: t, degreesOfFreedom: degreesOfFreedom)
        } else {
            t = difference == 0 ? 0 : difference > 0 ? .infinity : -.infinity
            pValue = difference == 0 ? 1 : 0
        }
    }

    /// The two-sided confidence interval of the difference at `level` (0.95: the 95 % interval).
    public func confidenceInterval(level: Double = 0.95) -> (lower: Double, upper: Double) {
        precondition(level > 0 && level < 1, "a confidence level is in (0, 1), got \(level)")
        let halfWidth = standardError == 0 ? 0
            : studentTQuantile(0.5 + level / 2, degreesOfFreedom: degreesOfFreedom) * standardError
        return (difference - halfWidth, difference + halfWidth)
    }

    /// The smallest number of seeds (pairs for the paired test; seeds per variant for Welch's) at which
    /// the same test, two-sided at `alpha`, detects the observed difference with probability ≥ `power`,
    /// taking the observed spread as the truth.
    ///
    /// Paired: with δ = d̄ / s_d, the statistic for n pairs is noncentral t with ν = n − 1 and
    /// noncentrality δ√n, so power(n) = P(|T′| > t_{1−α/2, n−1}) exactly. Welch: the approximation
    /// that the statistic for n seeds per variant is noncentral t with the Welch–Satterthwaite ν(n) and
    /// noncentrality Δ / √((s₁² + s₂²)/n) (exact as the variances are known; checked against a
    /// Monte-Carlo simulation by `scripts/make_statistics_fixtures.py`).
    /// - Parameter limit: the most seeds considered.
    public func seedsForPower(_ power: Double = 0.8, alpha: Double = 0.05, limit: Int = 1000) -> SeedsForPower {
        precondition(power > 0 && power < 1 && alpha > 0 && alpha < 1 && limit >= 2, "power and α are in (0, 1)")
        guard difference != 0 else { return .notApplicable("no difference to resolve") }
        guard variances.contains(where: { $0 > 0 }) else { return .notApplicable("no spread between seeds") }
        for n in 2...limit where self.power(seeds: n, alpha: alpha) >= power {
            return .seeds(n)
        }
        return .moreThan(limit)
    }

    /// The probability that the test on `seeds` seeds rejects at `alpha`, as `seedsForPower` models it.
    public func power(seeds: Int, alpha: Double = 0.05) -> Double {
        precondition(seeds >= 2, "a t-test needs at least two seeds")
        let n = Double(seeds)
        let nu: Double, noncentrality: Double
        switch kind {
        case .paired:
            nu = n - 1
            noncentrality = difference / variances[0].squareRoot() * n.squareRoot()
        case .welch:
            let sum = variances[0] + variances[1]
            nu = sum * sum * (n - 1) / (variances[0] * variances[0] + variances[1] * variances[1])
            noncentrality = difference / (sum / n).squareRoot()
        }
        let critical = studentTQuantile(1 - alpha / 2, degreesOfFreedom: nu)
        return noncentralTTwoSidedTail(critical, degreesOfFreedom: nu, noncentrality: noncentrality)
    }
}

/// How many seeds would resolve a difference at the asked power.
public enum SeedsForPower: Equatable, Sendable, CustomStringConvertible {
    case seeds(Int)
    /// Not reached within the limit.
    case moreThan(Int)
    /// The question has no answer (the reason): no difference, or no spread to estimate power from.
    case notApplicable(String)

    public var description: String {
        switch self {
        case let .seeds(n): return String(n)
        case let .moreThan(limit): return "> \(limit)"
        case let .notApplicable(reason): return "n/a (\(reason))"
        }
    }
}

// MARK: Student's t distribution

/// P(|T| ≥ |t|) for Student's t distribution with ν degrees of freedom (ν > 0, not necessarily whole):
/// I_{ν/(ν+t²)}(ν/2, 1/2), the regularized incomplete beta function.
public func studentTTwoSidedPValue(t: Double, degreesOfFreedom nu: Double) -> Double {
    2 * studentTUpperTail(abs(t), degreesOfFreedom: nu)
}

/// P(T ≤ t) for Student's t distribution with ν > 0 degrees of freedom (ν need not be whole).
public func studentTCDF(_ t: Double, degreesOfFreedom nu: Double) -> Double {
    t < 0 ? studentTUpperTail(-t, degreesOfFreedom: nu) : 1 - studentTUpperTail(t, degreesOfFreedom: nu)
}

/// P(T > t) for t ≥ 0: ½ I_{ν/(ν+t²)}(ν/2, 1/2). Both x = ν/(ν+t²) and 1 − x = t²/(ν+t²) are formed
/// directly, so neither tail loses digits to a subtraction from 1.
func studentTUpperTail(_ t: Double, degreesOfFreedom nu: Double) -> Double {
    precondition(nu > 0, "degrees of freedom must be > 0, got \(nu)")
    precondition(t >= 0, "the upper tail is taken at t ≥ 0")
    if t.isInfinite { return 0 }
    let denominator = nu + t * t
    return 0.5 * regularizedIncompleteBeta(x: nu / denominator, complement: t * t / denominator, a: nu / 2, b: 0.5)
}

/// The density of Student's t distribution: Γ((ν+1)/2) / (√(νπ) Γ(ν/2)) · (1 + t²/ν)^(−(ν+1)/2).
func studentTDensity(_ t: Double, degreesOfFreedom nu: Double) -> Double {
    exp(lgamma((nu + 1) / 2) - lgamma(nu / 2) - 0.5 * log(nu * Double.pi) - (nu + 1) / 2 * log1p(t * t / nu))
}

/// The p-quantile of Student's t distribution with ν > 0 degrees of freedom: the t with P(T ≤ t) = p.
///
/// Solves P(T > t) = min(p, 1 − p) for t ≥ 0 by Newton's method on the tail (its derivative is minus
/// the density), kept inside a bracket that halves whenever a Newton step would leave it; the sign
/// follows from the symmetry of the distribution. Accurate to a few ulps of t in the tail's precision.
public func studentTQuantile(_ p: Double, degreesOfFreedom nu: Double) -> Double {
    precondition(p > 0 && p < 1, "a quantile needs p in (0, 1), got \(p)")
    precondition(nu > 0, "degrees of freedom must be > 0, got \(nu)")
    if p == 0.5 { return 0 }
    let tail = min(p, 1 - p)
    // A bracket [low, high] with tail(low) ≥ target ≥ tail(high).
    var low = 0.0, high = 1.0
    while studentTUpperTail(high, degreesOfFreedom: nu) > tail && high < 1e300 { low = high; high *= 4 }
    var t = (low + high) / 2
    for _ in 0..<200 {
        let excess = studentTUpperTail(t, degreesOfFreedom: nu) - tail
        if excess > 0 { low = t } else { high = t }
        var next = t + excess / studentTDensity(t, degreesOfFreedom: nu)
        if !(next > low && next < high) { next = (low + high) / 2 }
        if abs(next - t) <= 1e-15 * abs(next) || high - low <= 1e-15 * high { t = next; break }
        t = next
    }
    return p < 0.5 ? -t : t
}

/// P(|T′| > c) for T′ noncentral t with ν > 0 degrees of freedom and noncentrality λ, c ≥ 0.
///
/// T′ = (Z + λ) / √(V/ν) with Z standard normal and V ~ χ²_ν independent; conditioning on U = √V,
/// which has the chi density g(u) = u^(ν−1) e^(−u²/2) / (2^(ν/2−1) Γ(ν/2)),
///     P(|T′| > c) = ∫₀^∞ [Φ(λ − c u/√ν) + Φ(−λ − c u/√ν)] g(u) du,
/// integrated by composite Gauss–Legendre quadrature over √ν ± 12 (the chi distribution's standard
/// deviation is below 1/√2 for every ν, so the mass outside is below 1e-30).
func noncentralTTwoSidedTail(_ c: Double, degreesOfFreedom nu: Double, noncentrality lambda: Double) -> Double {
    precondition(nu > 0 && c >= 0, "the noncentral t tail needs ν > 0 and c ≥ 0")
    let center = nu.squareRoot()
    let lower = max(0, center - 12), upper = center + 12
    let panels = 48
    let width = (upper - lower) / Double(panels)
    let logNormalizer = (nu / 2 - 1) * log(2.0) + lgamma(nu / 2)
    func phi(_ x: Double) -> Double { 0.5 * erfc(-x / 2.squareRoot()) }
    var total = 0.0
    for panel in 0..<panels {
        let middle = lower + (Double(panel) + 0.5) * width
        for (node, weight) in gaussLegendre16 {
            let u = middle + node * width / 2
            guard u > 0 else { continue }
            let density = exp((nu - 1) * log(u) - u * u / 2 - logNormalizer)
            let s = c * u / center
            total += weight * width / 2 * density * (phi(lambda - s) + phi(-lambda - s))
        }
    }
    return min(max(total, 0), 1)
}

/// The 16 nodes on [−1, 1] and weights of Gauss–Legendre quadrature: the roots of the Legendre
/// polynomial P₁₆ by Newton's method from Tricomi's estimates cos(π(i − 1/4)/(n + 1/2)), with
/// weights 2 / ((1 − x²) P′₁₆(x)²) (Abramowitz & Stegun 25.4.29).
private let gaussLegendre16: [(node: Double, weight: Double)] = {
    let n = 16
    return (1...n).map { i in
        var x = cos(Double.pi * (Double(i) - 0.25) / (Double(n) + 0.5))
        var derivative = 0.0
        for _ in 0..<100 {
            // P_n(x) and P_{n−1}(x) by the three-term recurrence (k+1) P_{k+1} = (2k+1) x P_k − k P_{k−1}.
            var previous = 1.0, current = x
            for k in 1..<n {
                (previous, current) = (current, (Double(2 * k + 1) * x * current - Double(k) * previous) / Double(k + 1))
            }
            derivative = Double(n) * (x * current - previous) / (x * x - 1)
            let step = current / derivative
            x -= step
            if abs(step) < 1e-16 { break }
        }
        return (x, 2 / ((1 - x * x) * derivative * derivative))
    }
}()

// MARK: The incomplete beta function

/// The regularized incomplete beta function I_x(a, b) = B(x; a, b) / B(a, b) for x in [0, 1], a, b > 0.
public func regularizedIncompleteBeta(x: Double, a: Double, b: Double) -> Double {
    regularizedIncompleteBeta(x: x, complement: 1 - x, a: a, b: b)
}

/// I_x(a, b) given both x and y = 1 − x, each to full relative precision.
///
/// Evaluated with its continued fraction (Abramowitz & Stegun 26.5.8)
///     I_x(a, b) = x^a (1 − x)^b / (a B(a, b)) · 1 / (1 + d₁ / (1 + d₂ / (1 + …)))
///     d₂ₘ₊₁ = −(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)),   d₂ₘ = m (b − m) x / ((a + 2m − 1)(a + 2m)),
/// by the modified Lentz algorithm. The fraction converges fast for x < (a + 1)/(a + b + 2); above
/// that, the symmetry I_x(a, b) = 1 − I_{1−x}(b, a) is used instead.
func regularizedIncompleteBeta(x: Double, complement y: Double, a: Double, b: Double) -> Double {
    precondition(a > 0 && b > 0, "incomplete beta needs a, b > 0, got \(a), \(b)")
    precondition((0...1).contains(x) && (0...1).contains(y), "incomplete beta needs x in [0, 1], got \(x)")
    if x == 0 { return 0 }
    if y == 0 { return 1 }
    if x > (a + 1) / (a + b + 2) { return 1 - regularizedIncompleteBeta(x: y, complement: x, a: b, b: a) }
    // log of x^a (1 − x)^b / (a B(a, b)), with B(a, b) = Γ(a)Γ(b)/Γ(a + b).
    let logFront = a * log(x) + b * log(y) - log(a) - (lgamma(a) + lgamma(b) - lgamma(a + b))
    return exp(logFront) / incompleteBetaFraction(x: x, a: a, b: b)
}

/// 1 + d₁ / (1 + d₂ / (1 + …)) by the modified Lentz algorithm (Lentz 1976; Thompson & Barnett 1986):
/// the convergents are built as products of ratios C/D, with tiny values standing in for zeros.
private func incompleteBetaFraction(x: Double, a: Double, b: Double) -> Double {
    let tiny = 1e-300, tolerance = 1e-15
    var value = 1.0, c = 1.0, d = 0.0
    for index in 1...10_000 {
        let m = Double(index / 2)
        let coefficient = index % 2 == 1
            ? -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
            : m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1 + coefficient * d
        if abs(d) < tiny { d = tiny }
        c = 1 + coefficient / c
        if abs(c) < tiny { c = tiny }
        d = 1 / d
        let ratio = c * d
        value *= ratio
        if abs(ratio - 1) < tolerance { break }
    }
    return value
}
