import EpicycleRuntime
import Foundation

extension Checkpoint {
    /// A readable summary for `epicycle inspect`: the file header, architecture, parameter count,
    /// each tensor's name, shape and dtype, optimizer, training state, metrics and recipe.
    /// - Parameter listingEveryTensor: list every tensor; otherwise lists longer than 12 show their
    ///   first 8 and last 3 entries around a "… N more" line.
    public func summary(listingEveryTensor: Bool = false) -> String {
        var lines = ["\(sourceName)  (\(Checkpoint.formatName) v\(Checkpoint.formatVersion), written \(created), "
                     + "Epicycle \(softwareVersion))"]
        lines += labelled("architecture", architecture)
        lines.append("classes: \(numClasses)")
        lines.append("parameters: \(formatCount(model.parameterCount)) in \(counted(model.parameters.count, "tensor"))")
        lines += tensorTable(model.parameters.map { ($0.name, $0.tensor.shape, "float32") }, all: listingEveryTensor)
        lines.append("buffers: \(counted(model.buffers.count, "tensor"))")
        lines += tensorTable(model.buffers.map(bufferRow), all: listingEveryTensor)

        if let optimizer {
            let settings = optimizer.hyperparameters.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                + optimizer.counters.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
            lines.append("optimizer: " + ([optimizer.kind] + settings).joined(separator: ", ")
                         + "; \(counted(optimizer.tensors.count, "state tensor"))")
            lines += tensorTable(optimizer.tensors.map { ($0.name, $0.tensor.shape, "float32") }, all: listingEveryTensor)
        }
        if let adapters {
            lines.append("adapters: \(formatCount(adapters.parameterCount)) parameters in "
                         + "\(counted(adapters.parameters.count, "tensor")), \(counted(adapters.buffers.count, "buffer"))")
            lines += tensorTable(adapters.parameters.map { ($0.name, $0.tensor.shape, "float32") }
                                 + adapters.buffers.map(bufferRow), all: listingEveryTensor)
        }
        if let training {
            let best = training.bestTop1.map { String(format: "%.2f %%", $0) } ?? "not yet measured"
            lines.append("training: program \(training.program.rawValue), epoch \(training.epoch), step \(training.step), "
                         + "cycle position \(String(format: "%.4g", training.cyclePosition)), seed \(training.seed), best top-1 \(best)")
            let metrics = training.metrics
            lines.append("metrics: \(metrics.rows.count) rows of " + metrics.columns.joined(separator: ", "))
            if let last = metrics.rows.last {
                lines.append("  last: " + zip(metrics.columns, last).map { "\($0) \(String(format: "%.4g", $1))" }
                    .joined(separator: ", "))
            }
            lines += labelled("recipe", training.recipe)
        }
        return lines.joined(separator: "\n")
    }

    private func bufferRow(_ buffer: (name: String, value: Buffer.Value)) -> (String, [Int], String) {
        switch buffer.value {
        case let .float32(tensor): return (buffer.name, tensor.shape, "float32")
        case .int64: return (buffer.name, [], "int64")
        }
    }
}

/// "label: text" for one line, otherwise the label alone and the text indented below it.
private func labelled(_ label: String, _ text: String) -> [String] {
    let textLines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        .reversed().drop { $0.isEmpty }.reversed()
    guard textLines.count > 1 else { return ["\(label): \(textLines.first ?? "")"] }
    return ["\(label):"] + textLines.map { "  " + $0 }
}

/// "1 tensor", "3 tensors".
private func counted(_ count: Int, _ noun: String) -> String {
    "\(count) \(noun)\(count == 1 ? "" : "s")"
}

/// Scalar counts as PyTorch people quote them: "0.27 M" from ten thousand up.
private func formatCount(_ count: Int) -> String {
    count >= 10_000 ? String(format: "%.2f M", Double(count) / 1e6) : "\(count)"
}

/// Aligned rows of name, shape and dtype, folded to the first 8 and last 3 beyond 12 rows.
private func tensorTable(_ rows: [(name: String, shape: [Int], dtype: String)], all: Bool) -> [String] {
    let (head, tail, hidden) = all || rows.count <= 12
        ? (rows[...], rows[rows.endIndex...], 0)
        : (rows.prefix(8), rows.suffix(3), rows.count - 11)
    let shown = head + tail
    let nameWidth = shown.map(\.name.count).max() ?? 0
    let shapeWidth = shown.map { describeShape($0.shape).count }.max() ?? 0
    func line(_ row: (name: String, shape: [Int], dtype: String)) -> String {
        let shape = describeShape(row.shape)
        return "  " + row.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  "
            + shape.padding(toLength: shapeWidth, withPad: " ", startingAt: 0) + "  " + row.dtype
    }
    return head.map(line) + (hidden > 0 ? ["  … \(hidden) more (--all lists every tensor)"] : []) + tail.map(line)
}
