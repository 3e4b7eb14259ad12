// Winograd F(2×2, 3×3) convolution kernels for ungrouped 3×3 stride-1 convolutions over NHWC
// activations whose channel counts are multiples of 16 (Lavin & Gray 2016, "Fast Algorithms for
// Convolutional Neural Networks", §4.1): the fast path `conv2DForward`, `conv2DBackwardInput` and
// `conv2DBackwardWeight` take where `Conv2DAlgorithm.swift` chooses it.
//
// Legend as in Conv2DKernels.swift, plus: a tile is a 2×2 block of output pixels, read from the 4×4
// input patch at (2i − ph, 2j − pw); ξ ∈ [0, 16) a position of the 4×4 transformed tile; B tiles per
// block; V = 16 floats per vector.
//
// With the F(2×2, 3×3) matrices
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1],  G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1],  Aᵀ = [1 1 1 0; 0 1 −1 −1],
// one tile's output is
//   Y[k] = Aᵀ [ Σ_c (G g[k, c] Gᵀ) ⊙ (Bᵀ d[c] B) ] A,
// so per position ξ the channel sums are one product M_ξ[tiles, K] = U_ξ[tiles, C] · W_ξ[C, K]:
// 16 multiplies per tile and channel pair where the direct loop does 36 (2.25× fewer).
// - Forward: U = Bᵀ d B of the input tiles, W = G g Gᵀ of the weight, then Y = Aᵀ M A plus bias.
// - Backward-input: at stride 1 the input gradient is the convolution of dOutput, padded by 2 − ph
//   (and 2 − pw), with the 180°-rotated kernel with its channel axes swapped: the forward above on dOutput.
// - Backward-weight: Y is linear in W, so the gradient of Σ Y ⊙ dY with respect to W_ξ[c, k] is
//   Σ_tiles U_ξ[tile, c] · (A dY Aᵀ)_ξ[tile, k], a product U_ξᵀ · D_ξ per position, and the chain rule
//   through W = G g Gᵀ gives dg = Gᵀ dW G (Lavin & Gray's transforms, applied in reverse order).
//
// Tiles are numbered across the images (n, i, j) and handled in blocks of B: the block's transformed
// inputs and products, 16·B·(C + K) floats, stay in the core's cache between transform, product and
// inverse transform. Each thread copies its images, a block's worth at a time, into a zero-padded
// scratch (`padImage` of the direct kernels) so that every tile reads its patch without bounds checks
// (most tiles of 8×8 images touch the border). Transforms are vectorised along the contiguous
// channels; the products are register-blocked like the direct kernels: 8 tiles × 32 channels, or
// 16 × 16 where a count is only 16 (16 vector sums per tile, each step loading one or two weight
// vectors and broadcasting one value per row). The last block's missing tiles are zero rows whose
// results are never stored.
//
// Error: every output is a sum of 16·C products of transformed values, where the direct sum has 9·C
// products, and each transform scales magnitudes by up to its largest absolute row sum per axis (|Bᵀ|
// 2, |G| 1.5, |Aᵀ| 3: 81 over both axes), so its float32 error is bounded by 81·16·C·ε·max|x|·max|w|
// rather than 9·C·ε·max|x|·max|w| (Conv2DWinogradTests argues its tolerance from this). Threads split the batch as the direct kernels do, and the
// weight gradient sums one partial per part (`reductionParts`) in part order, so results depend on the
// thread count only through the core count.

private typealias Vector = SIMD16<Float>
private let V = 16
// Tiles per block (B), multiples of both product tiles' row counts (8 and 16). Measured on ResNet-20's
// layers (2 threads, batch 128): 16 tiles keep the 32-channel forward's block in the level-1 cache
// (1.5× the direct kernel, 1.05× with 32); the weight gradient's products run over the block's tiles
// and gain from 32, which halves the partial sums' loads and stores per multiply-add.
private let productBlock = 16, weightGradientBlock = 32

extension Conv2DGeometry {
    /// Whether the Winograd kernels can run: ungrouped 3×3 at stride 1, channel counts multiples of
    /// 16, padding at most 2 (so that the input gradient's padding 2 − padding is one too).
    public var supportsWinograd: Bool {
        groups == 1 && kernelHeight == 3 && kernelWidth == 3 && strideHeight == 1 && strideWidth == 1
            && paddingHeight <= 2 && paddingWidth <= 2 && inputChannels % V == 0 && outputChannels % V == 0
            && batch > 0
    }
}

