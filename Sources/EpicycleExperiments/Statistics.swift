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

/// Welch's unequal-variances t-test of the difference of two means, two-sided.
///
/// t = (m₁ − m₂) / √(s₁²/n₁ + s₂²/n₂), with the Welch–Satterthwaite degrees of freedom
/// ν = (s₁²/n₁ + s₂²/n₂)² / ((s₁²/n₁)²/(n₁ − 1) + (s₂²/n₂)²/(n₂ − 1)) (Welch 1947).
public struct WelchTest: Equatable, Sendable {
    /// m₁ − m₂.
    public var difference: Double
    public var t: Double
    public var degreesOfFreedom: Double
    /// P(|T| ≥ |t|) under the null hypothesis of equal means.
    public var pValue: Double

    /// Nil when either sample has fewer than two values (no variance to estimate). When both samples
    /// have zero variance the statistic is degenerate: equal means give p = 1, different means p = 0
    /// (the limits as the variances shrink), with ν = n₁ + n₂ − 2.
    public init?(_ first: [Double], _ second: [Double]) {
        guard first.count >= 2, second.count >= 2 else { return nil }
        let n1 = Double(first.count), n2 = Double(second.count)
        let m1 = first.reduce(0, +) / n1, m2 = second.reduce(0, +) / n2
        let a = sampleVariance(first, mean: m1) / n1, b = sampleVariance(second, mean: m2) / n2
        difference = m1 - m2
        guard a + b > 0 else {
            t = difference == 0 ? 0 : difference > 0 ? .infinity : -.infinity
            degreesOfFreedom = n1 + n2 - 2
            pValue = difference == 0 ? 1 : 0
            return
        }
        t = difference / (a + b).squareRoot()
        degreesOfFreedom = (a + b) * (a + b) / (a * a / (n1 - 1) + b * b / (n2 - 1))
        pValue = studentTTwoSidedPValue(t: t, degreesOfFreedom: degreesOfFreedom)
    }
}

/// P(|T| ≥ |t|) for Student's t distribution with ν degrees of freedom (ν > 0, not necessarily whole):
/// I_{ν/(ν+t²)}(ν/2, 1/2), the regularized incomplete beta function.
public func studentTTwoSidedPValue(t: Double, degreesOfFreedom nu: Double) -> Double {
    precondition(nu > 0, "degrees of freedom must be > 0, got \(nu)")
    if t.isInfinite { return 0 }
    return regularizedIncompleteBeta(x: nu / (nu + t * t), a: nu / 2, b: 0.5)
}

/// The regularized incomplete beta function I_x(a, b) = B(x; a, b) / B(a, b) for x in [0, 1], a, b > 0.
///
/// Evaluated with its continued fraction (Abramowitz & Stegun 26.5.8)
///     I_x(a, b) = x^a (1 − x)^b / (a B(a, b)) · 1 / (1 + d₁ / (1 + d₂ / (1 + …)))
///     d₂ₘ₊₁ = −(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)),   d₂ₘ = m (b − m) x / ((a + 2m − 1)(a + 2m)),
/// by the modified Lentz algorithm. The fraction converges fast for x < (a + 1)/(a + b + 2); above
/// that, the symmetry I_x(a, b) = 1 − I_{1−x}(b, a) is used instead.
public func regularizedIncompleteBeta(x: Double, a: Double, b: Double) -> Double {
    precondition(a > 0 && b > 0, "incomplete beta needs a, b > 0, got \(a), \(b)")
    precondition((0...1).contains(x), "incomplete beta needs x in [0, 1], got \(x)")
    if x == 0 { return 0 }
    if x == 1 { return 1 }
    if x > (a + 1) / (a + b + 2) { return 1 - regularizedIncompleteBeta(x: 1 - x, a: b, b: a) }
    // log of x^a (1 − x)^b / (a B(a, b)), with B(a, b) = Γ(a)Γ(b)/Γ(a + b).
    let logFront = a * log(x) + b * log1p(-x) - log(a) - (lgamma(a) + lgamma(b) - lgamma(a + b))
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
