/// The rectified linear unit, max(x, 0) elementwise, for any shape. The gradient at 0 is 0, as in PyTorch.
public final class ReLU: Layer {
    private var cachedOutput: Tensor?  // same shape as the input, training mode only

    public init() {}

    public func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        var output = input
        output.scalars.withUnsafeMutableBufferPointer { y in
            guard let y = y.baseAddress else { return }
            reluForward(y, into: y, count: input.count)
        }
        cachedOutput = mode == .training ? output : nil
        return output
    }

    public func backward(_ dOutput: Tensor) -> Tensor {
        guard let output = cachedOutput else { preconditionFailure("ReLU.backward: no training-mode forward to differentiate") }
        precondition(dOutput.shape == output.shape,
                     "ReLU.backward: dOutput \(describeShape(dOutput.shape)) vs output \(describeShape(output.shape))")
        var dInput = dOutput
        dInput.scalars.withUnsafeMutableBufferPointer { dx in
            output.scalars.withUnsafeBufferPointer { y in
                guard let dx = dx.baseAddress, let y = y.baseAddress else { return }
                reluBackward(dx, output: y, into: dx, count: output.count)
            }
        }
        return dInput
    }
}
