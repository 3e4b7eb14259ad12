/// Sums batch-norm statistics over the processes that share one batch, so that each process normalises
/// its rows with the whole batch's statistics (synchronised batch norm in data-parallel training). The
/// runtime knows nothing of how the processes talk; training injects an implementation.
public protocol BatchStatisticsReducer: AnyObject {
    /// Replaces the forward pass's sums of this process's rows, [Σx (C), Σx² (C), rows], by their
    /// totals over the processes.
    func sumStatistics(_ sums: UnsafeMutableBufferPointer<Double>)
    /// Replaces the backward pass's sums, [Σg (C), Σg·(x − μ) (C)], by their totals over the processes,
    /// g being each process's gradient of its own share of the loss: the totals are returned in this
    /// process's units (see `DataParallel`).
    func sumGradientStatistics(_ sums: UnsafeMutableBufferPointer<Double>)
}

/// Batch normalisation over the channels of NHWC feature maps (Ioffe & Szegedy 2015), matching
/// PyTorch's `nn.BatchNorm2d` in state names, defaults and running-statistics update.
///
/// Training mode normalises with the batch statistics over N·H·W per channel (biased variance) and
/// updates the running statistics as PyTorch does:
/// running = (1 − momentum)·running + momentum·batch, with the unbiased batch variance (·n/(n − 1)),
/// and counts the batch in `num_batches_tracked`. Inference mode normalises with the running
/// statistics and caches nothing.
///
/// A batch norm whose γ and β are both frozen (`trainable == false`, as `finetune.freeze` leaves them)
/// is frozen as a whole, as timm's `freeze` makes it a `FrozenBatchNorm2d`: training mode too then
/// normalises with the running statistics and leaves them and `num_batches_tracked` unchanged, and its
/// backward is that fixed affine map's.
///
/// Input `[N, H, W, C]`, or `[N, C]` for heads (treated as H = W = 1, like `nn.BatchNorm1d`).
public final class BatchNorm2D: Layer {
    public let channels: Int
    public let momentum: Float
    public let epsilon: Float
    /// γ, ones. State name "weight".
    public let weight: Parameter  // [C]
    /// β, zeros. State name "bias".
    public let bias: Parameter  // [C]
    /// State name "running_mean", zeros.
    public let runningMean: Buffer  // .float32 [C]
    /// State name "running_var", ones.
    public let runningVariance: Buffer  // .float32 [C]
    /// State name "num_batches_tracked": training-mode batches seen.
    public let batchesTracked: Buffer  // .int64

    // What backward needs from the last training-mode forward: its input ([N, H, W, C] or [N, C]), the
    // output of a fused ReLU (same shape; nil without one), whether a residual was added, and whether it
    // normalised with the (frozen) running statistics instead of the batch's.
    private typealias Cache = (input: Tensor, reluOutput: Tensor?, hasResidual: Bool, fixedStatistics: Bool)
    private var cache: Cache?
    // The statistics the last training forward normalised with: the batch's, or the running ones when frozen.
    private var batchMean: [Float]  // [C]
    private var batchInverseStd: [Float]  // [C]
    private var batchVariance: [Float]  // [C], biased; scratch for the running-variance update
    /// While recalibrating: how many batches the running statistics average so far (nil: moving averages).
    private var averagedBatches: Int?
    /// Makes training-mode statistics those of a batch spread over several processes; nil: this
    /// process's rows alone.
    public var statisticsReducer: (any BatchStatisticsReducer)?
    /// The rows the last training forward's statistics covered (over all processes when synchronised).
    private var batchRows = 0

    /// - Parameters:
    ///   - channels: C, the last axis of the input.
    ///   - momentum: weight of the current batch in the running statistics (PyTorch's default 0.1).
    ///   - epsilon: added to the variance before the square root.
    public init(channels: Int, momentum: Float = 0.1, epsilon: Float = 1e-5) {
        precondition(channels > 0, "BatchNorm2D: channels must be positive, got \(channels)")
        self.channels = channels
        self.momentum = momentum
        self.epsilon = epsilon
        weight = Parameter(Tensor(repeating: 1, shape: [channels]), decays: false)
        bias = Parameter(Tensor(zeros: [channels]), decays: false)
        runningMean = Buffer(.float32(Tensor(zeros: [channels])))
        runningVariance = Buffer(.float32(Tensor(repeating: 1, shape: [channels])))
        batchesTracked = Buffer(.int64(0))
        batchMean = [Float](repeating: 0, count: channels)
        batchInverseStd = [Float](repeating: 0, count: channels)
        batchVariance = [Float](repeating: 0, count: channels)
    }

    public func collectState(into state: inout ModuleState) {
        state.add("weight", weight)
        state.add("bias", bias)
        state.add("running_mean", runningMean)
        state.add("running_var", runningVariance)
        state.add("num_batches_tracked", batchesTracked)
    }

