/// Inverted dropout (Srivastava et al. 2014), as PyTorch's `nn.Dropout`: in training each unit is
/// zeroed with probability p and the kept ones are scaled by 1/(1 − p), so inference is the identity.
///
/// Each row's mask comes from its own stream, derived from the layer's generator and the row's place
/// in the whole batch (`firstRow` + its index here), one draw per unit in order; the generator then
/// advances by one draw per forward. So the same generator state gives the same mask, a checkpoint
/// can save `generator` to continue the same stream, and a row's mask does not depend on which other
/// rows share its forward: processes training blocks of one batch (`DataParallel`) draw the masks one
/// process draws for the whole batch.
public final class Dropout: Layer {
    public let probability: Float
    /// Advances by one draw on every training-mode forward; untouched in inference.
    public var generator: RandomGenerator
    /// The place in the whole batch of the first row of the next forward's input (0 but in a block
    /// of a batch split over processes).
    public var firstRow = 0

    private var mask: [Float] = []  // same count as the input: 0 or 1/(1 − p), training mode only
    private var maskShape: [Int]?  // the input shape the mask belongs to

    /// - Parameter probability: the chance p of zeroing a unit, in [0, 1].
    public init(probability: Float, generator: RandomGenerator) {
        precondition(probability >= 0 && probability <= 1, "Dropout: probability \(probability) must be in [0, 1]")
        self.probability = probability
        self.generator = generator
    }

    public func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        guard mode == .training else {
            mask = []
            maskShape = nil
            return input
        }
        if mask.count != input.count { mask = [Float](repeating: 0, count: input.count) }
        var output = input
        mask.withUnsafeMutableBufferPointer { m in
            output.scalars.withUnsafeMutableBufferPointer { y in
                guard let m = m.baseAddress, let y = y.baseAddress else { return }
                let rows = input.shape.first ?? 1, rowSize = input.count / max(1, rows)
                for row in 0..<rows {
                    var rowGenerator = generator.derived(UInt64(firstRow + row))
                    dropoutMask(into: m + row * rowSize, count: rowSize, probability: probability, generator: &rowGenerator)
                }
                _ = generator.next()
                dropoutForward(y, mask: m, into: y, count: input.count)
            }
        }
        maskShape = input.shape
        return output
    }

    public func backward(_ dOutput: Tensor) -> Tensor {
        guard let maskShape else { preconditionFailure("Dropout.backward: no training-mode forward to differentiate") }
        precondition(dOutput.shape == maskShape,
                     "Dropout.backward: dOutput \(describeShape(dOutput.shape)) vs input \(describeShape(maskShape))")
        var dInput = dOutput
        dInput.scalars.withUnsafeMutableBufferPointer { dx in
            mask.withUnsafeBufferPointer { m in
                guard let dx = dx.baseAddress, let m = m.baseAddress else { return }
                dropoutBackward(dx, mask: m, into: dx, count: dOutput.count)
            }
        }
        return dInput
    }
}
