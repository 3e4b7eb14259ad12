/// Mean squared error over all elements, as `torch.nn.MSELoss()` (reduction "mean"):
///
///     L = (1/M) Σ_i (x_i − y_i)²,   ∂L/∂x_i = 2·(x_i − y_i) / M,   M = number of elements
///
/// Used for FitNets hints between a regressed student feature and a teacher feature. The target is a
/// constant: no gradient flows to it.
public struct MeanSquaredErrorLoss: Sendable {
    public init() {}

    /// - Parameters:
    ///   - prediction: any shape with at least one element.
    ///   - target: the same shape.
    /// - Throws: `RuntimeError.shapeMismatch` when the shapes differ or are empty.
    public func callAsFunction(prediction: Tensor, target: Tensor) throws -> LossResult {
        guard target.shape == prediction.shape, prediction.count > 0 else {
            throw RuntimeError.shapeMismatch(path: "", kind: "MeanSquaredErrorLoss",
                                             expected: "target \(describeShape(prediction.shape)) like the prediction, non-empty",
                                             found: target.shape)
        }
        let count = prediction.count
        let gradientScale = 2 / Float(count)
        var gradient = Tensor(zeros: prediction.shape)
        var total: Double = 0
        prediction.scalars.withUnsafeBufferPointer { x in
            target.scalars.withUnsafeBufferPointer { y in
                gradient.scalars.withUnsafeMutableBufferPointer { dx in
                    for i in 0..<count {
                        let difference = x[i] - y[i]
                        total += Double(difference) * Double(difference)
                        dx[i] = gradientScale * difference
                    }
                }
            }
        }
        return LossResult(value: Float(total / Double(count)), gradient: gradient)
    }
}
