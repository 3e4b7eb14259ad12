// 2-D convolution kernels over NHWC activations with PyTorch-layout weights (`torch.nn.Conv2d`, no
// dilation):
//
//   output[n, p, q, k] = bias[k] + Σ_{r, s, c} input[n, p·sh − ph + r, q·sw − pw + s, g·Cg + c] · weight[k, c, r, s]
//
// with g = k / Kg the group of output channel k and out-of-range input positions reading as zero.
//
// Legend: N batch; H×W input size; C input channels; K output channels; G groups, Cg = C/G and Kg = K/G
// channels per group; R×S kernel size; P×Q output size; (sh, sw) stride; (ph, pw) padding.
//
// Ungrouped convolutions with output channels (for the input gradient: input channels) in multiples
// of 16 take the direct kernels of Conv2DDirectKernels.swift, any stride and padding. The other fast path: im2col then gemm.
// The column matrix has one row per output position (N·P·Q rows, ordered
// like the NHWC output) and R·S·C columns laid out as G blocks of [R, S, Cg]; each (r, s) tap copies a
// contiguous run of Cg channels (without groups, a kernel row's S taps are one run of S·C). Weights are repacked from [K, Cg, R, S] to [K, R, S, Cg] so that a
// packed row lines up with a block of a column row, and group g is one gemm addressing its block and its
// output channels through leading dimensions, without copies. A 1×1, stride-1, unpadded convolution
// skips im2col: the NHWC input already is the [N·H·W, C] column matrix. Depthwise convolutions
// (G = C = K) skip gemm too: a product per group would be a matrix-vector product of depth R·S, so they
// run as direct loops vectorised along the contiguous channels.
//
// The column matrix is built for a chunk of images at a time, at most `Conv2DWorkspace.columnBudget`
// floats (whole images, at least one), so the workspace stays small and cache-warm between im2col
// and gemm; for ResNet-20's 3×3 layers at batch 128 the full matrix would be 75 MB per layer.

/// Sizes, stride, padding and groups of one 2-D convolution: everything the kernels need besides
/// the buffers.
public struct Conv2DGeometry: Equatable, Sendable {
    public var batch: Int
    public var inputHeight: Int
    public var inputWidth: Int
    public var inputChannels: Int
    public var outputChannels: Int
    public var kernelHeight: Int
    public var kernelWidth: Int
    public var strideHeight: Int
    public var strideWidth: Int
    public var paddingHeight: Int
    public var paddingWidth: Int
    public var groups: Int

    /// - Precondition: kernel and stride ≥ 1, padding ≥ 0, both channel counts divisible by `groups`,
    ///   and the padded input at least as large as the kernel.
    public init(
        batch: Int, inputHeight: Int, inputWidth: Int, inputChannels: Int, outputChannels: Int,
        kernelHeight: Int, kernelWidth: Int, strideHeight: Int = 1, strideWidth: Int = 1,
        paddingHeight: Int = 0, paddingWidth: Int = 0, groups: Int = 1
    ) {
        precondition(kernelHeight >= 1 && kernelWidth >= 1 && strideHeight >= 1 && strideWidth >= 1
                     && paddingHeight >= 0 && paddingWidth >= 0 && groups >= 1,
                     "Conv2DGeometry: kernel and stride must be ≥ 1, padding ≥ 0, groups ≥ 1")
        precondition(inputChannels % groups == 0 && outputChannels % groups == 0,
                     "Conv2DGeometry: \(inputChannels) input and \(outputChannels) output channels must both divide into \(groups) groups")
        precondition(batch >= 0 && inputHeight + 2 * paddingHeight >= kernelHeight
                     && inputWidth + 2 * paddingWidth >= kernelWidth,
                     "Conv2DGeometry: padded input \(inputHeight)×\(inputWidth) is smaller than the \(kernelHeight)×\(kernelWidth) kernel")
        self.batch = batch
        self.inputHeight = inputHeight
        self.inputWidth = inputWidth
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.strideHeight = strideHeight
        self.strideWidth = strideWidth
        self.paddingHeight = paddingHeight
        self.paddingWidth = paddingWidth
        self.groups = groups
    }

    public var outputHeight: Int { (inputHeight + 2 * paddingHeight - kernelHeight) / strideHeight + 1 }
    public var outputWidth: Int { (inputWidth + 2 * paddingWidth - kernelWidth) / strideWidth + 1 }
    /// `[N, H, W, C]`
    public var inputShape: [Int] { [batch, inputHeight, inputWidth, inputChannels] }
    /// `[N, P, Q, K]`
    public var outputShape: [Int] { [batch, outputHeight, outputWidth, outputChannels] }
    /// `[K, C/G, R, S]`, PyTorch's layout.
    public var weightShape: [Int] { [outputChannels, inputChannels / groups, kernelHeight, kernelWidth] }

    // The NHWC input is the column matrix itself.
    var isPointwise: Bool {
        kernelHeight == 1 && kernelWidth == 1 && strideHeight == 1 && strideWidth == 1
            && paddingHeight == 0 && paddingWidth == 0
    }

