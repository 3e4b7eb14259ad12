// Direct convolution kernels over NHWC activations: the fast path of `conv2DForward`,
// `conv2DBackwardInput` and `conv2DBackwardWeight` for ungrouped convolutions whose output channels
// (for the input gradient: input channels) are a multiple of 16.
//
// Legend as in Conv2DKernels.swift, plus: Hp×Wp the zero-padded image; V = 16 floats per vector;
// T threads. "Run": for one tap row r, the S taps × C channels an output pixel reads are one contiguous
// run of S·C floats in a padded NHWC row, and a weight packed as [R, S, C, K] holds the matching
// [S·C, K] block; so a convolution is, per tap row, a product of depth S·C with no gather at all.
//
// Why not im2col + sgemm: ResNet-CIFAR layers have 16–64 channels, so the products are skinny
// (n = 16…64) and sgemm reaches ~100 GFLOP/s on them, after copying the input R·S times. Here one image
// at a time is copied into a zero-padded scratch (tens of KB, cache-resident, one per thread) and a
// register-blocked loop reads it in place: a tile of 8 output pixels × 16 or 32 output channels lives in
// 8 or 16 vector registers, and each step of the run broadcasts one input value per pixel and loads one
// or two weight vectors (~190 GFLOP/s per core with AVX-512 on this project's machine).
//
// - Forward: output[p, q, k] = Σ_r Σ_{j < S·C} padded[p·sh + r, q·sw·C + j] · packed[r, j, k].
// - Backward-input (stride 1): dInput is the forward convolution of dOutput zero-padded by R − 1 − ph
//   (S − 1 − pw) with the kernel flipped and its channel axes swapped, packed as [R, S, K, C].
// - Backward-weight: dPacked[r, j, k] = Σ_{p, q} padded[p·sh + r, q·sw·C + j] · dOutput[p, q, k]; a tile
//   of 8 run positions × 16 or 32 output channels stays in registers while the loop walks the image.
//
// Threads split the batch into contiguous ranges of images; the weight gradient sums each thread's
// images into its own partial and adds the partials at the end.

private typealias Vector = SIMD16<Float>
private let V = 16

@inline(__always)
private func load(_ pointer: UnsafePointer<Float>) -> Vector {
    UnsafeRawPointer(pointer).loadUnaligned(as: Vector.self)
}

@inline(__always)
private func store(_ vector: Vector, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: vector, as: Vector.self)
}

extension Conv2DGeometry {
    /// Whether `conv2DForward` and `conv2DBackwardWeight` take the direct kernels.
    public var usesDirectForward: Bool { groups == 1 && outputChannels % V == 0 && batch > 0 }

    /// Whether `conv2DBackwardInput` takes the direct kernel (stride 1, padding within the kernel).
    public var usesDirectBackwardInput: Bool {
        groups == 1 && inputChannels % V == 0 && batch > 0 && strideHeight == 1 && strideWidth == 1
            && paddingHeight < kernelHeight && paddingWidth < kernelWidth
    }
}

// One image's direct convolution: padded input [Hp, Wp, C] → output [P, Q, K] with weights [R, S·C, K].
private struct DirectPlan {
    var C, K, R, S, strideHeight, strideWidth, P, Q, Hp, Wp: Int

    var run: Int { S * C }
    var rowStep: Int { Wp * C }
    var pixelStep: Int { strideWidth * C }
    var paddedCount: Int { Hp * Wp * C }
}

// padded[Hp, Wp, C] ← image[H, W, C] with `top` rows and `left` columns of zeros before it and zeros
// after it to fill Hp×Wp.
private func padImage(_ image: UnsafePointer<Float>, height H: Int, width W: Int, channels C: Int,
                      top: Int, left: Int, into padded: UnsafeMutablePointer<Float>, Hp: Int, Wp: Int) {
    let rowCount = Wp * C
    padded.update(repeating: 0, count: top * rowCount)
    for h in 0..<H {
        let row = padded + (top + h) * rowCount
        row.update(repeating: 0, count: left * C)
        (row + left * C).update(from: image + h * W * C, count: W * C)
        (row + (left + W) * C).update(repeating: 0, count: (Wp - left - W) * C)
    }
    (padded + (top + H) * rowCount).update(repeating: 0, count: (Hp - top - H) * rowCount)
}

