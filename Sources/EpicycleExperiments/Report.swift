import EpicycleCheckpoint
import EpicycleTraining
import Foundation

/// One variant's runs aggregated over seeds.
public struct VariantSummary: Sendable {
    public var name: String
    public var overrides: [String]
    public var isBaseline: Bool
    public var finishedRuns: Int
    /// Runs that failed or have not finished.
    public var unfinishedRuns: Int
    /// Test top-1 (%) of the final model (the weights after the last epoch), over the finished runs
    /// that recorded one: the headline figure.
    public var testTop1: SampleSummary?
    /// Test top-1 (%) of `best.h5`, the epoch chosen on validation.
    public var testTop1Best: SampleSummary?
    /// Validation top-1 (%) after the last epoch, over the finished runs.
    public var finalTop1: SampleSummary?
    /// Best validation top-1 (%) over the epochs, over the finished runs.
    public var bestTop1: SampleSummary?
    public var wallSeconds: SampleSummary?
    /// Test top-1 of the final model minus the baseline's: the test's difference when there is a test,
    /// else the difference of the means; nil for the baseline itself or when a side has no test score.
    public var differenceToBaseline: Double?
    /// The test of that difference: paired over `pairedSeeds` when the variant and the baseline both
    /// finished two or more of the same seeds, Welch's otherwise; nil for the baseline or below two
    /// scored runs a side.
    public var test: DifferenceTest?
    /// The seeds the paired test pairs (empty for Welch's test or none).
    public var pairedSeeds: [UInt64]
    /// How many seeds `test` needs to resolve the observed difference at 80 % power, two-sided α = 0.05.
    public var seedsFor80Power: SeedsForPower?
    /// Finished runs that recorded no test score (run.json written before test scoring).
    public var runsWithoutTestScore: Int
}

/// Aggregates run records per variant, in `variants` order, comparing each variant's test top-1 of
/// the final model with `baseline`'s. Non-finite scores (a hand-edited or corrupt run.json) count as missing.
public func summarize(runs: [RunRecord], variants: [Variant], baseline: String) -> [VariantSummary] {
    func finished(_ name: String) -> [RunRecord] {
        runs.filter { $0.variant == name && $0.status == .finished }
    }
    func summary(_ values: [Double?]) -> SampleSummary? {
        let finite = values.compactMap { $0 }.filter(\.isFinite)
        return finite.isEmpty ? nil : SampleSummary(finite)
    }
    let baselineRuns = finished(baseline)
    return variants.map { variant in
        let done = finished(variant.name)
        let isBaseline = variant.name == baseline
        let testTop1 = summary(done.map(\.testTop1))
        let (test, pairedSeeds) = isBaseline ? (nil, []) : compareTestTop1(done, with: baselineRuns)
        let baselineMean = summary(baselineRuns.map(\.testTop1))?.mean
        return VariantSummary(
            name: variant.name, overrides: variant.overrides, isBaseline: isBaseline, finishedRuns: done.count,
            unfinishedRuns: runs.filter { $0.variant == variant.name }.count - done.count,
            testTop1: testTop1, testTop1Best: summary(done.map(\.testTop1Best)),
            finalTop1: summary(done.map(\.finalTop1)), bestTop1: summary(done.map(\.bestTop1)),
            wallSeconds: summary(done.map(\.wallSeconds)),
            differenceToBaseline: isBaseline ? nil
                : test?.difference ?? testTop1.flatMap { mean in baselineMean.map { mean.mean - $0 } },
            test: test, pairedSeeds: pairedSeeds, seedsFor80Power: test?.seedsForPower(),
            runsWithoutTestScore: done.filter { !($0.testTop1?.isFinite ?? false) }.count)
    }
}

