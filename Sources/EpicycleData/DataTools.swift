import EpicycleRuntime
import Foundation

extension DatasetSource {
    /// The dataset a command line names: an explicit `folder` (with its format, or recognised from the
    /// files), else a catalog `name`, else the default (Fashion-MNIST).
    public static func resolve(name: String?, folder: String?, format: DatasetFormat? = nil,
                               cifar100Labels: CIFAR100Labels = .fine,
                               imageFiles: ImageFileOptions = ImageFileOptions()) throws -> DatasetSource {
        if let folder {
            guard FileManager.default.fileExists(atPath: folder) else {
                throw DataError.missingFile(path: folder, hint: "Give the folder that holds the dataset's files.")
            }
            return DatasetSource(folder: folder, format: format, cifar100Labels: cifar100Labels, name: name, imageFiles: imageFiles)
        }
        return try named(name ?? defaultName, cifar100Labels: cifar100Labels)
    }
}

extension ImageDataset {
    /// Uniformly random images with random labels, for tests and benchmarks where no real data is needed.
    public static func synthetic(count: Int, height: Int, width: Int, channels: Int, classCount: Int = 10,
                                 seed: UInt64 = 0) -> ImageDataset {
        var generator = RandomGenerator(seed: seed)
        let pixels = (0..<(count * height * width * channels)).map { _ in UInt8(truncatingIfNeeded: generator.next() >> 56) }
        let labels = (0..<count).map { _ in Int32(generator.next() % UInt64(classCount)) }
        return ImageDataset(name: "synthetic", height: height, width: width,
                            channels: channels, classNames: (0..<classCount).map { "class \($0)" },
                            pixels: pixels, labels: labels)
    }
}

/// A report of a dataset's splits: sizes, image shape, per-class counts and per-channel statistics.
public func describeDataset(_ splits: DatasetSplits, source: DatasetSource) -> String {
    let training = splits.training, test = splits.test
    let statistics = training.channelStatistics()
    func numbers(_ values: [Float]) -> String { values.map { String(format: "%.4f", $0) }.joined(separator: ", ") }
    var lines = [
        "dataset:        \(source)",
        "images:         \(training.height)×\(training.width)×\(training.channels) bytes",
        "samples:        \(training.count) train, \(test.count) test",
        "classes:        \(training.classCount)",
        "channel mean:   [\(numbers(statistics.mean))] (training set, pixels scaled to [0, 1])",
        "channel std:    [\(numbers(statistics.standardDeviation))]",
        "",
        "class                train    test",
    ]
    let trainingCounts = training.classCounts(), testCounts = test.classCounts()
    for (label, name) in training.classNames.enumerated() {
        let title = "\(label) \(name)"
        lines.append(title.padding(toLength: max(18, title.count), withPad: " ", startingAt: 0)
                     + String(format: " %7d %7d", trainingCounts[label], testCounts[label]))
    }
    return lines.joined(separator: "\n")
}

/// The same samples at several augmentation strengths, as one picture: a panel of `rows × columns`
/// images per strength, panels side by side left to right, images enlarged `scale` times, on white.
/// The images are the first batch of a seeded shuffle, de-normalised back to pixels.
public func renderAugmentationGrid(dataset: ImageDataset, policy: AugmentationPolicy, strengths: [Float],
                                   rows: Int, columns: Int, scale: Int, seed: UInt64)
    -> (pixels: [UInt8], width: Int, height: Int, channels: Int) {
    precondition(rows > 0 && columns > 0 && scale > 0 && !strengths.isEmpty, "renderAugmentationGrid: empty grid")
    let statistics = dataset.channelStatistics()
    let loader = DataLoader(dataset: dataset, normalization: statistics, policy: policy, seed: seed, workerCount: 0)
    let (H, W, C) = (dataset.height, dataset.width, dataset.channels)
    let (gap, panelGap) = (2, 12)
    let panelWidth = columns * (W * scale + gap) - gap, panelHeight = rows * (H * scale + gap) - gap
    let width = strengths.count * (panelWidth + panelGap) - panelGap
    var picture = [UInt8](repeating: 255, count: width * panelHeight * C)
    let batchSize = min(rows * columns, dataset.count)
    for (panel, strength) in strengths.enumerated() {
        let images = loader.batch(0, epoch: 0, batchSize: batchSize, strength: strength).images.scalars  // [N, H, W, C]
        for slot in 0..<batchSize {
            let left = panel * (panelWidth + panelGap) + (slot % columns) * (W * scale + gap)
            let top = (slot / columns) * (H * scale + gap)
            for y in 0..<(H * scale) {
                for x in 0..<(W * scale) {
                    for c in 0..<C {
                        let value = images[((slot * H + y / scale) * W + x / scale) * C + c]
                        let pixel = (value * statistics.standardDeviation[c] + statistics.mean[c]) * 255
                        picture[((top + y) * width + left + x) * C + c] = UInt8(min(max(pixel.rounded(), 0), 255))
                    }
                }
            }
        }
    }
    return (picture, width, panelHeight, C)
}

