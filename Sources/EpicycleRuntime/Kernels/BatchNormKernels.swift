// Batch normalisation over NHWC activations (Ioffe & Szegedy 2015).
//
// Legend: M = rows, one per pixel (N·H·W for [N, H, W, C], N for [N, C]); C = channels.
// The channel axis is contiguous, so every fast loop below walks a row of C floats at a time and the
// compiler vectorises it; per-channel statistics live in small [C] arrays that stay in L1.
//
// Sums are taken in Float over blocks of `statisticsBlockRows` rows and folded into Double totals
// between blocks: the inner loop stays a plain Float vector add while the rounding error grows with
// the block length, not with M.

/// Rows summed in Float before the partial sums are folded into Double totals.
private let statisticsBlockRows = 32

/// Per-channel batch mean and biased variance (divided by M), as PyTorch normalises with in training.
///
/// Two passes: the mean first, then the squared deviations about it with the "corrected two-pass"
/// term (Chan, Golub & LeVeque 1983): var = (Σd² − (Σd)²/M) / M with d = x − mean, which removes the
/// error of the rounded mean. Unlike E[x²] − E[x]², this stays accurate when |mean| ≫ std.
/// - Precondition: M ≥ 1.
public func batchNormStatistics(
    _ input: UnsafePointer<Float>, rows M: Int, channels C: Int,
    mean: UnsafeMutablePointer<Float>, variance: UnsafeMutablePointer<Float>
) {
    precondition(M >= 1, "batchNormStatistics: needs at least one row")
    withUnsafeTemporaryAllocation(of: Double.self, capacity: 2 * C) { totals in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * C) { partials in
            let sum = totals.baseAddress!, deviationSum = sum + C
            let partial = partials.baseAddress!, deviationPartial = partial + C
            sum.update(repeating: 0, count: C)
            var start = 0
            while start < M {
                let end = min(start + statisticsBlockRows, M)
                partial.update(repeating: 0, count: C)
                for r in start..<end {
                    let x = input + r * C
                    for c in 0..<C { partial[c] += x[c] }
                }
                for c in 0..<C { sum[c] += Double(partial[c]) }
                start = end
            }
            for c in 0..<C { mean[c] = Float(sum[c] / Double(M)) }

            // Σd and Σd² in one sweep: two Float accumulators per channel, side by side.
            deviationSum.update(repeating: 0, count: C)
            sum.update(repeating: 0, count: C)
            start = 0
            while start < M {
                let end = min(start + statisticsBlockRows, M)
                partial.update(repeating: 0, count: C)
                deviationPartial.update(repeating: 0, count: C)
                for r in start..<end {
                    let x = input + r * C
                    for c in 0..<C {
                        let d = x[c] - mean[c]
                        deviationPartial[c] += d
                        partial[c] += d * d
                    }
                }
                for c in 0..<C {
                    deviationSum[c] += Double(deviationPartial[c])
                    sum[c] += Double(partial[c])
                }
                start = end
            }
            for c in 0..<C {
                let squares = sum[c] - deviationSum[c] * deviationSum[c] / Double(M)
                variance[c] = Float(max(squares, 0) / Double(M))
            }
        }
    }
}

/// The statistics by the textbook formulas in Double, one channel at a time: the reference.
public func batchNormStatisticsReference(
    _ input: UnsafePointer<Float>, rows M: Int, channels C: Int,
    mean: UnsafeMutablePointer<Float>, variance: UnsafeMutablePointer<Float>
) {
    for c in 0..<C {
        var sum: Double = 0
        for r in 0..<M { sum += Double(input[r * C + c]) }
        let mu = sum / Double(M)
        var squares: Double = 0
        for r in 0..<M { let d = Double(input[r * C + c]) - mu; squares += d * d }
        mean[c] = Float(mu)
        variance[c] = Float(squares / Double(M))
    }
}

/// y = (x − mean)·inverseStd·weight + bias per channel, where inverseStd = 1/√(var + ε) holds the
/// batch statistics in training and the running ones in inference. `output` may equal `input`.
///
/// The scale γ/σ is folded per channel, but the mean is subtracted before scaling rather than folded
/// into the shift: x − mean is exact for x near the mean, which keeps the result accurate when the
/// mean is large next to the spread.
public func batchNormForward(
    _ input: UnsafePointer<Float>, rows M: Int, channels C: Int,
    mean: UnsafePointer<Float>, inverseStd: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>
) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: C) { scales in
        let scale = scales.baseAddress!
        for c in 0..<C { scale[c] = weight[c] * inverseStd[c] }
        for r in 0..<M {
            let x = input + r * C, y = output + r * C
            for c in 0..<C { y[c] = (x[c] - mean[c]) * scale[c] + bias[c] }
        }
    }
}