// The tiling of one stride-1 3×3 convolution: an [H, W, C] image padded by (ph, pw) → a [P, Q, K] image.
private struct WinogradPlan {
    let C, K, H, W, P, Q, ph, pw: Int
    // Tiles per block.
    let B: Int

    init(_ geometry: Conv2DGeometry, block: Int) {
        (C, K, H, W) = (geometry.inputChannels, geometry.outputChannels, geometry.inputHeight, geometry.inputWidth)
        (P, Q, ph, pw) = (geometry.outputHeight, geometry.outputWidth, geometry.paddingHeight, geometry.paddingWidth)
        B = block
    }

    // The input gradient's convolution: dOutput [P, Q, K] padded by 2 − padding → dInput [H, W, C].
    init(transposing geometry: Conv2DGeometry) {
        (C, K, H, W) = (geometry.outputChannels, geometry.inputChannels, geometry.outputHeight, geometry.outputWidth)
        (P, Q, ph, pw) = (geometry.inputHeight, geometry.inputWidth, 2 - geometry.paddingHeight, 2 - geometry.paddingWidth)
        B = productBlock
    }

    var tileColumns: Int { (Q + 1) / 2 }
    var tilesPerImage: Int { (P + 1) / 2 * tileColumns }
    // A padded image [Hp, Wp, C] holds every tile's whole 4×4 patch, the image at (ph, pw).
    var paddedHeight: Int { P + P % 2 + 2 }
    var paddedWidth: Int { Q + Q % 2 + 2 }
    var paddedImageCount: Int { paddedHeight * paddedWidth * C }
    // Images padded at a time: enough for one block of tiles.
    var chunkImages: Int { (B + tilesPerImage - 1) / tilesPerImage }
    // One thread's scratch: transformed inputs [16, B, C], products [16, B, K], a chunk of padded images.
    var scratchCount: Int { 16 * B * (C + K) + chunkImages * paddedImageCount }

    // Image, output row and output column of tile t.
    @inline(__always)
    func origin(ofTile t: Int) -> (n: Int, p: Int, q: Int) {
        let n = t / tilesPerImage, within = t % tilesPerImage
        return (n, 2 * (within / tileColumns), 2 * (within % tileColumns))
    }
}

// (x₀ … x₃) ↦ Bᵀ x and (y₀, y₁) ↦ A y (= Aᵀᵀ y), the one-dimensional transforms; applied along both
// axes of a tile they give Bᵀ d B and A dY Aᵀ.
@inline(__always)
private func transformInput(_ x: (Vector, Vector, Vector, Vector)) -> (Vector, Vector, Vector, Vector) {
    (x.0 - x.2, x.1 + x.2, x.2 - x.1, x.1 - x.3)
}

@inline(__always)
private func transformOutputGradient(_ y0: Vector, _ y1: Vector) -> (Vector, Vector, Vector, Vector) {
    (y0, y0 + y1, y0 - y1, -y1)
}

// m ↦ Aᵀ m: the inverse transform along one axis.
@inline(__always)
private func transformProduct(_ m: (Vector, Vector, Vector, Vector)) -> (Vector, Vector) {
    (m.0 + m.1 + m.2, m.1 - m.2 - m.3)
}

// u[ξ = 4·y + x] = column x's entry y, for the four columns of a 4×4 tile, positions `stride` floats apart.
@inline(__always)
private func storeColumns(_ c0: (Vector, Vector, Vector, Vector), _ c1: (Vector, Vector, Vector, Vector),
                          _ c2: (Vector, Vector, Vector, Vector), _ c3: (Vector, Vector, Vector, Vector),
                          _ u: UnsafeMutablePointer<Float>, _ stride: Int) {
    func row(_ a: Vector, _ b: Vector, _ c: Vector, _ d: Vector, _ at: UnsafeMutablePointer<Float>) {
        store(a, at); store(b, at + stride); store(c, at + 2 * stride); store(d, at + 3 * stride)
    }
    row(c0.0, c1.0, c2.0, c3.0, u)
    row(c0.1, c1.1, c2.1, c3.1, u + 4 * stride)
    row(c0.2, c1.2, c2.2, c3.2, u + 8 * stride)
    row(c0.3, c1.3, c2.3, c3.3, u + 12 * stride)
}

