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
// register-blocked loop reads it in place: a tile of 8 output pixels × 32 output channels, or 16 pixels
// × 16 channels where there are only 16, lives in 16 vector registers, and each step of the run
// broadcasts one input value per pixel and loads one or two weight vectors (~200 GFLOP/s per core with
// AVX-512 on this project's machine, peak ~250); 8 × 16 tiles take what is left over, the last pixels of a
// row in an 8-pixel tile that stores only the pixels that exist.
// With 16 channels and a 3-wide kernel at stride 1, the 16-pixel tile is input-stationary instead: each
// input value is broadcast once for the three pixels that read it, which keeps the loads per
// multiply-add at the 8 × 32 tile's level.
//
// - Forward: output[p, q, k] = Σ_r Σ_{j < S·C} padded[p·sh + r, q·sw·C + j] · packed[r, j, k].
// - Backward-input: dInput[h, w] gathers dOutput[p, q] · weight[r, s] over h = p·sh − ph + r (and the
//   same for w), so the input rows h = a + sh·i of one phase a ∈ [0, sh) meet only the taps
//   r ≡ a + ph (mod sh). Per phase (a, b), dInput at (a + sh·i, b + sw·j) is a stride-1 convolution of
//   dOutput, zero-padded (or cropped) to line up, with that phase's sub-kernel flipped and its channel
//   axes swapped, packed as [R', S', K, C]; its output pixels lie sw·C floats apart and its rows sh·W·C.
//   With stride 1 there is one phase and this is the usual flipped-kernel convolution. A phase whose
//   sub-kernel is empty (a 1×1 kernel with stride 2 skips every other input pixel) gets zeros.
// - Backward-weight: dPacked[r, j, k] = Σ_{p, q} padded[p·sh + r, q·sw·C + j] · dOutput[p, q, k]; a tile
//   of 8 run positions × 16 or 32 output channels stays in registers while the loop walks the image.
//
// Tiles finish in registers before their one store: the forward's epilogue (a residual to add, ReLU)
// and the input gradient's accumulation (dInput +=) cost one extra load per vector, and a batch-norm
// scale and shift are folded into the packed weights and the bias when the weights are packed.
//
// Threads split the batch into contiguous ranges of images; the weight gradient sums each thread's
// images into its own partial and adds the partials at the end. `conv2DBackwardDirect` runs both
// gradients image by image in one sweep, while each image's dOutput is still in cache.
//
// With bf16 precision the same drivers plan, pack and split the work, and hand each image to the
// AVX512-BF16 kernels instead of these tiles (Conv2DBFloat16Kernels.swift).

private typealias Vector = SIMD16<Float>
private let V = 16

// 16 floats from or to any address, for the direct and the Winograd kernels.
@inline(__always)
func load(_ pointer: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(pointer).loadUnaligned(as: SIMD16<Float>.self)
}

@inline(__always)
func store(_ vector: SIMD16<Float>, _ pointer: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(pointer).storeBytes(of: vector, as: SIMD16<Float>.self)
}

extension Conv2DGeometry {
    /// Whether `conv2DForward` and `conv2DBackwardWeight` take the direct kernels.
    public var usesDirectForward: Bool { groups == 1 && outputChannels % V == 0 && batch > 0 }

    /// Whether `conv2DBackwardInput` takes the direct kernel (any stride and padding).
    public var usesDirectBackwardInput: Bool { groups == 1 && inputChannels % V == 0 && batch > 0 }
}

// One image's direct convolution: padded input [Hp, Wp, C] → output [P, Q, K] with weights [R, S·C, K].
// Output pixel (p, q) lies at p·outputRowStep + q·outputPixelStep (Q·K and K for a dense output).
struct DirectPlan {
    var C, K, R, S, strideHeight, strideWidth, P, Q, Hp, Wp: Int
    var outputPixelStep, outputRowStep: Int

    var run: Int { S * C }
    // Whether the weight gradient takes the run-vector tiles (`weightTile3x8`), which need the run in
    // whole groups of three vectors and the output channels in groups of 8; their partial sums are laid
    // out [R, K, S·C] instead of [R, S·C, K].
    var weightGradientIsRunMajor: Bool { run % (3 * V) == 0 && K % 8 == 0 }
    var rowStep: Int { Wp * C }
    var pixelStep: Int { strideWidth * C }
    var paddedCount: Int { Hp * Wp * C }
}

// What a tile does to its sums before storing them: add what the output already holds, then (with a
// residual pointer) add the residual at the same offset, then clamp at zero.
private struct StoreMode {
    var accumulate = false
    var relu = false
}

@inline(__always)
private func finish(_ sum: Vector, _ mode: StoreMode, _ residual: UnsafePointer<Float>?,
                    _ out: UnsafeMutablePointer<Float>, _ offset: Int) {
    var value = sum
    if mode.accumulate { value += load(out + offset) }
    if let residual { value += load(residual + offset) }
    if mode.relu { value.replace(with: 0, where: value .< 0) }
    store(value, out + offset)
}

// `finish` for the one-vector sums of 16 consecutive output pixels, `o` floats apart.
@inline(__always)
private func finishSixteenPixels(
    _ a: (Vector, Vector, Vector, Vector, Vector, Vector, Vector, Vector,
          Vector, Vector, Vector, Vector, Vector, Vector, Vector, Vector),
    _ mode: StoreMode, _ residual: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>, _ o: Int
) {
    finish(a.0, mode, residual, out, 0); finish(a.1, mode, residual, out, o)
    finish(a.2, mode, residual, out, 2 * o); finish(a.3, mode, residual, out, 3 * o)
    finish(a.4, mode, residual, out, 4 * o); finish(a.5, mode, residual, out, 5 * o)
    finish(a.6, mode, residual, out, 6 * o); finish(a.7, mode, residual, out, 7 * o)
    finish(a.8, mode, residual, out, 8 * o); finish(a.9, mode, residual, out, 9 * o)
    finish(a.10, mode, residual, out, 10 * o); finish(a.11, mode, residual, out, 11 * o)
    finish(a.12, mode, residual, out, 12 * o); finish(a.13, mode, residual, out, 13 * o)
    finish(a.14, mode, residual, out, 14 * o); finish(a.15, mode, residual, out, 15 * o)
}

