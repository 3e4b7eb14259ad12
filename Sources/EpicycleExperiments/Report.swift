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
    /// Validation top-1 (%) after the last epoch, over the finished runs.
    public var finalTop1: SampleSummary?
    /// Best validation top-1 (%) over the epochs, over the finished runs.
    public var bestTop1: SampleSummary?
    public var wallSeconds: SampleSummary?
    /// Mean final top-1 minus the baseline's; nil for the baseline itself or when a side has no finished run.
    public var differenceToBaseline: Double?
    /// Welch's t-test of final top-1 against the baseline; nil when a side has fewer than two finished runs.
    public var welch: WelchTest?
}

/// Aggregates run records per variant, in `variants` order, comparing each with `baseline`.
public func summarize(runs: [RunRecord], variants: [Variant], baseline: String) -> [VariantSummary] {
    func finished(_ name: String) -> [RunRecord] {
        runs.filter { $0.variant == name && $0.status == .finished && $0.finalTop1 != nil }
    }
    let baselineFinal = finished(baseline).map { $0.finalTop1! }
    return variants.map { variant in
        let done = finished(variant.name)
        let final = done.map { $0.finalTop1! }
        let isBaseline = variant.name == baseline
        let best = done.compactMap(\.bestTop1), wall = done.compactMap(\.wallSeconds)
        return VariantSummary(
            name: variant.name, overrides: variant.overrides, isBaseline: isBaseline, finishedRuns: done.count,
            unfinishedRuns: runs.filter { $0.variant == variant.name }.count - done.count,
            finalTop1: final.isEmpty ? nil : SampleSummary(final), bestTop1: best.isEmpty ? nil : SampleSummary(best),
            wallSeconds: wall.isEmpty ? nil : SampleSummary(wall),
            differenceToBaseline: isBaseline || final.isEmpty || baselineFinal.isEmpty
                ? nil : SampleSummary(final).mean - SampleSummary(baselineFinal).mean,
            welch: isBaseline ? nil : WelchTest(final, baselineFinal))
    }
}