// u[ξ, b, c ..< c + V] = (Bᵀ d B)[ξ] for each tile b of the block starting at tile `first` of the
// padded images (count tiles; zeros for the rest of the block), d the tile's 4×4 patch of channels
// c ..< c + V.
private func transformInputBlock(_ plan: WinogradPlan, _ padded: UnsafePointer<Float>, first: Int, count: Int,
                                 _ u: UnsafeMutablePointer<Float>) {
    let C = plan.C
    let positionStride = plan.B * C, rowStride = plan.paddedWidth * C
    for b in 0..<count {
        let tile = u + b * C
        let (n, p, q) = plan.origin(ofTile: first + b)
        let corner = padded + n * plan.paddedImageCount + p * rowStride + q * C
        for c in stride(from: 0, to: C, by: V) {
            transformPatch(tile + c, positionStride) { y, x in load(corner + (y &* rowStride &+ x &* C &+ c)) }
        }
    }
    for b in count..<plan.B {
        for xi in 0..<16 { (u + xi * positionStride + b * C).update(repeating: 0, count: C) }
    }
}

// Calls body(first, count, u) for the blocks of tiles of `images`, u [16, B, C] holding the block's
// transformed input tiles and `first` numbering tiles across the whole batch. Images are padded a
// chunk at a time into the thread's scratch, and blocks stop at a chunk's end.
private func forEachInputBlock(_ plan: WinogradPlan, _ input: UnsafePointer<Float>, images: Range<Int>,
                               scratch: UnsafeMutablePointer<Float>, _ body: (Int, Int, UnsafeMutablePointer<Float>) -> Void) {
    let u = scratch, padded = scratch + 16 * plan.B * (plan.C + plan.K)
    var n = images.lowerBound
    while n < images.upperBound {
        let chunk = min(plan.chunkImages, images.upperBound - n)
        for i in 0..<chunk {
            padImage(input + (n + i) * plan.H * plan.W * plan.C, height: plan.H, width: plan.W, channels: plan.C,
                     top: plan.ph, left: plan.pw, into: padded + i * plan.paddedImageCount,
                     Hp: plan.paddedHeight, Wp: plan.paddedWidth)
        }
        let tiles = chunk * plan.tilesPerImage
        var first = 0
        while first < tiles {
            let count = min(plan.B, tiles - first)
            transformInputBlock(plan, padded, first: first, count: count, u)
            body(n * plan.tilesPerImage + first, count, u)
            first += count
        }
        n += chunk
    }
}

// out[ξ · stride] = (Bᵀ d B)[ξ] for the 4×4 patch d(y, x).
@inline(__always)
private func transformPatch(_ out: UnsafeMutablePointer<Float>, _ stride: Int, _ d: (Int, Int) -> Vector) {
    @inline(__always) func row(_ y: Int) -> (Vector, Vector, Vector, Vector) {
        transformInput((d(y, 0), d(y, 1), d(y, 2), d(y, 3)))
    }
    let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3))
    // Column x of (d B) through Bᵀ gives positions (0…3, x).
    let c0 = transformInput((r0.0, r1.0, r2.0, r3.0)), c1 = transformInput((r0.1, r1.1, r2.1, r3.1))
    let c2 = transformInput((r0.2, r1.2, r2.2, r3.2)), c3 = transformInput((r0.3, r1.3, r2.3, r3.3))
    storeColumns(c0, c1, c2, c3, out, stride)
}

// d[ξ, b, k ..< k + V] = (A dY Aᵀ)[ξ] for each tile of the block, dY the tile's 2×2 pixels of the
// [P, Q, K] dOutput images, zeros past the image's last row or column; zeros for missing tiles.
private func transformOutputGradientBlock(_ plan: WinogradPlan, _ dOutput: UnsafePointer<Float>, first: Int,
                                          count: Int, _ d: UnsafeMutablePointer<Float>) {
    let (K, P, Q) = (plan.K, plan.P, plan.Q)
    let positionStride = plan.B * K
    for b in 0..<plan.B {
        let tile = d + b * K
        guard b < count else {
            for xi in 0..<16 { (tile + xi * positionStride).update(repeating: 0, count: K) }
            continue
        }
        let (n, p, q) = plan.origin(ofTile: first + b)
        let pixel = dOutput + ((n * P + p) * Q + q) * K
        let (down, right) = (p + 1 < P, q + 1 < Q)
        for k in stride(from: 0, to: K, by: V) {
            let y00 = load(pixel + k), y01 = right ? load(pixel + K + k) : Vector()
            let y10 = down ? load(pixel + Q * K + k) : Vector()
            let y11 = down && right ? load(pixel + (Q + 1) * K + k) : Vector()
            let r0 = transformOutputGradient(y00, y01), r1 = transformOutputGradient(y10, y11)
            let c0 = transformOutputGradient(r0.0, r1.0), c1 = transformOutputGradient(r0.1, r1.1)
            let c2 = transformOutputGradient(r0.2, r1.2), c3 = transformOutputGradient(r0.3, r1.3)
            let out = tile + k
            storeColumns(c0, c1, c2, c3, out, positionStride)
        }
    }
}

