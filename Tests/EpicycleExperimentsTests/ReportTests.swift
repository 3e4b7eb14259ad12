import EpicycleTraining
import Foundation
import FoundationXML
import Testing
@testable import EpicycleExperiments

/// Four variants over seeds 0–2 with made-up results: `constant` (baseline) and `cyclical` finish
/// every run with test scores; `lonely` finishes one (which validated on the test split) and fails
/// two; `legacy` finishes every run, but its run.json files predate test scoring.
func syntheticReport() throws -> ComparisonReport {
    let experiment = try Experiment(text: """
        name: synthetic
        program: pretrain
        \(tinyBase)
        seeds: [0, 1, 2]
        baseline: constant
        variants:
          constant: {}
          cyclical: {knobs.weight_decay: {cyclical: {easy: 1e-5, hard: 8e-5}}}
          lonely: {knobs.temperature: 2}
          legacy: {knobs.temperature: 0.5}
        """, origin: "/tmp/synthetic.yaml")
    func epoch(_ number: Int, top1: Double, weightDecay: Double) -> EpochRecord {
        EpochRecord(epoch: number, step: number * 2, trainLoss: 1, trainTop1: 50, validationLoss: 2 - top1 / 100,
                    validationTop1: top1, validationTop5: 99, seconds: 1, imagesPerSecond: 100,
                    knobs: ["weight_decay": weightDecay, "learning_rate": 0.05])
    }
    func run(_ variant: String, _ seed: UInt64, final: Double, best: Double, test: Double?, testBest: Double? = nil,
             wall: Double, weightDecay: [Double], onTest: Bool? = false) -> RunRecord {
        RunRecord(variant: variant, seed: seed, program: "pretrain", status: .finished, finalTop1: final, bestTop1: best,
                  testTop1: test, testTop1Best: testBest ?? test.map { $0 - 0.1 }, validatesOnTest: test == nil ? nil : onTest,
                  wallSeconds: wall, phases: [.init(name: "", history: [
                      epoch(1, top1: best, weightDecay: weightDecay[0]), epoch(2, top1: final, weightDecay: weightDecay[1]),
                  ])])
    }
    let constant = [5e-4, 5e-4], cyclical = [1e-5, 8e-5]
    let runs = [
        run("constant", 0, final: 90.7, best: 90.9, test: 89.9, wall: 10, weightDecay: constant),
        run("constant", 1, final: 90.8, best: 91.0, test: 90.1, wall: 12, weightDecay: constant),
        run("constant", 2, final: 91.0, best: 91.1, test: 90.2, wall: 14, weightDecay: constant),
        run("cyclical", 0, final: 91.2, best: 91.4, test: 90.5, wall: 11, weightDecay: cyclical),
        run("cyclical", 1, final: 91.5, best: 91.6, test: 90.6, wall: 12, weightDecay: cyclical),
        run("cyclical", 2, final: 90.9, best: 91.0, test: 90.1, wall: 13, weightDecay: cyclical),
        run("lonely", 0, final: 89.0, best: 89.5, test: 88.0, testBest: 88.4, wall: 12, weightDecay: constant, onTest: true),
        RunRecord(variant: "lonely", seed: 1, program: "pretrain", status: .failed, error: "training diverged"),
        RunRecord(variant: "lonely", seed: 2, program: "pretrain", status: .running),
        run("legacy", 0, final: 90.1, best: 90.3, test: nil, wall: 12, weightDecay: constant),
        run("legacy", 1, final: 90.2, best: 90.4, test: nil, wall: 12, weightDecay: constant),
        run("legacy", 2, final: 90.3, best: 90.5, test: nil, wall: 12, weightDecay: constant),
    ]
    return ComparisonReport(experiment: experiment, runs: runs, command: "epicycle compare synthetic.yaml --jobs 2")
}

/// Counts elements of an XML document, and which `polyline` curves lie inside `<figure id="…">`.
final class ReportParser: NSObject, XMLParserDelegate {
    var curvesByFigure: [String: [String]] = [:]
    var bandsByFigure: [String: Int] = [:]
    var tableRows: [String: Int] = [:]
    private var figure: String?
    private var table: String?

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        switch name {
        case "figure": figure = attributes["id"]
        case "table": table = attributes["id"]
        case "tr": if let table { tableRows[table, default: 0] += 1 }
        case "polyline" where attributes["class"] == "curve":
            if let figure { curvesByFigure[figure, default: []].append(attributes["data-series"] ?? "") }
        case "polygon" where attributes["class"] == "band":
            if let figure { bandsByFigure[figure, default: 0] += 1 }
        default: break
        }
    }

    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        if name == "figure" { figure = nil }
        if name == "table" { table = nil }
    }
}