    var isDepthwise: Bool { groups > 1 && groups == inputChannels && groups == outputChannels }

    // [K, Cg, R, S] and [K, R, S, Cg] are the same array when either side of the swap has one element.
    var packingIsIdentity: Bool { kernelHeight * kernelWidth == 1 || inputChannels == groups }
}

/// What `conv2DForward` applies to each output value before storing it:
/// output = max(0?, (conv + bias) · scale[k] + shift[k] + residual[n, p, q, k]), e.g. an inference-mode
/// batch norm folded into the convolution, a residual join and its ReLU.
public struct Conv2DEpilogue {
    /// `[K]`, nil = 1.
    public var scale: UnsafePointer<Float>?
    /// `[K]`, nil = 0.
    public var shift: UnsafePointer<Float>?
    /// `[N, P, Q, K]` like the output, nil = none. May not alias the output.
    public var residual: UnsafePointer<Float>?
    /// Whether negative values become zero, after everything else.
    public var relu: Bool

    public init(scale: UnsafePointer<Float>? = nil, shift: UnsafePointer<Float>? = nil,
                residual: UnsafePointer<Float>? = nil, relu: Bool = false) {
        self.scale = scale
        self.shift = shift
        self.residual = residual
        self.relu = relu
    }

    /// The plain convolution: output = conv + bias.
    public static var none: Conv2DEpilogue { Conv2DEpilogue() }

    var isNone: Bool { scale == nil && shift == nil && residual == nil && !relu }
}

// output[rows, K] ← the epilogue applied to the finished convolution, for the paths that do not fold it
// into their stores.
private func applyEpilogue(_ epilogue: Conv2DEpilogue, to output: UnsafeMutablePointer<Float>, rows: Int, columns K: Int) {
    typealias Vector = SIMD16<Float>
    let V = Vector.scalarCount
    @inline(__always) func vector(_ pointer: UnsafePointer<Float>?, _ k: Int, default value: Float) -> Vector {
        pointer.map { UnsafeRawPointer($0 + k).loadUnaligned(as: Vector.self) } ?? Vector(repeating: value)
    }
    for row in 0..<rows {
        let out = output + row * K, residual = epilogue.residual.map { $0 + row * K }
        var k = 0
        while k + V <= K {
            var value = UnsafeRawPointer(out + k).loadUnaligned(as: Vector.self)
            value = value * vector(epilogue.scale, k, default: 1) + vector(epilogue.shift, k, default: 0)
                + vector(residual, k, default: 0)
            if epilogue.relu { value.replace(with: 0, where: value .< 0) }
            UnsafeMutableRawPointer(out + k).storeBytes(of: value, as: Vector.self)
            k += V
        }
        while k < K {
            var value = out[k] * (epilogue.scale?[k] ?? 1) + (epilogue.shift?[k] ?? 0) + (residual?[k] ?? 0)
            if epilogue.relu { value = max(value, 0) }
            out[k] = value
            k += 1
        }
    }
}

/// Scratch memory for the convolution kernels, kept between calls so that a training step allocates
/// nothing once sizes settle. Layers that run one at a time (the layers of one model) may share one.
public final class Conv2DWorkspace {
    /// The most floats one chunk of the column matrix may hold; a batch is processed in chunks of
    /// whole images (at least one) under this budget.
    public let columnBudget: Int
    /// The algorithm for the convolutions run with this workspace, nil = the process-wide
    /// `conv2DAlgorithm` (Conv2DAlgorithm.swift).
    public var algorithm: Conv2DAlgorithm?
    private var columns = Scratch<Float>()         // [images per chunk · P · Q, R · S · C]
    private var weights = Scratch<Float>()         // [K, R, S, Cg], or [R, S, C] for depthwise
    private var weightGradient = Scratch<Float>()  // [K, R, S, Cg], or [R, S, C] for depthwise
    private var padded = Scratch<Float>()          // [threads, Hp, Wp, C] for the direct kernels
    private var directWeights = Scratch<Float>()   // [R, S, C, K], or the flipped phase blocks [R', S', K, C]
    private var directBiases = Scratch<Float>()    // [K], the bias with an epilogue's scale and shift folded in
    private var weightPartials = Scratch<Float>()  // [parts, R, S, C, K] (see `reductionParts`), depthwise [N, R, S, C]
    private var paddedHalves = Scratch<UInt16>()   // bf16 padded images, [threads, Hp, Wp, C]
    private var pairs = Scratch<UInt32>()          // bf16 pairs: of inputs and dOutputs per thread
    private var weightPairs = Scratch<UInt32>()    // bf16 pairs of the packed weights, [R, S·C/2, K]
    // Winograd (Conv2DWinogradKernels.swift): the transformed weight [16, C, K], the folded bias [K],
    // the threads' tile blocks [threads, 16, B, C + K] and the weight gradient's [parts, 16, C, K].
    private var winogradWeights = Scratch<Float>(), winogradBiases = Scratch<Float>()
    private var winogradTiles = Scratch<Float>(), winogradWeightPartials = Scratch<Float>()