// What the inverse transform does before storing: add the bias, what the output holds (accumulate),
// the residual at the same offset, then clamp at zero.
private struct WinogradStore {
    var bias: UnsafePointer<Float>?
    var residual: UnsafePointer<Float>?
    var accumulate = false
    var relu = false
}

// output pixels of each tile of the block = (Aᵀ M A) + bias, finished as `finish` says, M [16, B, K];
// only pixels inside the [P, Q] image are stored.
private func transformProductBlock(_ plan: WinogradPlan, _ m: UnsafePointer<Float>, first: Int, count: Int,
                                   _ output: UnsafeMutablePointer<Float>, _ finish: WinogradStore) {
    let (K, P, Q) = (plan.K, plan.P, plan.Q)
    let positionStride = plan.B * K
    for b in 0..<count {
        let (n, p, q) = plan.origin(ofTile: first + b)
        let offset = ((n * P + p) * Q + q) * K
        let (down, right) = (p + 1 < P, q + 1 < Q)
        for k in stride(from: 0, to: K, by: V) {
            let tile = m + b * K + k
            @inline(__always) func row(_ y: Int) -> (Vector, Vector) {
                let at = tile + 4 * y * positionStride
                return transformProduct((load(at), load(at + positionStride), load(at + 2 * positionStride),
                                         load(at + 3 * positionStride)))
            }
            let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3))
            let (y00, y10) = transformProduct((r0.0, r1.0, r2.0, r3.0))
            let (y01, y11) = transformProduct((r0.1, r1.1, r2.1, r3.1))
            let bias = finish.bias.map { load($0 + k) } ?? Vector()
            @inline(__always) func put(_ value: Vector, _ at: Int) {
                var value = value + bias
                if finish.accumulate { value += load(output + at) }
                if let residual = finish.residual { value += load(residual + at) }
                if finish.relu { value.replace(with: 0, where: value .< 0) }
                store(value, output + at)
            }
            put(y00, offset + k)
            if right { put(y01, offset + K + k) }
            if down { put(y10, offset + Q * K + k) }
            if down && right { put(y11, offset + (Q + 1) * K + k) }
        }
    }
}

// m[ξ, B, K] = u[ξ, B, C] · w[ξ, C, K] for all 16 positions.
private func multiplyBlock(_ u: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ m: UnsafeMutablePointer<Float>,
                           B: Int, C: Int, K: Int) {
    for xi in 0..<16 {
        let (ux, wx, mx) = (u + xi * B * C, w + xi * C * K, m + xi * B * K)
        if K % (2 * V) == 0 {
            for b in stride(from: 0, to: B, by: 8) {
                for k in stride(from: 0, to: K, by: 2 * V) { productTile8x2(ux + b * C, wx + k, mx + b * K + k, C: C, K: K) }
            }
        } else {
            for b in stride(from: 0, to: B, by: 16) {
                for k in stride(from: 0, to: K, by: V) { productTile16x1(ux + b * C, wx + k, mx + b * K + k, C: C, K: K) }
            }
        }
    }
}

// 8 rows × 32 columns of m = u[rows, C] · w[C, K]: per step one value broadcast per row, two weight vectors.
@inline(__always)
private func productTile8x2(_ u: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ m: UnsafeMutablePointer<Float>,
                            C: Int, K: Int) {
    var a00 = Vector(), a10 = Vector(), a20 = Vector(), a30 = Vector(), a40 = Vector(), a50 = Vector(), a60 = Vector(), a70 = Vector()
    var a01 = Vector(), a11 = Vector(), a21 = Vector(), a31 = Vector(), a41 = Vector(), a51 = Vector(), a61 = Vector(), a71 = Vector()
    let (u0, u1, u2, u3, u4, u5, u6, u7) = (u, u + C, u + 2 * C, u + 3 * C, u + 4 * C, u + 5 * C, u + 6 * C, u + 7 * C)
    var wc = w
    for c in 0..<C {
        let w0 = load(wc), w1 = load(wc + V)
        wc += K
        var x = Vector(repeating: u0[c]); a00.addProduct(x, w0); a01.addProduct(x, w1)
        x = Vector(repeating: u1[c]); a10.addProduct(x, w0); a11.addProduct(x, w1)
        x = Vector(repeating: u2[c]); a20.addProduct(x, w0); a21.addProduct(x, w1)
        x = Vector(repeating: u3[c]); a30.addProduct(x, w0); a31.addProduct(x, w1)
        x = Vector(repeating: u4[c]); a40.addProduct(x, w0); a41.addProduct(x, w1)
        x = Vector(repeating: u5[c]); a50.addProduct(x, w0); a51.addProduct(x, w1)
        x = Vector(repeating: u6[c]); a60.addProduct(x, w0); a61.addProduct(x, w1)
        x = Vector(repeating: u7[c]); a70.addProduct(x, w0); a71.addProduct(x, w1)
    }
    store(a00, m); store(a10, m + K); store(a20, m + 2 * K); store(a30, m + 3 * K)
    store(a40, m + 4 * K); store(a50, m + 5 * K); store(a60, m + 6 * K); store(a70, m + 7 * K)
    let n = m + V
    store(a01, n); store(a11, n + K); store(a21, n + 2 * K); store(a31, n + 3 * K)
    store(a41, n + 4 * K); store(a51, n + 5 * K); store(a61, n + 6 * K); store(a71, n + 7 * K)
}