/// The outputs of a comparison: the Markdown table, the CSV of every run and the HTML report.
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

    static let columns = ["Variant", "Final top-1 (%)", "Best top-1 (%)", "Δ vs baseline", "p (Welch)", "Wall time / run"]

    /// The table's cells, one row per variant, as text.
    public var rows: [[String]] {
        summaries.map { summary in
            var name = summary.name + (summary.isBaseline ? " (baseline)" : "")
            if summary.unfinishedRuns > 0 {
                name += " [\(summary.finishedRuns) of \(summary.finishedRuns + summary.unfinishedRuns) runs]"
            }
            return [
                name, meanAndDeviation(summary.finalTop1), meanAndDeviation(summary.bestTop1),
                summary.isBaseline ? "—" : summary.differenceToBaseline.map { String(format: "%+.2f", $0) } ?? "n/a",
                summary.isBaseline ? "—" : summary.welch.map { formatPValue($0.pValue) } ?? "n/a",
                summary.wallSeconds.map { formatDuration($0.mean) } ?? "n/a",
            ]
        }
    }

    var caption: String {
        "Mean ± sample standard deviation over seeds \(seeds.map(String.init).joined(separator: ", ")) of the validation "
            + "top-1 after the last epoch (final) and at the best epoch (best). Δ and p compare final top-1 with the baseline, "
            + "\(baseline): difference of means and Welch's two-sided t-test (n/a below two finished runs)."
    }

    /// `table.md`: the paper-style table, mean ± std per variant.
    public var markdown: String {
        var out = "## \(name)\n\nProgram `\(program)`, base recipe `\(recipeOrigin)`, \(seeds.count) seed\(seeds.count == 1 ? "" : "s") per variant.\n\n"
        out += "| " + Self.columns.joined(separator: " | ") + " |\n"
        out += "|:--" + String(repeating: "|--:", count: Self.columns.count - 1) + "|\n"
        for row in rows { out += "| " + row.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |\n" }
        return out + "\n" + caption + "\n"
    }

    /// `runs.csv`: one row per run.
    public var csv: String {
        var out = "variant,seed,status,final_top1,best_top1,epochs,wall_seconds,resumed,error\n"
        for run in runs {
            let epochs = run.phases.reduce(0) { $0 + $1.history.count }
            let fields = [run.variant, String(run.seed), run.status.rawValue, run.finalTop1.map { String(format: "%.4f", $0) } ?? "",
                          run.bestTop1.map { String(format: "%.4f", $0) } ?? "", String(epochs),
                          run.wallSeconds.map { String(format: "%.2f", $0) } ?? "", String(run.resumed), run.error ?? ""]
            out += fields.map(csvField).joined(separator: ",") + "\n"
        }
        return out
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
        let names = Set(firstRuns.flatMap { $0.phases.flatMap { $0.history.flatMap(\.knobs.keys) } }).sorted()
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

    /// `report.html`: one self-contained page (inline SVG and CSS, nothing fetched) with the table,
    /// validation curves per variant (mean and ± std band over seeds), the knob schedules, the
    /// variants' overrides, every run, and how to reproduce it. Well-formed XML, so it also parses as XHTML.
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
            pre { background: #f4f4f4; padding: 0.6em; overflow-x: auto; }
            </style>
            </head>
            <body>
            <h1>\(escapeHTML(name))</h1>
            <p class="meta">Program <code>\(escapeHTML(program))</code> · base recipe <code>\(escapeHTML(recipeOrigin))</code> · \
            seeds \(seeds.map(String.init).joined(separator: ", ")) · baseline <code>\(escapeHTML(baseline))</code></p>

            """
        out += "<h2>Results</h2>\n<table id=\"results\">\n<tr>" + Self.columns.map { "<th>\(escapeHTML($0))</th>" }.joined() + "</tr>\n"
        for row in rows { out += "<tr>" + row.map { "<td>\(escapeHTML($0))</td>" }.joined() + "</tr>\n" }
        out += "</table>\n<p class=\"caption\">\(escapeHTML(caption))</p>\n"

        out += "<h2>Validation curves</h2>\n"
        let accuracy = LineChart(title: "Validation top-1 (%), mean ± std over seeds", xLabel: "epoch",
                                 series: variants.compactMap { curve($0.name, \.validationTop1) }, markers: phaseMarkers,
                                 width: 1000, height: 360)
        let loss = LineChart(title: "Validation loss, mean ± std over seeds", xLabel: "epoch",
                             series: variants.compactMap { curve($0.name, \.validationLoss) }, markers: phaseMarkers,
                             width: 1000, height: 300)
        out += "<figure id=\"accuracy\">\n\(accuracy.svg)</figure>\n<figure id=\"loss\">\n\(loss.svg)</figure>\n"

        let knobs = knobSchedules
        out += "<h2>Knob schedules</h2>\n"
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

        out += "<h2>Runs</h2>\n<table id=\"runs\">\n<tr><th>Run</th><th>Status</th><th>Final top-1 (%)</th><th>Best top-1 (%)</th><th>Epochs</th><th>Wall time</th></tr>\n"
        for run in runs {
            let cells = [run.label, run.status.rawValue + (run.resumed ? " (resumed)" : ""),
                         run.finalTop1.map { String(format: "%.2f", $0) } ?? "", run.bestTop1.map { String(format: "%.2f", $0) } ?? "",
                         String(run.phases.reduce(0) { $0 + $1.history.count }), run.wallSeconds.map(formatDuration) ?? ""]
            out += "<tr>" + cells.map { "<td>\(escapeHTML($0))</td>" }.joined() + "</tr>\n"
            if let error = run.error, run.status != .finished {
                out += "<tr><td></td><td class=\"text\" colspan=\"5\">\(escapeHTML(error))</td></tr>\n"
            }
        }
        out += "</table>\n"

        let stamp = ISO8601DateFormatter().string(from: created)
        out += "<h2>Reproduce</h2>\n<pre>\(escapeHTML(command.isEmpty ? "epicycle compare <experiment.yaml>" : command))</pre>\n"
        out += "<p class=\"meta\">Epicycle \(escapeHTML(epicycleSoftwareVersion)) · written \(stamp)</p>\n</body>\n</html>\n"
        return out
    }
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

private func csvField(_ text: String) -> String {
    text.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
        ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
}

func escapeHTML(_ text: String) -> String {
    text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}