    /// - Parameter columnBudget: floats per chunk of the column matrix; the default, 2²⁰ (4 MB), keeps
    ///   chunks in the last-level cache while leaving gemm thousands of rows per call.
    public init(columnBudget: Int = 1 << 20) {
        precondition(columnBudget >= 1, "Conv2DWorkspace: columnBudget must be ≥ 1")
        self.columnBudget = columnBudget
    }

    // Images per chunk and a column buffer for that many.
    func columnChunk(_ geometry: Conv2DGeometry) -> (images: Int, columns: UnsafeMutablePointer<Float>) {
        let perImage = geometry.outputHeight * geometry.outputWidth * geometry.kernelHeight
            * geometry.kernelWidth * geometry.inputChannels
        let images = max(1, min(geometry.batch, columnBudget / max(1, perImage)))
        return (images, columns.pointer(count: images * perImage))
    }

    // The weight in [K, R, S, Cg] (or, for depthwise, [R, S, C]) order.
    func packedWeight(_ geometry: Conv2DGeometry, _ weight: UnsafePointer<Float>) -> UnsafePointer<Float> {
        if geometry.isDepthwise {
            let packed = weights.pointer(count: geometry.outputChannels * geometry.kernelHeight * geometry.kernelWidth)
            transposeWeight(geometry, weight, into: packed)
            return UnsafePointer(packed)
        }
        if geometry.packingIsIdentity { return weight }
        let packed = weights.pointer(count: geometry.weightShape.reduce(1, *))
        transposeWeight(geometry, weight, into: packed)
        return UnsafePointer(packed)
    }

    // Scratch of the direct kernels (Conv2DDirectKernels.swift), contents undefined.
    func directPadded(count: Int) -> UnsafeMutablePointer<Float> { padded.pointer(count: count) }
    func directWeight(count: Int) -> UnsafeMutablePointer<Float> { directWeights.pointer(count: count) }
    func directBias(count: Int) -> UnsafeMutablePointer<Float> { directBiases.pointer(count: count) }
    func directWeightPartials(count: Int) -> UnsafeMutablePointer<Float> { weightPartials.pointer(count: count) }
    func directPaddedHalves(count: Int) -> UnsafeMutablePointer<UInt16> { paddedHalves.pointer(count: count) }
    func directPairs(count: Int) -> UnsafeMutablePointer<UInt32> { pairs.pointer(count: count) }
    func directWeightPairs(count: Int) -> UnsafeMutablePointer<UInt32> { weightPairs.pointer(count: count) }
    func winogradWeight(count: Int) -> UnsafeMutablePointer<Float> { winogradWeights.pointer(count: count) }
    func winogradBias(count: Int) -> UnsafeMutablePointer<Float> { winogradBiases.pointer(count: count) }
    func winogradBlocks(count: Int) -> UnsafeMutablePointer<Float> { winogradTiles.pointer(count: count) }
    func winogradPartials(count: Int) -> UnsafeMutablePointer<Float> { winogradWeightPartials.pointer(count: count) }

    // A zeroed buffer for a weight gradient in packed order.
    func packedWeightGradient(_ geometry: Conv2DGeometry) -> UnsafeMutablePointer<Float> {
        let count = geometry.weightShape.reduce(1, *)
        let pointer = weightGradient.pointer(count: count)
        pointer.update(repeating: 0, count: count)
        return pointer
    }
}

// A growable float buffer that keeps its memory between uses.
private struct Scratch<Element>: ~Copyable {
    private var base: UnsafeMutablePointer<Element>?
    private var capacity = 0

    mutating func pointer(count: Int) -> UnsafeMutablePointer<Element> {
        if let base, capacity >= count { return base }
        base?.deallocate()
        capacity = max(count, 1)
        let fresh = UnsafeMutablePointer<Element>.allocate(capacity: capacity)
        base = fresh
        return fresh
    }

    deinit { base?.deallocate() }
}

// [K, Cg, R, S] → [K, R, S, Cg]. Depthwise weights (Cg = 1, K = C) are a [C, R·S] matrix instead,
// transposed to [R·S, C] so that the direct loops read one tap's channels contiguously.
private func transposeWeight(_ geometry: Conv2DGeometry, _ weight: UnsafePointer<Float>, into packed: UnsafeMutablePointer<Float>) {
    let K = geometry.outputChannels, Cg = geometry.inputChannels / geometry.groups
    let RS = geometry.kernelHeight * geometry.kernelWidth
    if geometry.isDepthwise {
        for k in 0..<K { for t in 0..<RS { packed[t * K + k] = weight[k * RS + t] } }
        return
    }
    for k in 0..<K { for c in 0..<Cg { for t in 0..<RS { packed[(k * RS + t) * Cg + c] = weight[(k * Cg + c) * RS + t] } } }
}

