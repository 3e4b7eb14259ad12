// Batch normalisation over NHWC activations (Ioffe & Szegedy 2015).
//
// Legend: M = rows, one per pixel (N·H·W for [N, H, W, C], N for [N, C]); C = channels; V = 16 floats
// per vector.
//
// The channel axis is contiguous, so every fast loop walks a row in vectors of 16 channels (the last
// one partial when C is not a multiple of 16). Sums keep their running totals in vector registers over
// a block of `statisticsBlockRows` rows and fold them into Double totals between blocks: partial sums
// kept in memory instead would chain every row's add to the previous row's store, and the rounding
// error grows with the block length, not with M.

private typealias Vector = SIMD16<Float>
private let V = 16

/// Rows summed in Float before the partial sums are folded into Double totals.
private let statisticsBlockRows = 64

// The `count` ≤ V floats at `pointer` as a vector, zeros after them.
@inline(__always)
private func load(_ pointer: UnsafePointer<Float>, _ count: Int) -> Vector {
    if count == V { return UnsafeRawPointer(pointer).loadUnaligned(as: Vector.self) }
    var vector = Vector()
    for lane in 0..<count { vector[lane] = pointer[lane] }
    return vector
}

// Stores the first `count` ≤ V lanes of `vector` at `pointer`.
@inline(__always)
private func store(_ vector: Vector, _ pointer: UnsafeMutablePointer<Float>, _ count: Int) {
    if count == V {
        UnsafeMutableRawPointer(pointer).storeBytes(of: vector, as: Vector.self)
        return
    }
    for lane in 0..<count { pointer[lane] = vector[lane] }
}

// Calls body(c, lanes) for each vector of channels: c its first channel, lanes its width (V but the last).
@inline(__always)
private func forEachChannelVector(_ C: Int, _ body: (Int, Int) -> Void) {
    var c = 0
    while c < C {
        body(c, min(V, C - c))
        c += V
    }
}

/// Per-channel batch mean and biased variance (divided by M), as PyTorch normalises with in training.
///
/// One pass over the data, shifted by the first row (Chan, Golub & LeVeque 1983, "shifted data"): with
/// d = x − x₀, mean = x₀ + Σd/M and var = (Σd² − (Σd)²/M)/M. The shift is a sample of the same
/// channel, so it lies within a few standard deviations of the mean and the subtraction loses no more
/// than a few bits, where E[x²] − E[x]² fails once |mean| ≫ std.
/// Above `parallelElementThreshold` elements the rows split into parts (see `reductionParts`) spread
/// over `threads`, whose Double totals are added in part order (so the result depends neither on
/// timing nor on the thread count up to the cores).
///
/// `synchronize`, when given, turns this process's sums into those of a batch spread over several
/// processes (synchronised batch norm): it receives [Σx (C), Σx² (C), M] in Double and must replace
/// them by their totals over the processes; mean and variance are then the whole batch's, from
/// var = Σx²/M − mean² in Double (each process's shift differs, so the shifted sums are unshifted first).
/// - Returns: the rows the statistics cover (M, or the total over the processes).
/// - Precondition: M ≥ 1.
@discardableResult
public func batchNormStatistics(
    _ input: UnsafePointer<Float>, rows M: Int, channels C: Int,
    mean: UnsafeMutablePointer<Float>, variance: UnsafeMutablePointer<Float>, threads: Int = kernelThreads,
    synchronize: ((UnsafeMutableBufferPointer<Double>) -> Void)? = nil
) -> Int {
    precondition(M >= 1, "batchNormStatistics: needs at least one row")
    let parts = rowParts(M, C, threads)
    var rows = M
    withUnsafeTemporaryAllocation(of: Double.self, capacity: 2 * C * parts) { totals in
        let totals = totals.baseAddress!
        // Per part: [Σd², Σd].
        parallelParts(parts, threads: threads) { _, part in
            let base = totals + 2 * C * part
            blockedSums(rows: partition(M, parts: parts, index: part), channels: C, into: base, second: base + C) { r, c, lanes in
                let d = load(input + r * C + c, lanes) - load(input + c, lanes)
                return (d * d, d)
            }
        }
        guard let synchronize else {
            for c in 0..<C {
                var squares: Double = 0, deviations: Double = 0
                for part in 0..<parts {
                    squares += totals[2 * C * part + c]
                    deviations += totals[2 * C * part + C + c]
                }
                mean[c] = Float(Double(input[c]) + deviations / Double(M))
                let centered = squares - deviations * deviations / Double(M)
                variance[c] = Float(max(centered, 0) / Double(M))
            }
            return
        }
        var sums = [Double](repeating: 0, count: 2 * C + 1)
        for c in 0..<C {
            var squares: Double = 0, deviations: Double = 0
            for part in 0..<parts {
                squares += totals[2 * C * part + c]
                deviations += totals[2 * C * part + C + c]
            }
            // Σx = Σd + M·x₀ and Σx² = Σd² + 2·x₀·Σd + M·x₀².
            let shift = Double(input[c])
            sums[c] = deviations + Double(M) * shift
            sums[C + c] = squares + 2 * shift * deviations + Double(M) * shift * shift
        }
        sums[2 * C] = Double(M)
        sums.withUnsafeMutableBufferPointer { synchronize($0) }
        rows = Int(sums[2 * C])
        for c in 0..<C {
            let mu = sums[c] / sums[2 * C]
            mean[c] = Float(mu)
            variance[c] = Float(max(sums[C + c] / sums[2 * C] - mu * mu, 0))
        }
    }
    return rows
}