/// The forward pass as written in the paper, one scalar at a time in Double: the reference.
public func batchNormForwardReference(
    _ input: UnsafePointer<Float>, rows M: Int, channels C: Int,
    mean: UnsafePointer<Float>, inverseStd: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>
) {
    for r in 0..<M {
        for c in 0..<C {
            let normalized = (Double(input[r * C + c]) - Double(mean[c])) * Double(inverseStd[c])
            output[r * C + c] = Float(normalized * Double(weight[c]) + Double(bias[c]))
        }
    }
}

/// Backward of training-mode batch norm, given the forward's input and batch statistics.
///
/// With x̂ = (x − μ)/σ and g = dOutput:
///   dBias += Σ g,  dWeight += Σ g·x̂,
///   dInput = (γ/σ)·(g − mean(g) − x̂·mean(g·x̂))        (overwritten)
/// The last line is evaluated per element as a·((g − m) − k·(x − μ)) with per-channel a = γ/σ,
/// m = mean(g) and k = mean(g·x̂)/σ: x̂ is never formed, and the differences come first, as in the
/// formula, so the cancellation in g − m happens before the scaling by γ/σ.
public func batchNormBackward(
    _ dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, rows M: Int, channels C: Int,
    mean: UnsafePointer<Float>, inverseStd: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    dInput: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>
) {
    withUnsafeTemporaryAllocation(of: Double.self, capacity: 2 * C) { totals in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * C) { scratch in
            let gradientSum = totals.baseAddress!, productSum = gradientSum + C
            let partial = scratch.baseAddress!, productPartial = partial + C
            // Σg and Σg·(x − μ), both in one sweep over the rows.
            gradientSum.update(repeating: 0, count: C)
            productSum.update(repeating: 0, count: C)
            var start = 0
            while start < M {
                let end = min(start + statisticsBlockRows, M)
                partial.update(repeating: 0, count: C)
                productPartial.update(repeating: 0, count: C)
                for r in start..<end {
                    let g = dOutput + r * C, x = input + r * C
                    for c in 0..<C {
                        partial[c] += g[c]
                        productPartial[c] += g[c] * (x[c] - mean[c])
                    }
                }
                for c in 0..<C {
                    gradientSum[c] += Double(partial[c])
                    productSum[c] += Double(productPartial[c])
                }
                start = end
            }

            // Per-channel coefficients of the input gradient, reusing the Float scratch.
            let a = partial, k = productPartial, m = partial + 2 * C
            for c in 0..<C {
                let sigmaInverse = Double(inverseStd[c])
                let normalizedProductSum = productSum[c] * sigmaInverse  // Σ g·x̂
                dBias[c] += Float(gradientSum[c])
                dWeight[c] += Float(normalizedProductSum)
                a[c] = Float(Double(weight[c]) * sigmaInverse)
                k[c] = Float(sigmaInverse * normalizedProductSum / Double(M))
                m[c] = Float(gradientSum[c] / Double(M))
            }
            for r in 0..<M {
                let g = dOutput + r * C, x = input + r * C, dx = dInput + r * C
                for c in 0..<C { dx[c] = a[c] * ((g[c] - m[c]) - k[c] * (x[c] - mean[c])) }
            }
        }
    }
}

/// The backward pass by the unfolded formula, one channel at a time in Double: the reference.
public func batchNormBackwardReference(
    _ dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, rows M: Int, channels C: Int,
    mean: UnsafePointer<Float>, inverseStd: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    dInput: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>
) {
    for c in 0..<C {
        let sigmaInverse = Double(inverseStd[c])
        func normalized(_ r: Int) -> Double { (Double(input[r * C + c]) - Double(mean[c])) * sigmaInverse }
        var gradientSum: Double = 0, productSum: Double = 0
        for r in 0..<M {
            let g = Double(dOutput[r * C + c])
            gradientSum += g
            productSum += g * normalized(r)
        }
        dBias[c] += Float(gradientSum)
        dWeight[c] += Float(productSum)
        let gradientMean = gradientSum / Double(M), productMean = productSum / Double(M)
        for r in 0..<M {
            let g = Double(dOutput[r * C + c])
            let value = Double(weight[c]) * sigmaInverse * (g - gradientMean - normalized(r) * productMean)
            dInput[r * C + c] = Float(value)
        }
    }
}