@Suite struct ReportTests {
    @Test func aggregatesAgainstHandComputedValues() throws {
        let summaries = try syntheticReport().summaries
        #expect(summaries.map(\.name) == ["constant", "cyclical", "lonely", "legacy"])
        let constant = summaries[0], cyclical = summaries[1], lonely = summaries[2], legacy = summaries[3]
        // constant: test 89.9, 90.1, 90.2 → mean 90.0667, sample std 0.152753; validation finals 90.7,
        // 90.8, 91.0 → mean 90.8333…, std 0.152753.
        #expect(constant.isBaseline && constant.finishedRuns == 3 && constant.unfinishedRuns == 0)
        #expect(abs(constant.testTop1!.mean - 90.06666666666666) < 1e-9)
        #expect(abs(constant.testTop1!.standardDeviation! - 0.1527525231651922) < 1e-9)
        #expect(abs(constant.testTop1Best!.mean - 89.96666666666666) < 1e-9)
        #expect(abs(constant.finalTop1!.mean - 90.83333333333333) < 1e-9)
        #expect(abs(constant.finalTop1!.standardDeviation! - 0.15275252316519375) < 1e-9)
        #expect(abs(constant.bestTop1!.mean - 91.0) < 1e-9 && abs(constant.bestTop1!.standardDeviation! - 0.1) < 1e-9)
        #expect(constant.wallSeconds!.mean == 12)
        #expect(constant.differenceToBaseline == nil && constant.test == nil)
        // cyclical: test 90.5, 90.6, 90.1, paired by seed with the baseline: scipy.stats.ttest_rel gives
        // t = 1.5249857033260132, p = 0.26676442489324104, 95 % CI (−0.6071460255584215, 1.2738126922250785);
        // differences 0.6, 0.5, −0.1 (mean 0.3333, sd 0.378594) need 13 seeds for 80 % power (scipy.stats.nct).
        let test = try #require(cyclical.test)
        #expect(test.kind == .paired && cyclical.pairedSeeds == [0, 1, 2])
        #expect(abs(cyclical.testTop1!.mean - 90.4) < 1e-9 && abs(cyclical.testTop1!.standardDeviation! - 0.26457513110646014) < 1e-9)
        #expect(abs(cyclical.differenceToBaseline! - 0.3333333333333286) < 1e-9)
        #expect(abs(test.t - 1.5249857033260132) < 1e-9 && abs(test.pValue - 0.26676442489324104) < 1e-9)
        #expect(abs(test.confidenceInterval().lower + 0.6071460255584215) < 1e-9)
        #expect(abs(test.confidenceInterval().upper - 1.2738126922250785) < 1e-9)
        #expect(test.seedsForPower() == .seeds(13))
        // lonely: one finished run of three: a mean, no std, a difference but no test.
        #expect(lonely.finishedRuns == 1 && lonely.unfinishedRuns == 2)
        #expect(lonely.testTop1 == SampleSummary([88.0]) && lonely.testTop1?.standardDeviation == nil)
        #expect(abs(lonely.differenceToBaseline! - (88.0 - 90.06666666666666)) < 1e-9)
        #expect(lonely.test == nil)
        // legacy: finished, but no test scores: validation figures only, no difference, no test.
        #expect(legacy.finishedRuns == 3 && legacy.runsWithoutTestScore == 3)
        #expect(legacy.testTop1 == nil && legacy.testTop1Best == nil && legacy.differenceToBaseline == nil && legacy.test == nil)
        #expect(abs(legacy.finalTop1!.mean - 90.2) < 1e-9)
    }

    /// Without two seeds in common, the variant is compared with Welch's test.
    @Test func unsharedSeedsFallBackToWelch() throws {
        func run(_ variant: String, _ seed: UInt64, test: Double) -> RunRecord {
            RunRecord(variant: variant, seed: seed, program: "pretrain", status: .finished, finalTop1: 90, bestTop1: 90, testTop1: test)
        }
        let runs = [run("constant", 0, test: 89.9), run("constant", 1, test: 90.1), run("other", 2, test: 90.5), run("other", 3, test: 90.6)]
        let summaries = summarize(runs: runs, variants: [Variant(name: "constant", overrides: []), Variant(name: "other", overrides: [])],
                                  baseline: "constant")
        // scipy.stats.ttest_ind([90.5, 90.6], [89.9, 90.1], equal_var=False): t = 4.919349550499791,
        // ν = 1.4705882352941178, p = 0.0692861733439481, 95 % CI (−0.14185228300706998, 1.2418522830070642).
        let test = try #require(summaries[1].test)
        #expect(test.kind == .welch && summaries[1].pairedSeeds.isEmpty)
        #expect(abs(test.t - 4.919349550499791) < 1e-9 && abs(test.degreesOfFreedom - 1.4705882352941178) < 1e-9)
        #expect(abs(test.pValue - 0.0692861733439481) < 1e-9)
        #expect(abs(test.confidenceInterval().lower + 0.14185228300706998) < 1e-9)
        #expect(abs(test.confidenceInterval().upper - 1.2418522830070642) < 1e-9)
    }

