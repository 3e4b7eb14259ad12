import EpicycleRuntime
import Foundation

extension Checkpoint {
    /// A readable summary for `epicycle inspect`: the file header, architecture, input pipeline and
    /// classes, parameter count, each tensor's name, shape and dtype, optimizer, training state, test
    /// scores, metrics and recipe.
    /// - Parameter listingEveryTensor: list every tensor and class; otherwise lists longer than 12 show their
    ///   first 8 and last 3 entries around a "… N more" line.
    public func summary(listingEveryTensor: Bool = false) -> String {
        var lines = ["\(sourceName)  (\(Checkpoint.formatName) v\(Checkpoint.formatVersion), written \(created), "
                     + "Epicycle \(softwareVersion))"]
        lines += labelled("architecture", architecture)
        lines.append("classes: \(numClasses)")
        if let input { lines += inputLines(input, all: listingEveryTensor) }
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
        for average in averages {
            lines.append("averaging: \(average.name) after \(average.updates) updates, "
                         + "\(counted(average.model.parameters.count, "tensor")), \(counted(average.model.buffers.count, "buffer"))")
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
            if let test = training.test {
                lines.append("test: \(test.last.images) images, final top-1 \(String(format: "%.2f", test.last.top1)) %, "
                             + "best.h5 (epoch \(test.bestEpoch)) \(String(format: "%.2f", test.best.top1)) %" + test.othersDescription)
            }
            lines += labelled("recipe", training.recipe)
        }
        return lines.joined(separator: "\n")
    }

    /// The `/data` record: image shape and normalisation, then output index ← dataset label (and name).
    private func inputLines(_ input: InputPipeline, all: Bool) -> [String] {
        func list(_ values: [Float]) -> String { "[" + values.map { String(format: "%.4g", $0) }.joined(separator: ", ") + "]" }
        let rows = input.classes.indices.map { index in
            "  \(index) ← \(input.classes[index])" + (input.classNames[index].isEmpty ? "" : " \(input.classNames[index])")
        }
        return ["data: \(input.dataset), \(input.height)×\(input.width)×\(input.channels), "
                + "mean \(list(input.mean)), std \(list(input.standardDeviation))",
                "  output index ← dataset label:"]
            + folded(rows, all: all, noun: "class").map { "  " + $0 }
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
    let shown = all || rows.count <= 12 ? rows[...] : rows.prefix(8) + rows.suffix(3)
    let nameWidth = shown.map(\.name.count).max() ?? 0
    let shapeWidth = shown.map { describeShape($0.shape).count }.max() ?? 0
    func line(_ row: (name: String, shape: [Int], dtype: String)) -> String {
        let shape = describeShape(row.shape)
        return "  " + row.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0) + "  "
            + shape.padding(toLength: shapeWidth, withPad: " ", startingAt: 0) + "  " + row.dtype
    }
    return folded(rows.map(line), all: all, noun: "tensor")
}

/// The lines themselves, or beyond 12 the first 8 and last 3 around a "… N more" line.
private func folded(_ lines: [String], all: Bool, noun: String) -> [String] {
    guard !all && lines.count > 12 else { return lines }
    return lines.prefix(8) + ["  … \(lines.count - 11) more (--all lists every \(noun))"] + lines.suffix(3)
}
