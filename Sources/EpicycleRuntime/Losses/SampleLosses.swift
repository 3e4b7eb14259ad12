/// Each sample's own loss and its gradient, before any reduction over the batch: what per-sample
/// weighting (data selection) needs, and what the batch mean of `ClassificationLoss` is reduced from.
///
/// The gradients are taken with respect to u = z / T (the tempered logits), so that the reduction
/// multiplies each of them by one factor w_n / (T·W) and rounds once; ∂loss_n/∂z_n = gradients_n / T.
public struct SampleLosses: Sendable, Equatable {
    public let samples: Int
    public let classes: Int
    /// T > 0 of the loss: ∂/∂z = ∂/∂u / T.
    public let temperature: Double
    /// loss_n.
    public var values: [Double]  // [N]
    /// ∂loss_n/∂u_n, row-major.
    public var gradients: [Double]  // [N, K]

    public init(samples: Int, classes: Int, temperature: Double, values: [Double], gradients: [Double]) {
        precondition(values.count == samples && gradients.count == samples * classes,
                     "SampleLosses: \(values.count) values and \(gradients.count) gradients for [\(samples), \(classes)]")
        self.samples = samples
        self.classes = classes
        self.temperature = temperature
        self.values = values
        self.gradients = gradients
    }

    /// The batch mean (1/N)·Σ_n loss_n and its gradient.
    public func mean() -> LossResult {
        weightedMean(weights: nil, clip: nil)
    }

    /// L = Σ_n w_n·min(loss_n, c) / Σ_n w_n and its gradient ∂L/∂z_n = w_n·[loss_n ≤ c]·∂loss_n/∂z_n / Σ w.
    ///
    /// The weights are constants (not differentiated). The denominator is the weights' sum, so with
    /// 0/1 weights L is the plain mean over the kept samples, as `(w * l).sum() / w.sum()` computes it
    /// in PyTorch: dropping samples then changes which samples teach, not the step size. When every
    /// weight is 0 nothing is learnt from the batch: L = 0 with a zero gradient (where PyTorch's
    /// expression would give 0/0). Below the clip c the loss and its gradient are the sample's own;
    /// above it the sample adds the constant c and no gradient (at c, as `torch.clamp`, the gradient
    /// passes).
    /// - Parameters:
    ///   - weights: w_n ≥ 0, one per sample; nil weighs every sample 1.
    ///   - clip: c, or nil for no clipping.
    ///   - normaliser: the denominator in place of Σ w (a block of a batch split over processes divides
    ///     by the whole batch's, see `SampleSelection.apply`); nil: Σ w.
    public func weightedMean(weights: [Double]?, clip: Double?, normaliser: Double? = nil) -> LossResult {
        precondition(weights.map { $0.count == samples } ?? true, "SampleLosses: \(weights!.count) weights for \(samples) samples")
        let (N, K) = (samples, classes)
        let totalWeight = normaliser ?? weights?.reduce(0, +) ?? Double(N)
        var gradient = Tensor(zeros: [N, K])  // [N, K]
        guard totalWeight > 0 else { return LossResult(value: 0, gradient: gradient) }
        var total: Double = 0
        gradient.scalars.withUnsafeMutableBufferPointer { dz in
            for n in 0..<N {
                let weight = weights?[n] ?? 1
                guard weight != 0 else { continue }
                let clipped = clip.map { values[n] > $0 } ?? false
                total += weight * (clipped ? clip! : values[n])
                if clipped { continue }
                let scale = weight / (temperature * totalWeight)
                for k in 0..<K { dz[n * K + k] = Float(gradients[n * K + k] * scale) }
            }
        }
        return LossResult(value: Float(total / totalWeight), gradient: gradient)
    }

    /// λ·self + (1 − λ)·partner, sample by sample: the per-sample form of mixup's loss (see
    /// `ClassificationLoss.callAsFunction(logits:labels:partnerLabels:mixWeight:)`).
    func mixed(with partner: SampleLosses, weight lambda: Double) -> SampleLosses {
        var result = self
        for n in values.indices { result.values[n] = lambda * values[n] + (1 - lambda) * partner.values[n] }
        for i in gradients.indices { result.gradients[i] = lambda * gradients[i] + (1 - lambda) * partner.gradients[i] }
        return result
    }
}