/// `epicycle data show`: loads a dataset, writes the augmentation grid (strengths side by side) as a
/// PNG, and returns the dataset report with a line saying what the picture shows.
public func showDataset(_ source: DatasetSource, policy: AugmentationPolicy, strengths: [Float] = [0, 0.5, 1],
                        pictureAt path: String, rows: Int = 6, columns: Int = 6, scale: Int = 2, seed: UInt64 = 0) throws -> String {
    guard strengths.allSatisfy({ (0...1).contains($0) }) else {
        throw DataError.invalidRequest("augmentation strengths must lie in [0, 1], got \(strengths)")
    }
    let splits = try loadDataset(source)
    let grid = renderAugmentationGrid(dataset: splits.training, policy: policy, strengths: strengths,
                                      rows: rows, columns: columns, scale: scale, seed: seed)
    try writePNG(pixels: grid.pixels, width: grid.width, height: grid.height, channels: grid.channels, to: path)
    let panels = strengths.map { String(format: "%g", $0) }.joined(separator: ", ")
    return describeDataset(splits, source: source) + """


        wrote \(path) (\(grid.width)×\(grid.height)): the same \(rows * columns) training images under policy \
        '\(policy)' at strength \(panels), left to right
        """
}

/// Throughput of the loader: images per second over repeated timed runs.
public struct LoaderBenchmark: Sendable, CustomStringConvertible {
    public var datasetName: String
    public var imageShape: [Int]
    public var policy: AugmentationPolicy
    public var strength: Float
    public var batchSize: Int
    public var workerCount: Int
    /// One figure per repeat.
    public var imagesPerSecond: [Double]

    public var medianImagesPerSecond: Double {
        let sorted = imagesPerSecond.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    public var description: String {
        let runs = imagesPerSecond.map { String(format: "%.0f", $0) }.joined(separator: ", ")
        return """
            \(datasetName) \(imageShape.map(String.init).joined(separator: "×")), policy '\(policy)' at strength \
            \(strength), batch \(batchSize), \(workerCount) worker\(workerCount == 1 ? "" : "s"): \
            median \(String(format: "%.0f", medianImagesPerSecond)) img/s (runs: \(runs))
            """
    }
}

/// Times the loader making `batchesPerRepeat` batches (each repeat a fresh epoch, counted from the call
/// that starts its workers to the last batch received) `repeats` times.
public func benchmarkLoader(dataset: ImageDataset, policy: AugmentationPolicy, strength: Float, batchSize: Int,
                            batchesPerRepeat: Int, repeats: Int, workerCount: Int) -> LoaderBenchmark {
    precondition(repeats > 0 && batchesPerRepeat > 0, "benchmarkLoader: need at least one batch and one repeat")
    let loader = DataLoader(dataset: dataset, policy: policy, seed: 0, workerCount: workerCount)
    var rates = [Double]()
    for repeatIndex in 0..<repeats {
        let start = ContinuousClock.now
        var images = 0
        for batch in loader.epoch(repeatIndex, batchSize: batchSize, strength: strength).prefix(batchesPerRepeat) {
            images += batch.count
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        rates.append(Double(images) / seconds)
    }
    return LoaderBenchmark(datasetName: dataset.name, imageShape: dataset.imageShape, policy: policy, strength: strength,
                           batchSize: batchSize, workerCount: workerCount, imagesPerSecond: rates)
}
