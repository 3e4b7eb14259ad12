import EpicycleTraining
import Foundation
import Testing
@testable import EpicycleExperiments

/// `compare` over one-run tradeoff curves: 2 variants × 2 seeds of tiny real runs with warm restarts
/// (T₀ = 1, T_mult = 2, 3 epochs), whose cycles end after epochs 1 and 3.
@Suite(.serialized) struct TradeoffReportTests {
    @Test func compareListsEveryRunsPointsPlotsTheCurvesAndPairsThem() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let warmRestarts = "{warm_restarts: {maximum: 0.05, minimum: 0.001, first_period: 1, period_multiplier: 2}}"
        let experiment = try Experiment(text: """
            name: tiny-tradeoff
            program: pretrain
            \(tinyBase.replacingOccurrences(of: "epochs: 2", with: "epochs: 3")
                .replacingOccurrences(of: "learning_rate: 0.05", with: "learning_rate: \(warmRestarts)"))
            seeds: [0, 1]
            baseline: constant
            variants:
              constant: {}
              cyclical: {knobs.weight_decay: {cyclical: {easy: 1e-5, hard: 8e-4}}}
            results: \(folder.path)/results
            """, origin: folder.appendingPathComponent("tiny-tradeoff.yaml").path)
        let result = try runComparison(experiment: experiment)
        #expect(result.failed.isEmpty)

        let rows = try String(contentsOfFile: result.tradeoffCSVPath, encoding: .utf8).split(separator: "\n")
            .map { $0.split(separator: ",").map(String.init) }
        #expect(rows.first == ["variant", "seed", "point", "epoch", "images", "seconds", "val_top1", "test_top1"])
        // 100 training images an epoch (tinyBase's `first: 100`).
        #expect(rows.dropFirst().map { Array($0.prefix(5)) } == [
            ["constant", "0", "1", "1", "100"], ["constant", "0", "2", "3", "300"],
            ["constant", "1", "1", "1", "100"], ["constant", "1", "2", "3", "300"],
            ["cyclical", "0", "1", "1", "100"], ["cyclical", "0", "2", "3", "300"],
            ["cyclical", "1", "1", "1", "100"], ["cyclical", "1", "2", "3", "300"],
        ])
        for run in result.report.runs {
            let points = try #require(run.tradeoff)
            // The last point is the run's end-of-phase test score; the first its own, after epoch 1.
            #expect(points.last?.testTop1 == run.testTop1 && points[0].testTop1.isFinite)
            #expect(points.map(\.validationTop1) == [run.phases[0].history[0].validationTop1, run.finalTop1])
        }

        // The curves: mean over the two seeds at each point, and the paired difference to the baseline.
        let curves = result.report.tradeoffCurves
        #expect(curves.map(\.variant) == ["constant", "cyclical"])
        func test(_ variant: String, _ seed: UInt64, _ point: Int) throws -> Double {
            try #require(result.report.runs.first { $0.variant == variant && $0.seed == seed }?.tradeoff?[point].testTop1)
        }
        for (curve, variant) in zip(curves, ["constant", "cyclical"]) {
            #expect(curve.points.map(\.epoch) == [1, 3] && curve.points.map(\.images.mean) == [100, 300])
            for point in 0..<2 {
                #expect(curve.points[point].testTop1.mean == (try test(variant, 0, point) + test(variant, 1, point)) / 2)
            }
        }
        let differences = result.report.tradeoffDifferences
        #expect(differences.map(\.point) == [1, 2] && differences.allSatisfy { $0.variant == "cyclical" && $0.seeds == [0, 1] })
        for (index, difference) in differences.enumerated() {
            let byHand = ((try test("cyclical", 0, index) - test("constant", 0, index))
                + (try test("cyclical", 1, index) - test("constant", 1, index))) / 2
            #expect(abs(difference.test.difference - byHand) < 1e-9)
        }

        let html = try String(contentsOfFile: result.reportPath, encoding: .utf8)
        let figure = try #require(html.range(of: "<figure id=\"tradeoff\">").flatMap { start in
            html.range(of: "</figure>", range: start.upperBound..<html.endIndex).map { String(html[start.upperBound..<$0.lowerBound]) }
        })
        // Two charts (against images and against seconds), one curve of two points per variant each.
        let curveLines = figure.components(separatedBy: "<polyline class=\"curve\"").dropFirst()
        #expect(curveLines.count == 4)
        for line in curveLines {
            let points = try #require(line.range(of: "points=\"").flatMap { start in
                line[start.upperBound...].split(separator: "\"").first
            })
            #expect(points.split(separator: " ").count == 2)
        }
        #expect(figure.contains("training images (log₂ axis)") && figure.contains("training seconds (log₂ axis)"))
        #expect(html.contains("<table id=\"tradeoff-differences\">"))
        #expect(!html.contains(">images_seen<") && !html.contains(">train_seconds<"), "the budget columns are not charted as knobs")
    }
}
