/// Flattens NHWC feature maps to feature vectors, [N, H, W, C] → [N, C·H·W], in PyTorch's (c, h, w)
/// order: a Linear layer after it takes the weights of a PyTorch model that flattens NCHW unchanged.
/// A rank-2 input [N, features] passes through as it is.
public final class Flatten: Layer {
    private var inputShape: [Int]?  // [N, H, W, C] or [N, features] of the last training-mode forward

    public init() {}

    public func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        let shape = input.shape
        guard shape.count == 4 || shape.count == 2 else {
            throw RuntimeError.shapeMismatch(path: "", kind: "Flatten",
                                             expected: "[N, H, W, C] (NHWC) or [N, features]", found: shape)
        }
        inputShape = mode == .training ? shape : nil
        guard shape.count == 4 else { return input }
        var output = Tensor(zeros: [shape[0], shape[1] * shape[2] * shape[3]])
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                guard let x = x.baseAddress, let y = y.baseAddress else { return }
                flattenForward(x, batch: shape[0], height: shape[1], width: shape[2], channels: shape[3], into: y)
            }
        }
        return output
    }

    public func backward(_ dOutput: Tensor) -> Tensor {
        guard let shape = inputShape else { preconditionFailure("Flatten.backward: no training-mode forward to differentiate") }
        precondition(dOutput.count == shape.reduce(1, *) && dOutput.rank == 2,
                     "Flatten.backward: dOutput \(describeShape(dOutput.shape)) does not match input \(describeShape(shape))")
        guard shape.count == 4 else { return dOutput }
        var dInput = Tensor(zeros: shape)
        dOutput.scalars.withUnsafeBufferPointer { g in
            dInput.scalars.withUnsafeMutableBufferPointer { dx in
                guard let g = g.baseAddress, let dx = dx.baseAddress else { return }
                flattenBackward(g, batch: shape[0], height: shape[1], width: shape[2], channels: shape[3], into: dx)
            }
        }
        return dInput
    }
}