// dWeight[K, Cg, R, S] += packed[K, R, S, Cg] (or the depthwise [R, S, C]).
private func addPackedWeightGradient(
    _ geometry: Conv2DGeometry, _ packed: UnsafePointer<Float>, into dWeight: UnsafeMutablePointer<Float>
) {
    let K = geometry.outputChannels, Cg = geometry.inputChannels / geometry.groups
    let RS = geometry.kernelHeight * geometry.kernelWidth
    if geometry.isDepthwise {
        for k in 0..<K { for t in 0..<RS { dWeight[k * RS + t] += packed[t * K + k] } }
        return
    }
    for k in 0..<K { for c in 0..<Cg { for t in 0..<RS { dWeight[(k * Cg + c) * RS + t] += packed[(k * RS + t) * Cg + c] } } }
}

// MARK: - im2col and col2im

// Fills the column matrix for images [first, first + count): row (n, p, q), block g, tap (r, s) holds
// input[n, p·sh − ph + r, q·sw − pw + s, g·Cg ..< (g+1)·Cg], or zeros where that lies in the padding.
private func im2col(_ geometry: Conv2DGeometry, input: UnsafePointer<Float>, firstImage: Int, imageCount: Int,
                    columns: UnsafeMutablePointer<Float>) {
    let (H, W, C) = (geometry.inputHeight, geometry.inputWidth, geometry.inputChannels)
    let (R, S, G) = (geometry.kernelHeight, geometry.kernelWidth, geometry.groups)
    let (P, Q, Cg) = (geometry.outputHeight, geometry.outputWidth, C / G)
    let RSC = R * S * C, RSCg = R * S * Cg
    var row = columns
    for n in firstImage..<(firstImage + imageCount) {
        let image = input + n * H * W * C
        for p in 0..<P {
            for q in 0..<Q {
                let iw0 = q * geometry.strideWidth - geometry.paddingWidth
                for r in 0..<R {
                    let ih = p * geometry.strideHeight - geometry.paddingHeight + r
                    let kernelRow = row + r * S * Cg
                    if G == 1 && ih >= 0 && ih < H && iw0 >= 0 && iw0 + S <= W {
                        // Without groups, the S taps of a kernel row read S neighbouring pixels and write
                        // S neighbouring blocks: one run of S·C floats.
                        kernelRow.update(from: image + (ih * W + iw0) * C, count: S * C)
                        continue
                    }
                    for s in 0..<S {
                        let iw = iw0 + s
                        let tap = kernelRow + s * Cg
                        if ih >= 0 && ih < H && iw >= 0 && iw < W {
                            let source = image + (ih * W + iw) * C
                            for g in 0..<G { (tap + g * RSCg).update(from: source + g * Cg, count: Cg) }
                        } else {
                            for g in 0..<G { (tap + g * RSCg).update(repeating: 0, count: Cg) }
                        }
                    }
                }
                row += RSC
            }
        }
    }
}

// The adjoint of im2col: adds every column-matrix entry back onto the input position it was copied
// from (positions in the padding are dropped). dInput must hold the images' earlier contributions.
private func col2imAdd(_ geometry: Conv2DGeometry, columns: UnsafePointer<Float>, firstImage: Int, imageCount: Int,
                       dInput: UnsafeMutablePointer<Float>) {
    let (H, W, C) = (geometry.inputHeight, geometry.inputWidth, geometry.inputChannels)
    let (R, S, G) = (geometry.kernelHeight, geometry.kernelWidth, geometry.groups)
    let (P, Q, Cg) = (geometry.outputHeight, geometry.outputWidth, C / G)
    let RSC = R * S * C, RSCg = R * S * Cg
    var row = columns
    for n in firstImage..<(firstImage + imageCount) {
        let image = dInput + n * H * W * C
        for p in 0..<P {
            for q in 0..<Q {
                let iw0 = q * geometry.strideWidth - geometry.paddingWidth
                for r in 0..<R {
                    let ih = p * geometry.strideHeight - geometry.paddingHeight + r
                    guard ih >= 0 && ih < H else { continue }
                    let kernelRow = row + r * S * Cg
                    if G == 1 && iw0 >= 0 && iw0 + S <= W {
                        // One run of S·C floats, as in im2col.
                        addVector(kernelRow, into: image + (ih * W + iw0) * C, count: S * C)
                        continue
                    }
                    for s in 0..<S {
                        let iw = iw0 + s
                        guard iw >= 0 && iw < W else { continue }
                        let tap = kernelRow + s * Cg
                        let destination = image + (ih * W + iw) * C
                        for g in 0..<G { addVector(tap + g * RSCg, into: destination + g * Cg, count: Cg) }
                    }
                }
                row += RSC
            }
        }
    }
}

