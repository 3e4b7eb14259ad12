#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

// Row-wise softmax and log-softmax with a temperature, forward and backward.
//
// Legend: N rows (samples, or sample × channel for spatial softmax), K entries per row (classes, or
// spatial positions), T the temperature, z the logits, p = softmax(z / T), l = log p.
//
//   p[n, k] = exp((z[n, k] − m) / T) / Σ_j exp((z[n, j] − m) / T),   m = max_j z[n, j]
//   l[n, k] = (z[n, k] − m) / T − log Σ_j exp((z[n, j] − m) / T)
//
// Subtracting the row maximum keeps every exponent ≤ 0, so nothing overflows and the largest term is 1
// (the sum is in [1, K]). Backward, with u = z / T:
//   softmax:     dz[k] = p[k] · (dp[k] − Σ_j dp[j] · p[j]) / T
//   log-softmax: dz[k] = (dl[k] − p[k] · Σ_j dl[j]) / T
// The exponentials are scalar libm calls; the shapes here are small (a batch of logits), so the loops
// stay plain and the compiler vectorises the elementwise passes.

/// Row-wise softmax of `logits / temperature` over rows of `classes` entries.
/// - Parameters:
///   - logits: `rows × classes` values, row-major.
///   - probabilities: `rows × classes` outputs; may not alias `logits`.
///   - temperature: T > 0; T > 1 softens, T < 1 sharpens.
public func softmaxForward(
    logits: UnsafePointer<Float>, probabilities: UnsafeMutablePointer<Float>,
    rows: Int, classes: Int, temperature: Float = 1
) {
    let inverseT = 1 / temperature
    for n in 0..<rows {
        let z = logits + n * classes, p = probabilities + n * classes
        let m = rowMaximum(z, classes)
        var sum: Float = 0
        for k in 0..<classes {
            let e = expf((z[k] - m) * inverseT)
            p[k] = e
            sum += e
        }
        let inverseSum = 1 / sum
        for k in 0..<classes { p[k] *= inverseSum }
    }
}

/// Row-wise log-softmax of `logits / temperature`; same layout as `softmaxForward`.
public func logSoftmaxForward(
    logits: UnsafePointer<Float>, logProbabilities: UnsafeMutablePointer<Float>,
    rows: Int, classes: Int, temperature: Float = 1
) {
    let inverseT = 1 / temperature
    for n in 0..<rows {
        let z = logits + n * classes, l = logProbabilities + n * classes
        let m = rowMaximum(z, classes)
        var sum: Float = 0
        for k in 0..<classes {
            let shifted = (z[k] - m) * inverseT
            l[k] = shifted
            sum += expf(shifted)
        }
        let logSum = logf(sum)
        for k in 0..<classes { l[k] -= logSum }
    }
}

/// The gradient with respect to the logits of a loss whose gradient with respect to
/// `probabilities = softmax(logits / temperature)` is `dProbabilities`.
public func softmaxBackward(
    probabilities: UnsafePointer<Float>, dProbabilities: UnsafePointer<Float>, dLogits: UnsafeMutablePointer<Float>,
    rows: Int, classes: Int, temperature: Float = 1
) {
    let inverseT = 1 / temperature
    for n in 0..<rows {
        let p = probabilities + n * classes, dp = dProbabilities + n * classes, dz = dLogits + n * classes
        var dot: Float = 0
        for k in 0..<classes { dot += dp[k] * p[k] }
        for k in 0..<classes { dz[k] = p[k] * (dp[k] - dot) * inverseT }
    }
}

/// The gradient with respect to the logits of a loss whose gradient with respect to
/// `logProbabilities = logSoftmax(logits / temperature)` is `dLogProbabilities`.
public func logSoftmaxBackward(
    logProbabilities: UnsafePointer<Float>, dLogProbabilities: UnsafePointer<Float>, dLogits: UnsafeMutablePointer<Float>,
    rows: Int, classes: Int, temperature: Float = 1
) {
    let inverseT = 1 / temperature
    for n in 0..<rows {
        let l = logProbabilities + n * classes, dl = dLogProbabilities + n * classes, dz = dLogits + n * classes
        var sum: Float = 0
        for k in 0..<classes { sum += dl[k] }
        for k in 0..<classes { dz[k] = (dl[k] - expf(l[k]) * sum) * inverseT }
    }
}

