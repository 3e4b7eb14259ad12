import EpicycleTraining
import Foundation
import FoundationXML
import Testing
@testable import EpicycleExperiments

/// Three variants over seeds 0–2 with made-up results: `constant` (baseline) and `cyclical` finish
/// every run; `lonely` finishes one and fails two.
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
        """, origin: "/tmp/synthetic.yaml")
    func epoch(_ number: Int, top1: Double, weightDecay: Double) -> EpochRecord {
        EpochRecord(epoch: number, step: number * 2, trainLoss: 1, trainTop1: 50, validationLoss: 2 - top1 / 100,
                    validationTop1: top1, validationTop5: 99, seconds: 1, imagesPerSecond: 100,
                    knobs: ["weight_decay": weightDecay, "learning_rate": 0.05])
    }
    func run(_ variant: String, _ seed: UInt64, final: Double, best: Double, wall: Double, weightDecay: [Double]) -> RunRecord {
        RunRecord(variant: variant, seed: seed, program: "pretrain", status: .finished, finalTop1: final, bestTop1: best,
                  wallSeconds: wall, phases: [.init(name: "", history: [
                      epoch(1, top1: best, weightDecay: weightDecay[0]), epoch(2, top1: final, weightDecay: weightDecay[1]),
                  ])])
    }
    let constant = [5e-4, 5e-4], cyclical = [1e-5, 8e-5]
    let runs = [
        run("constant", 0, final: 90.7, best: 90.9, wall: 10, weightDecay: constant),
        run("constant", 1, final: 90.8, best: 91.0, wall: 12, weightDecay: constant),
        run("constant", 2, final: 91.0, best: 91.1, wall: 14, weightDecay: constant),
        run("cyclical", 0, final: 91.2, best: 91.4, wall: 11, weightDecay: cyclical),
        run("cyclical", 1, final: 91.5, best: 91.6, wall: 12, weightDecay: cyclical),
        run("cyclical", 2, final: 90.9, best: 91.0, wall: 13, weightDecay: cyclical),
        run("lonely", 0, final: 89.0, best: 89.5, wall: 12, weightDecay: constant),
        RunRecord(variant: "lonely", seed: 1, program: "pretrain", status: .failed, error: "training diverged"),
        RunRecord(variant: "lonely", seed: 2, program: "pretrain", status: .running),
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
        #expect(summaries.map(\.name) == ["constant", "cyclical", "lonely"])
        let constant = summaries[0], cyclical = summaries[1], lonely = summaries[2]
        // constant: finals 90.7, 90.8, 91.0 → mean 90.8333…, sample std √(0.04667/2) = 0.152753.
        #expect(constant.isBaseline && constant.finishedRuns == 3 && constant.unfinishedRuns == 0)
        #expect(abs(constant.finalTop1!.mean - 90.83333333333333) < 1e-9)
        #expect(abs(constant.finalTop1!.standardDeviation! - 0.15275252316519375) < 1e-9)
        #expect(abs(constant.bestTop1!.mean - 91.0) < 1e-9 && abs(constant.bestTop1!.standardDeviation! - 0.1) < 1e-9)
        #expect(constant.wallSeconds!.mean == 12)
        #expect(constant.differenceToBaseline == nil && constant.welch == nil)
        // cyclical: finals 91.2, 91.5, 90.9 → mean 91.2, std 0.3; Δ = 0.36667; Welch p from
        // scipy.stats.ttest_ind([91.2, 91.5, 90.9], [90.7, 90.8, 91.0], equal_var=False) = 0.15656879695677764.
        #expect(abs(cyclical.finalTop1!.mean - 91.2) < 1e-9 && abs(cyclical.finalTop1!.standardDeviation! - 0.3) < 1e-9)
        #expect(abs(cyclical.bestTop1!.mean - 91.33333333333333) < 1e-9)
        #expect(abs(cyclical.bestTop1!.standardDeviation! - 0.3055050463303875) < 1e-9)
        #expect(abs(cyclical.differenceToBaseline! - 0.36666666666667425) < 1e-9)
        #expect(abs(cyclical.welch!.pValue - 0.15656879695677764) < 1e-9)
        // lonely: one finished run of three: a mean, no std, a difference but no test.
        #expect(lonely.finishedRuns == 1 && lonely.unfinishedRuns == 2)
        #expect(lonely.finalTop1 == SampleSummary([89.0]) && lonely.finalTop1?.standardDeviation == nil)
        #expect(abs(lonely.differenceToBaseline! - (89.0 - 90.83333333333333)) < 1e-9)
        #expect(lonely.welch == nil)
    }

    @Test func tableIsInThePapersStyle() throws {
        let report = try syntheticReport()
        #expect(report.rows == [
            ["constant (baseline)", "90.83 ± 0.15", "91.00 ± 0.10", "—", "—", "12s"],
            ["cyclical", "91.20 ± 0.30", "91.33 ± 0.31", "+0.37", "0.157", "12s"],
            ["lonely [1 of 3 runs]", "89.00 ± n/a", "89.50 ± n/a", "-1.83", "n/a", "12s"],
        ])
        let lines = report.markdown.split(separator: "\n")
        #expect(lines.contains("| Variant | Final top-1 (%) | Best top-1 (%) | Δ vs baseline | p (Welch) | Wall time / run |"))
        #expect(lines.contains("| cyclical | 91.20 ± 0.30 | 91.33 ± 0.31 | +0.37 | 0.157 | 12s |"))
        #expect(formatPValue(0.0004) == "< 0.001")
    }

    @Test func csvHasOneRowPerRun() throws {
        let lines = try syntheticReport().csv.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 1 + 9 + 1, "header, nine runs, final newline")
        #expect(lines[0] == "variant,seed,status,final_top1,best_top1,epochs,wall_seconds,resumed,error")
        #expect(lines[4] == "cyclical,0,finished,91.2000,91.4000,2,11.00,false,")
        #expect(lines[8] == "lonely,1,failed,,,0,,false,training diverged")
    }

    @Test func htmlIsWellFormedWithOneCurvePerVariant() throws {
        let html = try syntheticReport().html
        let parser = XMLParser(data: Data(html.utf8))
        let counts = ReportParser()
        parser.delegate = counts
        #expect(parser.parse(), "report.html is not well-formed: \(String(describing: parser.parserError))")
        #expect(counts.curvesByFigure["accuracy"] == ["constant", "cyclical", "lonely"])
        #expect(counts.curvesByFigure["loss"] == ["constant", "cyclical", "lonely"])
        // Bands need two runs: lonely has one.
        #expect(counts.bandsByFigure["accuracy"] == 2)
        // Only weight_decay changes; learning_rate is listed as the same everywhere.
        #expect(counts.curvesByFigure["knobs"] == ["constant", "cyclical", "lonely"])
        #expect(html.contains("<code>learning_rate</code> 0.05"))
        #expect(counts.tableRows["results"] == 1 + 3)
        #expect(counts.tableRows["variants"] == 1 + 3)
        #expect(counts.tableRows["runs"] == 1 + 9 + 1, "header, nine runs, and the failed run's error")
        #expect(html.contains("epicycle compare synthetic.yaml --jobs 2"))
        let withoutNamespaces = html.replacingOccurrences(of: "xmlns=\"http://www.w3.org/2000/svg\"", with: "")
        #expect(!withoutNamespaces.contains("http") && !withoutNamespaces.contains("src="), "nothing is fetched from the network")
    }
}