// Calls `body(firstImage, imageCount, columns, ldColumns)` for consecutive chunks of images, with the
// chunk's column matrix filled from the input (or the input itself for pointwise convolutions).
private func forEachColumnChunk(
    _ geometry: Conv2DGeometry, input: UnsafePointer<Float>, workspace: Conv2DWorkspace,
    _ body: (Int, Int, UnsafePointer<Float>, Int) -> Void
) {
    if geometry.isPointwise {
        body(0, geometry.batch, input, geometry.inputChannels)
        return
    }
    let (chunk, columns) = workspace.columnChunk(geometry)
    let ldColumns = geometry.kernelHeight * geometry.kernelWidth * geometry.inputChannels
    var first = 0
    while first < geometry.batch {
        let count = min(chunk, geometry.batch - first)
        im2col(geometry, input: input, firstImage: first, imageCount: count, columns: columns)
        body(first, count, UnsafePointer(columns), ldColumns)
        first += count
    }
}

// MARK: - Fast kernels

/// output[N, P, Q, K] = conv(input[N, H, W, C], weight[K, C/G, R, S]) + bias[K] (overwritten), with
/// `epilogue` applied to each value before it is stored.
///
/// Buffers are dense in the shapes shown (the geometry's `inputShape`, `weightShape`, `outputShape`);
/// `workspace` supplies the column matrix and the repacked weight. `precision` bf16 takes the bf16
/// kernels where the geometry has them (see `Precision`).
public func conv2DForward(
    _ geometry: Conv2DGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, workspace: Conv2DWorkspace,
    epilogue: Conv2DEpilogue = .none, precision: Precision = .fp32
) {
    if precision == .fp32 && geometry.usesWinograd(.forward, workspace) {  // Winograd dispatch (Conv2DAlgorithm.swift)
        conv2DForwardWinograd(geometry, input: input, weight: weight, bias: bias, output: output, workspace: workspace,
                              epilogue: epilogue)
        return
    }
    if geometry.usesDirectForward {
        conv2DForwardDirect(geometry, input: input, weight: weight, bias: bias, output: output, workspace: workspace,
                            epilogue: epilogue, precision: precision)
        return
    }
    // The direct kernel folds the epilogue into its stores; the other paths finish with one pass over the output.
    defer {
        if !epilogue.isNone {
            applyEpilogue(epilogue, to: output, rows: geometry.batch * geometry.outputHeight * geometry.outputWidth,
                          columns: geometry.outputChannels)
        }
    }
    let (K, G, PQ) = (geometry.outputChannels, geometry.groups, geometry.outputHeight * geometry.outputWidth)
    let rows = geometry.batch * PQ
    // With a bias in place the products accumulate onto it; without one they overwrite (beta = 0),
    // except that the depthwise loops always accumulate.
    if let bias {
        broadcastRows(bias, rows: rows, columns: K, into: output)
    } else if geometry.isDepthwise {
        output.update(repeating: 0, count: rows * K)
    }
    let packed = workspace.packedWeight(geometry, weight)
    if geometry.isDepthwise {
        depthwiseForward(geometry, input: input, weight: packed, output: output)
        return
    }
    let Kg = K / G, RSCg = geometry.kernelHeight * geometry.kernelWidth * geometry.inputChannels / G
    forEachColumnChunk(geometry, input: input, workspace: workspace) { first, count, columns, ldColumns in
        for g in 0..<G {
            // output[rows, g·Kg ..< (g+1)·Kg] += columns[rows, block g] · packed[g·Kg ..< (g+1)·Kg, :]ᵀ
            gemm(transposeA: false, transposeB: true, m: count * PQ, n: Kg, k: RSCg,
                 a: columns + g * RSCg, lda: ldColumns, b: packed + g * Kg * RSCg, ldb: RSCg,
                 beta: bias == nil ? 0 : 1, c: output + first * PQ * K + g * Kg, ldc: K)
        }
    }
}