// output[P, Q, K] (overwritten) = the plan's convolution of one padded image, plus bias[K] if given.
private func convolveImage(_ plan: DirectPlan, padded: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                           bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) {
    let (K, Q) = (plan.K, plan.Q)
    for p in 0..<plan.P {
        let row = padded + p * plan.strideHeight * plan.rowStep
        let out = output + p * Q * K
        var q = 0
        while q + 8 <= Q {
            var k = 0
            while k + 2 * V <= K {
                forwardTile8x2(plan, row + q * plan.pixelStep, weight + k, bias.map { $0 + k }, out + q * K + k)
                k += 2 * V
            }
            if k < K { forwardTile8x1(plan, row + q * plan.pixelStep, weight + k, bias.map { $0 + k }, out + q * K + k) }
            q += 8
        }
        while q < Q {
            for k in stride(from: 0, to: K, by: V) {
                forwardTile1x1(plan, row + q * plan.pixelStep, weight + k, bias.map { $0 + k }, out + q * K + k)
            }
            q += 1
        }
    }
}

// 8 output pixels × 32 output channels. `x` is the first pixel's run start in tap row 0; `w` the
// weight at the tile's first output channel.
@inline(__always)
private func forwardTile8x2(_ plan: DirectPlan, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                            _ bias: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>) {
    let (K, run, step) = (plan.K, plan.run, plan.pixelStep)
    let b0 = bias.map { load($0) } ?? Vector(), b1 = bias.map { load($0 + V) } ?? Vector()
    var a00 = b0, a10 = b0, a20 = b0, a30 = b0, a40 = b0, a50 = b0, a60 = b0, a70 = b0
    var a01 = b1, a11 = b1, a21 = b1, a31 = b1, a41 = b1, a51 = b1, a61 = b1, a71 = b1
    for r in 0..<plan.R {
        let xr = x + r * plan.rowStep, wr = w + r * run * K
        for j in 0..<run {
            let w0 = load(wr + j * K), w1 = load(wr + j * K + V)
            var b = Vector(repeating: xr[j]); a00.addProduct(b, w0); a01.addProduct(b, w1)
            b = Vector(repeating: xr[step + j]); a10.addProduct(b, w0); a11.addProduct(b, w1)
            b = Vector(repeating: xr[2 * step + j]); a20.addProduct(b, w0); a21.addProduct(b, w1)
            b = Vector(repeating: xr[3 * step + j]); a30.addProduct(b, w0); a31.addProduct(b, w1)
            b = Vector(repeating: xr[4 * step + j]); a40.addProduct(b, w0); a41.addProduct(b, w1)
            b = Vector(repeating: xr[5 * step + j]); a50.addProduct(b, w0); a51.addProduct(b, w1)
            b = Vector(repeating: xr[6 * step + j]); a60.addProduct(b, w0); a61.addProduct(b, w1)
            b = Vector(repeating: xr[7 * step + j]); a70.addProduct(b, w0); a71.addProduct(b, w1)
        }
    }
    store(a00, out); store(a01, out + V)
    store(a10, out + K); store(a11, out + K + V)
    store(a20, out + 2 * K); store(a21, out + 2 * K + V)
    store(a30, out + 3 * K); store(a31, out + 3 * K + V)
    store(a40, out + 4 * K); store(a41, out + 4 * K + V)
    store(a50, out + 5 * K); store(a51, out + 5 * K + V)
    store(a60, out + 6 * K); store(a61, out + 6 * K + V)
    store(a70, out + 7 * K); store(a71, out + 7 * K + V)
}

// 8 output pixels × 16 output channels.
@inline(__always)
private func forwardTile8x1(_ plan: DirectPlan, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                            _ bias: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>) {
    let (K, run, step) = (plan.K, plan.run, plan.pixelStep)
    let b0 = bias.map { load($0) } ?? Vector()
    var a0 = b0, a1 = b0, a2 = b0, a3 = b0, a4 = b0, a5 = b0, a6 = b0, a7 = b0
    for r in 0..<plan.R {
        let xr = x + r * plan.rowStep, wr = w + r * run * K
        for j in 0..<run {
            let w0 = load(wr + j * K)
            a0.addProduct(Vector(repeating: xr[j]), w0)
            a1.addProduct(Vector(repeating: xr[step + j]), w0)
            a2.addProduct(Vector(repeating: xr[2 * step + j]), w0)
            a3.addProduct(Vector(repeating: xr[3 * step + j]), w0)
            a4.addProduct(Vector(repeating: xr[4 * step + j]), w0)
            a5.addProduct(Vector(repeating: xr[5 * step + j]), w0)
            a6.addProduct(Vector(repeating: xr[6 * step + j]), w0)
            a7.addProduct(Vector(repeating: xr[7 * step + j]), w0)
        }
    }
    store(a0, out); store(a1, out + K); store(a2, out + 2 * K); store(a3, out + 3 * K)
    store(a4, out + 4 * K); store(a5, out + 5 * K); store(a6, out + 6 * K); store(a7, out + 7 * K)
}