// 16 rows × 16 columns of m = u[rows, C] · w[C, K].
@inline(__always)
private func productTile16x1(_ u: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ m: UnsafeMutablePointer<Float>,
                             C: Int, K: Int) {
    var a0 = Vector(), a1 = Vector(), a2 = Vector(), a3 = Vector(), a4 = Vector(), a5 = Vector(), a6 = Vector(), a7 = Vector()
    var a8 = Vector(), a9 = Vector(), a10 = Vector(), a11 = Vector(), a12 = Vector(), a13 = Vector(), a14 = Vector(), a15 = Vector()
    var wc = w, uc = u
    for _ in 0..<C {
        let w0 = load(wc)
        wc += K
        a0.addProduct(Vector(repeating: uc[0]), w0); a1.addProduct(Vector(repeating: uc[C]), w0)
        a2.addProduct(Vector(repeating: uc[2 * C]), w0); a3.addProduct(Vector(repeating: uc[3 * C]), w0)
        a4.addProduct(Vector(repeating: uc[4 * C]), w0); a5.addProduct(Vector(repeating: uc[5 * C]), w0)
        a6.addProduct(Vector(repeating: uc[6 * C]), w0); a7.addProduct(Vector(repeating: uc[7 * C]), w0)
        a8.addProduct(Vector(repeating: uc[8 * C]), w0); a9.addProduct(Vector(repeating: uc[9 * C]), w0)
        a10.addProduct(Vector(repeating: uc[10 * C]), w0); a11.addProduct(Vector(repeating: uc[11 * C]), w0)
        a12.addProduct(Vector(repeating: uc[12 * C]), w0); a13.addProduct(Vector(repeating: uc[13 * C]), w0)
        a14.addProduct(Vector(repeating: uc[14 * C]), w0); a15.addProduct(Vector(repeating: uc[15 * C]), w0)
        uc += 1
    }
    store(a0, m); store(a1, m + K); store(a2, m + 2 * K); store(a3, m + 3 * K)
    store(a4, m + 4 * K); store(a5, m + 5 * K); store(a6, m + 6 * K); store(a7, m + 7 * K)
    store(a8, m + 8 * K); store(a9, m + 9 * K); store(a10, m + 10 * K); store(a11, m + 11 * K)
    store(a12, m + 12 * K); store(a13, m + 13 * K); store(a14, m + 14 * K); store(a15, m + 15 * K)
}

// dW[ξ, C, K] += u[ξ, B, C]ᵀ · d[ξ, B, K] for all 16 positions.
private func multiplyTransposedBlock(_ u: UnsafePointer<Float>, _ d: UnsafePointer<Float>,
                                     _ dW: UnsafeMutablePointer<Float>, B: Int, C: Int, K: Int) {
    for xi in 0..<16 {
        let (ux, dx, wx) = (u + xi * B * C, d + xi * B * K, dW + xi * C * K)
        if K % (2 * V) == 0 && C % 8 == 0 {
            for c in stride(from: 0, to: C, by: 8) {
                for k in stride(from: 0, to: K, by: 2 * V) { gradientTile8x2(ux + c, dx + k, wx + c * K + k, B: B, C: C, K: K) }
            }
        } else {
            for c in stride(from: 0, to: C, by: 16) {
                for k in stride(from: 0, to: K, by: V) { gradientTile16x1(ux + c, dx + k, wx + c * K + k, B: B, C: C, K: K) }
            }
        }
    }
}

