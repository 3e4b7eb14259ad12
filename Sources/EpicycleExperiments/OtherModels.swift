import Foundation

/// A model a run leaves beside its final weights (recipe `averaging:` and `snapshots:`), scored on
/// the test split at the end of the run like the final model.
public enum OtherModel: String, CaseIterable, Sendable {
    case swa
    case ema
    case snapshotEnsemble = "snapshot_ensemble"

    /// How tables name it.
    public var title: String {
        switch self {
        case .swa: "SWA"
        case .ema: "EMA"
        case .snapshotEnsemble: "Snapshot ensemble"
        }
    }

    /// Its test top-1 in a run record (`test_top1_swa`, …).
    public var testTop1: KeyPath<RunRecord, Double?> {
        switch self {
        case .swa: \.testTop1SWA
        case .ema: \.testTop1EMA
        case .snapshotEnsemble: \.testTop1SnapshotEnsemble
        }
    }
}

/// One other model of a variant's runs against the final model of the same runs.
public struct OtherModelSummary: Sendable {
    public var variant: String
    public var model: OtherModel
    /// Its test top-1 (%) over the finished runs that recorded it.
    public var testTop1: SampleSummary
    /// Its test top-1 minus the final model's, paired over `pairedSeeds` (the runs that recorded both);
    /// nil below two such runs.
    public var test: DifferenceTest?
    public var pairedSeeds: [UInt64]
}

extension ComparisonReport {
    /// Every variant's other models, in variant then `OtherModel` order; empty when no run kept any.
    public var otherModels: [OtherModelSummary] {
        variants.flatMap { variant in
            let done = runs.filter { $0.variant == variant.name && $0.status == .finished }
            return OtherModel.allCases.compactMap { model -> OtherModelSummary? in
                let scored = done.compactMap { run in run[keyPath: model.testTop1].flatMap { $0.isFinite ? (run, $0) : nil } }
                guard !scored.isEmpty else { return nil }
                let pairs = scored.compactMap { run, other in run.testTop1.flatMap { $0.isFinite ? (run.seed, other, $0) : nil } }
                    .sorted { $0.0 < $1.0 }
                let test = pairs.count >= 2 ? DifferenceTest(paired: pairs.map(\.1), pairs.map(\.2)) : nil
                return OtherModelSummary(variant: variant.name, model: model, testTop1: SampleSummary(scored.map(\.1)),
                                         test: test, pairedSeeds: test == nil ? [] : pairs.map(\.0))
            }
        }
    }

    static let otherModelColumns = ["Variant", "Model", "Seeds", "Test top-1 (%)", "Δ vs final model [95 % CI]", "p"]

    /// The other models' table cells, one row per variant and model.
    var otherModelRows: [[String]] {
        otherModels.map { summary in
            let difference = summary.test.map { test in
                let interval = test.confidenceInterval()
                return String(format: "%+.2f [%+.2f, %+.2f]", test.difference, interval.lower, interval.upper)
            }
            let deviation = summary.testTop1.standardDeviation.map { String(format: " ± %.2f", $0) } ?? ""
            return [summary.variant, summary.model.title, String(summary.testTop1.count),
                    String(format: "%.2f", summary.testTop1.mean) + deviation, difference ?? "n/a",
                    summary.test.map { formatPValue($0.pValue) } ?? "n/a"]
        }
    }

    static let otherModelsCaption = "Test top-1 of the other models the runs kept (SWA and EMA of the weights, the "
        + "ensemble of the snapshots at the cycle ends, averaging softmax outputs), against the final model of the same "
        + "runs: Δ with its 95 % confidence interval and two-sided p from a paired t-test over the seeds that recorded "
        + "both (n/a below two)."

    /// The other models' section of `table.md`, "" when no run kept any.
    var otherModelsMarkdown: String {
        let rows = otherModelRows
        guard !rows.isEmpty else { return "" }
        var out = "### Other models of the same runs\n\n| " + Self.otherModelColumns.joined(separator: " | ") + " |\n"
        out += "|:--|:--" + String(repeating: "|--:", count: Self.otherModelColumns.count - 2) + "|\n"
        for row in rows { out += "| " + row.map { $0.replacingOccurrences(of: "|", with: "\\|") }.joined(separator: " | ") + " |\n" }
        return out + "\n" + Self.otherModelsCaption + "\n"
    }

    /// The other models' section of `report.html`, "" when no run kept any.
    var otherModelsHTML: String {
        let rows = otherModelRows
        guard !rows.isEmpty else { return "" }
        var out = "<h2>Other models of the same runs</h2>\n<table id=\"other-models\">\n<tr>"
            + Self.otherModelColumns.map { "<th>\(escapeHTML($0))</th>" }.joined() + "</tr>\n"
        for row in rows { out += "<tr>" + row.map { "<td>\(escapeHTML($0))</td>" }.joined() + "</tr>\n" }
        return out + "</table>\n<p class=\"caption\">\(escapeHTML(Self.otherModelsCaption))</p>\n"
    }
}
