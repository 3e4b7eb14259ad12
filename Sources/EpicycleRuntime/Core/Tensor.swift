/// A dense float32 array with a shape, stored row-major.
///
/// Activations are NHWC (`[batch, height, width, channels]`): channels are contiguous, so per-channel
/// work (batch norm, bias, 1×1 convolutions) vectorises along them and im2col copies whole channel runs.
/// This was measured against NCHW on ResNet-20 convolution shapes (see README, "Layout").
/// Parameters keep PyTorch's layout (`[out, in, kh, kw]` for convolutions) so checkpoints map one to one.
public struct Tensor: Sendable, Equatable {
    public private(set) var shape: [Int]
    public var scalars: [Float]

    /// - Precondition: `scalars.count` equals the product of `shape`.
    public init(shape: [Int], scalars: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 } && shape.reduce(1, *) == scalars.count,
                     "Tensor: shape \(shape) needs \(shape.reduce(1, *)) scalars, got \(scalars.count)")
        self.shape = shape
        self.scalars = scalars
    }

    public init(zeros shape: [Int]) {
        self.init(shape: shape, scalars: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    public init(repeating value: Float, shape: [Int]) {
        self.init(shape: shape, scalars: [Float](repeating: value, count: shape.reduce(1, *)))
    }

    public var count: Int { scalars.count }
    public var rank: Int { shape.count }

    /// The same scalars under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        Tensor(shape: newShape, scalars: scalars)
    }

    /// Changes the shape in place, keeping the scalars (same element count).
    public mutating func reshape(_ newShape: [Int]) {
        precondition(newShape.reduce(1, *) == scalars.count,
                     "Tensor.reshape: \(shape) has \(scalars.count) scalars, \(newShape) needs \(newShape.reduce(1, *))")
        shape = newShape
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = scalars.prefix(6).map { String($0) }.joined(separator: ", ")
        return "Tensor(\(shape), [\(preview)\(scalars.count > 6 ? ", …" : "")])"
    }
}

/// Formats a shape the way PyTorch prints it in errors: `[128, 32, 32, 16]`.
@inlinable
public func describeShape(_ shape: [Int]) -> String {
    "[" + shape.map(String.init).joined(separator: ", ") + "]"
}

extension Tensor {
    /// Elementwise sum in place, for joining gradients.
    /// - Precondition: equal shapes.
    public static func += (lhs: inout Tensor, rhs: Tensor) {
        precondition(lhs.shape == rhs.shape, "Tensor +=: shapes \(lhs.shape) and \(rhs.shape) differ")
        lhs.scalars.withUnsafeMutableBufferPointer { l in
            rhs.scalars.withUnsafeBufferPointer { r in
                accumulate(r.baseAddress!, into: l.baseAddress!, count: l.count)
            }
        }
    }
}