/// dInput[N, H, W, C] = the gradient of Σ output ⊙ dOutput with respect to the input: overwritten, or
/// with `accumulate` added to what dInput holds (e.g. the other branch of a residual join).
public func conv2DBackwardInput(
    _ geometry: Conv2DGeometry, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    dInput: UnsafeMutablePointer<Float>, workspace: Conv2DWorkspace, accumulate: Bool = false,
    precision: Precision = .fp32
) {
    if precision == .fp32 && geometry.usesWinograd(.backwardInput, workspace) {  // Winograd dispatch (Conv2DAlgorithm.swift)
        conv2DBackwardInputWinograd(geometry, dOutput: dOutput, weight: weight, dInput: dInput, workspace: workspace,
                                    accumulate: accumulate)
        return
    }
    if geometry.usesDirectBackwardInput {
        conv2DBackwardInputDirect(geometry, dOutput: dOutput, weight: weight, dInput: dInput, workspace: workspace,
                                  accumulate: accumulate, precision: precision)
        return
    }
    let (C, K, G) = (geometry.inputChannels, geometry.outputChannels, geometry.groups)
    let PQ = geometry.outputHeight * geometry.outputWidth
    let packed = workspace.packedWeight(geometry, weight)
    let Kg = K / G, Cg = C / G, RSC = geometry.kernelHeight * geometry.kernelWidth * C, RSCg = RSC / G
    if geometry.isPointwise && K > 0 {
        // dInput[rows, group g] = dOutput[rows, group g] · packed[group g]: the column gradient is dInput.
        for g in 0..<G {
            gemm(transposeA: false, transposeB: false, m: geometry.batch * PQ, n: Cg, k: Kg,
                 a: dOutput + g * Kg, lda: K, b: packed + g * Kg * Cg, ldb: Cg,
                 beta: accumulate ? 1 : 0, c: dInput + g * Cg, ldc: C)
        }
        return
    }
    // The depthwise loops and col2im add onto dInput.
    if !accumulate { dInput.update(repeating: 0, count: geometry.inputShape.reduce(1, *)) }
    if geometry.isDepthwise {
        depthwiseBackwardInput(geometry, dOutput: dOutput, weight: packed, dInput: dInput)
        return
    }
    if K == 0 { return }
    let (chunk, columns) = workspace.columnChunk(geometry)
    var first = 0
    while first < geometry.batch {
        let count = min(chunk, geometry.batch - first)
        for g in 0..<G {
            // dColumns[rows, block g] = dOutput[rows, g·Kg ..< (g+1)·Kg] · packed[g·Kg ..< (g+1)·Kg, :]
            gemm(transposeA: false, transposeB: false, m: count * PQ, n: RSCg, k: Kg,
                 a: dOutput + first * PQ * K + g * Kg, lda: K, b: packed + g * Kg * RSCg, ldb: RSCg,
                 c: columns + g * RSCg, ldc: RSC)
        }
        col2imAdd(geometry, columns: columns, firstImage: first, imageCount: count, dInput: dInput)
        first += count
    }
}

/// Both backward products: dWeight (and dBias) as `conv2DBackwardWeight`, dInput as
/// `conv2DBackwardInput` (with `accumulate`, added to). Where the direct kernels take both, they run in
/// one sweep over the images (`conv2DBackwardDirect`).
public func conv2DBackward(
    _ geometry: Conv2DGeometry, input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    dInput: UnsafeMutablePointer<Float>, accumulate: Bool = false, dWeight: UnsafeMutablePointer<Float>,
    dBias: UnsafeMutablePointer<Float>?, workspace: Conv2DWorkspace, precision: Precision = .fp32
) {
    let winograd = precision == .fp32  // Winograd dispatch (Conv2DAlgorithm.swift)
        && (geometry.usesWinograd(.backwardInput, workspace) || geometry.usesWinograd(.backwardWeight, workspace))
    if geometry.usesDirectForward && geometry.usesDirectBackwardInput && !winograd {
        conv2DBackwardDirect(geometry, input: input, dOutput: dOutput, weight: weight, dInput: dInput,
                             accumulate: accumulate, dWeight: dWeight, dBias: dBias, workspace: workspace,
                             precision: precision)
        return
    }
    conv2DBackwardWeight(geometry, input: input, dOutput: dOutput, dWeight: dWeight, dBias: dBias, workspace: workspace,
                         precision: precision)
    conv2DBackwardInput(geometry, dOutput: dOutput, weight: weight, dInput: dInput, workspace: workspace, accumulate: accumulate,
                        precision: precision)
}

/// dWeight[K, C/G, R, S] += the gradient of Σ output ⊙ dOutput with respect to the weight, and
/// dBias[K] += Σ over N, P, Q of dOutput.
///
/// The column matrix is rebuilt from the input rather than kept from the forward pass: keeping it would
/// cost R·S times the input's memory per layer for the whole step (75 MB per 3×3 layer of ResNet-20 at
/// batch 128), while rebuilding is one gather pass, cheap next to the two products that read it.
public func conv2DBackwardWeight(
    _ geometry: Conv2DGeometry, input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>,
    dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?, workspace: Conv2DWorkspace,
    precision: Precision = .fp32
) {
    if precision == .fp32 && geometry.usesWinograd(.backwardWeight, workspace) {  // Winograd dispatch (Conv2DAlgorithm.swift)
        conv2DBackwardWeightWinograd(geometry, input: input, dOutput: dOutput, dWeight: dWeight, dBias: dBias,
                                     workspace: workspace)
        return
    }
    if geometry.usesDirectForward {
        conv2DBackwardWeightDirect(geometry, input: input, dOutput: dOutput, dWeight: dWeight, dBias: dBias,
                                   workspace: workspace, precision: precision)
        return
    }
    let (K, G, PQ) = (geometry.outputChannels, geometry.groups, geometry.outputHeight * geometry.outputWidth)
    if let dBias { addColumnSums(dOutput, rows: geometry.batch * PQ, columns: K, into: dBias) }
    if geometry.batch == 0 { return }
    // Where the packed order is PyTorch's, products accumulate straight into dWeight.
    let direct = geometry.packingIsIdentity && !geometry.isDepthwise
    let dPacked = direct ? dWeight : workspace.packedWeightGradient(geometry)
    if geometry.isDepthwise {
        depthwiseBackwardWeight(geometry, input: input, dOutput: dOutput, dWeight: dPacked, workspace: workspace)
    } else {
        let Kg = K / G, RSCg = geometry.kernelHeight * geometry.kernelWidth * geometry.inputChannels / G
        forEachColumnChunk(geometry, input: input, workspace: workspace) { first, count, columns, ldColumns in
            for g in 0..<G {
                // dPacked[group g] += dOutput[rows, g·Kg ..< (g+1)·Kg]ᵀ · columns[rows, block g]
                gemm(transposeA: true, transposeB: false, m: Kg, n: RSCg, k: count * PQ,
                     a: dOutput + first * PQ * K + g * Kg, lda: K, b: columns + g * RSCg, ldb: ldColumns,
                     beta: 1, c: dPacked + g * Kg * RSCg, ldc: RSCg)
            }
        }
    }
    if !direct { addPackedWeightGradient(geometry, dPacked, into: dWeight) }
}