// Offsets of an 8-pixel tile's pixels from its first, `step` floats apart; past the `pixels` that
// exist, pixel 0 again, so that a short tile reads only what its first pixel reads.
@inline(__always)
private func tileOffsets(pixels: Int, step: Int) -> (Int, Int, Int, Int, Int, Int, Int, Int) {
    if pixels == 8 { return (0, step, 2 * step, 3 * step, 4 * step, 5 * step, 6 * step, 7 * step) }
    func at(_ i: Int) -> Int { i < pixels ? i * step : 0 }
    return (0, at(1), at(2), at(3), at(4), at(5), at(6), at(7))
}

// `finish` for the one-vector sums of 8 consecutive output pixels, `o` floats apart, of which the
// first `pixels` exist.
@inline(__always)
private func finishEightPixels(_ a: (Vector, Vector, Vector, Vector, Vector, Vector, Vector, Vector),
                               _ pixels: Int, _ mode: StoreMode, _ residual: UnsafePointer<Float>?,
                               _ out: UnsafeMutablePointer<Float>, _ o: Int) {
    finish(a.0, mode, residual, out, 0)
    if pixels > 1 { finish(a.1, mode, residual, out, o) }
    if pixels > 2 { finish(a.2, mode, residual, out, 2 * o) }
    if pixels > 3 { finish(a.3, mode, residual, out, 3 * o) }
    if pixels > 4 { finish(a.4, mode, residual, out, 4 * o) }
    if pixels > 5 { finish(a.5, mode, residual, out, 5 * o) }
    if pixels > 6 { finish(a.6, mode, residual, out, 6 * o) }
    if pixels > 7 { finish(a.7, mode, residual, out, 7 * o) }
}

// padded[Hp, Wp, C] ← image[H, W, C] placed with its first pixel at padded (top, left), zeros elsewhere.
// `top` and `left` may be negative and the image may overhang the bottom and right: only the overlap
// is copied.
func padImage(_ image: UnsafePointer<Float>, height H: Int, width W: Int, channels C: Int,
                      top: Int, left: Int, into padded: UnsafeMutablePointer<Float>, Hp: Int, Wp: Int) {
    let rowCount = Wp * C
    let first = max(0, left), end = max(first, min(Wp, left + W))  // padded columns holding image columns
    for y in 0..<Hp {
        let row = padded + y * rowCount, h = y - top
        guard h >= 0 && h < H else {
            row.update(repeating: 0, count: rowCount)
            continue
        }
        row.update(repeating: 0, count: first * C)
        (row + first * C).update(from: image + (h * W + first - left) * C, count: (end - first) * C)
        (row + end * C).update(repeating: 0, count: (Wp - end) * C)
    }
}

// output (the plan's [P, Q, K] pixels) = the plan's convolution of one padded image plus bias[K] if
// given, finished as `mode` says; `residual` (nil = none) is laid out like the output.
private func convolveImage(_ plan: DirectPlan, padded: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                           bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                           residual: UnsafePointer<Float>? = nil, mode: StoreMode = StoreMode()) {
    // A separate copy for plain stores, where the finishing steps fold away.
    if residual == nil && !mode.accumulate && !mode.relu {
        convolveImageTiles(plan, padded: padded, weight: weight, bias: bias, output: output, residual: nil, mode: StoreMode())
    } else {
        convolveImageTiles(plan, padded: padded, weight: weight, bias: bias, output: output, residual: residual, mode: mode)
    }
}

@inline(__always)
private func convolveImageTiles(_ plan: DirectPlan, padded: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                                residual: UnsafePointer<Float>?, mode: StoreMode) {
    let (K, Q, step) = (plan.K, plan.Q, plan.outputPixelStep)
    for p in 0..<plan.P {
        let row = padded + p * plan.strideHeight * plan.rowStep
        let out = output + p * plan.outputRowStep, res = residual.map { $0 + p * plan.outputRowStep }
        var q = 0
        // With one 16-channel block, 16 pixels per tile keep 16 sums in registers like the 8 × 32 tile
        // (measured ~5% faster than 8-pixel tiles on 16-channel layers, ~15% on the stride-2 input
        // gradient, whose phases have short runs).
        while K == V && plan.S == 3 && plan.strideWidth == 1 && q + 16 <= Q {
            forwardTile16x1Taps3(plan, row + q * plan.pixelStep, weight, bias, out + q * step,
                                 res.map { $0 + q * step }, mode)
            q += 16
        }
        while K == V && q + 16 <= Q {
            forwardTile16x1(plan, row + q * plan.pixelStep, weight, bias, out + q * step,
                            res.map { $0 + q * step }, mode)
            q += 16
        }
        // The last Q mod 8 pixels take the 8-pixel tiles too, storing only the pixels that exist: one
        // pixel at a time is a single dependent chain of multiply-adds, ~8× slower per pixel, and was
        // most of a 28 × 28 Fashion-MNIST step (28 = 16 + 8 + 4, 14 = 8 + 6, 7 = 7).
        while q < Q {
            let pixels = min(8, Q - q)
            var k = 0
            while k + 2 * V <= K {
                let offset = q * step + k
                forwardTile8x2(plan, row + q * plan.pixelStep, weight + k, bias.map { $0 + k }, out + offset,
                               res.map { $0 + offset }, mode, pixels: pixels)
                k += 2 * V
            }
            if k < K {
                let offset = q * step + k
                forwardTile8x1(plan, row + q * plan.pixelStep, weight + k, bias.map { $0 + k }, out + offset,
                               res.map { $0 + offset }, mode, pixels: pixels)
            }
            q += pixels
        }
    }
}

