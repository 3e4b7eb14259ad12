import Foundation
import Testing
@testable import EpicycleExperiments

// Reference values computed with SciPy 1.x / NumPy in Python:
//   scipy.special.betainc(a, b, x), 2 * scipy.stats.t.sf(abs(t), df),
//   scipy.stats.ttest_ind(first, second, equal_var=False), numpy.std(values, ddof=1).
// The continued fraction converges to ~1e-15 relative; 1e-12 leaves room for lgamma's rounding.

@Suite struct StatisticsTests {
    @Test func sampleSummaryUsesBesselsCorrection() throws {
        let summary = SampleSummary([1, 2, 3, 4])
        #expect(summary.count == 4)
        #expect(summary.mean == 2.5)
        // Variance (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3.
        #expect(abs(try #require(summary.standardDeviation) - (5.0 / 3).squareRoot()) < 1e-15)
        #expect(abs(summary.standardDeviation! - 1.2909944487358056) < 1e-15)
    }

    @Test func singleValueHasNoStandardDeviation() {
        let summary = SampleSummary([87.25])
        #expect(summary.mean == 87.25)
        #expect(summary.standardDeviation == nil)
    }

    @Test(arguments: [
        (x: 0.3, a: 2.5, b: 0.5, expected: 0.018927124071945658),
        (x: 0.9, a: 0.5, b: 0.5, expected: 0.7951672353008665),  // = (2/π) asin(√0.9)
        (x: 0.7, a: 10, b: 3, expected: 0.25281534785499993),
        (x: 0.05, a: 30, b: 40, expected: 4.265934929949272e-21),
        (x: 0.2, a: 0.5, b: 7.5, expected: 0.9281204024988001),
        (x: 0.42, a: 1, b: 1, expected: 0.42),  // I_x(1, 1) = x
    ])
    func incompleteBetaMatchesSciPy(x: Double, a: Double, b: Double, expected: Double) {
        let value = regularizedIncompleteBeta(x: x, a: a, b: b)
        #expect(abs(value - expected) <= 1e-12 * max(abs(expected), 1e-300), "I_\(x)(\(a), \(b)) = \(value), SciPy \(expected)")
    }

    @Test func incompleteBetaEnds() {
        #expect(regularizedIncompleteBeta(x: 0, a: 2, b: 3) == 0)
        #expect(regularizedIncompleteBeta(x: 1, a: 2, b: 3) == 1)
    }

    @Test(arguments: [
        (t: 2.0, df: 3.0, expected: 0.13932596855884305),
        (t: 0.5, df: 7.3, expected: 0.6317935268044417),
        (t: -4.1, df: 12.8, expected: 0.0012926171693691997),
        (t: 1.0, df: 1.0, expected: 0.5),  // Cauchy: 2 (1/2 − atan(1)/π)
        (t: 3.0, df: 200.0, expected: 0.003043047113905905),
    ])
    func studentTPValueMatchesSciPy(t: Double, df: Double, expected: Double) {
        let p = studentTTwoSidedPValue(t: t, degreesOfFreedom: df)
        #expect(abs(p - expected) <= 1e-12 * expected, "p(t = \(t), ν = \(df)) = \(p), SciPy \(expected)")
    }

    @Test func welchTestMatchesSciPy() throws {
        let test = try #require(WelchTest([91.2, 91.5, 90.9], [90.7, 90.8, 91.0, 90.4]))
        #expect(abs(test.difference - 0.475) < 1e-12)
        #expect(abs(test.t - 2.223781796726543) < 1e-12)
        #expect(abs(test.degreesOfFreedom - 3.9174222004410626) < 1e-12)
        #expect(abs(test.pValue - 0.09165382741912888) < 1e-12)
        // Swapping the samples flips t and the difference, not p.
        let swapped = try #require(WelchTest([90.7, 90.8, 91.0, 90.4], [91.2, 91.5, 90.9]))
        #expect(abs(swapped.t + test.t) < 1e-12)
        #expect(abs(swapped.pValue - test.pValue) < 1e-12)
        let small = try #require(WelchTest([80, 81], [79, 79.5, 80.5]))
        #expect(abs(small.pValue - 0.3183109432202585) < 1e-12)
    }

    @Test func welchTestNeedsTwoValuesPerSide() {
        #expect(WelchTest([90], [89, 91]) == nil)
        #expect(WelchTest([90, 91], []) == nil)
    }

    @Test func zeroVarianceGivesTheLimits() throws {
        let same = try #require(WelchTest([90, 90, 90], [90, 90]))
        #expect(same.pValue == 1)
        #expect(same.t == 0)
        let different = try #require(WelchTest([91, 91], [90, 90, 90]))
        #expect(different.pValue == 0)
        #expect(different.t == .infinity)
        #expect(different.difference == 1)
    }
}