// Threads for a pass over M rows of C floats: one below the threshold where a second core pays.
private func rowThreads(_ M: Int, _ C: Int, _ threads: Int) -> Int {
    M * C >= parallelElementThreshold ? max(1, min(threads, M)) : 1
}

// Parts of a reduction over M rows of C floats: one below that threshold.
private func rowParts(_ M: Int, _ C: Int, _ threads: Int) -> Int {
    M * C >= parallelElementThreshold ? reductionParts(M, threads: threads) : 1
}

// totals[C] (and second[C]) = Double sums over `rows` of the two vectors `terms(r, c, lanes)` gives for
// row r's channels c ..< c + lanes (the second ignored without `second`).
@inline(__always)
private func blockedSums(
    rows: Range<Int>, channels C: Int, into totals: UnsafeMutablePointer<Double>, second: UnsafeMutablePointer<Double>?,
    _ terms: (Int, Int, Int) -> (Vector, Vector)
) {
    totals.update(repeating: 0, count: C)
    second?.update(repeating: 0, count: C)
    var start = rows.lowerBound
    while start < rows.upperBound {
        let end = min(start + statisticsBlockRows, rows.upperBound)
        forEachChannelVector(C) { c, lanes in
            var first = Vector(), other = Vector()
            for r in start..<end {
                let (a, b) = terms(r, c, lanes)
                first += a
                other += b
            }
            for lane in 0..<lanes { totals[c + lane] += Double(first[lane]) }
            if let second { for lane in 0..<lanes { second[c + lane] += Double(other[lane]) } }
        }
        start = end
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
/// Fused epilogues, so that a block's batch norm, shortcut and ReLU are one pass over memory:
/// `residual` adds a tensor of the input's shape after normalising, and `relu` clamps at 0 last:
/// y = max((x − mean)·inverseStd·weight + bias + residual, 0).
///
/// The scale γ/σ is folded per channel, but the mean is subtracted before scaling rather than folded
/// into the shift: x − mean is exact for x near the mean, which keeps the result accurate when the
/// mean is large next to the spread.
public func batchNormForward(
    _ input: UnsafePointer<Float>, rows M: Int, channels C: Int,
    mean: UnsafePointer<Float>, inverseStd: UnsafePointer<Float>,
    weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, adding residual: UnsafePointer<Float>? = nil,
    relu: Bool = false, into output: UnsafeMutablePointer<Float>, threads: Int = kernelThreads
) {
    withUnsafeTemporaryAllocation(of: Float.self, capacity: C) { scales in
        let scale = scales.baseAddress!
        for c in 0..<C { scale[c] = weight[c] * inverseStd[c] }
        let T = rowThreads(M, C, threads)
        let floor = relu ? Vector() : Vector(repeating: -.infinity)
        parallelFor(T) { t in
            for r in partition(M, parts: T, index: t) {
                forEachChannelVector(C) { c, lanes in
                    let offset = r * C + c
                    var y = (load(input + offset, lanes) - load(mean + c, lanes)) * load(scale + c, lanes) + load(bias + c, lanes)
                    if let residual { y += load(residual + offset, lanes) }
                    store(y.replacing(with: floor, where: y .< floor), output + offset, lanes)
                }
            }
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
///
/// After a fused ReLU (`batchNormForward(relu: true)`), pass its output as `reluOutput`: g is then
/// dOutput where that output is positive and 0 elsewhere (the ReLU's backward, as `reluBackward`), and
/// `dPreActivation`, if given, receives g, the gradient a fused residual gets. The sums split into parts
/// as in `batchNormStatistics`, the per-element pass over threads.
///
/// With `fixedStatistics` the mean and σ were constants (a frozen batch norm's running statistics), so
/// no gradient flows through them: dInput = (γ/σ)·g, the same formula with m = k = 0.
///
/// Synchronised over processes (see `batchNormStatistics`): `synchronize` receives [Σg (C),
/// Σg·(x − μ) (C)] and replaces them by their totals, and `totalRows` is the whole batch's row count,
/// so m and k are the whole batch's means; dWeight and dBias still accumulate this process's own sums
/// (its share, which the gradient all-reduce adds to the others').
public func batchNormBackward(
    _ dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>, rows M: Int, channels C: Int,
    mean: UnsafePointer<Float>, inverseStd: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    reluOutput: UnsafePointer<Float>? = nil, fixedStatistics: Bool = false,
    dInput: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>,
    dPreActivation: UnsafeMutablePointer<Float>? = nil, threads: Int = kernelThreads,
    synchronize: ((UnsafeMutableBufferPointer<Double>) -> Void)? = nil, totalRows: Int? = nil
) {
    let T = rowThreads(M, C, threads), parts = rowParts(M, C, threads)
    // g at one offset: dOutput, masked by the fused ReLU's output when there was one.
    @inline(__always) func gradient(_ offset: Int, _ lanes: Int) -> Vector {
        let g = load(dOutput + offset, lanes)
        guard let reluOutput else { return g }
        return g.replacing(with: 0, where: .!(load(reluOutput + offset, lanes) .> 0))
    }
    withUnsafeTemporaryAllocation(of: Double.self, capacity: 2 * C * parts) { totals in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * C) { coefficients in
            let totals = totals.baseAddress!
            // Per part: Σg and Σg·(x − μ), both in one sweep over its rows.
            parallelParts(parts, threads: threads) { _, part in
                let base = totals + 2 * C * part
                blockedSums(rows: partition(M, parts: parts, index: part), channels: C, into: base, second: base + C) { r, c, lanes in
                    let g = gradient(r * C + c, lanes)
                    return (g, g * (load(input + r * C + c, lanes) - load(mean + c, lanes)))
                }
            }

            let a = coefficients.baseAddress!, k = a + C, m = a + 2 * C
            var sums = [Double](repeating: 0, count: 2 * C)  // [Σg (C), Σg·(x − μ) (C)]
            for c in 0..<C {
                for part in 0..<parts {
                    sums[c] += totals[2 * C * part + c]
                    sums[C + c] += totals[2 * C * part + C + c]
                }
                let sigmaInverse = Double(inverseStd[c])
                dBias[c] += Float(sums[c])
                dWeight[c] += Float(sums[C + c] * sigmaInverse)  // Σ g·x̂
                a[c] = Float(Double(weight[c]) * sigmaInverse)
            }
            if let synchronize, !fixedStatistics { sums.withUnsafeMutableBufferPointer { synchronize($0) } }
            let rows = Double(totalRows ?? M)
            for c in 0..<C {
                let sigmaInverse = Double(inverseStd[c])
                k[c] = fixedStatistics ? 0 : Float(sigmaInverse * (sums[C + c] * sigmaInverse) / rows)
                m[c] = fixedStatistics ? 0 : Float(sums[c] / rows)
            }
            parallelFor(T) { t in
                for r in partition(M, parts: T, index: t) {
                    forEachChannelVector(C) { c, lanes in
                        let offset = r * C + c
                        let g = gradient(offset, lanes)
                        if let dPreActivation { store(g, dPreActivation + offset, lanes) }
                        let centered = load(input + offset, lanes) - load(mean + c, lanes)
                        let dx = load(a + c, lanes) * ((g - load(m + c, lanes)) - load(k + c, lanes) * centered)
                        store(dx, dInput + offset, lanes)
                    }
                }
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