// dW[8 channels, 32 columns] += Σ_b u[b, c]ᵀ · d[b, k] over the block's tiles.
@inline(__always)
private func gradientTile8x2(_ u: UnsafePointer<Float>, _ d: UnsafePointer<Float>, _ dW: UnsafeMutablePointer<Float>,
                             B: Int, C: Int, K: Int) {
    var a00 = Vector(), a10 = Vector(), a20 = Vector(), a30 = Vector(), a40 = Vector(), a50 = Vector(), a60 = Vector(), a70 = Vector()
    var a01 = Vector(), a11 = Vector(), a21 = Vector(), a31 = Vector(), a41 = Vector(), a51 = Vector(), a61 = Vector(), a71 = Vector()
    var ub = u, db = d
    for _ in 0..<B {
        let d0 = load(db), d1 = load(db + V)
        db += K
        var x = Vector(repeating: ub[0]); a00.addProduct(x, d0); a01.addProduct(x, d1)
        x = Vector(repeating: ub[1]); a10.addProduct(x, d0); a11.addProduct(x, d1)
        x = Vector(repeating: ub[2]); a20.addProduct(x, d0); a21.addProduct(x, d1)
        x = Vector(repeating: ub[3]); a30.addProduct(x, d0); a31.addProduct(x, d1)
        x = Vector(repeating: ub[4]); a40.addProduct(x, d0); a41.addProduct(x, d1)
        x = Vector(repeating: ub[5]); a50.addProduct(x, d0); a51.addProduct(x, d1)
        x = Vector(repeating: ub[6]); a60.addProduct(x, d0); a61.addProduct(x, d1)
        x = Vector(repeating: ub[7]); a70.addProduct(x, d0); a71.addProduct(x, d1)
        ub += C
    }
    @inline(__always) func add(_ a: Vector, _ offset: Int) { store(load(dW + offset) + a, dW + offset) }
    add(a00, 0); add(a10, K); add(a20, 2 * K); add(a30, 3 * K); add(a40, 4 * K); add(a50, 5 * K); add(a60, 6 * K); add(a70, 7 * K)
    add(a01, V); add(a11, K + V); add(a21, 2 * K + V); add(a31, 3 * K + V)
    add(a41, 4 * K + V); add(a51, 5 * K + V); add(a61, 6 * K + V); add(a71, 7 * K + V)
}

// dW[16 channels, 16 columns] += Σ_b u[b, c]ᵀ · d[b, k] over the block's tiles.
@inline(__always)
private func gradientTile16x1(_ u: UnsafePointer<Float>, _ d: UnsafePointer<Float>, _ dW: UnsafeMutablePointer<Float>,
                              B: Int, C: Int, K: Int) {
    var a0 = Vector(), a1 = Vector(), a2 = Vector(), a3 = Vector(), a4 = Vector(), a5 = Vector(), a6 = Vector(), a7 = Vector()
    var a8 = Vector(), a9 = Vector(), a10 = Vector(), a11 = Vector(), a12 = Vector(), a13 = Vector(), a14 = Vector(), a15 = Vector()
    var ub = u, db = d
    for _ in 0..<B {
        let d0 = load(db)
        db += K
        a0.addProduct(Vector(repeating: ub[0]), d0); a1.addProduct(Vector(repeating: ub[1]), d0)
        a2.addProduct(Vector(repeating: ub[2]), d0); a3.addProduct(Vector(repeating: ub[3]), d0)
        a4.addProduct(Vector(repeating: ub[4]), d0); a5.addProduct(Vector(repeating: ub[5]), d0)
        a6.addProduct(Vector(repeating: ub[6]), d0); a7.addProduct(Vector(repeating: ub[7]), d0)
        a8.addProduct(Vector(repeating: ub[8]), d0); a9.addProduct(Vector(repeating: ub[9]), d0)
        a10.addProduct(Vector(repeating: ub[10]), d0); a11.addProduct(Vector(repeating: ub[11]), d0)
        a12.addProduct(Vector(repeating: ub[12]), d0); a13.addProduct(Vector(repeating: ub[13]), d0)
        a14.addProduct(Vector(repeating: ub[14]), d0); a15.addProduct(Vector(repeating: ub[15]), d0)
        ub += C
    }
    @inline(__always) func add(_ a: Vector, _ offset: Int) { store(load(dW + offset) + a, dW + offset) }
    add(a0, 0); add(a1, K); add(a2, 2 * K); add(a3, 3 * K); add(a4, 4 * K); add(a5, 5 * K); add(a6, 6 * K); add(a7, 7 * K)
    add(a8, 8 * K); add(a9, 9 * K); add(a10, 10 * K); add(a11, 11 * K)
    add(a12, 12 * K); add(a13, 13 * K); add(a14, 14 * K); add(a15, 15 * K)
}

