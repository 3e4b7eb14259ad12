/// The pooled shape of an NHWC input, or a shape error naming the layer.
private func pooledShape(_ shape: [Int], kind: String, kernelSize: Int, stride: Int, padding: Int) throws -> [Int] {
    let smallest = max(1, kernelSize - 2 * padding)
    guard shape.count == 4, shape[1] >= smallest, shape[2] >= smallest else {
        throw RuntimeError.shapeMismatch(
            path: "", kind: kind,
            expected: "[N, H, W, C] (NHWC) with H, W ≥ \(smallest) for kernel \(kernelSize), padding \(padding)",
            found: shape)
    }
    return [shape[0],
            poolOutputSize(inputSize: shape[1], kernelSize: kernelSize, stride: stride, padding: padding),
            poolOutputSize(inputSize: shape[2], kernelSize: kernelSize, stride: stride, padding: padding),
            shape[3]]
}

private func validatePooling(_ kind: String, kernelSize: Int, stride: Int, padding: Int) {
    precondition(kernelSize > 0 && stride > 0, "\(kind): kernel size and stride must be positive")
    precondition(padding >= 0 && 2 * padding <= kernelSize,
                 "\(kind): padding \(padding) must be between 0 and half the kernel size \(kernelSize), as in PyTorch")
}

/// Max pooling over square windows of NHWC feature maps, as PyTorch's `nn.MaxPool2d`
/// (floor output size; padding never selected). The gradient goes to each window's maximum, the first
/// one in scan order on ties.
public final class MaxPool2D: Layer {
    public let kernelSize: Int
    public let stride: Int
    public let padding: Int

    private var inputShape: [Int]?  // [N, H, W, C] of the last training-mode forward
    private var argmax: [Int32] = []  // [N, P, Q, C] flat input index of each window's maximum

    /// - Parameters:
    ///   - stride: defaults to `kernelSize`, like PyTorch.
    ///   - padding: at most half the kernel size.
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0) {
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
        validatePooling("MaxPool2D", kernelSize: kernelSize, stride: self.stride, padding: padding)
    }

    public func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        let outputShape = try pooledShape(input.shape, kind: "MaxPool2D", kernelSize: kernelSize,
                                          stride: stride, padding: padding)
        var output = Tensor(zeros: outputShape)
        let (n, h, w, c) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        func run(_ indices: UnsafeMutablePointer<Int32>?) {
            input.scalars.withUnsafeBufferPointer { x in
                output.scalars.withUnsafeMutableBufferPointer { y in
                    guard let x = x.baseAddress, let y = y.baseAddress else { return }
                    maxPool2DForward(x, batch: n, height: h, width: w, channels: c, kernelSize: kernelSize,
                                     stride: stride, padding: padding, into: y, argmax: indices)
                }
            }
        }
        switch mode {
        case .training:
            if argmax.count != output.count { argmax = [Int32](repeating: 0, count: output.count) }
            argmax.withUnsafeMutableBufferPointer { run($0.baseAddress) }
            inputShape = input.shape
        case .inference:
            inputShape = nil
            argmax = []
            run(nil)
        }
        return output
    }

    public func backward(_ dOutput: Tensor) -> Tensor {
        guard let inputShape else { preconditionFailure("MaxPool2D.backward: no training-mode forward to differentiate") }
        precondition(dOutput.count == argmax.count, "MaxPool2D.backward: dOutput \(describeShape(dOutput.shape)) does not match the forward")
        var dInput = Tensor(zeros: inputShape)
        dOutput.scalars.withUnsafeBufferPointer { g in
            argmax.withUnsafeBufferPointer { indices in
                dInput.scalars.withUnsafeMutableBufferPointer { dx in
                    guard let g = g.baseAddress, let indices = indices.baseAddress, let dx = dx.baseAddress else { return }
                    maxPool2DBackward(g, argmax: indices, outputCount: dOutput.count,
                                      into: dx, inputCount: inputShape.reduce(1, *))
                }
            }
        }
        return dInput
    }
}

/// Average pooling over square windows of NHWC feature maps, as PyTorch's `nn.AvgPool2d`
/// (floor output size; `countIncludePad` chooses whether padding counts in the divisor).
public final class AvgPool2D: Layer {
    public let kernelSize: Int
    public let stride: Int
    public let padding: Int
    public let countIncludePad: Bool

    private var inputShape: [Int]?  // [N, H, W, C] of the last training-mode forward

