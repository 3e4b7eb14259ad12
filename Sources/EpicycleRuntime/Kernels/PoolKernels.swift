// Max, average and global average pooling over NHWC activations, with PyTorch's semantics
// (floor output size, i.e. ceil_mode = False; padding ignored by max, counted or not by average).
//
// Legend: N batch, H × W input height and width, C channels, P × Q output height and width,
// K square kernel size, S stride, pad zero padding on every side.
// Input [N, H, W, C], output [N, P, Q, C]. Fast kernels work on the contiguous channel rows of the
// window's pixels: average pooling adds whole rows (loops the compiler vectorises), max pooling keeps
// eight channels' running maxima and indices in SIMD registers. The references loop over one scalar
// output at a time.

/// Output extent of a pooling window sliding over `inputSize`: ⌊(size + 2·padding − kernel)/stride⌋ + 1,
/// as PyTorch computes it with `ceil_mode=False`.
/// - Precondition: inputSize + 2·padding ≥ kernelSize.
@inlinable
public func poolOutputSize(inputSize: Int, kernelSize: Int, stride: Int, padding: Int) -> Int {
    precondition(inputSize + 2 * padding >= kernelSize, "poolOutputSize: window larger than the padded input")
    return (inputSize + 2 * padding - kernelSize) / stride + 1
}

/// Max pooling. Padding never wins: only in-bounds pixels are compared.
/// Ties keep the first maximum in window scan order (row by row), NaN propagates, as in PyTorch.
///
/// - Parameter argmax: when given, receives for each output [N, P, Q, C] the flat index into the input
///   of the maximum, which `maxPool2DBackward` routes the gradient to.
/// - Precondition: padding ≤ K/2, so every window holds an in-bounds pixel; input count < 2³¹.
public func maxPool2DForward(
    _ input: UnsafePointer<Float>, batch N: Int, height H: Int, width W: Int, channels C: Int,
    kernelSize K: Int, stride S: Int, padding pad: Int,
    into output: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>?
) {
    precondition(2 * pad <= K, "maxPool2DForward: padding must be at most half the kernel size")
    precondition(N * H * W * C <= Int(Int32.max), "maxPool2DForward: input too large for Int32 indices")
    let P = poolOutputSize(inputSize: H, kernelSize: K, stride: S, padding: pad)
    let Q = poolOutputSize(inputSize: W, kernelSize: K, stride: S, padding: pad)
    typealias Floats = SIMD8<Float>
    typealias Indices = SIMD8<Int32>
    let lanes = Floats.scalarCount
    let laneOffsets = Indices(0, 1, 2, 3, 4, 5, 6, 7)
    for n in 0..<N {
        for p in 0..<P {
            let h0 = max(p * S - pad, 0), h1 = min(p * S - pad + K, H)
            for q in 0..<Q {
                let w0 = max(q * S - pad, 0), w1 = min(q * S - pad + K, W)
                let outputOffset = ((n * P + p) * Q + q) * C
                // Eight channels at a time, the running maximum and its index held in registers across
                // the whole window; one store each at the end.
                var c = 0
                while c + lanes <= C {
                    var best = Floats(repeating: -.infinity), bestIndex = Indices(repeating: -1)
                    for h in h0..<h1 {
                        for w in w0..<w1 {
                            let base = ((n * H + h) * W + w) * C + c
                            let value = UnsafeRawPointer(input + base).loadUnaligned(as: Floats.self)
                            let take = (value .> best) .| (value .!= value)
                            best.replace(with: value, where: take)
                            bestIndex.replace(with: Indices(repeating: Int32(truncatingIfNeeded: base)) &+ laneOffsets,
                                              where: take)
                        }
                    }
                    UnsafeMutableRawPointer(output + outputOffset + c).storeBytes(of: best, as: Floats.self)
                    if let argmax {
                        UnsafeMutableRawPointer(argmax + outputOffset + c).storeBytes(of: bestIndex, as: Indices.self)
                    }
                    c += lanes
                }
                while c < C {
                    var best = -Float.infinity, bestIndex: Int32 = -1
                    for h in h0..<h1 {
                        for w in w0..<w1 {
                            let base = ((n * H + h) * W + w) * C + c
                            let value = input[base]
                            if value > best || value.isNaN {
                                best = value
                                bestIndex = Int32(truncatingIfNeeded: base)
                            }
                        }
                    }
                    output[outputOffset + c] = best
                    argmax?[outputOffset + c] = bestIndex
                    c += 1
                }
            }
        }
    }
}

