/// Clamps every gradient element to [−threshold, threshold], as `torch.nn.utils.clip_grad_value_`.
/// Frozen parameters (`trainable == false`) are left alone: in PyTorch they would have no gradient.
/// Cyclical gradient clipping (Smith 2022, §4) moves the threshold between epochs.
/// - Precondition: `threshold ≥ 0`.
public func clipGradientsByValue(_ parameters: [Parameter], threshold: Float) {
    precondition(threshold >= 0, "clipGradientsByValue: threshold must be ≥ 0, got \(threshold)")
    for parameter in parameters where parameter.trainable {
        parameter.gradient.scalars.withUnsafeMutableBufferPointer { g in
            for i in g.indices { g[i] = min(max(g[i], -threshold), threshold) }
        }
    }
}

/// Scales all gradients together so that their global L2 norm is at most `maxNorm`, as
/// `torch.nn.utils.clip_grad_norm_` (norm type 2): with ‖g‖ the norm over every element of every
/// trainable parameter's gradient, the gradients are multiplied by maxNorm / (‖g‖ + 1e-6) when that
/// factor is below 1.
///
/// - Returns: ‖g‖ before clipping (accumulated in Double). When it is not finite the gradients are
///   left unchanged (PyTorch would turn them into NaN), so the caller can see it and skip the step.
/// - Precondition: `maxNorm ≥ 0`.
@discardableResult
public func clipGradientsByNorm(_ parameters: [Parameter], maxNorm: Float) -> Float {
    precondition(maxNorm >= 0, "clipGradientsByNorm: maxNorm must be ≥ 0, got \(maxNorm)")
    let trainable = parameters.filter(\.trainable)
    var sumOfSquares: Double = 0
    for parameter in trainable {
        parameter.gradient.scalars.withUnsafeBufferPointer { sumOfSquares += squaredNorm($0) }
    }
    let norm = Float(sumOfSquares.squareRoot())
    guard norm.isFinite else { return norm }
    let factor = maxNorm / (norm + 1e-6)
    if factor < 1 {
        for parameter in trainable {
            parameter.gradient.scalars.withUnsafeMutableBufferPointer { g in
                for i in g.indices { g[i] *= factor }
            }
        }
    }
    return norm
}

// Σ g², eight lanes at a time, each lane accumulating in Double: millions of squares summed in float32
// would lose digits, and the explicit lanes let the loop vectorise.
private func squaredNorm(_ g: UnsafeBufferPointer<Float>) -> Double {
    guard let base = g.baseAddress else { return 0 }
    let raw = UnsafeRawPointer(base)
    var lanes = SIMD8<Double>()
    var i = 0
    while i + 8 <= g.count {
        let values = SIMD8<Double>(raw.loadUnaligned(fromByteOffset: i * MemoryLayout<Float>.stride, as: SIMD8<Float>.self))
        lanes.addProduct(values, values)
        i += 8
    }
    var sum = lanes.sum()
    while i < g.count {
        sum += Double(g[i]) * Double(g[i])
        i += 1
    }
    return sum
}