    /// - Parameters:
    ///   - stride: defaults to `kernelSize`, like PyTorch.
    ///   - padding: at most half the kernel size.
    ///   - countIncludePad: divide by the whole window including padding (PyTorch's default) rather than
    ///     by the in-bounds pixels only.
    public init(kernelSize: Int, stride: Int? = nil, padding: Int = 0, countIncludePad: Bool = true) {
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
        self.countIncludePad = countIncludePad
        validatePooling("AvgPool2D", kernelSize: kernelSize, stride: self.stride, padding: padding)
    }

    public func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        let outputShape = try pooledShape(input.shape, kind: "AvgPool2D", kernelSize: kernelSize,
                                          stride: stride, padding: padding)
        var output = Tensor(zeros: outputShape)
        let (n, h, w, c) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                guard let x = x.baseAddress, let y = y.baseAddress else { return }
                avgPool2DForward(x, batch: n, height: h, width: w, channels: c, kernelSize: kernelSize,
                                 stride: stride, padding: padding, countIncludePad: countIncludePad, into: y)
            }
        }
        inputShape = mode == .training ? input.shape : nil
        return output
    }

    public func backward(_ dOutput: Tensor) -> Tensor {
        guard let inputShape else { preconditionFailure("AvgPool2D.backward: no training-mode forward to differentiate") }
        let (n, h, w, c) = (inputShape[0], inputShape[1], inputShape[2], inputShape[3])
        let outputShape = [n, poolOutputSize(inputSize: h, kernelSize: kernelSize, stride: stride, padding: padding),
                           poolOutputSize(inputSize: w, kernelSize: kernelSize, stride: stride, padding: padding), c]
        precondition(dOutput.shape == outputShape,
                     "AvgPool2D.backward: dOutput \(describeShape(dOutput.shape)), expected \(describeShape(outputShape))")
        var dInput = Tensor(zeros: inputShape)
        dOutput.scalars.withUnsafeBufferPointer { g in
            dInput.scalars.withUnsafeMutableBufferPointer { dx in
                guard let g = g.baseAddress, let dx = dx.baseAddress else { return }
                avgPool2DBackward(g, batch: n, height: h, width: w, channels: c, kernelSize: kernelSize,
                                  stride: stride, padding: padding, countIncludePad: countIncludePad, into: dx)
            }
        }
        return dInput
    }
}

/// The mean of every channel over the whole feature map: [N, H, W, C] → [N, C], as PyTorch's
/// `nn.AdaptiveAvgPool2d(1)` followed by `flatten(1)` in ResNet heads.
public final class GlobalAvgPool2D: Layer {
    private var inputShape: [Int]?  // [N, H, W, C] of the last training-mode forward

    public init() {}

    public func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        let shape = input.shape
        guard shape.count == 4, shape[1] > 0, shape[2] > 0 else {
            throw RuntimeError.shapeMismatch(path: "", kind: "GlobalAvgPool2D",
                                             expected: "[N, H, W, C] (NHWC) with H, W ≥ 1", found: shape)
        }
        var output = Tensor(zeros: [shape[0], shape[3]])
        input.scalars.withUnsafeBufferPointer { x in
            output.scalars.withUnsafeMutableBufferPointer { y in
                guard let x = x.baseAddress, let y = y.baseAddress else { return }
                globalAvgPool2DForward(x, batch: shape[0], height: shape[1], width: shape[2], channels: shape[3], into: y)
            }
        }
        inputShape = mode == .training ? shape : nil
        return output
    }

    public func backward(_ dOutput: Tensor) -> Tensor {
        guard let inputShape else {
            preconditionFailure("GlobalAvgPool2D.backward: no training-mode forward to differentiate")
        }
        precondition(dOutput.shape == [inputShape[0], inputShape[3]],
                     "GlobalAvgPool2D.backward: dOutput \(describeShape(dOutput.shape)) does not match the forward")
        var dInput = Tensor(zeros: inputShape)
        dOutput.scalars.withUnsafeBufferPointer { g in
            dInput.scalars.withUnsafeMutableBufferPointer { dx in
                guard let g = g.baseAddress, let dx = dx.baseAddress else { return }
                globalAvgPool2DBackward(g, batch: inputShape[0], height: inputShape[1], width: inputShape[2],
                                        channels: inputShape[3], into: dx)
            }
        }
        return dInput
    }
}