/// The test of `runs`' test top-1 (final model) against `baseline`'s: paired over the seeds both
/// scored when there are two or more (same seed, same initialisation and data order), else Welch's.
func compareTestTop1(_ runs: [RunRecord], with baseline: [RunRecord]) -> (DifferenceTest?, [UInt64]) {
    func scores(_ runs: [RunRecord]) -> [UInt64: Double] {
        Dictionary(runs.compactMap { run in run.testTop1.flatMap { $0.isFinite ? (run.seed, $0) : nil } },
                   uniquingKeysWith: { first, _ in first })
    }
    let variant = scores(runs), reference = scores(baseline)
    let shared = variant.keys.filter { reference[$0] != nil }.sorted()
    if shared.count >= 2 {
        return (DifferenceTest(paired: shared.map { variant[$0]! }, shared.map { reference[$0]! }), shared)
    }
    return (DifferenceTest(welch: variant.keys.sorted().map { variant[$0]! }, reference.keys.sorted().map { reference[$0]! }), [])
}

/// The outputs of a comparison: the Markdown and CSV tables, the CSV of every run and the HTML report.
public struct ComparisonReport: Sendable {
    public var name: String
    public var program: String
    public var recipeOrigin: String
    public var seeds: [UInt64]
    public var baseline: String
    public var variants: [Variant]
    public var runs: [RunRecord]
    public var summaries: [VariantSummary]
    /// The command that produced it, shown in the report.
    public var command: String
    public var created: Date

    public init(experiment: Experiment, runs: [RunRecord], command: String, created: Date = Date()) {
        name = experiment.name
        program = experiment.program.rawValue
        // Shown relative to the working directory where possible: committed reports stay readable elsewhere.
        let here = FileManager.default.currentDirectoryPath + "/"
        let origin = experiment.recipe.origin
        recipeOrigin = origin.hasPrefix(here) ? String(origin.dropFirst(here.count)) : origin
        seeds = experiment.seeds
        baseline = experiment.baseline
        variants = experiment.variants
        self.runs = runs
        summaries = summarize(runs: runs, variants: experiment.variants, baseline: experiment.baseline)
        self.command = command
        self.created = created
    }

    // MARK: Table

    static let columns = ["Variant", "Seeds", "Test top-1, final model (%)", "Δ vs baseline [95 % CI]", "Test", "p",
                          "Seeds for 80 % power", "Test top-1, best.h5 (%)", "Val. top-1, final (%)", "Val. top-1, best (%)",
                          "Wall time / run"]

    /// The table's cells, one row per variant, as text. "—" marks what a run did not record (test
    /// scores of runs from before test scoring) and what does not apply to the baseline; "n/a" what
    /// too few finished runs cannot give.
    public var rows: [[String]] {
        summaries.map { summary in
            var name = summary.name + (summary.isBaseline ? " (baseline)" : "")
            if summary.unfinishedRuns > 0 {
                name += " [\(summary.finishedRuns) of \(summary.finishedRuns + summary.unfinishedRuns) runs]"
            }
            let noScores = summary.finishedRuns > 0 && summary.testTop1 == nil
            func testCell(_ text: String?) -> String { summary.isBaseline ? "—" : text ?? (noScores ? "—" : "n/a") }
            var difference = summary.differenceToBaseline.map { String(format: "%+.2f", $0) }
            if let test = summary.test, let text = difference {
                let interval = test.confidenceInterval()
                difference = text + String(format: " [%+.2f, %+.2f]", interval.lower, interval.upper)
            }
            return [
                name, String(summary.testTop1?.count ?? 0),
                noScores ? "—" : meanAndDeviation(summary.testTop1),
                testCell(difference), testCell(summary.test.map(testName)), testCell(summary.test.map { formatPValue($0.pValue) }),
                testCell(summary.seedsFor80Power?.description),
                noScores ? "—" : meanAndDeviation(summary.testTop1Best),
                meanAndDeviation(summary.finalTop1), meanAndDeviation(summary.bestTop1),
                summary.wallSeconds.map { formatDuration($0.mean) } ?? "n/a",
            ]
        }
    }

    /// Runs whose validation split was the test split, as "variant/seed-N".
    public var runsValidatedOnTest: [String] {
        runs.filter { $0.validatesOnTest == true }.map(\.label)
    }

    /// The plain warning every table and report carries when selection saw the test images; nil otherwise.
    var validationOnTestWarning: String? {
        let labels = runsValidatedOnTest
        guard !labels.isEmpty else { return nil }
        return "Validation was the test split in \(labels.count) of \(runs.count) runs (\(labels.joined(separator: ", "))): "
            + "best.h5 and the validation columns were chosen and measured on the test images, so their test top-1 "
            + "is optimistic and is not a held-out result."
    }