// w[ξ, c, k] = (G g Gᵀ)[ξ] of the 3×3 kernel g(r, s) = tap(k, c, r, s), for a [C, K] product.
private func transformWeight(C: Int, K: Int, into w: UnsafeMutablePointer<Float>,
                             _ tap: (_ k: Int, _ c: Int, _ r: Int, _ s: Int) -> Float) {
    // (a, b, c) ↦ G (a, b, c).
    func transform(_ a: Float, _ b: Float, _ c: Float) -> (Float, Float, Float, Float) {
        (a, 0.5 * (a + b + c), 0.5 * (a - b + c), c)
    }
    let stride = C * K
    for c in 0..<C {
        for k in 0..<K {
            // Rows of g through G along s, then column x through G along r gives positions (0…3, x).
            func row(_ r: Int) -> (Float, Float, Float, Float) { transform(tap(k, c, r, 0), tap(k, c, r, 1), tap(k, c, r, 2)) }
            let (r0, r1, r2) = (row(0), row(1), row(2))
            let at = w + c * K + k
            func put(_ x: Int, _ column: (Float, Float, Float, Float)) {
                at[x * stride] = column.0
                at[(4 + x) * stride] = column.1
                at[(8 + x) * stride] = column.2
                at[(12 + x) * stride] = column.3
            }
            put(0, transform(r0.0, r1.0, r2.0))
            put(1, transform(r0.1, r1.1, r2.1))
            put(2, transform(r0.2, r1.2, r2.2))
            put(3, transform(r0.3, r1.3, r2.3))
        }
    }
}

// output = the plan's convolution of `input` with the transformed weight, finished as `finish` says,
// images split over the threads as contiguous ranges.
private func convolveWinograd(_ plan: WinogradPlan, batch: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                              output: UnsafeMutablePointer<Float>, finish: WinogradStore, workspace: Conv2DWorkspace,
                              threads: Int) {
    let threads = max(1, min(threads, batch))
    let scratch = workspace.winogradBlocks(count: threads * plan.scratchCount)
    parallelFor(threads) { t in
        let threadScratch = scratch + t * plan.scratchCount, m = threadScratch + 16 * plan.B * plan.C
        forEachInputBlock(plan, input, images: partition(batch, parts: threads, index: t), scratch: threadScratch) { first, count, u in
            multiplyBlock(u, weight, m, B: plan.B, C: plan.C, K: plan.K)
            transformProductBlock(plan, m, first: first, count: count, output, finish)
        }
    }
}

/// `conv2DForward` by Winograd F(2×2, 3×3) (see the file comment), with the same epilogue semantics:
/// output = max(0?, (conv + bias) · scale + shift + residual). - Precondition: `geometry.supportsWinograd`.
public func conv2DForwardWinograd(
    _ geometry: Conv2DGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, workspace: Conv2DWorkspace,
    epilogue: Conv2DEpilogue = .none, threads: Int = kernelThreads
) {
    precondition(geometry.supportsWinograd, "conv2DForwardWinograd: needs a 3×3 stride-1 ungrouped convolution with 16·n channels")
    let plan = WinogradPlan(geometry, block: productBlock)
    let (C, K) = (plan.C, plan.K)
    // scale·(w·x + bias) + shift = (scale·w)·x + (scale·bias + shift), as the direct kernel folds it.
    let transformed = workspace.winogradWeight(count: 16 * C * K)
    transformWeight(C: C, K: K, into: transformed) { k, c, r, s in
        (epilogue.scale?[k] ?? 1) * weight[((k * C + c) * 3 + r) * 3 + s]
    }
    var foldedBias = bias
    if epilogue.scale != nil || epilogue.shift != nil {
        let folded = workspace.winogradBias(count: K)
        for k in 0..<K { folded[k] = (bias?[k] ?? 0) * (epilogue.scale?[k] ?? 1) + (epilogue.shift?[k] ?? 0) }
        foldedBias = UnsafePointer(folded)
    }
    convolveWinograd(plan, batch: geometry.batch, input: input, weight: transformed, output: output,
                     finish: WinogradStore(bias: foldedBias, residual: epilogue.residual, relu: epilogue.relu),
                     workspace: workspace, threads: threads)
}

