import EpicycleRuntime

/// Images stored compactly as bytes, with integer labels: what every reader produces and every view
/// returns. Views (subsets, class lists, splits) are new values holding copies of the selected
/// samples, so a view is as fast to load from as the full dataset and has its own sample numbering.
public struct ImageDataset: Sendable, Equatable {
    /// The label of a sample in an unlabeled pool.
    public static let hiddenLabel: Int32 = -1

    /// Where the data came from and which views were taken, e.g. "fashion-mnist train, first 4000".
    public var name: String
    public let height: Int
    public let width: Int
    public let channels: Int
    /// One name per class; labels index this list.
    public private(set) var classNames: [String]
    public private(set) var pixels: [UInt8]  // [count, height, width, channels], 0 = black
    public private(set) var labels: [Int32]  // [count], in 0..<classCount or hiddenLabel

    /// - Precondition: `pixels` holds `labels.count` images of `height × width × channels` bytes, and
    ///   every label is a class index or `hiddenLabel`.
    public init(name: String, height: Int, width: Int, channels: Int, classNames: [String],
                pixels: [UInt8], labels: [Int32]) {
        precondition(height > 0 && width > 0 && channels > 0, "ImageDataset: empty image size")
        precondition(pixels.count == labels.count * height * width * channels,
                     "ImageDataset: \(pixels.count) bytes are not \(labels.count) images of \(height)×\(width)×\(channels)")
        precondition(labels.allSatisfy { $0 == Self.hiddenLabel || (0..<Int32(classNames.count)).contains($0) },
                     "ImageDataset: labels must lie in 0..<\(classNames.count) or be hidden")
        self.name = name
        self.height = height
        self.width = width
        self.channels = channels
        self.classNames = classNames
        self.pixels = pixels
        self.labels = labels
    }

    public var count: Int { labels.count }
    public var classCount: Int { classNames.count }
    /// Bytes per image: `height × width × channels`.
    public var imageSize: Int { height * width * channels }
    /// The image shape as the loader's batches carry it: `[height, width, channels]`.
    public var imageShape: [Int] { [height, width, channels] }

    /// How many samples carry each label (hidden labels are not counted).
    public func classCounts() -> [Int] {
        var counts = [Int](repeating: 0, count: classCount)
        for label in labels where label != Self.hiddenLabel { counts[Int(label)] += 1 }
        return counts
    }

    /// The samples at the given positions, in that order.
    /// - Precondition: every index is in `0..<count`.
    public func samples(at indices: [Int], name viewName: String? = nil) -> ImageDataset {
        var selected = [UInt8](repeating: 0, count: indices.count * imageSize)
        selected.withUnsafeMutableBufferPointer { destination in
            pixels.withUnsafeBufferPointer { source in
                for (position, index) in indices.enumerated() {
                    precondition((0..<count).contains(index), "ImageDataset.samples: index \(index) is outside 0..<\(count)")
                    let from = source.baseAddress! + index * imageSize
                    (destination.baseAddress! + position * imageSize).update(from: from, count: imageSize)
                }
            }
        }
        return ImageDataset(name: viewName ?? name, height: height, width: width, channels: channels,
                            classNames: classNames, pixels: selected, labels: indices.map { labels[$0] })
    }

    /// The first `count` samples, in order (the paper's "4K CIFAR-10" is `first(4000)` of the training set).
    public func first(_ sampleCount: Int) throws -> ImageDataset {
        guard (0...count).contains(sampleCount) else {
            throw DataError.invalidRequest("\(name): cannot take the first \(sampleCount) samples of \(count)")
        }
        return samples(at: Array(0..<sampleCount), name: "\(name), first \(sampleCount)")
    }

    /// The first `countPerClass` samples of every class, in their original order.
    /// - Throws: when a class has fewer samples than asked for.
    public func firstPerClass(_ countPerClass: Int) throws -> ImageDataset {
        let (chosen, _) = try splitPerClass(countPerClass)
        return samples(at: chosen, name: "\(name), first \(countPerClass) per class")
    }

    /// The samples of the listed classes, relabelled `0..<classes.count` in the order listed: e.g.
    /// classes `[0, 1, 2, 3, 4]` as a pretraining source and `[5, 6, 7, 8, 9]` as a fine-tuning target
    /// (where class 5 becomes label 0).
    public func classes(_ selected: [Int]) throws -> ImageDataset {
        // The message names the first bad entry, not the list, which may be long.
        if selected.isEmpty { throw DataError.invalidRequest("\(name): the class list is empty") }
        if let index = selected.firstIndex(where: { !(0..<classCount).contains($0) }) {
            throw DataError.invalidRequest(
                "\(name): class \(selected[index]) (entry \(index) of the class list) is not in 0..<\(classCount)")
        }
        var seen = Set<Int>()
        if let index = selected.firstIndex(where: { !seen.insert($0).inserted }) {
            throw DataError.invalidRequest("\(name): class \(selected[index]) is listed twice in the class list (entry \(index))")
        }
        var newLabel = [Int32](repeating: Self.hiddenLabel, count: classCount)
        for (position, original) in selected.enumerated() { newLabel[original] = Int32(position) }
        let indices = labels.indices.filter { labels[$0] != Self.hiddenLabel && newLabel[Int(labels[$0])] != Self.hiddenLabel }
        var view = samples(at: indices, name: "\(name), classes \(selected.map(String.init).joined(separator: ","))")
        view.labels = indices.map { newLabel[Int(labels[$0])] }
        view.classNames = selected.map { classNames[$0] }
        return view
    }