// MARK: - Depthwise (G = C = K), direct loops along the channels
//
// The images are split over the kernel threads, one contiguous run each: outputs and input gradients
// of different images are disjoint, and the weight gradient sums one partial per image in image order,
// so every result is the same bit for bit at any thread count.

// output[n, p, q, :] += Σ_{r, s} input[n, ih, iw, :] ⊙ weight[r, s, :], weight packed as [R, S, C].
private func depthwiseForward(_ geometry: Conv2DGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                              output: UnsafeMutablePointer<Float>) {
    forEachDepthwiseImageRun(geometry) { images in
        forEachDepthwiseTap(geometry, images: images) { outputOffset, inputOffset, tap in
            multiplyAddVector(input + inputOffset, weight + tap, into: output + outputOffset, count: geometry.inputChannels)
        }
    }
}

// dInput[n, ih, iw, :] += dOutput[n, p, q, :] ⊙ weight[r, s, :].
private func depthwiseBackwardInput(_ geometry: Conv2DGeometry, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                    dInput: UnsafeMutablePointer<Float>) {
    forEachDepthwiseImageRun(geometry) { images in
        forEachDepthwiseTap(geometry, images: images) { outputOffset, inputOffset, tap in
            multiplyAddVector(dOutput + outputOffset, weight + tap, into: dInput + inputOffset, count: geometry.inputChannels)
        }
    }
}

// dWeight[r, s, :] += dOutput[n, p, q, :] ⊙ input[n, ih, iw, :]. Each image sums into its own partial
// (in the workspace, [N, R, S, C]), so float32 rounding grows with P·Q + N rather than with N·P·Q terms.
private func depthwiseBackwardWeight(_ geometry: Conv2DGeometry, input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>,
                                     dWeight: UnsafeMutablePointer<Float>, workspace: Conv2DWorkspace) {
    let count = geometry.kernelHeight * geometry.kernelWidth * geometry.inputChannels
    let partials = workspace.directWeightPartials(count: geometry.batch * count)
    forEachDepthwiseImageRun(geometry) { images in
        for n in images {
            let partial = partials + n * count
            partial.update(repeating: 0, count: count)
            forEachDepthwiseTap(geometry, images: n..<(n + 1)) { outputOffset, inputOffset, tap in
                multiplyAddVector(dOutput + outputOffset, input + inputOffset, into: partial + tap, count: geometry.inputChannels)
            }
        }
    }
    for n in 0..<geometry.batch { addVector(partials + n * count, into: dWeight, count: count) }
}

// Calls body(images) for contiguous runs of images, one per kernel thread when the layer's
// multiply-adds (N·P·Q·R·S·C) are enough for a second core to pay.
private func forEachDepthwiseImageRun(_ geometry: Conv2DGeometry, _ body: (Range<Int>) -> Void) {
    let work = geometry.outputShape.reduce(1, *) * geometry.kernelHeight * geometry.kernelWidth
    let threads = work >= parallelElementThreshold ? max(1, min(kernelThreads, geometry.batch)) : 1
    parallelFor(threads) { t in body(partition(geometry.batch, parts: threads, index: t)) }
}

// Visits every (output position, in-range tap) pair of the given images with the offsets of the output
// row, the input pixel and the packed [R, S, C] weight row it pairs with.
@inline(__always)
private func forEachDepthwiseTap(_ geometry: Conv2DGeometry, images: Range<Int>, _ body: (Int, Int, Int) -> Void) {
    let (H, W, C) = (geometry.inputHeight, geometry.inputWidth, geometry.inputChannels)
    let (R, S, P, Q) = (geometry.kernelHeight, geometry.kernelWidth, geometry.outputHeight, geometry.outputWidth)
    for n in images {
        for p in 0..<P {
            for q in 0..<Q {
                let outputOffset = ((n * P + p) * Q + q) * C
                for r in 0..<R {
                    let ih = p * geometry.strideHeight - geometry.paddingHeight + r
                    guard ih >= 0 && ih < H else { continue }
                    for s in 0..<S {
                        let iw = q * geometry.strideWidth - geometry.paddingWidth + s
                        guard iw >= 0 && iw < W else { continue }
                        body(outputOffset, ((n * H + ih) * W + iw) * C, (r * S + s) * C)
                    }
                }
            }
        }
    }
}

