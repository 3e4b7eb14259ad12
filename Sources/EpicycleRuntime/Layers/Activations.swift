/// The rectified linear unit, max(x, 0) elementwise, for any shape. The gradient at 0 is 0, as in PyTorch.
public final class ReLU: Layer {
    private var cachedOutput: Tensor?  // same shape as the input, training mode only

    public init() {}

    public func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        // A fresh output written once, rather than a copy of the (shared) input clamped in place.
        let output = Tensor(overwrittenBy: input.shape) { y in
            input.scalars.withUnsafeBufferPointer { reluForward($0.baseAddress!, into: y, count: input.count) }
        }
        cachedOutput = mode == .training ? output : nil
        return output
    }

    public func backward(_ dOutput: Tensor) -> Tensor {
        guard let output = cachedOutput else { preconditionFailure("ReLU.backward: no training-mode forward to differentiate") }
        precondition(dOutput.shape == output.shape,
                     "ReLU.backward: dOutput \(describeShape(dOutput.shape)) vs output \(describeShape(output.shape))")
        return Tensor(overwrittenBy: output.shape) { dx in
            dOutput.scalars.withUnsafeBufferPointer { g in
                output.scalars.withUnsafeBufferPointer { y in
                    reluBackward(g.baseAddress!, output: y.baseAddress!, into: dx, count: output.count)
                }
            }
        }
    }
}