/// Max pooling one scalar output at a time: the reference, with the same tie and NaN rules.
public func maxPool2DForwardReference(
    _ input: UnsafePointer<Float>, batch N: Int, height H: Int, width W: Int, channels C: Int,
    kernelSize K: Int, stride S: Int, padding pad: Int,
    into output: UnsafeMutablePointer<Float>, argmax: UnsafeMutablePointer<Int32>
) {
    let P = poolOutputSize(inputSize: H, kernelSize: K, stride: S, padding: pad)
    let Q = poolOutputSize(inputSize: W, kernelSize: K, stride: S, padding: pad)
    for n in 0..<N {
        for p in 0..<P {
            for q in 0..<Q {
                for c in 0..<C {
                    var best = -Float.infinity, bestIndex = -1
                    for i in 0..<K {
                        for j in 0..<K {
                            let h = p * S - pad + i, w = q * S - pad + j
                            guard h >= 0, h < H, w >= 0, w < W else { continue }
                            let index = ((n * H + h) * W + w) * C + c
                            if input[index] > best || input[index].isNaN {
                                best = input[index]
                                bestIndex = index
                            }
                        }
                    }
                    output[((n * P + p) * Q + q) * C + c] = best
                    argmax[((n * P + p) * Q + q) * C + c] = Int32(bestIndex)
                }
            }
        }
    }
}

/// Routes each output gradient to its window's maximum: dInput[argmax[i]] += dOutput[i], after zeroing
/// dInput (overlapping windows may pick the same pixel, so the scatter adds).
public func maxPool2DBackward(
    _ dOutput: UnsafePointer<Float>, argmax: UnsafePointer<Int32>, outputCount: Int,
    into dInput: UnsafeMutablePointer<Float>, inputCount: Int
) {
    dInput.update(repeating: 0, count: inputCount)
    for i in 0..<outputCount { dInput[Int(argmax[i])] += dOutput[i] }
}

/// Max-pool backward that finds each window's maximum again in the input: the reference.
public func maxPool2DBackwardReference(
    _ dOutput: UnsafePointer<Float>, input: UnsafePointer<Float>,
    batch N: Int, height H: Int, width W: Int, channels C: Int,
    kernelSize K: Int, stride S: Int, padding pad: Int, into dInput: UnsafeMutablePointer<Float>
) {
    let P = poolOutputSize(inputSize: H, kernelSize: K, stride: S, padding: pad)
    let Q = poolOutputSize(inputSize: W, kernelSize: K, stride: S, padding: pad)
    let inputCount = N * H * W * C, outputCount = N * P * Q * C
    var output = [Float](repeating: 0, count: outputCount)
    var argmax = [Int32](repeating: 0, count: outputCount)
    maxPool2DForwardReference(input, batch: N, height: H, width: W, channels: C, kernelSize: K, stride: S,
                              padding: pad, into: &output, argmax: &argmax)
    for i in 0..<inputCount { dInput[i] = 0 }
    for i in 0..<outputCount { dInput[Int(argmax[i])] += dOutput[i] }
}

/// The averaging window of output row/column `position` along one axis: its in-bounds range and its
/// extent clipped to the padded input, which `count_include_pad` divides by (PyTorch's pool_size).
@inline(__always)
private func averageWindow(_ position: Int, size: Int, kernelSize K: Int, stride S: Int, padding pad: Int)
    -> (start: Int, end: Int, paddedExtent: Int) {
    let start = position * S - pad
    let end = min(start + K, size + pad)
    return (max(start, 0), min(end, size), end - start)
}