/// The rows of a batch split over processes (`DataParallel`), for the per-sample reductions that must
/// see the whole batch: data selection ranks and normalises over it. The runtime knows nothing of how
/// the processes talk; training injects an implementation.
public protocol BatchRowGatherer: AnyObject {
    /// Every process's `values` (one per row of its block) in the whole batch's row order, and the
    /// rows of it that are this process's.
    func gatherRows(_ values: [Double]) -> (all: [Double], rows: Range<Int>)
    /// Every process's `values` summed (counts over each process's rows).
    func sum(_ values: [Double]) -> [Double]
}

/// Which samples of a batch a step learns from, decided from each sample's own loss (Smith 2022,
/// "General Cyclical Training of Neural Networks", §4.2: ease hard samples out early and late, in
/// during the middle). Every part is optional; with none set every sample counts fully.
///
/// A sample is kept when its loss is at most `lossThreshold` and it is among the ⌈φ·N⌉ easiest of the
/// batch (`keepFraction` φ; at least one); both read the unclipped loss. Kept samples weigh 1, the
/// others 0, and the batch loss is `SampleLosses.weightedMean` with `lossClip` as its clip.
public struct SampleSelection: Sendable, Equatable {
    /// Samples whose loss exceeds it get zero weight; nil: off.
    public var lossThreshold: Double?
    /// φ in (0, 1]: keep the easiest ⌈φ·N⌉ samples (ties go to the lower index); nil: off.
    public var keepFraction: Double?
    /// c > 0: each sample's loss is min(loss, c), so samples above c add no gradient; nil: off.
    public var lossClip: Double?

    public init(lossThreshold: Double? = nil, keepFraction: Double? = nil, lossClip: Double? = nil) {
        self.lossThreshold = lossThreshold
        self.keepFraction = keepFraction
        self.lossClip = lossClip
    }

    /// True when the selection changes nothing: the plain batch mean applies.
    public var isOff: Bool { lossThreshold == nil && keepFraction == nil && lossClip == nil }

    /// How many of `samples` the keep fraction keeps: ⌈φ·N⌉, at least 1. φ·N is shrunk by 1e-12 of
    /// itself first so that a product that should be whole (0.3·10 = 3.0000000000000004) is not rounded up.
    public func keptCount(of samples: Int) -> Int {
        guard let keepFraction else { return samples }
        let kept = (keepFraction * Double(samples) * (1 - 1e-12)).rounded(.up)
        return max(1, min(samples, Int(kept.isFinite ? kept : Double(samples))))
    }

    /// 1 for each kept sample, 0 for each dropped one.
    public func weights(losses: [Double]) -> [Double] {
        var weights = losses.map { loss in lossThreshold.map { loss <= $0 } ?? true ? 1.0 : 0.0 }
        let kept = keptCount(of: losses.count)
        if kept < losses.count {
            // Easiest first; a NaN loss ranks as the hardest, equal losses by index.
            let rank = losses.map { $0.isNaN ? Double.infinity : $0 }
            let order = losses.indices.sorted { rank[$0] < rank[$1] || (rank[$0] == rank[$1] && $0 < $1) }
            for n in order[kept...] { weights[n] = 0 }
        }
        return weights
    }

    /// The selected batch loss and how many samples it drops: those that add nothing to its gradient,
    /// weighted 0 or above the clip.
    ///
    /// For a block of a batch split over processes (`split`), the weights are those of the whole batch
    /// (ranked over every process's losses, ties by the whole batch's row), and the block's loss is
    /// L_r = Σ_{n in block} w_n·min(loss_n, c) / (W·n_r/B), with W = Σ w over the whole batch, n_r the
    /// block's rows and B the batch's: the data-parallel reduction weighs it by the block's share
    /// n_r/B, so the processes' sum is the whole batch's loss one process computes.
    public func apply(to losses: SampleLosses, across split: (any BatchRowGatherer)? = nil) -> (loss: LossResult, dropped: Int) {
        if isOff { return (losses.mean(), 0) }
        var weights: [Double], normaliser: Double?
        if let split {
            let (all, rows) = split.gatherRows(losses.values)
            let wholeBatch = self.weights(losses: all)
            weights = Array(wholeBatch[rows])
            normaliser = wholeBatch.reduce(0, +) * Double(rows.count) / Double(all.count)
        } else {
            weights = self.weights(losses: losses.values)
        }
        let dropped = zip(weights, losses.values).filter { weight, loss in weight == 0 || lossClip.map { loss > $0 } ?? false }.count
        return (losses.weightedMean(weights: weights, clip: lossClip, normaliser: normaliser), dropped)
    }
}