// One output pixel × 16 output channels, for the pixels left over after the 8-pixel tiles.
@inline(__always)
private func forwardTile1x1(_ plan: DirectPlan, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                            _ bias: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>) {
    let (K, run) = (plan.K, plan.run)
    var a = bias.map { load($0) } ?? Vector()
    for r in 0..<plan.R {
        let xr = x + r * plan.rowStep, wr = w + r * run * K
        for j in 0..<run { a.addProduct(Vector(repeating: xr[j]), load(wr + j * K)) }
    }
    store(a, out)
}

// dPacked[R, S·C, K] += the plan's weight gradient from one padded image and its dOutput[P, Q, K].
private func accumulateImageWeightGradient(_ plan: DirectPlan, padded: UnsafePointer<Float>,
                                           dOutput: UnsafePointer<Float>, dPacked: UnsafeMutablePointer<Float>) {
    let (K, run) = (plan.K, plan.run)
    for r in 0..<plan.R {
        let x = padded + r * plan.rowStep, d = dPacked + r * run * K
        var j = 0
        while j + 8 <= run {
            var k = 0
            while k + 2 * V <= K {
                weightTile8x2(plan, x + j, dOutput + k, d + j * K + k)
                k += 2 * V
            }
            if k < K { weightTile8x1(plan, x + j, dOutput + k, d + j * K + k) }
            j += 8
        }
        while j < run {
            for k in stride(from: 0, to: K, by: V) { weightTile1x1(plan, x + j, dOutput + k, d + j * K + k) }
            j += 1
        }
    }
}

// Run positions j…j+7 × output channels k…k+31, summed over the image's P·Q pixels. `x` is the padded
// image at tap row r, run position j; `g` is dOutput at channel k; `d` is dPacked at (r, j, k).
@inline(__always)
private func weightTile8x2(_ plan: DirectPlan, _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                           _ d: UnsafeMutablePointer<Float>) {
    let K = plan.K
    var a00 = Vector(), a10 = a00, a20 = a00, a30 = a00, a40 = a00, a50 = a00, a60 = a00, a70 = a00
    var a01 = a00, a11 = a00, a21 = a00, a31 = a00, a41 = a00, a51 = a00, a61 = a00, a71 = a00
    for p in 0..<plan.P {
        let xp = x + p * plan.strideHeight * plan.rowStep, gp = g + p * plan.Q * K
        for q in 0..<plan.Q {
            let xq = xp + q * plan.pixelStep, gq = gp + q * K
            let g0 = load(gq), g1 = load(gq + V)
            var b = Vector(repeating: xq[0]); a00.addProduct(b, g0); a01.addProduct(b, g1)
            b = Vector(repeating: xq[1]); a10.addProduct(b, g0); a11.addProduct(b, g1)
            b = Vector(repeating: xq[2]); a20.addProduct(b, g0); a21.addProduct(b, g1)
            b = Vector(repeating: xq[3]); a30.addProduct(b, g0); a31.addProduct(b, g1)
            b = Vector(repeating: xq[4]); a40.addProduct(b, g0); a41.addProduct(b, g1)
            b = Vector(repeating: xq[5]); a50.addProduct(b, g0); a51.addProduct(b, g1)
            b = Vector(repeating: xq[6]); a60.addProduct(b, g0); a61.addProduct(b, g1)
            b = Vector(repeating: xq[7]); a70.addProduct(b, g0); a71.addProduct(b, g1)
        }
    }
    func add(_ a: Vector, _ offset: Int) { store(load(d + offset) + a, d + offset) }
    add(a00, 0); add(a01, V)
    add(a10, K); add(a11, K + V)
    add(a20, 2 * K); add(a21, 2 * K + V)
    add(a30, 3 * K); add(a31, 3 * K + V)
    add(a40, 4 * K); add(a41, 4 * K + V)
    add(a50, 5 * K); add(a51, 5 * K + V)
    add(a60, 6 * K); add(a61, 6 * K + V)
    add(a70, 7 * K); add(a71, 7 * K + V)
}

