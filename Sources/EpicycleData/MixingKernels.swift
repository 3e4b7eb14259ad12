// Batch-level kernels of mixup and CutMix on a batch of normalised images [N, H, W, C]; image i is
// paired with image N − 1 − i (the batch reversed, as timm pairs them), so each pair is mixed in place
// in one pass. With an odd N the middle image is its own partner and stays as it is.
// Legend: N images, H height, W width, C channels.
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import EpicycleRuntime

/// x_i ← λ·x_i + (1 − λ)·x_{N−1−i} for every image, computed pairwise in place.
func mixPairs(_ images: UnsafeMutablePointer<Float>, count N: Int, imageSize: Int, lambda: Float) {
    let other = 1 - lambda
    for i in 0..<(N / 2) {
        let a = images + i * imageSize, b = images + (N - 1 - i) * imageSize
        for k in 0..<imageSize {
            let (first, second) = (a[k], b[k])
            a[k] = lambda * first + other * second
            b[k] = lambda * second + other * first
        }
    }
}

/// Rows `top..<bottom` and columns `left..<right` of an image.
struct PixelBox: Equatable {
    var top: Int, left: Int, bottom: Int, right: Int
}

/// The CutMix box for mixing weight λ: sides √(1 − λ) of the image's, centred at a uniform pixel,
/// clipped to the image (timm `rand_bbox`).
func cutmixBox(height H: Int, width W: Int, lambda: Double, generator: inout RandomGenerator) -> PixelBox {
    let ratio = (1 - lambda).squareRoot()
    let cutH = Int(Double(H) * ratio), cutW = Int(Double(W) * ratio)
    let centreY = Int(generator.next() % UInt64(H)), centreX = Int(generator.next() % UInt64(W))
    return PixelBox(top: min(max(centreY - cutH / 2, 0), H), left: min(max(centreX - cutW / 2, 0), W),
                    bottom: min(max(centreY + cutH / 2, 0), H), right: min(max(centreX + cutW / 2, 0), W))
}

/// Exchanges the box between image i and image N − 1 − i for every pair.
func swapBoxes(_ images: UnsafeMutablePointer<Float>, count N: Int, height H: Int, width W: Int, channels C: Int, box: PixelBox) {
    let runLength = (box.right - box.left) * C
    guard runLength > 0 else { return }
    for i in 0..<(N / 2) {
        let a = images + i * H * W * C, b = images + (N - 1 - i) * H * W * C
        for y in box.top..<box.bottom {
            let offset = (y * W + box.left) * C
            for k in offset..<(offset + runLength) { swap(&a[k], &b[k]) }
        }
    }
}

/// A sample of Beta(α, α) as X / (X + Y) with X, Y ~ Gamma(α), computed from log X and log Y so that
/// very small α (where the gammas underflow) still gives a value near 0 or 1 rather than 0/0.
func sampleSymmetricBeta(alpha: Double, generator: inout RandomGenerator) -> Double {
    let logX = sampleLogGamma(shape: alpha, generator: &generator)
    let logY = sampleLogGamma(shape: alpha, generator: &generator)
    return 1 / (1 + exp(logY - logX))
}

/// log of a Gamma(shape, 1) sample: Marsaglia & Tsang (2000) for shape ≥ 1, and for shape < 1 their
/// boost Gamma(a) = Gamma(a + 1) · U^(1/a).
func sampleLogGamma(shape: Double, generator: inout RandomGenerator) -> Double {
    func openUniform() -> Double { Double((generator.next() >> 11) + 1) * (1.0 / 9_007_199_254_740_992.0) }  // (0, 1]
    if shape < 1 {
        return sampleLogGamma(shape: shape + 1, generator: &generator) + log(openUniform()) / shape
    }
    let d = shape - 1.0 / 3, c = 1 / (9 * d).squareRoot()
    while true {
        let x = Double(generator.nextNormal())
        let root = 1 + c * x
        guard root > 0 else { continue }
        let v = root * root * root
        if log(openUniform()) < 0.5 * x * x + d - d * v + d * log(v) { return log(d * v) }
    }
}