// 8 output pixels × 32 output channels. `x` is the first pixel's run start in tap row 0; `w` the
// weight, `out` and `residual` the output and residual at the tile's first pixel and output channel.
// With `pixels` < 8 the missing pixels recompute the first one (reading only memory the first reads)
// and are not stored.
@inline(__always)
private func forwardTile8x2(_ plan: DirectPlan, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                            _ bias: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>,
                            _ residual: UnsafePointer<Float>?, _ mode: StoreMode, pixels: Int) {
    let (K, run, o) = (plan.K, plan.run, plan.outputPixelStep)
    let s = tileOffsets(pixels: pixels, step: plan.pixelStep)
    let b0 = bias.map { load($0) } ?? Vector(), b1 = bias.map { load($0 + V) } ?? Vector()
    var a00 = b0, a10 = b0, a20 = b0, a30 = b0, a40 = b0, a50 = b0, a60 = b0, a70 = b0
    var a01 = b1, a11 = b1, a21 = b1, a31 = b1, a41 = b1, a51 = b1, a61 = b1, a71 = b1
    for r in 0..<plan.R {
        // A pointer per pixel and a running weight pointer keep index arithmetic (and its overflow
        // checks) out of the inner loop.
        let xr = x + r * plan.rowStep
        let (x0, x1, x2, x3, x4, x5, x6, x7) = (xr, xr + s.1, xr + s.2, xr + s.3,
                                                xr + s.4, xr + s.5, xr + s.6, xr + s.7)
        var wj = w + r * run * K
        for j in 0..<run {
            let w0 = load(wj), w1 = load(wj + V)
            wj += K
            var b = Vector(repeating: x0[j]); a00.addProduct(b, w0); a01.addProduct(b, w1)
            b = Vector(repeating: x1[j]); a10.addProduct(b, w0); a11.addProduct(b, w1)
            b = Vector(repeating: x2[j]); a20.addProduct(b, w0); a21.addProduct(b, w1)
            b = Vector(repeating: x3[j]); a30.addProduct(b, w0); a31.addProduct(b, w1)
            b = Vector(repeating: x4[j]); a40.addProduct(b, w0); a41.addProduct(b, w1)
            b = Vector(repeating: x5[j]); a50.addProduct(b, w0); a51.addProduct(b, w1)
            b = Vector(repeating: x6[j]); a60.addProduct(b, w0); a61.addProduct(b, w1)
            b = Vector(repeating: x7[j]); a70.addProduct(b, w0); a71.addProduct(b, w1)
        }
    }
    finishEightPixels((a00, a10, a20, a30, a40, a50, a60, a70), pixels, mode, residual, out, o)
    finishEightPixels((a01, a11, a21, a31, a41, a51, a61, a71), pixels, mode, residual.map { $0 + V }, out + V, o)
}

// 16 output pixels × 16 output channels of a 3-tap-wide kernel at stride 1, input-stationary: each
// input value is broadcast once and meets the three taps' weight vectors, feeding the three pixels
// that read it (21 loads per 48 multiply-adds, where the pixel-stationary 16 × 16 tile needs 17 per 16).
@inline(__always)
private func forwardTile16x1Taps3(_ plan: DirectPlan, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                                  _ bias: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>,
                                  _ residual: UnsafePointer<Float>?, _ mode: StoreMode) {
    let (C, K, o) = (plan.C, plan.K, plan.outputPixelStep)
    let (tap1, tap2) = (C * K, 2 * C * K)
    let b0 = bias.map { load($0) } ?? Vector()
    var a0 = b0, a1 = b0, a2 = b0, a3 = b0, a4 = b0, a5 = b0, a6 = b0, a7 = b0
    var a8 = b0, a9 = b0, a10 = b0, a11 = b0, a12 = b0, a13 = b0, a14 = b0, a15 = b0
    for r in 0..<plan.R {
        // xc walks the channels of input column 0 (the tile's first pixel, tap 0); wc the weights of tap 0.
        var xc = x + r * plan.rowStep, wc = w + r * plan.run * K
        for _ in 0..<C {
            let w0 = load(wc), w1 = load(wc + tap1), w2 = load(wc + tap2)
            var xu = xc
            var b = Vector(repeating: xu[0]); a0.addProduct(b, w0); xu += C
            b = Vector(repeating: xu[0]); a1.addProduct(b, w0); a0.addProduct(b, w1); xu += C
            b = Vector(repeating: xu[0]); a2.addProduct(b, w0); a1.addProduct(b, w1); a0.addProduct(b, w2); xu += C
            b = Vector(repeating: xu[0]); a3.addProduct(b, w0); a2.addProduct(b, w1); a1.addProduct(b, w2); xu += C
            b = Vector(repeating: xu[0]); a4.addProduct(b, w0); a3.addProduct(b, w1); a2.addProduct(b, w2); xu += C
            b = Vector(repeating: xu[0]); a5.addProduct(b, w0); a4.addProduct(b, w1); a3.addProduct(b, w2); xu += C
            b = Vector(repeating: xu[0]); a6.addProduct(b, w0); a5.addProduct(b, w1); a4.addProduct(b, w2); xu += C
            b = Vector(repeating: xu[0]); a7.addProduct(b, w0); a6.addProduct(b, w1); a5.addProduct(b, w2); xu += C
            b = Vector(repeating: xu[0]); a8.addProduct(b, w0); a7.addProduct(b, w1); a6.addProduct(b, w2); xu += C
            b = Vector(repeating: xu[0]); a9.addProduct(b, w0); a8.addProduct(b, w1); a7.addProduct(b, w2); xu += C
            b = Vector(repeating: xu[0]); a10.addProduct(b, w0); a9.addProduct(b, w1); a8.addProduct(b, w2); xu += C
            b = Vector(repeating: xu[0]); a11.addProduct(b, w0); a10.addProduct(b, w1); a9.addProduct(b, w2); xu += C
            b = Vector(repeating: xu[0]); a12.addProduct(b, w0); a11.addProduct(b, w1); a10.addProduct(b, w2); xu += C
            b = Vector(repeating: xu[0]); a13.addProduct(b, w0); a12.addProduct(b, w1); a11.addProduct(b, w2); xu += C
            b = Vector(repeating: xu[0]); a14.addProduct(b, w0); a13.addProduct(b, w1); a12.addProduct(b, w2); xu += C
            b = Vector(repeating: xu[0]); a15.addProduct(b, w0); a14.addProduct(b, w1); a13.addProduct(b, w2); xu += C
            b = Vector(repeating: xu[0]); a15.addProduct(b, w1); a14.addProduct(b, w2); xu += C
            b = Vector(repeating: xu[0]); a15.addProduct(b, w2)
            xc += 1
            wc += K
        }
    }
    finishSixteenPixels((a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15), mode, residual, out, o)
}