/// Average pooling. The divisor is the window area including padding when `countIncludePad`
/// (PyTorch's default), else the number of in-bounds pixels.
/// - Precondition: padding ≤ K/2, so every window holds an in-bounds pixel.
public func avgPool2DForward(
    _ input: UnsafePointer<Float>, batch N: Int, height H: Int, width W: Int, channels C: Int,
    kernelSize K: Int, stride S: Int, padding pad: Int, countIncludePad: Bool,
    into output: UnsafeMutablePointer<Float>
) {
    precondition(2 * pad <= K, "avgPool2DForward: padding must be at most half the kernel size")
    let P = poolOutputSize(inputSize: H, kernelSize: K, stride: S, padding: pad)
    let Q = poolOutputSize(inputSize: W, kernelSize: K, stride: S, padding: pad)
    for n in 0..<N {
        for p in 0..<P {
            let rows = averageWindow(p, size: H, kernelSize: K, stride: S, padding: pad)
            for q in 0..<Q {
                let columns = averageWindow(q, size: W, kernelSize: K, stride: S, padding: pad)
                let divisor = countIncludePad
                    ? rows.paddedExtent * columns.paddedExtent
                    : (rows.end - rows.start) * (columns.end - columns.start)
                let y = output + ((n * P + p) * Q + q) * C
                for c in 0..<C { y[c] = 0 }
                for h in rows.start..<rows.end {
                    for w in columns.start..<columns.end {
                        let x = input + ((n * H + h) * W + w) * C
                        for c in 0..<C { y[c] += x[c] }
                    }
                }
                let scale = 1 / Float(divisor)
                for c in 0..<C { y[c] *= scale }
            }
        }
    }
}

/// Average pooling one scalar output at a time, window offsets checked against the bounds: the reference.
public func avgPool2DForwardReference(
    _ input: UnsafePointer<Float>, batch N: Int, height H: Int, width W: Int, channels C: Int,
    kernelSize K: Int, stride S: Int, padding pad: Int, countIncludePad: Bool,
    into output: UnsafeMutablePointer<Float>
) {
    let P = poolOutputSize(inputSize: H, kernelSize: K, stride: S, padding: pad)
    let Q = poolOutputSize(inputSize: W, kernelSize: K, stride: S, padding: pad)
    for n in 0..<N {
        for p in 0..<P {
            for q in 0..<Q {
                for c in 0..<C {
                    var sum: Double = 0
                    var inside = 0, padded = 0
                    for i in 0..<K {
                        for j in 0..<K {
                            let h = p * S - pad + i, w = q * S - pad + j
                            // Window cells beyond the padding do not exist (PyTorch clips them).
                            guard h < H + pad, w < W + pad else { continue }
                            padded += 1
                            guard h >= 0, h < H, w >= 0, w < W else { continue }
                            inside += 1
                            sum += Double(input[((n * H + h) * W + w) * C + c])
                        }
                    }
                    output[((n * P + p) * Q + q) * C + c] = Float(sum / Double(countIncludePad ? padded : inside))
                }
            }
        }
    }
}

/// Spreads each output gradient evenly over its window (divided by the forward's divisor).
/// dInput is overwritten.
public func avgPool2DBackward(
    _ dOutput: UnsafePointer<Float>, batch N: Int, height H: Int, width W: Int, channels C: Int,
    kernelSize K: Int, stride S: Int, padding pad: Int, countIncludePad: Bool,
    into dInput: UnsafeMutablePointer<Float>
) {
    let P = poolOutputSize(inputSize: H, kernelSize: K, stride: S, padding: pad)
    let Q = poolOutputSize(inputSize: W, kernelSize: K, stride: S, padding: pad)
    dInput.update(repeating: 0, count: N * H * W * C)
    for n in 0..<N {
        for p in 0..<P {
            let rows = averageWindow(p, size: H, kernelSize: K, stride: S, padding: pad)
            for q in 0..<Q {
                let columns = averageWindow(q, size: W, kernelSize: K, stride: S, padding: pad)
                let divisor = countIncludePad
                    ? rows.paddedExtent * columns.paddedExtent
                    : (rows.end - rows.start) * (columns.end - columns.start)
                let scale = 1 / Float(divisor)
                let g = dOutput + ((n * P + p) * Q + q) * C
                for h in rows.start..<rows.end {
                    for w in columns.start..<columns.end {
                        let dx = dInput + ((n * H + h) * W + w) * C
                        for c in 0..<C { dx[c] += g[c] * scale }
                    }
                }
            }
        }
    }
}

