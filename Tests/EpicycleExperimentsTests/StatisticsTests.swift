import Foundation
import Testing
@testable import EpicycleExperiments

// Reference values computed with SciPy 1.x / NumPy in Python:
//   scipy.special.betainc(a, b, x), 2 * scipy.stats.t.sf(abs(t), df),
//   scipy.stats.ttest_ind(first, second, equal_var=False), numpy.std(values, ddof=1),
// and the golden file Fixtures/statistics.json of scripts/make_statistics_fixtures.py.
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
        let test = try #require(DifferenceTest(welch: [91.2, 91.5, 90.9], [90.7, 90.8, 91.0, 90.4]))
        #expect(abs(test.difference - 0.475) < 1e-12)
        #expect(abs(test.t - 2.223781796726543) < 1e-12)
        #expect(abs(test.degreesOfFreedom - 3.9174222004410626) < 1e-12)
        #expect(abs(test.pValue - 0.09165382741912888) < 1e-12)
        // Swapping the samples flips t and the difference, not p.
        let swapped = try #require(DifferenceTest(welch: [90.7, 90.8, 91.0, 90.4], [91.2, 91.5, 90.9]))
        #expect(abs(swapped.t + test.t) < 1e-12)
        #expect(abs(swapped.pValue - test.pValue) < 1e-12)
        let small = try #require(DifferenceTest(welch: [80, 81], [79, 79.5, 80.5]))
        #expect(abs(small.pValue - 0.3183109432202585) < 1e-12)
    }

    @Test func testsNeedTwoValuesPerSide() {
        #expect(DifferenceTest(welch: [90], [89, 91]) == nil)
        #expect(DifferenceTest(welch: [90, 91], []) == nil)
        #expect(DifferenceTest(paired: [90], [89]) == nil)
    }

    @Test func zeroVarianceGivesTheLimits() throws {
        let same = try #require(DifferenceTest(welch: [90, 90, 90], [90, 90]))
        #expect(same.pValue == 1)
        #expect(same.t == 0)
        let different = try #require(DifferenceTest(welch: [91, 91], [90, 90, 90]))
        #expect(different.pValue == 0)
        #expect(different.t == .infinity)
        #expect(different.difference == 1)
    }

    @Test func studentTCDFMatchesSciPy() throws {
        let fixture = try StatisticsFixture.load()
        #expect(fixture.tCDF.count > 100)
        for case_ in fixture.tCDF {
            let value = studentTCDF(case_.t, degreesOfFreedom: case_.df)
            #expect(isClose(value, case_.cdf, relative: 1e-10), "t.cdf(\(case_.t), \(case_.df)) = \(value), SciPy \(case_.cdf)")
        }
    }

    @Test func studentTQuantileMatchesSciPy() throws {
        let fixture = try StatisticsFixture.load()
        for case_ in fixture.tPPF {
            let value = studentTQuantile(case_.p, degreesOfFreedom: case_.df)
            #expect(isClose(value, case_.quantile, relative: 1e-10), "t.ppf(\(case_.p), \(case_.df)) = \(value), SciPy \(case_.quantile)")
        }
        // Closed forms: ν = 1 is Cauchy, tan(π(p − ½)); ν = 2 gives (2p − 1) / √(2p(1 − p)).
        #expect(isClose(studentTQuantile(0.975, degreesOfFreedom: 1), tan(Double.pi * 0.475), relative: 1e-12))
        #expect(isClose(studentTQuantile(0.9, degreesOfFreedom: 2), 0.8 / (2 * 0.9 * 0.1).squareRoot(), relative: 1e-12))
    }

    @Test func pairedTestMatchesSciPyTtestRel() throws {
        let fixture = try StatisticsFixture.load()
        for case_ in fixture.paired {
            let test = try #require(DifferenceTest(paired: case_.first, case_.second))
            let interval = test.confidenceInterval()
            #expect(test.kind == .paired && test.counts == [case_.first.count])
            #expect(isClose(test.t, case_.t, relative: 1e-10) && test.degreesOfFreedom == case_.df)
            #expect(isClose(test.pValue, case_.p, relative: 1e-10), "p \(test.pValue), SciPy \(case_.p)")
            #expect(isClose(interval.lower, case_.ciLow, relative: 1e-10) && isClose(interval.upper, case_.ciHigh, relative: 1e-10),
                    "CI [\(interval.lower), \(interval.upper)], SciPy [\(case_.ciLow), \(case_.ciHigh)]")
        }
    }

    @Test func welchTestMatchesSciPyTtestInd() throws {
        let fixture = try StatisticsFixture.load()
        for case_ in fixture.welch {
            let test = try #require(DifferenceTest(welch: case_.first, case_.second))
            let interval = test.confidenceInterval()
            #expect(test.kind == .welch && test.counts == [case_.first.count, case_.second.count])
            #expect(isClose(test.t, case_.t, relative: 1e-10) && isClose(test.degreesOfFreedom, case_.df, relative: 1e-10))
            #expect(isClose(test.pValue, case_.p, relative: 1e-10), "p \(test.pValue), SciPy \(case_.p)")
            #expect(isClose(interval.lower, case_.ciLow, relative: 1e-10) && isClose(interval.upper, case_.ciHigh, relative: 1e-10),
                    "CI [\(interval.lower), \(interval.upper)], SciPy [\(case_.ciLow), \(case_.ciHigh)]")
        }
    }

    /// Pairing removes what two variants share per seed: the same differences unpaired give a wider interval.
    @Test func pairingNarrowsTheIntervalWhenSeedsShareTheirLuck() throws {
        let baseline = [83.17, 83.9, 82.44], variant = [83.77, 84.1, 83.42]
        let paired = try #require(DifferenceTest(paired: variant, baseline))
        let welch = try #require(DifferenceTest(welch: variant, baseline))
        #expect(abs(paired.difference - welch.difference) < 1e-12)
        let pairedWidth = paired.confidenceInterval().upper - paired.confidenceInterval().lower
        let welchWidth = welch.confidenceInterval().upper - welch.confidenceInterval().lower
        #expect(pairedWidth < welchWidth && paired.pValue < welch.pValue)
    }

    @Test func noncentralTPowerMatchesSciPyNct() throws {
        let fixture = try StatisticsFixture.load()
        for case_ in fixture.power {
            let critical = studentTQuantile(0.975, degreesOfFreedom: case_.df)
            let value = noncentralTTwoSidedTail(critical, degreesOfFreedom: case_.df, noncentrality: case_.noncentrality)
            #expect(isClose(value, case_.power, relative: 1e-9), "power(ν \(case_.df), λ \(case_.noncentrality)) = \(value), SciPy \(case_.power)")
        }
        // Without a shift the test rejects at its level, α = 0.05.
        let critical = studentTQuantile(0.975, degreesOfFreedom: 7)
        #expect(isClose(noncentralTTwoSidedTail(critical, degreesOfFreedom: 7, noncentrality: 0), 0.05, relative: 1e-10))
    }

    /// Four values with the given mean m and sample standard deviation s: m ± a, m ± a with a = s·√3/2.
    private func differences(mean: Double, sd: Double) -> [Double] {
        let a = sd * 3.squareRoot() / 2
        return [mean - a, mean + a, mean - a, mean + a]
    }

    @Test func pairedSeedsForPowerMatchSciPy() throws {
        let fixture = try StatisticsFixture.load()
        for case_ in fixture.pairedSeeds {
            let test = try #require(DifferenceTest(paired: differences(mean: case_.mean, sd: case_.sd), [0, 0, 0, 0]))
            #expect(abs(test.variances[0].squareRoot() - case_.sd) < 1e-12 && abs(test.difference - case_.mean) < 1e-12)
            if let seeds = case_.seeds, let power = case_.powerAtSeeds {
                #expect(test.seedsForPower() == .seeds(seeds), "mean \(case_.mean), sd \(case_.sd)")
                #expect(isClose(test.power(seeds: seeds), power, relative: 1e-9))
            } else {
                #expect(test.seedsForPower() == .moreThan(1000))
                #expect(test.seedsForPower().description == "> 1000")
            }
        }
    }

    @Test func welchSeedsForPowerMatchSciPyAndASimulation() throws {
        let fixture = try StatisticsFixture.load()
        for case_ in fixture.welchSeeds {
            // Two samples of 4 with the given variances and means Δ and 0 (see `differences`).
            let first = differences(mean: case_.difference, sd: case_.var1.squareRoot())
            let second = differences(mean: 0, sd: case_.var2.squareRoot())
            let test = try #require(DifferenceTest(welch: first, second))
            #expect(test.seedsForPower() == .seeds(case_.seeds))
            let power = test.power(seeds: case_.seeds)
            #expect(isClose(power, case_.powerAtSeeds, relative: 1e-9))
            // The noncentral-t model of Welch's statistic against the real test's rejection rate in
            // 200,000 simulated comparisons: within 0.01 (it overstates power by up to 0.008 here).
            #expect(abs(power - case_.simulatedPower) < 0.01, "model \(power), simulated \(case_.simulatedPower)")
        }
    }

    @Test func powerIsNotApplicableWithoutDifferenceOrSpread() throws {
        let noDifference = try #require(DifferenceTest(paired: [90.5, 91.5, 90], [90, 91, 91]))
        #expect(noDifference.difference == 0)
        #expect(noDifference.seedsForPower() == .notApplicable("no difference to resolve"))
        #expect(noDifference.seedsForPower().description == "n/a (no difference to resolve)")
        // Every seed gains exactly 0.5: significant at once, and power has nothing to estimate from.
        let noSpread = try #require(DifferenceTest(paired: [91, 92, 90.5], [90.5, 91.5, 90]))
        #expect(noSpread.pValue == 0 && noSpread.t == .infinity)
        #expect(noSpread.confidenceInterval().lower == 0.5 && noSpread.confidenceInterval().upper == 0.5)
        #expect(noSpread.seedsForPower() == .notApplicable("no spread between seeds"))
        let sameEverywhere = try #require(DifferenceTest(welch: [90, 90], [89, 89, 89]))
        #expect(sameEverywhere.seedsForPower() == .notApplicable("no spread between seeds"))
    }
}

