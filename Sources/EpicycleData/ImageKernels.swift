// Per-image kernels of the augmentations, on one image of float pixel values in [0, 255], interleaved
// [H, W, C] (channels contiguous).
// Legend: H image height, W image width, C channels; y, x a row and column of the output image.
// Geometric kernels read `source` and write `destination` (distinct buffers); the others work in place.
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import EpicycleRuntime

/// destination[y, x] = source[y + dy, x + dx], or `fill` where that falls outside the image: a random
/// crop of a zero-padded image, or a translation by (−dy, −dx).
func shiftImage(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<Float>,
                H: Int, W: Int, C: Int, dy: Int, dx: Int, fill: Float) {
    // Whole output rows copy a contiguous run of the source row; only the margins are filled.
    let rowLength = W * C
    let firstColumn = min(max(-dx, 0), W), lastColumn = max(min(W - dx, W), firstColumn)  // output columns with a source
    for y in 0..<H {
        let row = destination + y * rowLength
        let sourceY = y + dy
        guard sourceY >= 0 && sourceY < H && firstColumn < lastColumn else {
            row.update(repeating: fill, count: rowLength)
            continue
        }
        row.update(repeating: fill, count: firstColumn * C)
        (row + firstColumn * C).update(from: source + sourceY * rowLength + (firstColumn + dx) * C,
                                       count: (lastColumn - firstColumn) * C)
        (row + lastColumn * C).update(repeating: fill, count: (W - lastColumn) * C)
    }
}

/// Mirrors the image left–right in place.
func flipImageHorizontally(_ image: UnsafeMutablePointer<Float>, H: Int, W: Int, C: Int) {
    for y in 0..<H {
        let row = image + y * W * C
        var left = 0, right = W - 1
        while left < right {
            for c in 0..<C { swap(&row[left * C + c], &row[right * C + c]) }
            left += 1
            right -= 1
        }
    }
}

/// Resamples the image under an affine map about its centre, bilinearly, with `fill` outside.
/// `inverse` = (a, b, c, d) maps an output offset from the centre to the source offset:
/// source = centre + [[a, b], [c, d]] · (output − centre), with offsets as (x, y).
func affineImage(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<Float>,
                 H: Int, W: Int, C: Int, inverse: (Float, Float, Float, Float), fill: Float) {
    let (a, b, c, d) = inverse
    let centreX = Float(W - 1) / 2, centreY = Float(H - 1) / 2
    for y in 0..<H {
        let offsetY = Float(y) - centreY
        // Source coordinates move by (a, c) per output column.
        var sourceX = centreX + b * offsetY - a * centreX
        var sourceY = centreY + d * offsetY - c * centreX
        let out = destination + y * W * C
        for x in 0..<W {
            let x0 = Int(floor(sourceX)), y0 = Int(floor(sourceY))
            let fx = sourceX - Float(x0), fy = sourceY - Float(y0)
            if x0 >= 0 && y0 >= 0 && x0 + 1 < W && y0 + 1 < H {
                let top = source + (y0 * W + x0) * C, bottom = top + W * C
                for channel in 0..<C {
                    let upper = top[channel] + fx * (top[C + channel] - top[channel])
                    let lower = bottom[channel] + fx * (bottom[C + channel] - bottom[channel])
                    out[x * C + channel] = upper + fy * (lower - upper)
                }
            } else if x0 >= -1 && y0 >= -1 && x0 < W && y0 < H {
                // On the border: neighbours outside the image count as `fill`.
                for channel in 0..<C {
                    func pixel(_ py: Int, _ px: Int) -> Float {
                        px >= 0 && py >= 0 && px < W && py < H ? source[(py * W + px) * C + channel] : fill
                    }
                    let upper = pixel(y0, x0) + fx * (pixel(y0, x0 + 1) - pixel(y0, x0))
                    let lower = pixel(y0 + 1, x0) + fx * (pixel(y0 + 1, x0 + 1) - pixel(y0 + 1, x0))
                    out[x * C + channel] = upper + fy * (lower - upper)
                }
            } else {
                (out + x * C).update(repeating: fill, count: C)
            }
            sourceX += a
            sourceY += c
        }
    }
}

/// Sets rows `top..<bottom`, columns `left..<right` to the per-channel `values`.
func fillRectangle(_ image: UnsafeMutablePointer<Float>, H: Int, W: Int, C: Int,
                   top: Int, left: Int, bottom: Int, right: Int, values: [Float]) {
    for y in max(top, 0)..<min(bottom, H) {
        for x in max(left, 0)..<min(right, W) {
            for c in 0..<C { image[(y * W + x) * C + c] = values[c] }
        }
    }
}

