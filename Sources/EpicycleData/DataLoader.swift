import EpicycleRuntime
import Foundation

/// One batch as the training step consumes it.
///
/// With mixup or CutMix, the loss is `mixWeight · CE(labels) + (1 − mixWeight) · CE(partnerLabels)`;
/// without mixing, `partnerLabels` is nil and `mixWeight` is 1.
public struct Batch: Sendable, Equatable {
    /// Augmented images, normalised per channel to `(x − mean) / standardDeviation`.
    public var images: Tensor  // [N, H, W, C]
    public var labels: [Int32]  // [N]; ImageDataset.hiddenLabel in an unlabeled pool
    /// The labels of the images mixed into each image (the batch reversed), or nil when unmixed.
    public var partnerLabels: [Int32]?  // [N]
    /// λ, the weight of `labels` in a mixed batch (one value per batch, as timm does); 1 when unmixed.
    public var mixWeight: Float
    /// Where each image came from in the dataset.
    public var sampleIndices: [Int]  // [N]
    /// Where these rows stand in the batch they were cut from (a process's block of a batch split over
    /// processes); nil for a whole batch.
    public var block: BatchBlock?

    public var count: Int { labels.count }
}

/// Rows `rows` of a batch of `wholeCount` rows.
public struct BatchBlock: Sendable, Equatable {
    public var rows: Range<Int>
    public var wholeCount: Int

    public init(rows: Range<Int>, wholeCount: Int) {
        self.rows = rows
        self.wholeCount = wholeCount
    }
}

/// Shuffled, augmented, normalised batches of a dataset, prepared on the caller's thread or ahead on
/// background threads.
///
/// Batch size and augmentation strength are chosen per epoch by the caller's schedule:
///
///     let loader = DataLoader(dataset: splits.training, policy: .full, seed: 42)
///     for epoch in 0..<epochs {
///         for batch in loader.epoch(epoch, batchSize: schedule.batchSize(epoch), strength: schedule.strength(epoch)) {
///             step(batch.images, batch.labels, batch.partnerLabels, batch.mixWeight)
///         }
///     }
///
/// Every batch is a pure function of (seed, epoch, batch size, strength, batch index): the order comes
/// from a stream derived from (seed, epoch), each image's augmentation from one derived from (seed,
/// epoch, the image's dataset index), and mixing from one derived from (seed, epoch, batch index). So
/// the batches are identical whatever the number of worker threads.
public final class DataLoader: Sendable {
    public let dataset: ImageDataset
    public let normalization: ChannelStatistics
    public let policy: AugmentationPolicy
    public let seed: UInt64
    /// Whether each epoch visits the samples in a fresh random order (else in dataset order).
    public let shuffle: Bool
    /// Whether each epoch drops its last batch when it would be smaller than the batch size.
    public let dropLast: Bool
    /// Background threads preparing batches; 0 (the default) prepares each batch on the caller's thread
    /// when asked. A training run's threads (`setThreads`) all go to its kernels, so a worker would be
    /// one busy thread more than it was given; and a batch costs little next to the step that consumes
    /// it (Fashion-MNIST with crop, flip and cutout: 0.3 ms per 128 images on one core, measured with
    /// `epicycle data bench`, against ~100 ms for a ResNet-20 training step of 128 images on two).
    public let workerCount: Int
    /// How many batches the workers may prepare ahead of the one being consumed.
    public let prefetchCount: Int

    /// - Parameters:
    ///   - normalization: per-channel statistics to normalise with; computed from `dataset` when nil.
    ///     Give evaluation loaders the training set's statistics.
    ///   - policy: augmentations applied at the strength each epoch asks for.
    ///   - seed: the root of every random choice the loader makes.
    public init(dataset: ImageDataset, normalization: ChannelStatistics? = nil, policy: AugmentationPolicy = .none,
                seed: UInt64, shuffle: Bool = true, dropLast: Bool = false, workerCount: Int = 0, prefetchCount: Int = 3) {
        let statistics = normalization ?? dataset.channelStatistics()
        precondition(statistics.mean.count == dataset.channels, "DataLoader: normalization has \(statistics.mean.count) channels, the images \(dataset.channels)")
        precondition(workerCount >= 0 && prefetchCount >= 1, "DataLoader: need workerCount ≥ 0 and prefetchCount ≥ 1")
        self.dataset = dataset
        self.normalization = statistics
        self.policy = policy
        self.seed = seed
        self.shuffle = shuffle
        self.dropLast = dropLast
        self.workerCount = workerCount
        self.prefetchCount = prefetchCount
    }