// 16 output pixels × 16 output channels.
@inline(__always)
private func forwardTile16x1(_ plan: DirectPlan, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                             _ bias: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>,
                             _ residual: UnsafePointer<Float>?, _ mode: StoreMode) {
    let (K, run, step, o) = (plan.K, plan.run, plan.pixelStep, plan.outputPixelStep)
    let b0 = bias.map { load($0) } ?? Vector()
    var a0 = b0, a1 = b0, a2 = b0, a3 = b0, a4 = b0, a5 = b0, a6 = b0, a7 = b0
    var a8 = b0, a9 = b0, a10 = b0, a11 = b0, a12 = b0, a13 = b0, a14 = b0, a15 = b0
    for r in 0..<plan.R {
        // Pointers per pixel (the second eight offset from the first by 8 pixels) and a running weight
        // pointer keep index arithmetic out of the inner loop.
        let xr = x + r * plan.rowStep, eight = 8 * step
        let (x0, x1, x2, x3, x4, x5, x6, x7) = (xr, xr + step, xr + 2 * step, xr + 3 * step,
                                                xr + 4 * step, xr + 5 * step, xr + 6 * step, xr + 7 * step)
        var wj = w + r * run * K
        for j in 0..<run {
            let w0 = load(wj)
            wj += K
            a0.addProduct(Vector(repeating: x0[j]), w0)
            a1.addProduct(Vector(repeating: x1[j]), w0)
            a2.addProduct(Vector(repeating: x2[j]), w0)
            a3.addProduct(Vector(repeating: x3[j]), w0)
            a4.addProduct(Vector(repeating: x4[j]), w0)
            a5.addProduct(Vector(repeating: x5[j]), w0)
            a6.addProduct(Vector(repeating: x6[j]), w0)
            a7.addProduct(Vector(repeating: x7[j]), w0)
            a8.addProduct(Vector(repeating: x0[eight + j]), w0)
            a9.addProduct(Vector(repeating: x1[eight + j]), w0)
            a10.addProduct(Vector(repeating: x2[eight + j]), w0)
            a11.addProduct(Vector(repeating: x3[eight + j]), w0)
            a12.addProduct(Vector(repeating: x4[eight + j]), w0)
            a13.addProduct(Vector(repeating: x5[eight + j]), w0)
            a14.addProduct(Vector(repeating: x6[eight + j]), w0)
            a15.addProduct(Vector(repeating: x7[eight + j]), w0)
        }
    }
    finishSixteenPixels((a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15), mode, residual, out, o)
}

// 8 output pixels × 16 output channels; `pixels` as in `forwardTile8x2`.
@inline(__always)
private func forwardTile8x1(_ plan: DirectPlan, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                            _ bias: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>,
                            _ residual: UnsafePointer<Float>?, _ mode: StoreMode, pixels: Int) {
    let (K, run, o) = (plan.K, plan.run, plan.outputPixelStep)
    let s = tileOffsets(pixels: pixels, step: plan.pixelStep)
    let b0 = bias.map { load($0) } ?? Vector()
    var a0 = b0, a1 = b0, a2 = b0, a3 = b0, a4 = b0, a5 = b0, a6 = b0, a7 = b0
    for r in 0..<plan.R {
        let xr = x + r * plan.rowStep
        let (x0, x1, x2, x3, x4, x5, x6, x7) = (xr, xr + s.1, xr + s.2, xr + s.3,
                                                xr + s.4, xr + s.5, xr + s.6, xr + s.7)
        var wj = w + r * run * K
        for j in 0..<run {
            let w0 = load(wj)
            wj += K
            a0.addProduct(Vector(repeating: x0[j]), w0)
            a1.addProduct(Vector(repeating: x1[j]), w0)
            a2.addProduct(Vector(repeating: x2[j]), w0)
            a3.addProduct(Vector(repeating: x3[j]), w0)
            a4.addProduct(Vector(repeating: x4[j]), w0)
            a5.addProduct(Vector(repeating: x5[j]), w0)
            a6.addProduct(Vector(repeating: x6[j]), w0)
            a7.addProduct(Vector(repeating: x7[j]), w0)
        }
    }
    finishEightPixels((a0, a1, a2, a3, a4, a5, a6, a7), pixels, mode, residual, out, o)
}