// MARK: - References

/// `conv2DForward` by direct loops over the definition, with Double sums.
public func conv2DForwardReference(
    _ geometry: Conv2DGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>
) {
    let (N, H, W, C, K) = (geometry.batch, geometry.inputHeight, geometry.inputWidth, geometry.inputChannels, geometry.outputChannels)
    let (R, S, P, Q) = (geometry.kernelHeight, geometry.kernelWidth, geometry.outputHeight, geometry.outputWidth)
    let Cg = C / geometry.groups, Kg = K / geometry.groups
    for n in 0..<N { for p in 0..<P { for q in 0..<Q { for k in 0..<K {
        var sum = Double(bias?[k] ?? 0)
        for r in 0..<R { for s in 0..<S {
            let ih = p * geometry.strideHeight - geometry.paddingHeight + r
            let iw = q * geometry.strideWidth - geometry.paddingWidth + s
            guard ih >= 0 && ih < H && iw >= 0 && iw < W else { continue }
            for c in 0..<Cg {
                sum += Double(input[((n * H + ih) * W + iw) * C + (k / Kg) * Cg + c])
                    * Double(weight[((k * Cg + c) * R + r) * S + s])
            }
        } }
        output[((n * P + p) * Q + q) * K + k] = Float(sum)
    } } } }
}

/// `conv2DBackwardInput` by direct loops, gathering for each input position the output positions and
/// taps that read it (the transpose of the forward's scatter, so the two are derived independently).
public func conv2DBackwardInputReference(
    _ geometry: Conv2DGeometry, dOutput: UnsafePointer<Float>, weight: UnsafePointer<Float>,
    dInput: UnsafeMutablePointer<Float>
) {
    let (N, H, W, C, K) = (geometry.batch, geometry.inputHeight, geometry.inputWidth, geometry.inputChannels, geometry.outputChannels)
    let (R, S, P, Q) = (geometry.kernelHeight, geometry.kernelWidth, geometry.outputHeight, geometry.outputWidth)
    let (sh, sw, ph, pw) = (geometry.strideHeight, geometry.strideWidth, geometry.paddingHeight, geometry.paddingWidth)
    let Cg = C / geometry.groups, Kg = K / geometry.groups
    for n in 0..<N { for ih in 0..<H { for iw in 0..<W { for channel in 0..<C {
        let g = channel / Cg, c = channel % Cg
        var sum: Double = 0
        for r in 0..<R { for s in 0..<S {
            // ih = p·sh − ph + r, so p = (ih + ph − r) / sh when that divides exactly and is in range.
            let pNumerator = ih + ph - r, qNumerator = iw + pw - s
            guard pNumerator >= 0 && pNumerator % sh == 0 && qNumerator >= 0 && qNumerator % sw == 0 else { continue }
            let p = pNumerator / sh, q = qNumerator / sw
            guard p < P && q < Q else { continue }
            for k in (g * Kg)..<((g + 1) * Kg) {
                sum += Double(dOutput[((n * P + p) * Q + q) * K + k]) * Double(weight[((k * Cg + c) * R + r) * S + s])
            }
        } }
        dInput[((n * H + ih) * W + iw) * C + channel] = Float(sum)
    } } } }
}

/// `conv2DBackwardWeight` by direct loops (accumulating into dWeight and dBias, like the fast one).
public func conv2DBackwardWeightReference(
    _ geometry: Conv2DGeometry, input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>,
    dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>?
) {
    let (N, H, W, C, K) = (geometry.batch, geometry.inputHeight, geometry.inputWidth, geometry.inputChannels, geometry.outputChannels)
    let (R, S, P, Q) = (geometry.kernelHeight, geometry.kernelWidth, geometry.outputHeight, geometry.outputWidth)
    let Cg = C / geometry.groups, Kg = K / geometry.groups
    for k in 0..<K {
        for c in 0..<Cg { for r in 0..<R { for s in 0..<S {
            var sum: Double = 0
            for n in 0..<N { for p in 0..<P { for q in 0..<Q {
                let ih = p * geometry.strideHeight - geometry.paddingHeight + r
                let iw = q * geometry.strideWidth - geometry.paddingWidth + s
                guard ih >= 0 && ih < H && iw >= 0 && iw < W else { continue }
                sum += Double(dOutput[((n * P + p) * Q + q) * K + k]) * Double(input[((n * H + ih) * W + iw) * C + (k / Kg) * Cg + c])
            } } }
            dWeight[((k * Cg + c) * R + r) * S + s] += Float(sum)
        } } }
        if let dBias {
            var sum: Double = 0
            for row in 0..<(N * P * Q) { sum += Double(dOutput[row * K + k]) }
            dBias[k] += Float(sum)
        }
    }
}