    /// The number of batches an epoch of this batch size yields.
    public func batchCount(batchSize: Int) -> Int {
        precondition(batchSize > 0, "DataLoader: batch size must be positive, got \(batchSize)")
        return dropLast ? dataset.count / batchSize : (dataset.count + batchSize - 1) / batchSize
    }

    /// The order in which epoch `epoch` visits the dataset.
    public func order(epoch: Int) -> [Int] {
        guard shuffle else { return Array(0..<dataset.count) }
        var generator = epochStream(epoch).derived(StreamKey.order)
        return shuffledIndices(dataset.count, using: &generator)
    }

    /// The batches of one epoch, in order. Workers start preparing them at once; the sequence can be
    /// iterated once, and abandoning it stops the workers.
    /// - Parameters:
    ///   - strength: augmentation strength in [0, 1] for the whole epoch.
    public func epoch(_ epoch: Int, batchSize: Int, strength: Float = 0) -> EpochBatches {
        EpochBatches(maker: BatchMaker(loader: self, epoch: epoch, order: order(epoch: epoch), batchSize: batchSize,
                                       batchCount: batchCount(batchSize: batchSize), strength: strength))
    }

    /// One batch of an epoch, prepared on the caller's thread: the same value `epoch(_:batchSize:strength:)`
    /// yields at position `index`.
    public func batch(_ index: Int, epoch: Int, batchSize: Int, strength: Float = 0) -> Batch {
        let count = batchCount(batchSize: batchSize)
        precondition((0..<count).contains(index), "DataLoader: batch \(index) is outside 0..<\(count)")
        let maker = BatchMaker(loader: self, epoch: epoch, order: order(epoch: epoch), batchSize: batchSize,
                               batchCount: count, strength: strength)
        return maker.make(index, workspace: maker.workspace())
    }

    fileprivate enum StreamKey {
        static let order: UInt64 = 0, samples: UInt64 = 1, batches: UInt64 = 2
    }

    fileprivate func epochStream(_ epoch: Int) -> RandomGenerator {
        RandomGenerator(seed: seed).derived(UInt64(bitPattern: Int64(epoch)))
    }
}

/// Everything needed to build any batch of one epoch.
struct BatchMaker: Sendable {
    let loader: DataLoader
    let epoch: Int
    let order: [Int]
    let batchSize: Int
    let batchCount: Int
    let strength: Float

    init(loader: DataLoader, epoch: Int, order: [Int], batchSize: Int, batchCount: Int, strength: Float) {
        precondition((0...1).contains(strength), "DataLoader: augmentation strength \(strength) is outside [0, 1]")
        (self.loader, self.epoch, self.order, self.batchSize, self.batchCount, self.strength) =
            (loader, epoch, order, batchSize, batchCount, strength)
    }

    func workspace() -> AugmentationWorkspace {
        let dataset = loader.dataset
        return AugmentationWorkspace(height: dataset.height, width: dataset.width, channels: dataset.channels)
    }

    func make(_ index: Int, workspace: AugmentationWorkspace) -> Batch {
        let dataset = loader.dataset
        let indices = Array(order[(index * batchSize)..<min((index + 1) * batchSize, order.count)])
        let channels = dataset.channels
        let stream = loader.epochStream(epoch)
        let sampleStream = stream.derived(DataLoader.StreamKey.samples)

        var scalars = [Float](repeating: 0, count: indices.count * dataset.imageSize)
        let mixWeight = scalars.withUnsafeMutableBufferPointer { output -> Float? in
            renderImages(indices, of: dataset, normalization: loader.normalization, policy: loader.policy, strength: strength,
                         workspace: workspace, into: output.baseAddress!) { sampleStream.derived(UInt64($0)) }
            return loader.policy.mixBatch(output.baseAddress!, count: indices.count, height: dataset.height,
                                          width: dataset.width, channels: channels, strength: strength,
                                          generator: stream.derived(DataLoader.StreamKey.batches).derived(UInt64(index)))
        }
        let labels = indices.map { dataset.labels[$0] }
        return Batch(images: Tensor(shape: [indices.count, dataset.height, dataset.width, channels], scalars: scalars),
                     labels: labels, partnerLabels: mixWeight == nil ? nil : labels.reversed(),
                     mixWeight: mixWeight ?? 1, sampleIndices: indices)
    }
}

