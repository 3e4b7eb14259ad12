/// Weight initialisations used by the model zoo, with the formulas PyTorch documents.
public enum Initializer {
    /// Kaiming (He et al. 2015) normal with fan-out and ReLU gain: N(0, 2 / fan_out), as in
    /// `torch.nn.init.kaiming_normal_(mode="fan_out", nonlinearity="relu")`.
    case kaimingNormalFanOut
    /// PyTorch's default for `Conv2d`/`Linear`: U(−b, b) with b = 1/√fan_in (kaiming_uniform, a = √5).
    case pytorchDefault
    case zeros
    case ones

    /// Fills a tensor; `fanIn`/`fanOut` are per PyTorch's `_calculate_fan_in_and_fan_out`.
    public func tensor(shape: [Int], fanIn: Int, fanOut: Int, generator: inout RandomGenerator) -> Tensor {
        let count = shape.reduce(1, *)
        var scalars = [Float](repeating: 0, count: count)
        switch self {
        case .kaimingNormalFanOut:
            let std = (2.0 / Float(max(fanOut, 1))).squareRoot()
            for i in 0..<count { scalars[i] = std * generator.nextNormal() }
        case .pytorchDefault:
            let bound = 1 / Float(max(fanIn, 1)).squareRoot()
            for i in 0..<count { scalars[i] = (2 * generator.nextUniform() - 1) * bound }
        case .zeros:
            break
        case .ones:
            scalars = [Float](repeating: 1, count: count)
        }
        return Tensor(shape: shape, scalars: scalars)
    }
}