// dPacked[R, S·C, K] (or [R, K, S·C] where `weightGradientIsRunMajor`) += the plan's weight gradient
// from one padded image and its dOutput[P, Q, K].
private func accumulateImageWeightGradient(_ plan: DirectPlan, padded: UnsafePointer<Float>,
                                           dOutput: UnsafePointer<Float>, dPacked: UnsafeMutablePointer<Float>) {
    let (K, run) = (plan.K, plan.run)
    if plan.weightGradientIsRunMajor {
        for r in 0..<plan.R {
            let x = padded + r * plan.rowStep, d = dPacked + r * K * run
            for j in stride(from: 0, to: run, by: 3 * V) {
                for k in stride(from: 0, to: K, by: 8) { weightTile3x8(plan, x + j, dOutput + k, d + k * run + j) }
            }
        }
        return
    }
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

// Run positions j…j+47 (three vectors) × output channels k…k+7, summed over the image's P·Q pixels:
// the run is contiguous in the padded image, so each pixel costs three vector loads and eight
// broadcasts of dOutput for 24 multiply-adds. `x` is the padded image at tap row r, run position j;
// `g` is dOutput at channel k; `d` is the run-major partial at (r, k, j).
@inline(__always)
private func weightTile3x8(_ plan: DirectPlan, _ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                           _ d: UnsafeMutablePointer<Float>) {
    let (K, run) = (plan.K, plan.run)
    var a00 = Vector(), a01 = a00, a02 = a00, a03 = a00, a04 = a00, a05 = a00, a06 = a00, a07 = a00
    var a10 = a00, a11 = a00, a12 = a00, a13 = a00, a14 = a00, a15 = a00, a16 = a00, a17 = a00
    var a20 = a00, a21 = a00, a22 = a00, a23 = a00, a24 = a00, a25 = a00, a26 = a00, a27 = a00
    for p in 0..<plan.P {
        var xq = x + p * plan.strideHeight * plan.rowStep, gq = g + p * plan.Q * K
        for _ in 0..<plan.Q {
            let x0 = load(xq), x1 = load(xq + V), x2 = load(xq + 2 * V)
            var b = Vector(repeating: gq[0]); a00.addProduct(x0, b); a10.addProduct(x1, b); a20.addProduct(x2, b)
            b = Vector(repeating: gq[1]); a01.addProduct(x0, b); a11.addProduct(x1, b); a21.addProduct(x2, b)
            b = Vector(repeating: gq[2]); a02.addProduct(x0, b); a12.addProduct(x1, b); a22.addProduct(x2, b)
            b = Vector(repeating: gq[3]); a03.addProduct(x0, b); a13.addProduct(x1, b); a23.addProduct(x2, b)
            b = Vector(repeating: gq[4]); a04.addProduct(x0, b); a14.addProduct(x1, b); a24.addProduct(x2, b)
            b = Vector(repeating: gq[5]); a05.addProduct(x0, b); a15.addProduct(x1, b); a25.addProduct(x2, b)
            b = Vector(repeating: gq[6]); a06.addProduct(x0, b); a16.addProduct(x1, b); a26.addProduct(x2, b)
            b = Vector(repeating: gq[7]); a07.addProduct(x0, b); a17.addProduct(x1, b); a27.addProduct(x2, b)
            xq += plan.pixelStep
            gq += K
        }
    }
    func add(_ a: Vector, _ offset: Int) { store(load(d + offset) + a, d + offset) }
    add(a00, 0); add(a10, V); add(a20, 2 * V)
    add(a01, run); add(a11, run + V); add(a21, run + 2 * V)
    add(a02, 2 * run); add(a12, 2 * run + V); add(a22, 2 * run + 2 * V)
    add(a03, 3 * run); add(a13, 3 * run + V); add(a23, 3 * run + 2 * V)
    add(a04, 4 * run); add(a14, 4 * run + V); add(a24, 4 * run + 2 * V)
    add(a05, 5 * run); add(a15, 5 * run + V); add(a25, 5 * run + 2 * V)
    add(a06, 6 * run); add(a16, 6 * run + V); add(a26, 6 * run + 2 * V)
    add(a07, 7 * run); add(a17, 7 * run + V); add(a27, 7 * run + 2 * V)
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
        // Running pointers: no index arithmetic (and overflow checks) in the inner loop.
        var xq = x + p * plan.strideHeight * plan.rowStep, gq = g + p * plan.Q * K
        for _ in 0..<plan.Q {
            let g0 = load(gq), g1 = load(gq + V)
            var b = Vector(repeating: xq[0]); a00.addProduct(b, g0); a01.addProduct(b, g1)
            b = Vector(repeating: xq[1]); a10.addProduct(b, g0); a11.addProduct(b, g1)
            b = Vector(repeating: xq[2]); a20.addProduct(b, g0); a21.addProduct(b, g1)
            b = Vector(repeating: xq[3]); a30.addProduct(b, g0); a31.addProduct(b, g1)
            b = Vector(repeating: xq[4]); a40.addProduct(b, g0); a41.addProduct(b, g1)
            b = Vector(repeating: xq[5]); a50.addProduct(b, g0); a51.addProduct(b, g1)
            b = Vector(repeating: xq[6]); a60.addProduct(b, g0); a61.addProduct(b, g1)
            b = Vector(repeating: xq[7]); a70.addProduct(b, g0); a71.addProduct(b, g1)
            xq += plan.pixelStep
            gq += K
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
        var xq = x + p * plan.strideHeight * plan.rowStep, gq = g + p * plan.Q * K
        for _ in 0..<plan.Q {
            let g0 = load(gq)
            a0.addProduct(Vector(repeating: xq[0]), g0)
            a1.addProduct(Vector(repeating: xq[1]), g0)
            a2.addProduct(Vector(repeating: xq[2]), g0)
            a3.addProduct(Vector(repeating: xq[3]), g0)
            a4.addProduct(Vector(repeating: xq[4]), g0)
            a5.addProduct(Vector(repeating: xq[5]), g0)
            a6.addProduct(Vector(repeating: xq[6]), g0)
            a7.addProduct(Vector(repeating: xq[7]), g0)
            xq += plan.pixelStep
            gq += K
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

// One axis of the stride-phase decomposition of the input gradient. Input positions first + stride·i
// (i < count) meet only the taps firstTap + stride·t (t < taps): with the sub-kernel flipped
// (u = taps − 1 − t), position i reads dOutput at i + u − pad, so dOutput padded by `pad` (cropped
// where negative) makes the phase a stride-1 convolution.
private struct PhaseAxis {
    var first, count, firstTap, taps, pad: Int

    // The phases of an axis of `input` positions under a kernel of `kernel` taps.
    static func phases(input: Int, kernel: Int, stride: Int, padding: Int) -> [PhaseAxis] {
        (0..<stride).map { first in
            // h = p·stride − padding + r, so stride divides h + padding − r.
            let firstTap = (first + padding) % stride
            let taps = firstTap < kernel ? (kernel - firstTap + stride - 1) / stride : 0
            return PhaseAxis(first: first, count: (input - first + stride - 1) / stride, firstTap: firstTap,
                             taps: taps, pad: taps - 1 - (first + padding) / stride)
        }
    }
}

// The padding of dOutput shared by the phases of one axis: each phase reads from `offset(phase)` on,
// and `extent` padded positions cover every phase's reads.
private struct SharedPadding {
    var before = 0, extent = 0

    init(_ phases: [PhaseAxis]) {
        let convolved = phases.filter { $0.count > 0 && $0.taps > 0 }
        before = convolved.map(\.pad).max() ?? 0
        extent = convolved.map { before - $0.pad + $0.count + $0.taps - 1 }.max() ?? 0
    }

    func offset(_ phase: PhaseAxis) -> Int { before - phase.pad }
}

extension Conv2DGeometry {
    fileprivate var floatsPerInputImage: Int { inputHeight * inputWidth * inputChannels }

    // The forward (and weight-gradient) plan: the input padded by (ph, pw).
    var forwardPlan: DirectPlan {
        DirectPlan(C: inputChannels, K: outputChannels, R: kernelHeight, S: kernelWidth,
                   strideHeight: strideHeight, strideWidth: strideWidth, P: outputHeight, Q: outputWidth,
                   Hp: inputHeight + 2 * paddingHeight, Wp: inputWidth + 2 * paddingWidth,
                   outputPixelStep: outputChannels, outputRowStep: outputWidth * outputChannels)
    }
}

/// `conv2DForward` by the direct kernels (see the file comment), split over `threads` ranges of images.
/// - Precondition: `geometry.usesDirectForward`.
public func conv2DForwardDirect(
    _ geometry: Conv2DGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, workspace: Conv2DWorkspace,
    epilogue: Conv2DEpilogue = .none, precision: Precision = .fp32, threads: Int = kernelThreads
) {
    precondition(geometry.usesDirectForward, "conv2DForwardDirect: needs groups = 1 and output channels divisible by 16")
    let plan = geometry.forwardPlan
    let (R, S, C, K) = (plan.R, plan.S, plan.C, plan.K)
    // [R, S, C, K] ← [K, C, R, S] · scale[K]: scale·(w·x + bias) + shift = (scale·w)·x + (scale·bias + shift).
    let packed = workspace.directWeight(count: R * S * C * K)
    for k in 0..<K {
        let scale = epilogue.scale?[k] ?? 1
        for c in 0..<C { for t in 0..<(R * S) { packed[(t * C + c) * K + k] = scale * weight[(k * C + c) * R * S + t] } }
    }
    var foldedBias = bias
    if epilogue.scale != nil || epilogue.shift != nil {
        let folded = workspace.directBias(count: K)
        for k in 0..<K { folded[k] = (bias?[k] ?? 0) * (epilogue.scale?[k] ?? 1) + (epilogue.shift?[k] ?? 0) }
        foldedBias = UnsafePointer(folded)
    }
    let mode = StoreMode(relu: epilogue.relu)
    let threads = max(1, min(threads, geometry.batch))
    let (H, W, inputImage, outputImage) = (geometry.inputHeight, geometry.inputWidth, geometry.floatsPerInputImage, plan.P * plan.Q * K)
    #if arch(x86_64)
    if precision.runsBFloat16(geometry.hasBFloat16Forward) {
        let pairs = workspace.directWeightPairs(count: R * S * C * K / 2)
        packBFloat16Pairs(packed, rows: R, run: plan.run, columns: K, into: pairs)
        let scratch = HalfScratch.perThread((plan.paddedCount, 0), threads: threads, workspace: workspace)
        parallelFor(threads) { t in
            let padded = scratch(t).halves
            for n in partition(geometry.batch, parts: threads, index: t) {
                padImageBFloat16(input + n * inputImage, height: H, width: W, channels: C, top: geometry.paddingHeight,
                                 left: geometry.paddingWidth, into: padded, Hp: plan.Hp, Wp: plan.Wp)
                convolveImageBFloat16(plan, padded: padded, weightPairs: pairs, bias: foldedBias,
                                      output: output + n * outputImage,
                                      residual: epilogue.residual.map { $0 + n * outputImage }, accumulate: false,
                                      relu: epilogue.relu)
            }
        }
        return
    }
    #endif
    let scratch = workspace.directPadded(count: threads * plan.paddedCount)
    parallelFor(threads) { t in
        let padded = scratch + t * plan.paddedCount
        for n in partition(geometry.batch, parts: threads, index: t) {
            padImage(input + n * inputImage, height: H, width: W, channels: C, top: geometry.paddingHeight,
                     left: geometry.paddingWidth, into: padded, Hp: plan.Hp, Wp: plan.Wp)
            convolveImage(plan, padded: padded, weight: packed, bias: foldedBias, output: output + n * outputImage,
                          residual: epilogue.residual.map { $0 + n * outputImage }, mode: mode)
        }
    }
}

// The input-gradient work of one call, prepared once (the phases and their packed sub-kernels) and
// then run image by image: per stride phase, the forward convolution of the padded dOutput with the
// phase's flipped sub-kernel (see the file comment).
private struct InputGradientPass {
    let geometry: Conv2DGeometry
    let phases: [(plan: DirectPlan, weight: UnsafePointer<Float>, padded: Int, output: Int)]
    // Input phases no tap reaches: their gradient is zero.
    let zeroed: [(rows: PhaseAxis, columns: PhaseAxis)]
    let rowPadding: SharedPadding, columnPadding: SharedPadding
    let mode: StoreMode
    let accumulate: Bool
    // With bf16 products, each phase's sub-kernel as bf16 pairs (see Conv2DBFloat16Kernels.swift).
    let bf16: Bool
    let weightPairs: [UnsafePointer<UInt32>]

    init(_ geometry: Conv2DGeometry, weight: UnsafePointer<Float>, workspace: Conv2DWorkspace, accumulate: Bool,
         precision: Precision) {
        precondition(geometry.usesDirectBackwardInput,
                     "conv2DBackwardInputDirect: needs groups = 1 and input channels divisible by 16")
        let (W, C, K) = (geometry.inputWidth, geometry.inputChannels, geometry.outputChannels)
        let (R, S, sh, sw) = (geometry.kernelHeight, geometry.kernelWidth, geometry.strideHeight, geometry.strideWidth)
        let rowPhases = PhaseAxis.phases(input: geometry.inputHeight, kernel: R, stride: sh, padding: geometry.paddingHeight)
        let columnPhases = PhaseAxis.phases(input: W, kernel: S, stride: sw, padding: geometry.paddingWidth)
        rowPadding = SharedPadding(rowPhases)
        columnPadding = SharedPadding(columnPhases)
        let (Hp, Wp) = (rowPadding.extent, columnPadding.extent)

        // Per phase (a, b) with a non-empty sub-kernel, packed[u, v, k, c] = weight[k, c, r, s] with
        // r = firstTap + sh·(taps − 1 − u) (and s likewise): the sub-kernel flipped, channels swapped.
        // Each tap belongs to exactly one phase, so the phases' blocks fill R·S·K·C floats.
        var phases: [(plan: DirectPlan, weight: UnsafePointer<Float>, padded: Int, output: Int)] = []
        var zeroed: [(rows: PhaseAxis, columns: PhaseAxis)] = []
        var block = workspace.directWeight(count: R * S * K * C)
        for rows in rowPhases where rows.count > 0 {
            for columns in columnPhases where columns.count > 0 {
                guard rows.taps > 0 && columns.taps > 0 else {
                    zeroed.append((rows, columns))
                    continue
                }
                for u in 0..<rows.taps { for v in 0..<columns.taps { for k in 0..<K { for c in 0..<C {
                    let r = rows.firstTap + sh * (rows.taps - 1 - u), s = columns.firstTap + sw * (columns.taps - 1 - v)
                    block[((u * columns.taps + v) * K + k) * C + c] = weight[((k * C + c) * R + r) * S + s]
                } } } }
                let plan = DirectPlan(C: K, K: C, R: rows.taps, S: columns.taps, strideHeight: 1, strideWidth: 1,
                                      P: rows.count, Q: columns.count, Hp: Hp, Wp: Wp,
                                      outputPixelStep: sw * C, outputRowStep: sh * W * C)
                phases.append((plan, UnsafePointer(block),
                               (rowPadding.offset(rows) * Wp + columnPadding.offset(columns)) * K,
                               (rows.first * W + columns.first) * C))
                block += rows.taps * columns.taps * K * C
            }
        }
        self.geometry = geometry
        self.phases = phases
        self.zeroed = zeroed
        self.accumulate = accumulate
        mode = StoreMode(accumulate: accumulate)
        bf16 = precision.runsBFloat16(geometry.hasBFloat16BackwardInput)
        var weightPairs: [UnsafePointer<UInt32>] = []
        #if arch(x86_64)
        if bf16 {
            var pairs = workspace.directWeightPairs(count: R * S * K * C / 2)
            for phase in phases {
                packBFloat16Pairs(phase.weight, rows: phase.plan.R, run: phase.plan.run, columns: phase.plan.K, into: pairs)
                weightPairs.append(UnsafePointer(pairs))
                pairs += phase.plan.R * phase.plan.run * phase.plan.K / 2
            }
        }
        #endif
        self.weightPairs = weightPairs
    }

    // Values of one thread's padded dOutput scratch.
    var paddedCount: Int { rowPadding.extent * columnPadding.extent * geometry.outputChannels }
    // One thread's scratch: fp32 floats, or bf16 halves.
    var floatCount: Int { bf16 ? 0 : paddedCount }
    var halfCounts: (halves: Int, pairs: Int) { (bf16 ? paddedCount : 0, 0) }

    // dInput image n (overwritten, or added to with `accumulate`) from dOutput image n.
    func run(image n: Int, dOutput: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>,
             padded: UnsafeMutablePointer<Float>, halves: HalfScratch) {
        let (W, C, K) = (geometry.inputWidth, geometry.inputChannels, geometry.outputChannels)
        let (P, Q) = (geometry.outputHeight, geometry.outputWidth)
        let image = dInput + n * geometry.floatsPerInputImage
        if bf16 {
            #if arch(x86_64)
            padImageBFloat16(dOutput + n * P * Q * K, height: P, width: Q, channels: K, top: rowPadding.before,
                             left: columnPadding.before, into: halves.halves, Hp: rowPadding.extent, Wp: columnPadding.extent)
            for (phase, pairs) in zip(phases, weightPairs) {
                convolveImageBFloat16(phase.plan, padded: halves.halves + phase.padded, weightPairs: pairs, bias: nil,
                                      output: image + phase.output, residual: nil, accumulate: accumulate, relu: false)
            }
            #endif
        } else {
            if !phases.isEmpty {
                padImage(dOutput + n * P * Q * K, height: P, width: Q, channels: K, top: rowPadding.before,
                         left: columnPadding.before, into: padded, Hp: rowPadding.extent, Wp: columnPadding.extent)
            }
            for phase in phases {
                convolveImage(phase.plan, padded: padded + phase.padded, weight: phase.weight, bias: nil,
                              output: image + phase.output, mode: mode)
            }
        }
        if accumulate { return }
        for (rows, columns) in zeroed {
            for i in 0..<rows.count { for j in 0..<columns.count {
                let pixel = (rows.first + geometry.strideHeight * i) * W + columns.first + geometry.strideWidth * j
                (image + pixel * C).update(repeating: 0, count: C)
            } }
        }
    }
}

// The weight-gradient work of one call: each part of the batch (see `reductionParts`) sums its images
// into its own partial [R, S, C, K] (in the workspace), and `finish` adds the partials, in part order,
// to dWeight.
private struct WeightGradientPass {
    let geometry: Conv2DGeometry
    let plan: DirectPlan
    let partials: UnsafeMutablePointer<Float>  // [parts, R, S, C, K], or [parts, R, K, S, C] when run-major
    let parts: Int
    // Whether the products are bf16 (see Conv2DBFloat16Kernels.swift), whose partials are run-major.
    let bf16: Bool

    init(_ geometry: Conv2DGeometry, dOutput: UnsafePointer<Float>, dBias: UnsafeMutablePointer<Float>?,
         workspace: Conv2DWorkspace, parts: Int, precision: Precision) {
        precondition(geometry.usesDirectForward, "conv2DBackwardWeightDirect: needs groups = 1 and output channels divisible by 16")
        plan = geometry.forwardPlan
        if let dBias { addColumnSums(dOutput, rows: geometry.batch * plan.P * plan.Q, columns: plan.K, into: dBias) }
        let count = parts * plan.R * plan.S * plan.C * plan.K
        partials = workspace.directWeightPartials(count: count)
        partials.update(repeating: 0, count: count)
        self.geometry = geometry
        self.parts = parts
        bf16 = precision.runsBFloat16(geometry.hasBFloat16Forward)
    }

    var weightCount: Int { plan.R * plan.S * plan.C * plan.K }
    var runMajor: Bool { bf16 || plan.weightGradientIsRunMajor }
    // One thread's scratch: the fp32 padded image, or the bf16 one and its pairs.
    var floatCount: Int { bf16 ? 0 : plan.paddedCount }
    var halfCounts: (halves: Int, pairs: Int) {
        bf16 ? (plan.paddedCount, plan.paddedCount + plan.pairedOutputCount) : (0, 0)
    }

    // Adds image n's contribution to the partial of its part.
    func run(image n: Int, part: Int, input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>,
             padded: UnsafeMutablePointer<Float>, halves: HalfScratch) {
        if bf16 {
            #if arch(x86_64)
            padImageBFloat16(input + n * geometry.floatsPerInputImage, height: geometry.inputHeight,
                             width: geometry.inputWidth, channels: plan.C, top: geometry.paddingHeight,
                             left: geometry.paddingWidth, into: halves.halves, Hp: plan.Hp, Wp: plan.Wp)
            accumulateImageWeightGradientBFloat16(plan, padded: halves.halves, dOutput: dOutput + n * plan.P * plan.Q * plan.K,
                                                  pairs: halves.pairs, partial: partials + part * weightCount)
            #endif
            return
        }
        padImage(input + n * geometry.floatsPerInputImage, height: geometry.inputHeight, width: geometry.inputWidth,
                 channels: plan.C, top: geometry.paddingHeight, left: geometry.paddingWidth, into: padded,
                 Hp: plan.Hp, Wp: plan.Wp)
        accumulateImageWeightGradient(plan, padded: padded, dOutput: dOutput + n * plan.P * plan.Q * plan.K,
                                      dPacked: partials + part * weightCount)
    }

    func finish(into dWeight: UnsafeMutablePointer<Float>) {
        let (C, K, RS) = (plan.C, plan.K, plan.R * plan.S)
        for part in 1..<max(1, parts) { accumulate(partials + part * weightCount, into: partials, count: weightCount) }
        // dWeight[K, C, R, S] += partial[R, S, C, K], or partial[R, K, S, C] when run-major
        if runMajor {
            let (R, S) = (plan.R, plan.S)
            for k in 0..<K { for c in 0..<C { for r in 0..<R { for s in 0..<S {
                dWeight[((k * C + c) * R + r) * S + s] += partials[((r * K + k) * S + s) * C + c]
            } } } }
        } else {
            for k in 0..<K { for c in 0..<C { for t in 0..<RS { dWeight[(k * C + c) * RS + t] += partials[(t * C + c) * K + k] } } }
        }
    }
}

/// `conv2DBackwardInput` by the direct kernels. With `accumulate`, dInput += the gradient instead of
/// being overwritten. - Precondition: `geometry.usesDirectBackwardInput`.
public func conv2DBackwardInputDirect(
    _ geometry: Conv2DGeometry, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    dInput: UnsafeMutablePointer<Float>, workspace: Conv2DWorkspace, accumulate: Bool = false,
    precision: Precision = .fp32, threads: Int = kernelThreads
) {
    let pass = InputGradientPass(geometry, weight: weight, workspace: workspace, accumulate: accumulate, precision: precision)
    let threads = max(1, min(threads, geometry.batch))
    let scratch = workspace.directPadded(count: threads * pass.floatCount)
    let halves = HalfScratch.perThread(pass.halfCounts, threads: threads, workspace: workspace)
    parallelFor(threads) { t in
        for n in partition(geometry.batch, parts: threads, index: t) {
            pass.run(image: n, dOutput: dOutput, dInput: dInput, padded: scratch + t * pass.floatCount, halves: halves(t))
        }
    }
}

/// `conv2DBackwardWeight` by the direct kernels; dBias as there. - Precondition: `geometry.usesDirectForward`.
public func conv2DBackwardWeightDirect(
    _ geometry: Conv2DGeometry, input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>,
    dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?, workspace: Conv2DWorkspace,
    precision: Precision = .fp32, threads: Int = kernelThreads
) {
    let threads = max(1, min(threads, geometry.batch)), parts = reductionParts(geometry.batch, threads: threads)
    let pass = WeightGradientPass(geometry, dOutput: dOutput, dBias: dBias, workspace: workspace, parts: parts,
                                  precision: precision)
    let scratch = workspace.directPadded(count: threads * pass.floatCount)
    let halves = HalfScratch.perThread(pass.halfCounts, threads: threads, workspace: workspace)
    parallelParts(parts, threads: threads) { t, part in
        for n in partition(geometry.batch, parts: parts, index: part) {
            pass.run(image: n, part: part, input: input, dOutput: dOutput, padded: scratch + t * pass.floatCount,
                     halves: halves(t))
        }
    }
    pass.finish(into: dWeight)
}

/// Both gradients of `conv2DBackwardWeightDirect` and `conv2DBackwardInputDirect` in one sweep over the
/// images: each image's dOutput is still in cache for the second product, and the threads meet once.
/// - Precondition: `geometry.usesDirectForward && geometry.usesDirectBackwardInput`.
public func conv2DBackwardDirect(
    _ geometry: Conv2DGeometry, input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    dInput: UnsafeMutablePointer<Float>, accumulate: Bool = false, dWeight: UnsafeMutablePointer<Float>,
    dBias: UnsafeMutablePointer<Float>?, workspace: Conv2DWorkspace, precision: Precision = .fp32,
    threads: Int = kernelThreads
) {
    let threads = max(1, min(threads, geometry.batch)), parts = reductionParts(geometry.batch, threads: threads)
    let inputPass = InputGradientPass(geometry, weight: weight, workspace: workspace, accumulate: accumulate,
                                      precision: precision)
    let weightPass = WeightGradientPass(geometry, dOutput: dOutput, dBias: dBias, workspace: workspace, parts: parts,
                                        precision: precision)
    let perThread = inputPass.floatCount + weightPass.floatCount
    let scratch = workspace.directPadded(count: threads * perThread)
    let (inputHalves, weightHalves) = (inputPass.halfCounts, weightPass.halfCounts)
    let halves = HalfScratch.perThread((inputHalves.halves + weightHalves.halves, inputHalves.pairs + weightHalves.pairs),
                                       threads: threads, workspace: workspace)
    parallelParts(parts, threads: threads) { t, part in
        let paddedOutput = scratch + t * perThread, paddedInput = paddedOutput + inputPass.floatCount
        let outputHalves = halves(t), inputHalves = outputHalves.advanced(by: inputPass.halfCounts)
        for n in partition(geometry.batch, parts: parts, index: part) {
            inputPass.run(image: n, dOutput: dOutput, dInput: dInput, padded: paddedOutput, halves: outputHalves)
            weightPass.run(image: n, part: part, input: input, dOutput: dOutput, padded: paddedInput, halves: inputHalves)
        }
    }
    weightPass.finish(into: dWeight)
}