/// `conv2DBackwardInput` by Winograd: the forward of dOutput with the rotated, channel-swapped kernel.
/// With `accumulate`, dInput += the gradient. - Precondition: `geometry.supportsWinograd`.
public func conv2DBackwardInputWinograd(
    _ geometry: Conv2DGeometry, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    dInput: UnsafeMutablePointer<Float>, workspace: Conv2DWorkspace, accumulate: Bool = false,
    threads: Int = kernelThreads
) {
    precondition(geometry.supportsWinograd, "conv2DBackwardInputWinograd: needs a 3×3 stride-1 ungrouped convolution with 16·n channels")
    let plan = WinogradPlan(transposing: geometry)
    let (C, K) = (geometry.inputChannels, geometry.outputChannels)
    // The transposed product reads K channels into C: its tap (c, k, r, s) is weight[k, c, 2 − r, 2 − s].
    let transformed = workspace.winogradWeight(count: 16 * C * K)
    transformWeight(C: K, K: C, into: transformed) { c, k, r, s in weight[((k * C + c) * 3 + 2 - r) * 3 + 2 - s] }
    convolveWinograd(plan, batch: geometry.batch, input: dOutput, weight: transformed, output: dInput,
                     finish: WinogradStore(accumulate: accumulate), workspace: workspace, threads: threads)
}

/// `conv2DBackwardWeight` by Winograd (dWeight and dBias accumulate, as there): per part of the batch
/// a partial Σ U_ξᵀ · (A dY Aᵀ)_ξ, the partials summed in part order and taken back through Gᵀ · G.
/// - Precondition: `geometry.supportsWinograd`.
public func conv2DBackwardWeightWinograd(
    _ geometry: Conv2DGeometry, input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>,
    dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?, workspace: Conv2DWorkspace,
    threads: Int = kernelThreads
) {
    precondition(geometry.supportsWinograd, "conv2DBackwardWeightWinograd: needs a 3×3 stride-1 ungrouped convolution with 16·n channels")
    let plan = WinogradPlan(geometry, block: weightGradientBlock)
    let (C, K, batch) = (plan.C, plan.K, geometry.batch)
    if let dBias { addColumnSums(dOutput, rows: batch * plan.P * plan.Q, columns: K, into: dBias) }
    let threads = max(1, min(threads, batch)), parts = reductionParts(batch, threads: threads)
    let weightCount = 16 * C * K
    let partials = workspace.winogradPartials(count: parts * weightCount)  // [parts, 16, C, K]
    partials.update(repeating: 0, count: parts * weightCount)
    let scratch = workspace.winogradBlocks(count: threads * plan.scratchCount)
    parallelParts(parts, threads: threads) { t, part in
        let threadScratch = scratch + t * plan.scratchCount, d = threadScratch + 16 * plan.B * C
        forEachInputBlock(plan, input, images: partition(batch, parts: parts, index: part), scratch: threadScratch) { first, count, u in
            transformOutputGradientBlock(plan, dOutput, first: first, count: count, d)
            multiplyTransposedBlock(u, d, partials + part * weightCount, B: plan.B, C: C, K: K)
        }
    }
    for part in 1..<max(1, parts) { accumulate(partials + part * weightCount, into: partials, count: weightCount) }
    // dWeight[k, c] += Gᵀ X G, X the 4×4 [ξ] of (c, k); (x₀ … x₃) ↦ Gᵀ x along each axis.
    func transform(_ x0: Float, _ x1: Float, _ x2: Float, _ x3: Float) -> (Float, Float, Float) {
        (x0 + 0.5 * (x1 + x2), 0.5 * (x1 - x2), 0.5 * (x1 + x2) + x3)
    }
    for c in 0..<C {
        for k in 0..<K {
            // Row y of X through Gᵀ along x, then column s through Gᵀ along y gives taps (0…2, s).
            func row(_ y: Int) -> (Float, Float, Float) {
                let at = partials + (4 * y * C + c) * K + k
                return transform(at[0], at[C * K], at[2 * C * K], at[3 * C * K])
            }
            let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3))
            let g = dWeight + (k * C + c) * 9
            func add(_ s: Int, _ column: (Float, Float, Float)) {
                g[s] += column.0
                g[3 + s] += column.1
                g[6 + s] += column.2
            }
            add(0, transform(r0.0, r1.0, r2.0, r3.0))
            add(1, transform(r0.1, r1.1, r2.1, r3.1))
            add(2, transform(r0.2, r1.2, r2.2, r3.2))
        }
    }
}