    var caption: String {
        var text = "Test top-1 of the final model (the weights after the last epoch), scored once on the test split at the end "
            + "of each run: mean ± sample standard deviation over the finished runs of seeds \(seeds.map(String.init).joined(separator: ", ")) "
            + "(Seeds: how many). Δ is the difference to the baseline, \(baseline), with its 95 % confidence interval and "
            + "two-sided p: a paired t-test over the seeds both finished (the same seed gives both the same initialisation "
            + "and data order), or Welch's t-test when fewer than two seeds are shared (n/a below two finished runs a side). "
            + "Seeds for 80 % power: the smallest number of seeds at which that test would resolve the observed Δ at "
            + "two-sided α = 0.05, taking the observed spread as the truth (paired: exact, noncentral t; Welch: seeds per "
            + "variant, noncentral-t approximation). Secondary: test top-1 of best.h5 (the epoch chosen on validation) "
            + "and validation top-1 after the last epoch (final) and at the best epoch (best)."
        if summaries.contains(where: { $0.runsWithoutTestScore > 0 }) {
            text += " — in a test column: the runs were recorded before test scoring and have no test top-1."
        }
        return text
    }

    /// `table.md`: the paper-style table, mean ± std per variant.
    public var markdown: String {
        var out = "## \(name)\n\nProgram `\(program)`, base recipe `\(recipeOrigin)`, \(seeds.count) seed\(seeds.count == 1 ? "" : "s") per variant.\n\n"
        if let warning = validationOnTestWarning { out += "**Warning:** \(warning)\n\n" }
        out += "| " + Self.columns.joined(separator: " | ") + " |\n"
        out += "|:--" + String(repeating: "|--:", count: Self.columns.count - 1) + "|\n"
        for row in rows { out += "| " + row.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |\n" }
        out += "\n" + caption + "\n"
        let others = otherModelsMarkdown
        return others.isEmpty ? out : out + "\n" + others
    }

    /// `table.csv`: the table's figures unrounded, one row per variant.
    public var tableCSV: String {
        var out = "variant,baseline,finished_runs,unfinished_runs,seeds,test_top1_mean,test_top1_std,test_top1_best_mean,"
            + "test_top1_best_std,val_top1_final_mean,val_top1_final_std,val_top1_best_mean,val_top1_best_std,delta,"
            + "ci95_low,ci95_high,test,t,df,p,seeds_for_80_power,validated_on_test,wall_seconds_mean\n"
        func number(_ value: Double?) -> String { value.map { String(format: "%.10g", $0) } ?? "" }
        func pair(_ summary: SampleSummary?) -> [String] { [number(summary?.mean), number(summary?.standardDeviation)] }
        for summary in summaries {
            let interval = summary.test?.confidenceInterval()
            let validatedOnTest = runs.contains { $0.variant == summary.name && $0.validatesOnTest == true }
            var fields = [summary.name, String(summary.isBaseline), String(summary.finishedRuns), String(summary.unfinishedRuns),
                          String(summary.testTop1?.count ?? 0)]
            fields += pair(summary.testTop1) + pair(summary.testTop1Best) + pair(summary.finalTop1) + pair(summary.bestTop1)
            fields += [number(summary.differenceToBaseline), number(interval?.lower), number(interval?.upper),
                       summary.test?.kind.rawValue ?? "", number(summary.test?.t), number(summary.test?.degreesOfFreedom),
                       number(summary.test?.pValue), summary.seedsFor80Power?.description ?? "",
                       String(validatedOnTest), number(summary.wallSeconds?.mean)]
            out += fields.map(csvField).joined(separator: ",") + "\n"
        }
        return out
    }

    /// `runs.csv`: one row per run. Test and validation figures are empty where a run did not record them.
    public var csv: String {
        var out = "variant,seed,status,test_top1,test_top1_best,final_top1,best_top1,epochs,wall_seconds,resumed,validates_on_test,error,"
            + OtherModel.allCases.map { "test_top1_\($0.rawValue)" }.joined(separator: ",") + "\n"
        func percent(_ value: Double?) -> String { value.map { String(format: "%.4f", $0) } ?? "" }
        for run in runs {
            let epochs = run.phases.reduce(0) { $0 + $1.history.count }
            let fields = [run.variant, String(run.seed), run.status.rawValue, percent(run.testTop1), percent(run.testTop1Best),
                          percent(run.finalTop1), percent(run.bestTop1), String(epochs),
                          run.wallSeconds.map { String(format: "%.2f", $0) } ?? "", String(run.resumed),
                          run.validatesOnTest.map(String.init) ?? "", run.error ?? ""]
                + OtherModel.allCases.map { percent(run[keyPath: $0.testTop1]) }
            out += fields.map(csvField).joined(separator: ",") + "\n"
        }
        return out
    }

    /// One sentence per variant on its test against the baseline and the seeds 80 % power needs.
    var statisticsNotes: [String] {
        summaries.filter { !$0.isBaseline }.map { summary in
            let head = "\(summary.name) vs \(baseline), test top-1 of the final model: "
            guard let test = summary.test, let seedsFor80Power = summary.seedsFor80Power else {
                return head + "no test (it needs two finished runs with a test score on each side)."
            }
            let interval = test.confidenceInterval()
            let sample = test.kind == .paired
                ? "paired t-test over seeds \(summary.pairedSeeds.map(String.init).joined(separator: ", ")) (n = \(test.counts[0]))"
                : "Welch's t-test (\(test.counts[0]) and \(test.counts[1]) seeds)"
            var text = head + sample + String(format: ": Δ = %+.2f points, 95 %% CI [%+.2f, %+.2f], t = %.3g, ν = %.3g, p = %@. ",
                                              test.difference, interval.lower, interval.upper, test.t, test.degreesOfFreedom,
                                              formatPValue(test.pValue))
            let spread = test.kind == .paired
                ? String(format: "sd of the per-seed differences %.2f", test.variances[0].squareRoot())
                : String(format: "sample sd %.2f and %.2f", test.variances[0].squareRoot(), test.variances[1].squareRoot())
            switch seedsFor80Power {
            case let .seeds(n):
                text += "\(n) seeds\(test.kind == .welch ? " per variant" : "") would resolve this Δ at 80 % power "
                    + "(two-sided α = 0.05, \(spread))."
            case let .moreThan(limit):
                text += "More than \(limit) seeds would be needed to resolve this Δ at 80 % power (\(spread))."
            case let .notApplicable(reason):
                text += "Seeds for 80 % power: n/a (\(reason))."
            }
            return text
        }
    }

    // MARK: Curves

    /// Mean and band (± sample std) over a variant's finished runs of an epoch metric, the phases
    /// laid end to end; nil without finished runs.
    func curve(_ variant: String, _ metric: (EpochRecord) -> Double) -> LineChart.Series? {
        let histories = runs.filter { $0.variant == variant && $0.status == .finished }.map { $0.phases.flatMap(\.history) }
        guard let length = histories.map(\.count).min(), length > 0 else { return nil }
        var mean: [Double] = [], lower: [Double] = [], upper: [Double] = []
        for epoch in 0..<length {
            let summary = SampleSummary(histories.map { metric($0[epoch]) })
            mean.append(summary.mean)
            lower.append(summary.mean - (summary.standardDeviation ?? 0))
            upper.append(summary.mean + (summary.standardDeviation ?? 0))
        }
        return LineChart.Series(name: variant, x: (1...length).map(Double.init), y: mean,
                                band: histories.count > 1 ? (lower, upper) : nil)
    }

    /// Dashed lines where a later phase starts (e.g. fine-tuning after pretraining).
    var phaseMarkers: [(x: Double, label: String)] {
        guard let run = runs.first(where: { $0.status == .finished }), run.phases.count > 1 else { return [] }
        var markers: [(x: Double, label: String)] = [], epochs = 0
        for (previous, phase) in zip(run.phases, run.phases.dropFirst()) {
            epochs += previous.history.count
            markers.append((x: Double(epochs) + 0.5, label: phase.name))
        }
        return markers
    }

    /// Per knob, each variant's values per epoch (from its first finished run), and which knobs
    /// never change in any variant (with their value).
    var knobSchedules: (varying: [(knob: String, series: [LineChart.Series])], constant: [(knob: String, value: Double)]) {
        let firstRuns = variants.compactMap { variant in runs.first { $0.variant == variant.name && $0.status == .finished } }
        // The budget columns are not schedules: the tradeoff section plots them.
        let names = Set(firstRuns.flatMap { $0.phases.flatMap { $0.history.flatMap(\.knobs.keys) } })
            .subtracting(TradeoffColumns.all).sorted()
        var varying: [(knob: String, series: [LineChart.Series])] = [], constant: [(knob: String, value: Double)] = []
        for knob in names {
            let series = firstRuns.map { run in
                let values = run.phases.flatMap(\.history).map { $0.knobs[knob] ?? .nan }
                return LineChart.Series(name: run.variant, x: (1...max(values.count, 1)).map(Double.init), y: values)
            }
            let values = Set(series.flatMap(\.y).map { $0.isNaN ? Double.infinity : $0 })
            if values.count == 1, let value = values.first, value.isFinite {
                constant.append((knob, value))
            } else {
                varying.append((knob, series))
            }
        }
        return (varying, constant)
    }

    // MARK: HTML

    /// `report.html`: one self-contained page (inline SVG and CSS, nothing fetched) with the table, each
    /// variant's test against the baseline and the seeds 80 % power needs, validation curves per variant
    /// (mean and ± std band over seeds), the accuracy-vs-budget curves from the cycle ends, the knob and
    /// loss-term schedules, the variants' overrides,
    /// every run, and how to reproduce it. Well-formed XML, so it also parses as XHTML.
    public var html: String {
        var out = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8"/>
            <title>\(escapeHTML(name)) · Epicycle comparison</title>
            <style>
            body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
            table { border-collapse: collapse; margin: 1em 0; }
            th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
            th:first-child, td:first-child { text-align: left; }
            td.text { text-align: left; font-family: monospace; }
            th.text { text-align: left; }
            figure { margin: 1em 0; }
            .meta, .caption { color: #555; font-size: 0.9em; }
            .warning { background: #fff3cd; border-left: 4px solid #D55E00; padding: 0.5em 0.8em; }
            pre { background: #f4f4f4; padding: 0.6em; overflow-x: auto; }
            </style>
            </head>
            <body>
            <h1>\(escapeHTML(name))</h1>
            <p class="meta">Program <code>\(escapeHTML(program))</code> · base recipe <code>\(escapeHTML(recipeOrigin))</code> · \
            seeds \(seeds.map(String.init).joined(separator: ", ")) · baseline <code>\(escapeHTML(baseline))</code></p>

            """
        if let warning = validationOnTestWarning {
            out += "<p class=\"warning\" id=\"validation-on-test\"><strong>Warning:</strong> \(escapeHTML(warning))</p>\n"
        }
        out += "<h2>Results: test top-1 of the final model</h2>\n<table id=\"results\">\n<tr>"
            + Self.columns.map { "<th>\(escapeHTML($0))</th>" }.joined() + "</tr>\n"
        for row in rows { out += "<tr>" + row.map { "<td>\(escapeHTML($0))</td>" }.joined() + "</tr>\n" }
        out += "</table>\n<p class=\"caption\">\(escapeHTML(caption))</p>\n"
        let notes = statisticsNotes
        if !notes.isEmpty {
            out += "<h2>Statistics</h2>\n<ul id=\"statistics\">\n" + notes.map { "<li>\(escapeHTML($0))</li>\n" }.joined() + "</ul>\n"
        }
        out += otherModelsHTML

        out += "<h2>Validation curves</h2>\n"
        let accuracy = LineChart(title: "Validation top-1 (%), mean ± std over seeds", xLabel: "epoch",
                                 series: variants.compactMap { curve($0.name, \.validationTop1) }, markers: phaseMarkers,
                                 width: 1000, height: 360)
        let loss = LineChart(title: "Validation loss, mean ± std over seeds", xLabel: "epoch",
                             series: variants.compactMap { curve($0.name, \.validationLoss) }, markers: phaseMarkers,
                             width: 1000, height: 300)
        out += "<figure id=\"accuracy\">\n\(accuracy.svg)</figure>\n<figure id=\"loss\">\n\(loss.svg)</figure>\n"
        out += tradeoffHTML

        let knobs = knobSchedules
        out += "<h2>Knob and loss-term schedules</h2>\n"
        if !knobs.varying.isEmpty {
            let charts = knobs.varying.map {
                LineChart(title: $0.knob, xLabel: "epoch", series: $0.series, markers: phaseMarkers, width: 500, height: 240)
            }
            out += "<figure id=\"knobs\">\n\(svgGrid(charts, columns: 2))</figure>\n"
        }
        if !knobs.constant.isEmpty {
            out += "<p>The same in every variant and epoch: "
                + knobs.constant.map { "<code>\(escapeHTML($0.knob))</code> \(formatValue($0.value))" }.joined(separator: ", ") + ".</p>\n"
        }

        out += "<h2>Variants</h2>\n<table id=\"variants\">\n<tr><th>Variant</th><th class=\"text\">Overrides of the base recipe</th></tr>\n"
        for variant in variants {
            let overrides = variant.overrides.isEmpty ? "(none)" : variant.overrides.joined(separator: "\n")
            out += "<tr><td>\(escapeHTML(variant.name))</td><td class=\"text\">\(escapeHTML(overrides).replacingOccurrences(of: "\n", with: "<br/>"))</td></tr>\n"
        }
        out += "</table>\n"

        out += "<h2>Runs</h2>\n<table id=\"runs\">\n<tr><th>Run</th><th>Status</th><th>Test top-1, final model (%)</th>"
            + "<th>Test top-1, best.h5 (%)</th><th>Val. top-1, final (%)</th><th>Val. top-1, best (%)</th><th>Epochs</th><th>Wall time</th></tr>\n"
        for run in runs {
            func percent(_ value: Double?, missing: String) -> String { value.map { String(format: "%.2f", $0) } ?? missing }
            // A finished run without test scores was recorded before test scoring.
            let noTest = run.status == .finished ? "—" : ""
            let status = run.status.rawValue + (run.resumed ? " (resumed)" : "") + (run.validatesOnTest == true ? " (validated on test)" : "")
            let cells = [run.label, status, percent(run.testTop1, missing: noTest), percent(run.testTop1Best, missing: noTest),
                         percent(run.finalTop1, missing: ""), percent(run.bestTop1, missing: ""),
                         String(run.phases.reduce(0) { $0 + $1.history.count }), run.wallSeconds.map(formatDuration) ?? ""]
            out += "<tr>" + cells.map { "<td>\(escapeHTML($0))</td>" }.joined() + "</tr>\n"
            if let error = run.error, run.status != .finished {
                out += "<tr><td></td><td class=\"text\" colspan=\"7\">\(escapeHTML(error))</td></tr>\n"
            }
        }
        out += "</table>\n"

        let stamp = ISO8601DateFormatter().string(from: created)
        out += "<h2>Reproduce</h2>\n<pre>\(escapeHTML(command.isEmpty ? "epicycle compare <experiment.yaml>" : command))</pre>\n"
        out += "<p class=\"meta\">Epicycle \(escapeHTML(epicycleSoftwareVersion)) · written \(stamp)</p>\n</body>\n</html>\n"
        return out
    }
}

/// "paired" or "Welch", as the table names the test.
private func testName(_ test: DifferenceTest) -> String {
    test.kind == .paired ? "paired" : "Welch"
}

private func meanAndDeviation(_ summary: SampleSummary?) -> String {
    guard let summary else { return "n/a" }
    return String(format: "%.2f ± ", summary.mean) + (summary.standardDeviation.map { String(format: "%.2f", $0) } ?? "n/a")
}

/// Three decimals, or "< 0.001".
func formatPValue(_ p: Double) -> String {
    p < 0.001 ? "< 0.001" : String(format: "%.3f", p)
}

private func formatValue(_ value: Double) -> String {
    value == value.rounded() && abs(value) < 1e9 ? String(Int(value)) : String(format: "%g", value)
}

func csvField(_ text: String) -> String {
    text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
        ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
}

func escapeHTML(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}
