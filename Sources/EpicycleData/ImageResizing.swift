// Fitting a decoded image to a dataset's size, as torchvision's `Resize(size)` + `CenterCrop(size)`
// do: scale so the image covers the target (for a square target: the shorter side becomes `size`, the
// longer `Int(size · longer / shorter)`), then cut the centre. Scaling is bilinear with antialiasing
// (PIL's BILINEAR filter; `torch.nn.functional.interpolate(mode="bilinear", antialias=True)`): the
// triangle filter is stretched by the scale factor when shrinking, so every input pixel contributes
// and a large photo does not alias. Separable: a horizontal pass, then a vertical one, in Float.
//
// Legend: H, W input height and width; h, w resized; C channels.

/// One output position's inputs along one axis: the first input index and the normalised weights of
/// it and those that follow.
struct ResamplingTap {
    var first: Int
    var weights: [Float]
}

/// The taps of output positions `range` when `input` positions are resized to `output` (PIL's
/// `precompute_coeffs` for the bilinear filter of support 1).
func resamplingTaps(input: Int, output: Int, range: Range<Int>) -> [ResamplingTap] {
    let scale = Double(input) / Double(output)
    let stretch = max(scale, 1)
    let support = stretch  // the triangle's half-width in input pixels
    return range.map { position in
        let centre = (Double(position) + 0.5) * scale
        let low = max(Int(centre - support + 0.5), 0)
        let high = max(min(Int(centre + support + 0.5), input), low + 1)
        var weights = (low..<high).map { index in Float(max(0, 1 - abs((Double(index) - centre + 0.5) / stretch))) }
        let total = weights.reduce(0, +)
        weights = weights.map { $0 / total }
        return ResamplingTap(first: low, weights: weights)
    }
}

/// The resized size before the centre crop: the image scaled to cover `height` × `width`, the
/// limiting side exact and the other truncated as torchvision's `Resize` does.
func coveringSize(height H: Int, width W: Int, toHeight height: Int, width: Int) -> (height: Int, width: Int) {
    // The side with the larger ratio target / input limits; compare in integers to avoid rounding.
    if height * W >= width * H {
        return (height, max(width, W * height / H))
    }
    return (max(height, H * width / W), width)
}

/// `image` scaled to cover `height` × `width` and centre-cropped to it, bytes [height, width, C].
public func fittedPixels(_ image: DecodedImage, height: Int, width: Int) -> [UInt8] {
    let H = image.height, W = image.width, C = image.channels
    if H == height && W == width { return image.pixels }
    let (h, w) = coveringSize(height: H, width: W, toHeight: height, width: width)
    // torchvision's CenterCrop: the offset rounds half to even of (resized − target) / 2.
    let top = Int((Double(h - height) / 2).rounded(.toNearestOrEven))
    let left = Int((Double(w - width) / 2).rounded(.toNearestOrEven))
    let columns = resamplingTaps(input: W, output: w, range: left..<(left + width))
    let rows = resamplingTaps(input: H, output: h, range: top..<(top + height))

    // Horizontal pass over every input row: [H, width, C].
    var horizontal = [Float](repeating: 0, count: H * width * C)
    image.pixels.withUnsafeBufferPointer { source in
        horizontal.withUnsafeMutableBufferPointer { destination in
            for y in 0..<H {
                for (x, tap) in columns.enumerated() {
                    for c in 0..<C {
                        var sum: Float = 0
                        for (k, weight) in tap.weights.enumerated() {
                            sum += weight * Float(source[(y * W + tap.first + k) * C + c])
                        }
                        destination[(y * width + x) * C + c] = sum
                    }
                }
            }
        }
    }
    // Vertical pass, rounded to bytes: [height, width, C].
    var output = [UInt8](repeating: 0, count: height * width * C)
    horizontal.withUnsafeBufferPointer { source in
        output.withUnsafeMutableBufferPointer { destination in
            for (y, tap) in rows.enumerated() {
                for index in 0..<(width * C) {
                    var sum: Float = 0
                    for (k, weight) in tap.weights.enumerated() {
                        sum += weight * source[(tap.first + k) * width * C + index]
                    }
                    destination[y * width * C + index] = UInt8(min(max(sum.rounded(), 0), 255))
                }
            }
        }
    }
    return output
}