/// SciPy's values for the same computations, written by `scripts/make_statistics_fixtures.py`.
struct StatisticsFixture: Decodable {
    struct CDF: Decodable { let t, df, cdf: Double }
    struct Quantile: Decodable { let p, df, quantile: Double }
    struct Test: Decodable {
        let first, second: [Double]
        let t, df, p: Double
        let ciLow, ciHigh: Double
        enum CodingKeys: String, CodingKey { case first, second, t, df, p, ciLow = "ci_low", ciHigh = "ci_high" }
    }
    struct Power: Decodable { let df, noncentrality, power: Double }
    struct PairedSeeds: Decodable {
        let mean, sd: Double
        let seeds: Int?
        let powerAtSeeds: Double?
        enum CodingKeys: String, CodingKey { case mean, sd, seeds, powerAtSeeds = "power_at_seeds" }
    }
    struct WelchSeeds: Decodable {
        let difference, var1, var2: Double
        let seeds: Int
        let powerAtSeeds, simulatedPower, simulatedStandardError: Double
        enum CodingKeys: String, CodingKey {
            case difference, var1, var2, seeds, powerAtSeeds = "power_at_seeds", simulatedPower = "simulated_power"
            case simulatedStandardError = "simulated_standard_error"
        }
    }
    let tCDF: [CDF]
    let tPPF: [Quantile]
    let paired, welch: [Test]
    let power: [Power]
    let pairedSeeds: [PairedSeeds]
    let welchSeeds: [WelchSeeds]
    enum CodingKeys: String, CodingKey {
        case tCDF = "t_cdf", tPPF = "t_ppf", paired, welch, power, pairedSeeds = "paired_seeds", welchSeeds = "welch_seeds"
    }

    static func load() throws -> StatisticsFixture {
        let url = try #require(Bundle.module.url(forResource: "statistics", withExtension: "json", subdirectory: "Fixtures"))
        return try JSONDecoder().decode(StatisticsFixture.self, from: Data(contentsOf: url))
    }
}

/// |value − expected| within `relative` of |expected| (or of 1e-300 for zeros).
func isClose(_ value: Double, _ expected: Double, relative: Double) -> Bool {
    abs(value - expected) <= relative * max(abs(expected), 1e-300)
}