    /// A held-out validation split: `validationCount` samples drawn at random (reproducibly from
    /// `seed`) and the rest for training, each keeping the original order.
    public func validationSplit(count validationCount: Int, seed: UInt64) throws -> (training: ImageDataset, validation: ImageDataset) {
        guard (0...count).contains(validationCount) else {
            throw DataError.invalidRequest("\(name): cannot hold out \(validationCount) of \(count) samples for validation")
        }
        var generator = RandomGenerator(seed: seed)
        var isValidation = [Bool](repeating: false, count: count)
        for index in shuffledIndices(count, using: &generator).prefix(validationCount) { isValidation[index] = true }
        let training = labels.indices.filter { !isValidation[$0] }
        let validation = labels.indices.filter { isValidation[$0] }
        return (samples(at: training, name: "\(name), training part"),
                samples(at: validation, name: "\(name), validation part (\(validationCount), seed \(seed))"))
    }

    /// For semi-supervised use: the first `labeledPerClass` samples of every class keep their labels;
    /// all the others form an unlabeled pool whose labels are hidden.
    public func semiSupervisedSplit(labeledPerClass: Int) throws -> (labeled: ImageDataset, unlabeled: ImageDataset) {
        let (labeled, rest) = try split(firstPerClass: labeledPerClass)
        return (labeled, rest.withoutLabels())
    }

    /// The first `countPerClass` samples of every class (as `firstPerClass`), and all the others, each
    /// keeping its label and the original order.
    public func split(firstPerClass countPerClass: Int) throws -> (chosen: ImageDataset, rest: ImageDataset) {
        let (chosen, rest) = try splitPerClass(countPerClass)
        return (samples(at: chosen, name: "\(name), first \(countPerClass) per class"),
                samples(at: rest, name: "\(name), all but the first \(countPerClass) per class"))
    }

    /// The same images with every label hidden (`hiddenLabel`).
    public func withoutLabels() -> ImageDataset {
        var pool = self
        pool.labels = [Int32](repeating: Self.hiddenLabel, count: count)
        return pool
    }

    /// Per-channel mean and standard deviation of the pixel values scaled to [0, 1], over every
    /// pixel of every image (population standard deviation, as torchvision recipes compute it).
    public func channelStatistics() -> ChannelStatistics {
        var sums = [UInt64](repeating: 0, count: channels)
        var squareSums = [UInt64](repeating: 0, count: channels)
        pixels.withUnsafeBufferPointer { bytes in
            for channel in 0..<channels {
                var sum: UInt64 = 0, squareSum: UInt64 = 0
                var index = channel
                while index < bytes.count {
                    let value = UInt64(bytes[index])
                    sum &+= value
                    squareSum &+= value * value
                    index += channels
                }
                sums[channel] = sum
                squareSums[channel] = squareSum
            }
        }
        let valuesPerChannel = Double(max(count * height * width, 1))
        var mean = [Float](), deviation = [Float]()
        for channel in 0..<channels {
            let average = Double(sums[channel]) / valuesPerChannel
            let variance = max(Double(squareSums[channel]) / valuesPerChannel - average * average, 0)
            mean.append(Float(average / 255))
            deviation.append(Float(variance.squareRoot() / 255))
        }
        return ChannelStatistics(mean: mean, standardDeviation: deviation)
    }

    /// Positions of the first `perClass` samples of every class, and of all the others.
    private func splitPerClass(_ perClass: Int) throws -> (chosen: [Int], rest: [Int]) {
        guard perClass >= 0 else {
            throw DataError.invalidRequest("\(name): cannot take \(perClass) samples per class")
        }
        let available = classCounts()
        if let short = available.indices.first(where: { available[$0] < perClass }) {
            throw DataError.invalidRequest(
                "\(name): cannot take \(perClass) samples per class; class \(short) (\(classNames[short])) has \(available[short])")
        }
        var taken = [Int](repeating: 0, count: classCount)
        var chosen = [Int](), rest = [Int]()
        for (index, label) in labels.enumerated() {
            if label != Self.hiddenLabel && taken[Int(label)] < perClass {
                taken[Int(label)] += 1
                chosen.append(index)
            } else {
                rest.append(index)
            }
        }
        return (chosen, rest)
    }
}

/// Per-channel statistics of pixel values scaled to [0, 1]; the loader normalises every image to
/// `(x − mean) / standardDeviation` channel by channel.
public struct ChannelStatistics: Sendable, Equatable, Codable {
    public var mean: [Float]  // [channels]
    public var standardDeviation: [Float]  // [channels]

    public init(mean: [Float], standardDeviation: [Float]) {
        precondition(mean.count == standardDeviation.count, "ChannelStatistics: one mean and one deviation per channel")
        self.mean = mean
        self.standardDeviation = standardDeviation
    }

    /// Mean 0 and deviation 1: batches carry pixel values scaled to [0, 1].
    public static func identity(channels: Int) -> ChannelStatistics {
        ChannelStatistics(mean: .init(repeating: 0, count: channels), standardDeviation: .init(repeating: 1, count: channels))
    }
}

/// A uniformly random permutation of `0..<count` (Fisher–Yates).
func shuffledIndices(_ count: Int, using generator: inout RandomGenerator) -> [Int] {
    var indices = Array(0..<count)
    if count < 2 { return indices }
    for position in stride(from: count - 1, to: 0, by: -1) {
        // The modulo bias is below 2⁻⁴⁰ for any dataset that fits in memory.
        let other = Int(generator.next() % UInt64(position + 1))
        indices.swapAt(position, other)
    }
    return indices
}
