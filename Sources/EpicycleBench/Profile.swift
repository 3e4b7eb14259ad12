import Dispatch
import EpicycleRuntime

// Times each layer type of the ResNet-20 training step on its own, at the step's shapes (batch 128),
// and multiplies by how often the network uses it; the rest of the step (pooling, classifier, loss,
// optimizer, glue) is the difference to the measured step.
func profileTrainingStep(threads: Int, repeats: Int, precision: Precision) throws -> String {
    setThreads(threads)
    // Built first, so that the layers below run under the same allocator settings as the model's.
    let step = try makeStep(.training, precision: precision)
    var generator = RandomGenerator(seed: 2)
    struct Entry { var name: String; var count: Int; var forward: Double; var backward: Double }
    var entries: [Entry] = []

    func time(_ body: () throws -> Void) rethrows -> Double {
        try body()
        var samples: [Double] = []
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        return median(samples)
    }
    func add(_ name: String, count: Int, forward: () throws -> Tensor, backward: (Tensor) -> Void) throws {
        var output = Tensor(zeros: [0])
        let forwardTime = try time { output = try forward() }
        let dOutput = Tensor(repeating: 0.01, shape: output.shape)
        let backwardTime = time { backward(dOutput) }
        entries.append(Entry(name: name, count: count, forward: forwardTime, backward: backwardTime))
    }
    func activation(_ size: Int, _ channels: Int) -> Tensor {
        var generator = RandomGenerator(seed: UInt64(size * channels))
        return Tensor(shape: [128, size, size, channels], scalars: (0..<(128 * size * size * channels)).map { _ in generator.nextNormal() })
    }

    // The stem's backward is its weight gradient only: the images need no gradient.
    let convolutions: [(String, Int, Int, Int, Int, Int)] = [
        ("conv 3×3 3→16 @32² (weight gradient only)", 1, 32, 3, 16, 1), ("conv 3×3 16→16 @32²", 6, 32, 16, 16, 1),
        ("conv 3×3 16→32 /2 @32²", 1, 32, 16, 32, 2), ("conv 3×3 32→32 @16²", 5, 16, 32, 32, 1),
        ("conv 3×3 32→64 /2 @16²", 1, 16, 32, 64, 2), ("conv 3×3 64→64 @8²", 5, 8, 64, 64, 1),
    ]
    for (name, count, size, inputChannels, outputChannels, stride) in convolutions {
        let layer = Conv2D(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: 3, stride: stride,
                           padding: 1, generator: &generator)
        layer.precision = precision
        let input = activation(size, inputChannels)
        let isStem = inputChannels == 3
        try add(name, count: count, forward: { try layer.forward(input, mode: .training) },
                backward: { if isStem { layer.accumulateParameterGradients($0) } else { _ = layer.backward($0) } })
    }
    // Per stage: each block's bn1 + ReLU (and the stem's) and bn2 + shortcut add + ReLU.
    for (size, channels) in [(32, 16), (16, 32), (8, 64)] {
        let input = activation(size, channels), residual = activation(size, channels)
        let norm = BatchNorm2D(channels: channels)
        try add("batch norm + ReLU \(channels) @\(size)²", count: channels == 16 ? 4 : 3,
                forward: { try norm.forwardReLU(input, mode: .training) },
                backward: { _ = norm.backwardThroughReLU($0) })
        try add("batch norm + add + ReLU \(channels) @\(size)²", count: 3,
                forward: { try norm.forwardReLU(input, adding: residual, mode: .training) },
                backward: { _ = norm.backwardThroughReLU($0) })
    }

    let total = try time { try step() }
    let accounted = entries.reduce(0) { $0 + Double($1.count) * ($1.forward + $1.backward) }
    var rows = [["layer (ResNet-20, batch 128)", "count", "forward ms", "backward ms", "total ms", "share"]]
    for entry in entries {
        let sum = Double(entry.count) * (entry.forward + entry.backward)
        rows.append([entry.name, "\(entry.count)", String(format: "%.2f", entry.forward), String(format: "%.2f", entry.backward),
                     String(format: "%.1f", sum), String(format: "%.0f %%", 100 * sum / total)])
    }
    rows.append(["rest (option-A shortcuts, pooling, classifier, loss, SGD, glue)", "", "", "",
                 String(format: "%.1f", total - accounted), String(format: "%.0f %%", 100 * (total - accounted) / total)])
    rows.append(["training step (measured)", "", "", "", String(format: "%.1f", total), "100 %"])
    return "Per-layer profile, \(precision.rawValue), \(threads) threads, medians of \(repeats):\n" + formatTable(rows)
}