/// Augments the images at `indices` of `dataset` (image i with the generator `generator(sample)`)
/// and writes them normalised, one after another, to `output` ([indices.count, H, W, C]).
func renderImages(_ indices: [Int], of dataset: ImageDataset, normalization statistics: ChannelStatistics,
                  policy: AugmentationPolicy, strength: Float, workspace: AugmentationWorkspace,
                  into output: UnsafeMutablePointer<Float>, generator: (Int) -> RandomGenerator) {
    let imageSize = dataset.imageSize, channels = dataset.channels
    let fill = statistics.mean.map { $0 * 255 }
    let scale = statistics.standardDeviation.map { 1 / ($0 * 255) }
    dataset.pixels.withUnsafeBufferPointer { pixels in
        for (slot, sample) in indices.enumerated() {
            workspace.load(pixels.baseAddress! + sample * imageSize)
            policy.augmentImage(in: workspace, strength: strength, fill: fill, generator: generator(sample))
            let image = workspace.current, destination = output + slot * imageSize
            if channels == 1 {
                let (mean, factor) = (fill[0], scale[0])
                for i in 0..<imageSize { destination[i] = (image[i] - mean) * factor }
            } else {
                for p in 0..<(imageSize / channels) {
                    for c in 0..<channels { destination[p * channels + c] = (image[p * channels + c] - fill[c]) * scale[c] }
                }
            }
        }
    }
}

/// The batches of one epoch: a single-pass sequence fed by the loader's worker threads.
public final class EpochBatches: Sequence, IteratorProtocol {
    public let epoch: Int
    public let batchSize: Int
    public let strength: Float
    /// How many batches the epoch yields.
    public let count: Int

    private let maker: BatchMaker
    private let queue: PrefetchQueue?  // nil when batches are made on the caller's thread
    private lazy var callerWorkspace = maker.workspace()
    private var nextIndex = 0

    init(maker: BatchMaker) {
        self.maker = maker
        (epoch, batchSize, strength, count) = (maker.epoch, maker.batchSize, maker.strength, maker.batchCount)
        let workers = Swift.min(maker.loader.workerCount, maker.batchCount)
        guard workers > 0 else { queue = nil; return }
        let queue = PrefetchQueue(depth: maker.loader.prefetchCount)
        self.queue = queue
        // Worker w makes batches w, w + workers, …; the queue hands them out in order.
        for worker in 0..<workers {
            let thread = Thread { [maker] in
                let workspace = maker.workspace()
                for index in stride(from: worker, to: maker.batchCount, by: workers) {
                    guard queue.waitForRoom(index) else { return }
                    queue.put(maker.make(index, workspace: workspace), at: index)
                }
            }
            thread.name = "epicycle-loader-\(worker)"
            thread.start()
        }
    }

    deinit { queue?.cancel() }

    public func next() -> Batch? {
        guard nextIndex < count else { return nil }
        defer { nextIndex += 1 }
        guard let queue else { return maker.make(nextIndex, workspace: callerWorkspace) }
        return queue.take(nextIndex)
    }
}

/// Finished batches waiting to be consumed in order, at most `depth` ahead of the consumer.
private final class PrefetchQueue: @unchecked Sendable {
    // Every stored property is read and written only while `condition` is locked.
    private let condition = NSCondition()
    private let depth: Int
    private var ready: [Int: Batch] = [:]
    private var consumed = 0
    private var cancelled = false

    init(depth: Int) { self.depth = depth }

    /// Blocks until batch `index` may be prepared; false when the epoch was abandoned.
    func waitForRoom(_ index: Int) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        while !cancelled && index >= consumed + depth { condition.wait() }
        return !cancelled
    }

    func put(_ batch: Batch, at index: Int) {
        condition.lock()
        ready[index] = batch
        condition.broadcast()
        condition.unlock()
    }

    /// Blocks until batch `index` is ready and removes it.
    func take(_ index: Int) -> Batch {
        condition.lock()
        defer { condition.unlock() }
        while ready[index] == nil { condition.wait() }
        consumed = index + 1
        condition.broadcast()
        return ready.removeValue(forKey: index)!
    }

    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }
}
