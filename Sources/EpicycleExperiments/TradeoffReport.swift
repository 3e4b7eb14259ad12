import EpicycleTraining
import Foundation

/// One variant's tradeoff curve: at each cycle end (point 1, 2, …) the mean over seeds of the
/// budget and of the test top-1, with the spread of the accuracy.
struct TradeoffCurve {
    struct Point {
        var epoch: Int
        var images: SampleSummary
        var seconds: SampleSummary
        var testTop1: SampleSummary
        /// Test top-1 by seed, for the paired differences.
        var testTop1BySeed: [UInt64: Double]
    }

    var variant: String
    var points: [Point]
}

/// A paired difference of test top-1 between a variant and the baseline at one tradeoff point.
struct TradeoffDifference {
    var variant: String
    var point: Int
    var epoch: Int
    var images: Double
    var test: DifferenceTest
    var seeds: [UInt64]
}

extension ComparisonReport {
    /// Each variant's curve over its finished runs that recorded tradeoff points. A point is kept
    /// where every such run has it at the same epoch (variants with the same schedule do).
    var tradeoffCurves: [TradeoffCurve] {
        variants.compactMap { variant in
            let runs = self.runs.filter { $0.variant == variant.name && $0.status == .finished && !($0.tradeoff ?? []).isEmpty }
            guard let first = runs.first?.tradeoff else { return nil }
            let points = first.indices.compactMap { index -> TradeoffCurve.Point? in
                let atIndex = runs.compactMap { run in run.tradeoff.flatMap { $0.indices.contains(index) ? (run.seed, $0[index]) : nil } }
                guard atIndex.count == runs.count, atIndex.allSatisfy({ $0.1.epoch == first[index].epoch }) else { return nil }
                let finite = atIndex.filter { $0.1.testTop1.isFinite }
                guard !finite.isEmpty else { return nil }
                return TradeoffCurve.Point(
                    epoch: first[index].epoch, images: SampleSummary(finite.map(\.1.images)),
                    seconds: SampleSummary(finite.map(\.1.seconds)), testTop1: SampleSummary(finite.map(\.1.testTop1)),
                    testTop1BySeed: Dictionary(finite.map { ($0.0, $0.1.testTop1) }, uniquingKeysWith: { first, _ in first }))
            }
            return points.isEmpty ? nil : TradeoffCurve(variant: variant.name, points: points)
        }
    }

    /// Every variant's test top-1 minus the baseline's at each tradeoff point both curves have at the
    /// same epoch, paired over the seeds both scored (`DifferenceTest(paired:)`; two seeds at least).
    var tradeoffDifferences: [TradeoffDifference] {
        let curves = tradeoffCurves
        guard let reference = curves.first(where: { $0.variant == baseline }) else { return [] }
        return curves.filter { $0.variant != baseline }.flatMap { curve in
            curve.points.enumerated().compactMap { index, point -> TradeoffDifference? in
                guard let base = reference.points.first(where: { $0.epoch == point.epoch }) else { return nil }
                let seeds = point.testTop1BySeed.keys.filter { base.testTop1BySeed[$0] != nil }.sorted()
                guard let test = DifferenceTest(paired: seeds.map { point.testTop1BySeed[$0]! }, seeds.map { base.testTop1BySeed[$0]! })
                else { return nil }
                return TradeoffDifference(variant: curve.variant, point: index + 1, epoch: point.epoch, images: point.images.mean,
                                          test: test, seeds: seeds)
            }
        }
    }

    /// `tradeoff.csv`: one row per run and tradeoff point (variant, seed, point, epoch, images,
    /// seconds, val_top1, test_top1), from the runs' records.
    public var tradeoffCSV: String {
        var out = "variant,seed,point,epoch,images,seconds,val_top1,test_top1\n"
        for run in runs where run.status == .finished {
            for (index, point) in (run.tradeoff ?? []).enumerated() {
                out += [run.variant, String(run.seed), String(index + 1), String(point.epoch), String(format: "%.0f", point.images),
                        String(format: "%.3f", point.seconds), String(format: "%.4f", point.validationTop1),
                        String(format: "%.4f", point.testTop1)].map(csvField).joined(separator: ",") + "\n"
            }
        }
        return out
    }

    /// The report's section: test top-1 against cumulative training images and seconds (log₂ axes, as
    /// warm restarts with T_mult = 2 double the budget from one point to the next), mean ± std over
    /// seeds, and the paired differences to the baseline at each point. Empty when no run recorded points.
    var tradeoffHTML: String {
        let curves = tradeoffCurves
        guard !curves.isEmpty else { return "" }
        func chart(_ budget: String, _ value: (TradeoffCurve.Point) -> Double) -> LineChart {
            LineChart(title: "Test top-1 (%) at each cycle end, mean ± std over seeds", xLabel: budget + " (log₂ axis)",
                      series: curves.map { curve in
                          let mean = curve.points.map(\.testTop1.mean), spread = curve.points.map { $0.testTop1.standardDeviation ?? 0 }
                          return LineChart.Series(name: curve.variant, x: curve.points.map(value), y: mean,
                                                  band: (zip(mean, spread).map { $0 - $1 }, zip(mean, spread).map { $0 + $1 }))
                      }, width: 500, height: 300, logXBase: 2)
        }
        var out = "<h2>Accuracy vs training budget</h2>\n"
        out += "<p class=\"caption\">One-run tradeoff curves (Portes et al. 2022): the test top-1 of each run at the end of each of "
            + "its cycles against the training it took to get there (images seen; wall-clock training seconds without "
            + "evaluation). The test scores at cycle ends are for these curves only; nothing selects on them.</p>\n"
        out += "<figure id=\"tradeoff\">\n"
            + svgGrid([chart("training images", \.images.mean), chart("training seconds", \.seconds.mean)], columns: 2)
            + "</figure>\n"
        let differences = tradeoffDifferences
        guard !differences.isEmpty else { return out }
        out += "<table id=\"tradeoff-differences\">\n<tr><th>Variant</th><th>Point</th><th>Epoch</th><th>Images</th>"
            + "<th>Δ test top-1 vs \(escapeHTML(baseline)) [95 % CI]</th><th>p</th><th>Seeds</th></tr>\n"
        for difference in differences {
            let interval = difference.test.confidenceInterval()
            let cells = [difference.variant, String(difference.point), String(difference.epoch), String(format: "%.0f", difference.images),
                         String(format: "%+.2f [%+.2f, %+.2f]", difference.test.difference, interval.lower, interval.upper),
                         formatPValue(difference.test.pValue), String(difference.seeds.count)]
            out += "<tr>" + cells.map { "<td>\(escapeHTML($0))</td>" }.joined() + "</tr>\n"
        }
        return out + "</table>\n<p class=\"caption\">Paired t-tests over the seeds both variants scored at that point.</p>\n"
    }
}