/// Average-pool backward one input scalar at a time, gathering from every window that covers it:
/// the reference.
public func avgPool2DBackwardReference(
    _ dOutput: UnsafePointer<Float>, batch N: Int, height H: Int, width W: Int, channels C: Int,
    kernelSize K: Int, stride S: Int, padding pad: Int, countIncludePad: Bool,
    into dInput: UnsafeMutablePointer<Float>
) {
    let P = poolOutputSize(inputSize: H, kernelSize: K, stride: S, padding: pad)
    let Q = poolOutputSize(inputSize: W, kernelSize: K, stride: S, padding: pad)
    // The divisor of each output position, counted the same way as avgPool2DForwardReference.
    func divisor(_ p: Int, _ q: Int) -> Int {
        var inside = 0, padded = 0
        for i in 0..<K {
            for j in 0..<K {
                let h = p * S - pad + i, w = q * S - pad + j
                guard h < H + pad, w < W + pad else { continue }
                padded += 1
                if h >= 0, h < H, w >= 0, w < W { inside += 1 }
            }
        }
        return countIncludePad ? padded : inside
    }
    for n in 0..<N {
        for h in 0..<H {
            for w in 0..<W {
                for c in 0..<C {
                    var sum: Double = 0
                    for p in 0..<P where (p * S - pad)...(p * S - pad + K - 1) ~= h {
                        for q in 0..<Q where (q * S - pad)...(q * S - pad + K - 1) ~= w {
                            sum += Double(dOutput[((n * P + p) * Q + q) * C + c]) / Double(divisor(p, q))
                        }
                    }
                    dInput[((n * H + h) * W + w) * C + c] = Float(sum)
                }
            }
        }
    }
}

/// Mean over all H·W pixels per image and channel: [N, H, W, C] → [N, C].
public func globalAvgPool2DForward(
    _ input: UnsafePointer<Float>, batch N: Int, height H: Int, width W: Int, channels C: Int,
    into output: UnsafeMutablePointer<Float>
) {
    let pixels = H * W, scale = 1 / Float(pixels)
    for n in 0..<N {
        let y = output + n * C
        for c in 0..<C { y[c] = 0 }
        for pixel in 0..<pixels {
            let x = input + (n * pixels + pixel) * C
            for c in 0..<C { y[c] += x[c] }
        }
        for c in 0..<C { y[c] *= scale }
    }
}

/// Global average pooling one output scalar at a time in Double: the reference.
public func globalAvgPool2DForwardReference(
    _ input: UnsafePointer<Float>, batch N: Int, height H: Int, width W: Int, channels C: Int,
    into output: UnsafeMutablePointer<Float>
) {
    for n in 0..<N {
        for c in 0..<C {
            var sum: Double = 0
            for pixel in 0..<(H * W) { sum += Double(input[(n * H * W + pixel) * C + c]) }
            output[n * C + c] = Float(sum / Double(H * W))
        }
    }
}

/// Every pixel receives its image's channel gradient divided by H·W: [N, C] → [N, H, W, C] (overwritten).
public func globalAvgPool2DBackward(
    _ dOutput: UnsafePointer<Float>, batch N: Int, height H: Int, width W: Int, channels C: Int,
    into dInput: UnsafeMutablePointer<Float>
) {
    let pixels = H * W, scale = 1 / Float(pixels)
    for n in 0..<N {
        let g = dOutput + n * C
        for pixel in 0..<pixels {
            let dx = dInput + (n * pixels + pixel) * C
            for c in 0..<C { dx[c] = g[c] * scale }
        }
    }
}
