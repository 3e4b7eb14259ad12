// Elementwise kernels: ReLU, the residual join, dropout, and the flatten permutation.
//
// Each is one pass over `count` floats that the compiler vectorises as written, so the loop is its own
// reference; tests check them against hand-computed values. Outputs may alias inputs (in-place use)
// except in the flatten permutation.
//
// Legend (flatten only): N batch, H height, W width, C channels.

/// output = max(input, 0). `output` may equal `input`.
public func reluForward(_ input: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { output[i] = max(input[i], 0) }
}

/// dInput = dOutput where the unit was active, else 0. `output` is the forward's result (its input
/// works as well: x > 0 exactly when relu(x) > 0), so a fused layer only needs to keep one of them.
/// The gradient at exactly 0 is 0, as in PyTorch. `dInput` may equal `dOutput`.
public func reluBackward(
    _ dOutput: UnsafePointer<Float>, output: UnsafePointer<Float>,
    into dInput: UnsafeMutablePointer<Float>, count: Int
) {
    for i in 0..<count { dInput[i] = output[i] > 0 ? dOutput[i] : 0 }
}

/// output = a + b: the residual join of a ResNet block. Its backward hands dOutput to both branches
/// unchanged. `output` may equal `a` or `b`.
public func addForward(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>, count: Int
) {
    for i in 0..<count { output[i] = a[i] + b[i] }
}

/// output = max(a + b, 0): the residual join fused with the ReLU that follows it in a basic block.
/// Its backward is `reluBackward` with this output. `output` may equal `a` or `b`.
public func addReLUForward(
    _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>, count: Int
) {
    for i in 0..<count { output[i] = max(a[i] + b[i], 0) }
}

/// destination += source: sums the gradients of a tensor that fed two branches (the block input that
/// goes both through the residual branch and the shortcut).
public func accumulate(_ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>, count: Int) {
    for i in 0..<count { destination[i] += source[i] }
}

/// Draws an inverted-dropout mask: each entry is 1/(1 − p) with probability 1 − p and 0 otherwise
/// (0 everywhere when p = 1), one uniform draw per entry in order, so a generator state fixes the mask.
/// - Precondition: 0 ≤ p ≤ 1.
public func dropoutMask(
    into mask: UnsafeMutablePointer<Float>, count: Int, probability p: Float, generator: inout RandomGenerator
) {
    precondition(p >= 0 && p <= 1, "dropoutMask: probability \(p) is outside [0, 1]")
    let scale: Float = p < 1 ? 1 / (1 - p) : 0
    // nextUniform is in [0, 1): u ≥ p keeps the unit with probability 1 − p; p = 0 keeps all.
    for i in 0..<count { mask[i] = generator.nextUniform() >= p ? scale : 0 }
}

/// output = input ⊙ mask, the mask from `dropoutMask`. `output` may equal `input`.
public func dropoutForward(
    _ input: UnsafePointer<Float>, mask: UnsafePointer<Float>, into output: UnsafeMutablePointer<Float>, count: Int
) {
    for i in 0..<count { output[i] = input[i] * mask[i] }
}

/// dInput = dOutput ⊙ mask, with the same mask the forward used. `dInput` may equal `dOutput`.
public func dropoutBackward(
    _ dOutput: UnsafePointer<Float>, mask: UnsafePointer<Float>, into dInput: UnsafeMutablePointer<Float>, count: Int
) {
    for i in 0..<count { dInput[i] = dOutput[i] * mask[i] }
}

/// [N, H, W, C] → [N, C·H·W] in PyTorch's (c, h, w) order: output[n, (c·H + h)·W + w] = input[n, h, w, c],
/// so a Linear layer after it takes the weights of a PyTorch model that flattens NCHW.
/// Per image this is a [H·W, C] → [C, H·W] transpose. `output` must not overlap `input`.
public func flattenForward(
    _ input: UnsafePointer<Float>, batch N: Int, height H: Int, width W: Int, channels C: Int,
    into output: UnsafeMutablePointer<Float>
) {
    let pixels = H * W
    for n in 0..<N {
        let x = input + n * pixels * C, y = output + n * pixels * C
        // Channel-major, so the writes run contiguously; the strided reads stay within one image.
        for c in 0..<C {
            for pixel in 0..<pixels { y[c * pixels + pixel] = x[pixel * C + c] }
        }
    }
}

/// The inverse permutation, [N, C·H·W] in (c, h, w) order → [N, H, W, C]. `dInput` must not overlap `dOutput`.
public func flattenBackward(
    _ dOutput: UnsafePointer<Float>, batch N: Int, height H: Int, width W: Int, channels C: Int,
    into dInput: UnsafeMutablePointer<Float>
) {
    let pixels = H * W
    for n in 0..<N {
        let g = dOutput + n * pixels * C, dx = dInput + n * pixels * C
        for pixel in 0..<pixels {
            for c in 0..<C { dx[pixel * C + c] = g[c * pixels + pixel] }
        }
    }
}