@inline(__always)
private func rowMaximum(_ z: UnsafePointer<Float>, _ count: Int) -> Float {
    var m = -Float.infinity
    for k in 0..<count { m = max(m, z[k]) }
    return m
}

// MARK: - References

// The definitions evaluated in Double, without the max shift (Double's range covers test logits) and
// with the full Jacobian for the backward passes: what the fast kernels are tested against.

public func softmaxForwardReference(
    logits: UnsafePointer<Float>, probabilities: UnsafeMutablePointer<Float>,
    rows: Int, classes: Int, temperature: Float = 1
) {
    for n in 0..<rows {
        let exponentials = (0..<classes).map { exp(Double(logits[n * classes + $0]) / Double(temperature)) }
        let sum = exponentials.reduce(0, +)
        for k in 0..<classes { probabilities[n * classes + k] = Float(exponentials[k] / sum) }
    }
}

public func logSoftmaxForwardReference(
    logits: UnsafePointer<Float>, logProbabilities: UnsafeMutablePointer<Float>,
    rows: Int, classes: Int, temperature: Float = 1
) {
    for n in 0..<rows {
        let scaled = (0..<classes).map { Double(logits[n * classes + $0]) / Double(temperature) }
        let logSum = log(scaled.map { exp($0) }.reduce(0, +))
        for k in 0..<classes { logProbabilities[n * classes + k] = Float(scaled[k] - logSum) }
    }
}

// ∂p[j]/∂z[k] = p[j] · (δ[j, k] − p[k]) / T, summed against dp.
public func softmaxBackwardReference(
    probabilities: UnsafePointer<Float>, dProbabilities: UnsafePointer<Float>, dLogits: UnsafeMutablePointer<Float>,
    rows: Int, classes: Int, temperature: Float = 1
) {
    for n in 0..<rows {
        let row = n * classes
        for k in 0..<classes {
            var sum: Double = 0
            for j in 0..<classes {
                let pj = Double(probabilities[row + j]), pk = Double(probabilities[row + k])
                sum += Double(dProbabilities[row + j]) * pj * ((j == k ? 1 : 0) - pk)
            }
            dLogits[row + k] = Float(sum / Double(temperature))
        }
    }
}

// ∂l[j]/∂z[k] = (δ[j, k] − p[k]) / T, summed against dl.
public func logSoftmaxBackwardReference(
    logProbabilities: UnsafePointer<Float>, dLogProbabilities: UnsafePointer<Float>, dLogits: UnsafeMutablePointer<Float>,
    rows: Int, classes: Int, temperature: Float = 1
) {
    for n in 0..<rows {
        let row = n * classes
        for k in 0..<classes {
            let pk = exp(Double(logProbabilities[row + k]))
            var sum: Double = 0
            for j in 0..<classes { sum += Double(dLogProbabilities[row + j]) * ((j == k ? 1 : 0) - pk) }
            dLogits[row + k] = Float(sum / Double(temperature))
        }
    }
}

// MARK: - Tensor conveniences

/// Softmax of `logits / temperature` along the last axis (e.g. class probabilities from [N, K] logits).
public func softmax(_ logits: Tensor, temperature: Float = 1) -> Tensor {
    alongLastAxis(logits) { softmaxForward(logits: $0, probabilities: $1, rows: $2, classes: $3, temperature: temperature) }
}

/// Log-softmax of `logits / temperature` along the last axis.
public func logSoftmax(_ logits: Tensor, temperature: Float = 1) -> Tensor {
    alongLastAxis(logits) { logSoftmaxForward(logits: $0, logProbabilities: $1, rows: $2, classes: $3, temperature: temperature) }
}

/// Applies a row-wise kernel `(input, output, rows, classes)` to a tensor whose rows are its last axis.
private func alongLastAxis(
    _ logits: Tensor, _ kernel: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Int) -> Void
) -> Tensor {
    precondition(logits.rank >= 1, "softmax: logits need at least one axis, got a scalar")
    var result = Tensor(zeros: logits.shape)
    guard let classes = logits.shape.last, logits.count > 0 else { return result }
    logits.scalars.withUnsafeBufferPointer { z in
        result.scalars.withUnsafeMutableBufferPointer { kernel(z.baseAddress!, $0.baseAddress!, logits.count / classes, classes) }
    }
    return result
}