    @Test func tableHeadlinesTestTop1OfTheFinalModel() throws {
        let report = try syntheticReport()
        #expect(report.rows == [
            ["constant (baseline)", "3", "90.07 ± 0.15", "—", "—", "—", "—", "89.97 ± 0.15", "90.83 ± 0.15", "91.00 ± 0.10", "12s"],
            ["cyclical", "3", "90.40 ± 0.26", "+0.33 [-0.61, +1.27]", "paired", "0.267", "13", "90.30 ± 0.26", "91.20 ± 0.30",
             "91.33 ± 0.31", "12s"],
            ["lonely [1 of 3 runs]", "1", "88.00 ± n/a", "-2.07", "n/a", "n/a", "n/a", "88.40 ± n/a", "89.00 ± n/a", "89.50 ± n/a", "12s"],
            ["legacy", "0", "—", "—", "—", "—", "—", "—", "90.20 ± 0.10", "90.40 ± 0.10", "12s"],
        ])
        let lines = report.markdown.split(separator: "\n")
        #expect(lines.contains("| Variant | Seeds | Test top-1, final model (%) | Δ vs baseline [95 % CI] | Test | p | Seeds for 80 % power "
            + "| Test top-1, best.h5 (%) | Val. top-1, final (%) | Val. top-1, best (%) | Wall time / run |"))
        #expect(lines.contains("| cyclical | 3 | 90.40 ± 0.26 | +0.33 [-0.61, +1.27] | paired | 0.267 | 13 | 90.30 ± 0.26 | 91.20 ± 0.30 | 91.33 ± 0.31 | 12s |"))
        #expect(report.markdown.contains("— in a test column: the runs were recorded before test scoring"))
        #expect(formatPValue(0.0004) == "< 0.001")
    }

    @Test func everyOutputSaysWhenValidationWasTheTestSplit() throws {
        let report = try syntheticReport()
        #expect(report.runsValidatedOnTest == ["lonely/seed-0"])
        let warning = "Validation was the test split in 1 of 12 runs (lonely/seed-0)"
        #expect(report.markdown.contains("**Warning:** " + warning))
        #expect(report.html.contains(warning))
        #expect(report.tableCSV.split(separator: "\n")[3].hasSuffix(",true,12"), "lonely's row: validated_on_test")
        #expect(report.csv.split(separator: "\n")[7].contains(",true,"))
        var clean = report
        clean.runs = report.runs.map { run in
            var run = run
            run.validatesOnTest = run.validatesOnTest.map { _ in false }
            return run
        }
        #expect(!clean.markdown.contains("Warning") && !clean.html.contains("Warning"))
    }

    @Test func csvHasOneRowPerRun() throws {
        let lines = try syntheticReport().csv.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 1 + 12 + 1, "header, twelve runs, final newline")
        #expect(lines[0] == "variant,seed,status,test_top1,test_top1_best,final_top1,best_top1,epochs,wall_seconds,resumed,validates_on_test,error,"
                + "test_top1_swa,test_top1_ema,test_top1_snapshot_ensemble")
        #expect(lines[4] == "cyclical,0,finished,90.5000,90.4000,91.2000,91.4000,2,11.00,false,false,,,,")
        #expect(lines[8] == "lonely,1,failed,,,,,0,,false,,training diverged,,,")
        #expect(lines[10] == "legacy,0,finished,,,90.1000,90.3000,2,12.00,false,,,,,")
    }

    /// The cyclical runs' snapshot ensembles score 91.0, 90.9 and 90.7 against final models of 90.5,
    /// 90.6 and 90.1: paired differences 0.5, 0.3, 0.6, mean 0.4667, sd 0.1528, so the 95 % interval is
    /// 0.4667 ± t(0.975, 2)·0.1528/√3 = 0.4667 ± 0.3795.
    @Test func otherModelsAreComparedWithTheFinalModelOfTheSameRuns() throws {
        var report = try syntheticReport()
        let ensembles: [UInt64: Double] = [0: 91.0, 1: 90.9, 2: 90.7]
        report.runs = report.runs.map { run in
            var run = run
            if run.variant == "cyclical" { run.testTop1SnapshotEnsemble = ensembles[run.seed] }
            if run.variant == "constant" && run.seed == 0 { run.testTop1SWA = 90.0 }
            return run
        }
        let others = report.otherModels
        #expect(others.map { "\($0.variant) \($0.model.rawValue)" } == ["constant swa", "cyclical snapshot_ensemble"])
        #expect(others[0].test == nil && others[0].testTop1.count == 1, "one run: no test")
        let ensemble = try #require(others[1].test)
        #expect(ensemble.kind == .paired && others[1].pairedSeeds == [0, 1, 2])
        #expect(abs(ensemble.difference - 1.4 / 3) < 1e-9)
        let interval = ensemble.confidenceInterval()
        #expect(abs(interval.lower - (1.4 / 3 - 0.37948)) < 1e-4 && abs(interval.upper - (1.4 / 3 + 0.37948)) < 1e-4)
        #expect(report.markdown.contains("| cyclical | Snapshot ensemble | 3 | 90.87 ± 0.15 | +0.47 [+0.09, +0.85] |"))
        #expect(report.html.contains("<table id=\"other-models\">"))
        #expect(report.csv.split(separator: "\n")[4].hasSuffix(",,,91.0000"))
        #expect(!(try syntheticReport()).markdown.contains("Other models"), "no section without other models")
    }

    @Test func tableCSVHasTheFiguresUnrounded() throws {
        let lines = try syntheticReport().tableCSV.split(separator: "\n")
        #expect(lines.count == 1 + 4)
        let header = lines[0].split(separator: ",").map(String.init)
        #expect(header.prefix(6) == ["variant", "baseline", "finished_runs", "unfinished_runs", "seeds", "test_top1_mean"])
        let cyclical = Dictionary(uniqueKeysWithValues: zip(header, lines[2].split(separator: ",", omittingEmptySubsequences: false).map(String.init)))
        #expect(cyclical["variant"] == "cyclical" && cyclical["test"] == "paired" && cyclical["seeds_for_80_power"] == "13")
        #expect(abs(try #require(Double(cyclical["ci95_low"] ?? "")) + 0.6071460255584215) < 1e-8)
        #expect(abs(try #require(Double(cyclical["p"] ?? "")) - 0.26676442489324104) < 1e-9)
        #expect(cyclical["df"] == "2")
    }

    @Test func aRunJSONFromBeforeTestScoringStillReads() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try """
            {"best_top1": 83.9, "error": null, "final_top1": 83.17, "phases": [], "program": "pretrain", "resumed": false,
             "seed": 0, "status": "finished", "variant": "constant", "wall_seconds": 60.5}
            """.write(to: folder.appendingPathComponent("run.json"), atomically: true, encoding: .utf8)
        let record = try #require(RunRecord.read(folder: folder.path))
        #expect(record.finalTop1 == 83.17 && record.testTop1 == nil && record.testTop1Best == nil && record.validatesOnTest == nil)
    }

    @Test func htmlIsWellFormedWithOneCurvePerVariant() throws {
        let html = try syntheticReport().html
        let parser = XMLParser(data: Data(html.utf8))
        let counts = ReportParser()
        parser.delegate = counts
        #expect(parser.parse(), "report.html is not well-formed: \(String(describing: parser.parserError))")
        #expect(counts.curvesByFigure["accuracy"] == ["constant", "cyclical", "lonely", "legacy"])
        #expect(counts.curvesByFigure["loss"] == ["constant", "cyclical", "lonely", "legacy"])
        // Bands need two runs: lonely has one.
        #expect(counts.bandsByFigure["accuracy"] == 3)
        // Only weight_decay changes; learning_rate is listed as the same everywhere.
        #expect(counts.curvesByFigure["knobs"] == ["constant", "cyclical", "lonely", "legacy"])
        #expect(html.contains("<code>learning_rate</code> 0.05"))
        #expect(counts.tableRows["results"] == 1 + 4)
        #expect(counts.tableRows["variants"] == 1 + 4)
        #expect(counts.tableRows["runs"] == 1 + 12 + 1, "header, twelve runs, and the failed run's error")
        #expect(html.contains("<h2>Results: test top-1 of the final model</h2>"))
        #expect(html.contains("cyclical vs constant, test top-1 of the final model: paired t-test over seeds 0, 1, 2 (n = 3): "
            + "Δ = +0.33 points, 95 % CI [-0.61, +1.27], t = 1.52, ν = 2, p = 0.267. 13 seeds would resolve this Δ at 80 % power "
            + "(two-sided α = 0.05, sd of the per-seed differences 0.38)."))
        #expect(html.contains("lonely vs constant, test top-1 of the final model: no test"))
        #expect(html.contains("epicycle compare synthetic.yaml --jobs 2"))
        let withoutNamespaces = html.replacingOccurrences(of: "xmlns=\"http://www.w3.org/2000/svg\"", with: "")
        #expect(!withoutNamespaces.contains("http") && !withoutNamespaces.contains("src="), "nothing is fetched from the network")
    }
}