    public func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        try forward(input, residual: nil, relu: false, mode: mode)
    }

    /// max(bn(x) + residual, 0) in one pass over memory (`residual` optional): the batch norm → ReLU
    /// of a convolution block, or the batch norm → shortcut add → ReLU that ends a residual block.
    /// Differentiate with `backwardThroughReLU`.
    /// - Throws: as `forward`, and when the residual's shape differs from the input's.
    public func forwardReLU(_ input: Tensor, adding residual: Tensor? = nil, mode: Mode) throws -> Tensor {
        if let residual, residual.shape != input.shape {
            throw RuntimeError.shapeMismatch(path: "", kind: "BatchNorm2D",
                                             expected: "a residual shaped like the input \(describeShape(input.shape))",
                                             found: residual.shape)
        }
        return try forward(input, residual: residual, relu: true, mode: mode)
    }

    private func forward(_ input: Tensor, residual: Tensor?, relu: Bool, mode: Mode) throws -> Tensor {
        let shape = input.shape
        guard shape.count == 4 || shape.count == 2, shape.last == channels else {
            throw RuntimeError.shapeMismatch(
                path: "", kind: "BatchNorm2D",
                expected: "[N, H, W, \(channels)] (NHWC) or [N, \(channels)]", found: shape)
        }
        let rows = input.count / channels
        guard rows > 0 else {
            cache = mode == .training ? (input, relu ? input : nil, residual != nil, isFrozen) : nil
            return input
        }
        let output: Tensor
        switch mode {
        case .training where isFrozen:
            batchMean = floats(of: runningMean, "running_mean")
            batchInverseStd = floats(of: runningVariance, "running_var").map { 1 / ($0 + epsilon).squareRoot() }
            output = normalize(input, rows: rows, mean: batchMean, inverseStd: batchInverseStd, residual: residual, relu: relu)
            cache = (input, relu ? output : nil, residual != nil, true)
        case .training:
            // As PyTorch: one value per channel has no variance to normalise by.
            guard rows > 1 else {
                throw RuntimeError.shapeMismatch(
                    path: "", kind: "BatchNorm2D",
                    expected: "[N, H, W, \(channels)] with N·H·W > 1 in training (one value per channel has no variance)",
                    found: shape)
            }
            let reducer = statisticsReducer
            batchRows = input.scalars.withUnsafeBufferPointer { x in
                batchNormStatistics(x.baseAddress!, rows: rows, channels: channels,
                                    mean: &batchMean, variance: &batchVariance, synchronize: reducer.map { $0.sumStatistics })
            }
            for c in 0..<channels { batchInverseStd[c] = 1 / (batchVariance[c] + epsilon).squareRoot() }
            output = normalize(input, rows: rows, mean: batchMean, inverseStd: batchInverseStd, residual: residual, relu: relu)
            updateRunningStatistics(rows: batchRows)
            // A fused ReLU's backward needs its output for the mask.
            cache = (input, relu ? output : nil, residual != nil, false)
        case .inference:
            cache = nil
            let mean = floats(of: runningMean, "running_mean")
            let inverseStd = floats(of: runningVariance, "running_var").map { 1 / ($0 + epsilon).squareRoot() }
            output = normalize(input, rows: rows, mean: mean, inverseStd: inverseStd, residual: residual, relu: relu)
        }
        return output
    }

    /// Both affine parameters frozen: the layer keeps its running statistics (see the type's comment).
    public var isFrozen: Bool { !weight.trainable && !bias.trainable }

    /// Inference-mode batch norm as a per-channel affine map y = x·scale + shift, for folding into the
    /// convolution before it: scale = γ/√(running_var + ε), shift = β − running_mean·scale. Like an
    /// inference-mode forward, which it stands in for, it drops what the last training forward kept.
    public func inferenceAffine() -> (scale: [Float], shift: [Float]) {
        cache = nil
        let mean = floats(of: runningMean, "running_mean"), variance = floats(of: runningVariance, "running_var")
        let gamma = weight.value.scalars, beta = bias.value.scalars
        let scale = (0..<channels).map { gamma[$0] / (variance[$0] + epsilon).squareRoot() }
        return (scale, (0..<channels).map { beta[$0] - mean[$0] * scale[$0] })
    }

    public func backward(_ dOutput: Tensor) -> Tensor {
        guard let cache, cache.reluOutput == nil else {
            preconditionFailure("BatchNorm2D.backward: no training-mode forward (after forwardReLU, use backwardThroughReLU)")
        }
        return backward(dOutput, cache: cache).dInput
    }

    /// The gradients of the last `forwardReLU`: with respect to its input, and, when it added a
    /// residual, with respect to that residual (the gradient behind the ReLU, which the shortcut gets).
    public func backwardThroughReLU(_ dOutput: Tensor) -> (dInput: Tensor, dResidual: Tensor?) {
        guard let cache, cache.reluOutput != nil else {
            preconditionFailure("BatchNorm2D.backwardThroughReLU: no training-mode forwardReLU to differentiate")
        }
        return backward(dOutput, cache: cache)
    }

    private func backward(_ dOutput: Tensor, cache: Cache) -> (dInput: Tensor, dResidual: Tensor?) {
        let input = cache.input
        precondition(dOutput.shape == input.shape,
                     "BatchNorm2D.backward: dOutput \(describeShape(dOutput.shape)) vs input \(describeShape(input.shape))")
        let rows = input.count / channels
        guard rows > 0 else { return (input, cache.hasResidual ? input : nil) }
        var dResidual: Tensor? = cache.hasResidual ? Tensor(overwrittenBy: input.shape) { _ in } : nil
        let dInput = Tensor(overwrittenBy: input.shape) { dx in
            input.scalars.withUnsafeBufferPointer { x in
                dOutput.scalars.withUnsafeBufferPointer { g in
                    weight.value.scalars.withUnsafeBufferPointer { gamma in
                        weight.gradient.scalars.withUnsafeMutableBufferPointer { dGamma in
                            bias.gradient.scalars.withUnsafeMutableBufferPointer { dBeta in
                                withOptionalPointer(cache.reluOutput) { y in
                                    withOptionalMutableScalars(&dResidual) { dz in
                                        batchNormBackward(
                                            g.baseAddress!, input: x.baseAddress!, rows: rows, channels: channels,
                                            mean: batchMean, inverseStd: batchInverseStd, weight: gamma.baseAddress!,
                                            reluOutput: y, fixedStatistics: cache.fixedStatistics, dInput: dx,
                                            dWeight: dGamma.baseAddress!, dBias: dBeta.baseAddress!, dPreActivation: dz,
                                            synchronize: statisticsReducer.map { $0.sumGradientStatistics },
                                            totalRows: batchRows)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return (dInput, dResidual)
    }

    private func normalize(_ input: Tensor, rows: Int, mean: [Float], inverseStd: [Float], residual: Tensor?,
                           relu: Bool) -> Tensor {
        Tensor(overwrittenBy: input.shape) { y in
            input.scalars.withUnsafeBufferPointer { x in
                weight.value.scalars.withUnsafeBufferPointer { gamma in
                    bias.value.scalars.withUnsafeBufferPointer { beta in
                        withOptionalPointer(residual) { z in
                            batchNormForward(x.baseAddress!, rows: rows, channels: channels, mean: mean,
                                             inverseStd: inverseStd, weight: gamma.baseAddress!,
                                             bias: beta.baseAddress!, adding: z, relu: relu, into: y)
                        }
                    }
                }
            }
        }
    }

    /// From now on training-mode batches replace the running statistics by their plain average
    /// (the k-th batch weighted 1/k, PyTorch's momentum None) instead of moving averages, and are not
    /// counted in `num_batches_tracked`; `endPlainAverage` returns to moving averages.
    public func beginPlainAverage() {
        averagedBatches = 0
    }

    public func endPlainAverage() {
        averagedBatches = nil
    }

    private func updateRunningStatistics(rows: Int) {
        var mean = floats(of: runningMean, "running_mean")
        var running = floats(of: runningVariance, "running_var")
        let unbiasing = Float(rows) / Float(rows - 1)
        let weight = averagedBatches.map { 1 / Float($0 + 1) } ?? momentum
        for c in 0..<channels {
            mean[c] = (1 - weight) * mean[c] + weight * batchMean[c]
            running[c] = (1 - weight) * running[c] + weight * batchVariance[c] * unbiasing
        }
        runningMean.value = .float32(Tensor(shape: [channels], scalars: mean))
        runningVariance.value = .float32(Tensor(shape: [channels], scalars: running))
        if let averaged = averagedBatches {
            averagedBatches = averaged + 1
            return
        }
        guard case let .int64(count) = batchesTracked.value else {
            preconditionFailure("BatchNorm2D: num_batches_tracked must hold an int64")
        }
        batchesTracked.value = .int64(count + 1)
    }

    /// The scalars of a running-statistics buffer, checked against the channel count (a loaded
    /// checkpoint could have replaced it).
    private func floats(of buffer: Buffer, _ name: String) -> [Float] {
        guard case let .float32(tensor) = buffer.value, tensor.shape == [channels] else {
            preconditionFailure("BatchNorm2D: \(name) must be float32 [\(channels)]")
        }
        return tensor.scalars
    }
}

// The scalars of an optional tensor as an optional mutable pointer.
private func withOptionalMutableScalars<Result>(_ tensor: inout Tensor?, _ body: (UnsafeMutablePointer<Float>?) -> Result) -> Result {
    guard tensor != nil else { return body(nil) }
    return tensor!.scalars.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}

/// Batch norm followed by a ReLU in one pass over memory (`BatchNorm2D.forwardReLU`). Its state is the
/// batch norm's (a ReLU has none), so it stands in for a `bn` + `relu` pair under the batch norm's name.
public final class BatchNormReLU: Layer {
    public let norm: BatchNorm2D

    public init(channels: Int) {
        norm = BatchNorm2D(channels: channels)
    }

    public func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        try norm.forwardReLU(input, mode: mode)
    }

    public func backward(_ dOutput: Tensor) -> Tensor {
        norm.backwardThroughReLU(dOutput).dInput
    }

    public func collectState(into state: inout ModuleState) {
        norm.collectState(into: &state)
    }

    public var children: [any Layer] { [norm] }
}