// Run positions j…j+7 × output channels k…k+15.
@inline(__always)
private func weightTile8x1(_ plan: DirectPlan, _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                           _ d: UnsafeMutablePointer<Float>) {
    let K = plan.K
    var a0 = Vector(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0
    for p in 0..<plan.P {
        let xp = x + p * plan.strideHeight * plan.rowStep, gp = g + p * plan.Q * K
        for q in 0..<plan.Q {
            let xq = xp + q * plan.pixelStep
            let g0 = load(gp + q * K)
            a0.addProduct(Vector(repeating: xq[0]), g0)
            a1.addProduct(Vector(repeating: xq[1]), g0)
            a2.addProduct(Vector(repeating: xq[2]), g0)
            a3.addProduct(Vector(repeating: xq[3]), g0)
            a4.addProduct(Vector(repeating: xq[4]), g0)
            a5.addProduct(Vector(repeating: xq[5]), g0)
            a6.addProduct(Vector(repeating: xq[6]), g0)
            a7.addProduct(Vector(repeating: xq[7]), g0)
        }
    }
    func add(_ a: Vector, _ offset: Int) { store(load(d + offset) + a, d + offset) }
    add(a0, 0); add(a1, K); add(a2, 2 * K); add(a3, 3 * K); add(a4, 4 * K); add(a5, 5 * K); add(a6, 6 * K); add(a7, 7 * K)
}

// One run position × 16 output channels, for the run positions left over after the 8-wide tiles.
@inline(__always)
private func weightTile1x1(_ plan: DirectPlan, _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                           _ d: UnsafeMutablePointer<Float>) {
    let K = plan.K
    var a = Vector()
    for p in 0..<plan.P {
        let xp = x + p * plan.strideHeight * plan.rowStep, gp = g + p * plan.Q * K
        for q in 0..<plan.Q { a.addProduct(Vector(repeating: xp[q * plan.pixelStep]), load(gp + q * K)) }
    }
    store(load(d) + a, d)
}

// MARK: - Batch drivers

extension Conv2DGeometry {
    fileprivate var floatsPerInputImage: Int { inputHeight * inputWidth * inputChannels }

    // The forward (and weight-gradient) plan: the input padded by (ph, pw).
    fileprivate var forwardPlan: DirectPlan {
        DirectPlan(C: inputChannels, K: outputChannels, R: kernelHeight, S: kernelWidth,
                   strideHeight: strideHeight, strideWidth: strideWidth, P: outputHeight, Q: outputWidth,
                   Hp: inputHeight + 2 * paddingHeight, Wp: inputWidth + 2 * paddingWidth)
    }

    // The input-gradient plan: dOutput padded by (R − 1 − ph, S − 1 − pw), channels swapped.
    fileprivate var backwardInputPlan: DirectPlan {
        DirectPlan(C: outputChannels, K: inputChannels, R: kernelHeight, S: kernelWidth, strideHeight: 1, strideWidth: 1,
                   P: inputHeight, Q: inputWidth,
                   Hp: outputHeight + 2 * (kernelHeight - 1 - paddingHeight),
                   Wp: outputWidth + 2 * (kernelWidth - 1 - paddingWidth))
    }
}

/// `conv2DForward` by the direct kernels (see the file comment), split over `threads` ranges of images.
/// - Precondition: `geometry.usesDirectForward`.
public func conv2DForwardDirect(
    _ geometry: Conv2DGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, workspace: Conv2DWorkspace,
    threads: Int = kernelThreads
) {
    precondition(geometry.usesDirectForward, "conv2DForwardDirect: needs groups = 1 and output channels divisible by 16")
    let plan = geometry.forwardPlan
    let (R, S, C, K) = (plan.R, plan.S, plan.C, plan.K)
    // [R, S, C, K] ← [K, C, R, S]
    let packed = workspace.directWeight(count: R * S * C * K)
    for k in 0..<K { for c in 0..<C { for t in 0..<(R * S) { packed[(t * C + c) * K + k] = weight[(k * C + c) * R * S + t] } } }
    let threads = max(1, min(threads, geometry.batch))
    let scratch = workspace.directPadded(count: threads * plan.paddedCount)
    let (H, W, inputImage, outputImage) = (geometry.inputHeight, geometry.inputWidth, geometry.floatsPerInputImage, plan.P * plan.Q * K)
    parallelFor(threads) { t in
        let padded = scratch + t * plan.paddedCount
        for n in partition(geometry.batch, parts: threads, index: t) {
            padImage(input + n * inputImage, height: H, width: W, channels: C, top: geometry.paddingHeight,
                     left: geometry.paddingWidth, into: padded, Hp: plan.Hp, Wp: plan.Wp)
            convolveImage(plan, padded: padded, weight: packed, bias: bias, output: output + n * outputImage)
        }
    }
}

/// `conv2DBackwardInput` by the direct kernels: the forward convolution of the padded dOutput with the
/// flipped kernel. - Precondition: `geometry.usesDirectBackwardInput`.
public func conv2DBackwardInputDirect(
    _ geometry: Conv2DGeometry, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    dInput: UnsafeMutablePointer<Float>, workspace: Conv2DWorkspace, threads: Int = kernelThreads
) {
    precondition(geometry.usesDirectBackwardInput,
                 "conv2DBackwardInputDirect: needs groups = 1, input channels divisible by 16, stride 1 and padding < kernel")
    let plan = geometry.backwardInputPlan
    let (R, S, K, C) = (plan.R, plan.S, plan.C, plan.K)
    // [R, S, K, C] ← [K, C, R, S] flipped: packed[r, s, k, c] = weight[k, c, R − 1 − r, S − 1 − s]
    let packed = workspace.directWeight(count: R * S * C * K)
    for k in 0..<K { for c in 0..<C { for r in 0..<R { for s in 0..<S {
        packed[((r * S + s) * K + k) * C + c] = weight[((k * C + c) * R + R - 1 - r) * S + S - 1 - s]
    } } } }
    let threads = max(1, min(threads, geometry.batch))
    let scratch = workspace.directPadded(count: threads * plan.paddedCount)
    let (P, Q) = (geometry.outputHeight, geometry.outputWidth)
    let (outputImage, inputImage) = (P * Q * K, geometry.floatsPerInputImage)
    parallelFor(threads) { t in
        let padded = scratch + t * plan.paddedCount
        for n in partition(geometry.batch, parts: threads, index: t) {
            padImage(dOutput + n * outputImage, height: P, width: Q, channels: K,
                     top: R - 1 - geometry.paddingHeight, left: S - 1 - geometry.paddingWidth,
                     into: padded, Hp: plan.Hp, Wp: plan.Wp)
            convolveImage(plan, padded: padded, weight: packed, bias: nil, output: dInput + n * inputImage)
        }
    }
}

/// `conv2DBackwardWeight` by the direct kernels; dBias as there. - Precondition: `geometry.usesDirectForward`.
public func conv2DBackwardWeightDirect(
    _ geometry: Conv2DGeometry, input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>,
    dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?, workspace: Conv2DWorkspace,
    threads: Int = kernelThreads
) {
    precondition(geometry.usesDirectForward, "conv2DBackwardWeightDirect: needs groups = 1 and output channels divisible by 16")
    let plan = geometry.forwardPlan
    let (R, S, C, K) = (plan.R, plan.S, plan.C, plan.K)
    if let dBias { addColumnSums(dOutput, rows: geometry.batch * plan.P * plan.Q, columns: K, into: dBias) }
    let threads = max(1, min(threads, geometry.batch))
    let weightCount = R * S * C * K
    let scratch = workspace.directPadded(count: threads * plan.paddedCount)
    let partials = workspace.directWeightPartials(count: threads * weightCount)
    partials.update(repeating: 0, count: threads * weightCount)
    let (H, W, inputImage, outputImage) = (geometry.inputHeight, geometry.inputWidth, geometry.floatsPerInputImage, plan.P * plan.Q * K)
    parallelFor(threads) { t in
        let padded = scratch + t * plan.paddedCount
        for n in partition(geometry.batch, parts: threads, index: t) {
            padImage(input + n * inputImage, height: H, width: W, channels: C, top: geometry.paddingHeight,
                     left: geometry.paddingWidth, into: padded, Hp: plan.Hp, Wp: plan.Wp)
            accumulateImageWeightGradient(plan, padded: padded, dOutput: dOutput + n * outputImage,
                                          dPacked: partials + t * weightCount)
        }
    }
    for t in 1..<max(1, threads) { accumulate(partials + t * weightCount, into: partials, count: weightCount) }
    // dWeight[K, C, R, S] += partial[R, S, C, K]
    for k in 0..<K { for c in 0..<C { for t in 0..<(R * S) { dWeight[(k * C + c) * R * S + t] += partials[(t * C + c) * K + k] } } }
}