/// Brightness then contrast, as torchvision's ColorJitter defines them: x ← clamp(x·brightness), then
/// x ← clamp(m + contrast·(x − m)) with m the mean grey level of the image (ITU-R 601 luma for RGB).
func adjustBrightnessContrast(_ image: UnsafeMutablePointer<Float>, H: Int, W: Int, C: Int,
                              brightness: Float, contrast: Float) {
    let count = H * W * C
    var sum: Float = 0
    for i in 0..<count {
        let value = min(image[i] * brightness, 255)
        image[i] = value
        sum += value
    }
    var greyMean = sum / Float(count)
    if C == 3 {
        var weighted: Float = 0
        for p in 0..<(H * W) { weighted += 0.299 * image[3 * p] + 0.587 * image[3 * p + 1] + 0.114 * image[3 * p + 2] }
        greyMean = weighted / Float(H * W)
    }
    for i in 0..<count { image[i] = min(max(greyMean + contrast * (image[i] - greyMean), 0), 255) }
}

/// Adds independent normal noise of the given standard deviation to every value, clamped to [0, 255].
func addGaussianNoise(_ image: UnsafeMutablePointer<Float>, count: Int, standardDeviation: Float,
                      generator: inout RandomGenerator) {
    // Box–Muller, using both outputs of each pair of uniforms.
    var i = 0
    while i < count {
        let u1 = Float((generator.next() >> 40) + 1) * (1.0 / 16_777_216.0)  // (0, 1]
        let u2 = Float(generator.next() >> 40) * (1.0 / 16_777_216.0)
        let radius = standardDeviation * (-2 * logf(u1)).squareRoot()
        let angle = 2 * Float.pi * u2
        image[i] = min(max(image[i] + radius * cosf(angle), 0), 255)
        if i + 1 < count { image[i + 1] = min(max(image[i + 1] + radius * sinf(angle), 0), 255) }
        i += 2
    }
}

/// Inverts (255 − x) every value ≥ `threshold`; a threshold above 255 changes nothing.
func solarizeImage(_ image: UnsafeMutablePointer<Float>, count: Int, threshold: Float) {
    for i in 0..<count where image[i] >= threshold { image[i] = 255 - image[i] }
}

/// Keeps the top `bits` bits of every value's whole part (PIL `ImageOps.posterize`); 8 bits changes nothing.
func posterizeImage(_ image: UnsafeMutablePointer<Float>, count: Int, bits: Int) {
    guard bits < 8 else { return }
    let mask = 0xFF << (8 - bits) & 0xFF
    for i in 0..<count { image[i] = Float(Int(min(max(image[i], 0), 255)) & mask) }
}

/// Stretches each channel's range to [0, 255] (PIL `ImageOps.autocontrast`), blended with the original:
/// x ← x + blend·(stretched − x). A constant channel stays as it is.
func autoContrastImage(_ image: UnsafeMutablePointer<Float>, H: Int, W: Int, C: Int, blend: Float) {
    for c in 0..<C {
        var low = Float.infinity, high = -Float.infinity
        for p in 0..<(H * W) {
            low = min(low, image[p * C + c])
            high = max(high, image[p * C + c])
        }
        guard high > low, blend > 0 else { continue }
        let scale = 255 / (high - low)
        for p in 0..<(H * W) {
            let x = image[p * C + c]
            image[p * C + c] = x + blend * ((x - low) * scale - x)
        }
    }
}

/// Histogram equalisation of each channel (values binned by their whole part): v ← 255·(cdf(v) −
/// cdf_min)/(n − cdf_min), blended with the original as in `autoContrastImage`. A constant channel
/// stays as it is.
func equalizeImage(_ image: UnsafeMutablePointer<Float>, H: Int, W: Int, C: Int, blend: Float) {
    let n = H * W
    for c in 0..<C {
        var cumulative = [Int](repeating: 0, count: 256)
        for p in 0..<n { cumulative[Int(min(max(image[p * C + c], 0), 255))] += 1 }
        for v in 1..<256 { cumulative[v] += cumulative[v - 1] }
        let smallest = cumulative.first { $0 > 0 } ?? 0
        guard n > smallest, blend > 0 else { continue }
        let scale = 255 / Float(n - smallest)
        for p in 0..<n {
            let x = image[p * C + c]
            let equalized = Float(cumulative[Int(min(max(x, 0), 255))] - smallest) * scale
            image[p * C + c] = x + blend * (equalized - x)
        }
    }
}

/// PIL `ImageEnhance.Sharpness`: s = the image under the smoothing kernel [[1, 1, 1], [1, 5, 1],
/// [1, 1, 1]]/13 (border pixels kept), destination = clamp(s + factor·(x − s)); factor 1 is the image.
func sharpenImage(_ source: UnsafePointer<Float>, _ destination: UnsafeMutablePointer<Float>,
                  H: Int, W: Int, C: Int, factor: Float) {
    for y in 0..<H {
        for x in 0..<W {
            for c in 0..<C {
                let index = (y * W + x) * C + c
                guard y > 0, x > 0, y < H - 1, x < W - 1 else {
                    destination[index] = source[index]
                    continue
                }
                var sum = 4 * source[index]
                for dy in -1...1 {
                    for dx in -1...1 { sum += source[((y + dy) * W + x + dx) * C + c] }
                }
                let smooth = sum / 13
                destination[index] = min(max(smooth + factor * (source[index] - smooth), 0), 255)
            }
        }
    }
}
