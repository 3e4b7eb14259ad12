import EpicycleRuntime

/// Unlabeled images seen twice, as consistency training (FixMatch) needs them: the same images under a
/// weak and under a strong augmentation, normalised as the labeled batches are.
public struct TwoViewBatch: Sendable, Equatable {
    public var weak: Tensor  // [N, H, W, C]
    public var strong: Tensor  // [N, H, W, C]
    /// Where each image came from in the unlabeled pool.
    public var sampleIndices: [Int]  // [N]

    public var count: Int { sampleIndices.count }
}

/// Batches of an unlabeled pool for the steps of a labeled epoch.
///
/// The pool and the labeled set differ in size, so the unlabeled images do not follow the labeled
/// epochs: within labeled epoch e, the pool is visited in a sequence of fresh random orders (visit 0, 1,
/// …), and batch b of size n takes positions b·n ..< (b + 1)·n of that sequence. Every batch is a pure
/// function of (seed, e, b, n, strength) — the order of visit r from a stream derived from (seed, e, r),
/// each view of an image from one derived from (seed, e, r, view, the image's pool index) — so a
/// resumed run skips batches without drawing them, and the views of one image differ.
public final class UnlabeledLoader: Sendable {
    public let pool: ImageDataset
    public let normalization: ChannelStatistics
    public let weakPolicy: AugmentationPolicy
    public let strongPolicy: AugmentationPolicy
    public let seed: UInt64

    /// - Parameters:
    ///   - pool: the unlabeled images; their labels are never read.
    ///   - normalization: the labeled training images' statistics, so both feed the model alike.
    public init(pool: ImageDataset, normalization: ChannelStatistics, weakPolicy: AugmentationPolicy,
                strongPolicy: AugmentationPolicy, seed: UInt64) {
        precondition(pool.count > 0, "UnlabeledLoader: the pool is empty")
        precondition(normalization.mean.count == pool.channels,
                     "UnlabeledLoader: normalization has \(normalization.mean.count) channels, the images \(pool.channels)")
        self.pool = pool
        self.normalization = normalization
        self.weakPolicy = weakPolicy
        self.strongPolicy = strongPolicy
        self.seed = seed
    }

    private enum StreamKey {
        static let order: UInt64 = 0, weak: UInt64 = 1, strong: UInt64 = 2
    }

    /// Batch `index` (from 0) of `size` images for labeled epoch `epoch`, both views at `strength`;
    /// only its `rows` when given (a process's block of it: the same images and views as in the whole).
    public func batch(_ index: Int, epoch: Int, size: Int, strength: Float, rows: Range<Int>? = nil) -> TwoViewBatch {
        precondition(index >= 0 && size > 0, "UnlabeledLoader: batch \(index) of size \(size)")
        precondition(rows.map { $0.lowerBound >= 0 && $0.upperBound <= size } ?? true, "UnlabeledLoader: rows \(rows!) of \(size)")
        precondition((0...1).contains(strength), "UnlabeledLoader: augmentation strength \(strength) is outside [0, 1]")
        let epochStream = RandomGenerator(seed: seed).derived(UInt64(bitPattern: Int64(epoch)))
        let first = index * size
        var visits: [(visit: Int, sample: Int)] = []
        var visit = first / pool.count, order = self.order(epochStream, visit: visit)
        for position in first..<(first + size) {
            if position / pool.count != visit {
                visit = position / pool.count
                order = self.order(epochStream, visit: visit)
            }
            visits.append((visit, order[position % pool.count]))
        }
        if let rows { visits = Array(visits[rows]) }
        let indices = visits.map(\.sample)
        let workspace = AugmentationWorkspace(height: pool.height, width: pool.width, channels: pool.channels)
        func render(_ policy: AugmentationPolicy, view: UInt64) -> Tensor {
            var scalars = [Float](repeating: 0, count: visits.count * pool.imageSize)
            scalars.withUnsafeMutableBufferPointer { output in
                // Each slot renders one image; the generator is keyed by the slot's visit and pool index.
                for (slot, entry) in visits.enumerated() {
                    let stream = epochStream.derived(UInt64(entry.visit)).derived(view).derived(UInt64(entry.sample))
                    renderImages([entry.sample], of: pool, normalization: normalization, policy: policy, strength: strength,
                                 workspace: workspace, into: output.baseAddress! + slot * pool.imageSize) { _ in stream }
                }
            }
            return Tensor(shape: [visits.count] + pool.imageShape, scalars: scalars)
        }
        return TwoViewBatch(weak: render(weakPolicy, view: StreamKey.weak), strong: render(strongPolicy, view: StreamKey.strong),
                            sampleIndices: indices)
    }

    /// The order of visit `visit` through the pool within an epoch.
    private func order(_ epochStream: RandomGenerator, visit: Int) -> [Int] {
        var generator = epochStream.derived(UInt64(visit)).derived(StreamKey.order)
        return shuffledIndices(pool.count, using: &generator)
    }
}
