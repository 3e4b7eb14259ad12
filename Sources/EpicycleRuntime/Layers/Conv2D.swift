/// A 2-D convolution over NHWC feature maps with PyTorch's parameters (`torch.nn.Conv2d` without
/// dilation): input `[N, H, W, inputChannels]` → output `[N, P, Q, outputChannels]` with
/// P = ⌊(H + 2·padding − kernelSize) / stride⌋ + 1 (Q likewise from W).
///
/// Channels split into `groups` independent convolutions (groups = inputChannels is depthwise).
public final class Conv2D: Layer {
    public let inputChannels: Int
    public let outputChannels: Int
    public let kernelSize: Int
    public let stride: Int
    public let padding: Int
    public let groups: Int
    /// `[outputChannels, inputChannels / groups, kernelSize, kernelSize]`, decays.
    public let weight: Parameter
    /// `[outputChannels]`, exempt from weight decay; nil without a bias.
    public let bias: Parameter?
    /// Scratch memory for the kernels. Layers that run one at a time (those of one model) may share
    /// one to save memory; each layer starts with its own.
    public var workspace = Conv2DWorkspace()
    /// The number format of the products (see `Precision`).
    public var precision = Precision.fp32
    // The last training-mode input ([N, H, W, C]), which backward needs for the weight gradient, and its
    // geometry. Inference-mode forwards clear it.
    private var cache: (input: Tensor, geometry: Conv2DGeometry)?

    /// - Parameters:
    ///   - initializer: for the weight, with PyTorch's fans: fan-in = inputChannels / groups · k²,
    ///     fan-out = outputChannels · k². The bias, when present, is U(−1/√fan-in, 1/√fan-in) as in PyTorch.
    /// - Precondition: kernelSize, stride, groups ≥ 1, padding ≥ 0, both channel counts ≥ 1 and
    ///   divisible by groups.
    public init(
        inputChannels: Int, outputChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
        groups: Int = 1, bias: Bool = false, initializer: Initializer = .kaimingNormalFanOut,
        generator: inout RandomGenerator
    ) {
        precondition(kernelSize >= 1 && stride >= 1 && padding >= 0 && groups >= 1,
                     "Conv2D: kernelSize, stride and groups must be ≥ 1 and padding ≥ 0")
        precondition(inputChannels >= 1 && outputChannels >= 1
                     && inputChannels % groups == 0 && outputChannels % groups == 0,
                     "Conv2D: \(inputChannels) input and \(outputChannels) output channels must both be positive multiples of groups (\(groups))")
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.groups = groups
        let receptiveField = kernelSize * kernelSize
        let fanIn = inputChannels / groups * receptiveField, fanOut = outputChannels * receptiveField
        weight = Parameter(
            initializer.tensor(shape: [outputChannels, inputChannels / groups, kernelSize, kernelSize],
                               fanIn: fanIn, fanOut: fanOut, generator: &generator),
            decays: true)
        self.bias = bias
            ? Parameter(Initializer.pytorchDefault.tensor(shape: [outputChannels], fanIn: fanIn, fanOut: fanOut,
                                                          generator: &generator), decays: false)
            : nil
    }

    public func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        let geometry = try geometry(for: input)
        // Tensors are copy-on-write, so keeping the input shares the caller's storage.
        cache = mode == .training ? (input, geometry) : nil
        return Tensor(overwrittenBy: geometry.outputShape) { output in
            input.scalars.withUnsafeBufferPointer { input in
                weight.value.scalars.withUnsafeBufferPointer { weight in
                    withOptionalPointer(bias?.value) { bias in
                        conv2DForward(geometry, input: input.baseAddress!, weight: weight.baseAddress!, bias: bias,
                                      output: output, workspace: workspace, precision: precision)
                    }
                }
            }
        }
    }

    /// Inference-mode `forward` followed by `norm` with its running statistics, plus `residual` (shaped
    /// like the output), then a ReLU if asked: all in the convolution's store, one pass over memory
    /// where the separate layers take four.
    /// - Throws: as `forward`, and when the residual's shape differs from the output's.
    public func forwardInference(_ input: Tensor, normalizedBy norm: BatchNorm2D, adding residual: Tensor? = nil,
                                 relu: Bool) throws -> Tensor {
        let geometry = try geometry(for: input)
        if let residual, residual.shape != geometry.outputShape {
            throw RuntimeError.shapeMismatch(path: "", kind: "Conv2D",
                                             expected: "a residual shaped like the output \(describeShape(geometry.outputShape))",
                                             found: residual.shape)
        }
        cache = nil
        let (scale, shift) = norm.inferenceAffine()
        return Tensor(overwrittenBy: geometry.outputShape) { output in
            input.scalars.withUnsafeBufferPointer { input in
                weight.value.scalars.withUnsafeBufferPointer { weight in
                    withOptionalPointer(bias?.value) { bias in
                        withOptionalPointer(residual) { residual in
                            scale.withUnsafeBufferPointer { scale in
                                shift.withUnsafeBufferPointer { shift in
                                    let epilogue = Conv2DEpilogue(scale: scale.baseAddress!, shift: shift.baseAddress!,
                                                                  residual: residual, relu: relu)
                                    conv2DForward(geometry, input: input.baseAddress!, weight: weight.baseAddress!,
                                                  bias: bias, output: output, workspace: workspace, epilogue: epilogue,
                                                  precision: precision)
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    public func backward(_ dOutput: Tensor) -> Tensor {
        let (input, geometry) = cached(for: dOutput)
        return Tensor(overwrittenBy: geometry.inputShape) { dInput in
            backward(dOutput, input: input, geometry: geometry, into: dInput, accumulate: false)
        }
    }

    /// `backward`, with the input gradient added to `gradient` (another branch's gradient of the same
    /// input, as at a residual join) in the kernel's store instead of in a separate pass.
    public func backward(_ dOutput: Tensor, adding gradient: Tensor) -> Tensor {
        let (input, geometry) = cached(for: dOutput)
        precondition(gradient.shape == geometry.inputShape,
                     "Conv2D.backward: gradient to add \(describeShape(gradient.shape)), expected \(describeShape(geometry.inputShape))")
        var sum = gradient
        sum.scalars.withUnsafeMutableBufferPointer { dInput in
            backward(dOutput, input: input, geometry: geometry, into: dInput.baseAddress!, accumulate: true)
        }
        return sum
    }

    /// The parameter half of `backward`, for a first layer whose input (the images) needs no gradient,
    /// as PyTorch skips the input gradient of a tensor that does not require one.
    public func accumulateParameterGradients(_ dOutput: Tensor) {
        let (input, geometry) = cached(for: dOutput)
        withGradientPointers(dOutput, input: input) { dOutput, input, dWeight, dBias in
            if let dWeight {
                conv2DBackwardWeight(geometry, input: input, dOutput: dOutput, dWeight: dWeight, dBias: dBias,
                                     workspace: workspace, precision: precision)
            } else if let dBias {
                addColumnSums(dOutput, rows: geometry.batch * geometry.outputHeight * geometry.outputWidth,
                              columns: outputChannels, into: dBias)
            }
        }
    }

    // The last training-mode forward's input and geometry, checked against dOutput.
    private func cached(for dOutput: Tensor) -> (input: Tensor, geometry: Conv2DGeometry) {
        guard let cache else { preconditionFailure("Conv2D.backward: no training-mode forward to differentiate") }
        precondition(dOutput.shape == cache.geometry.outputShape,
                     "Conv2D.backward: dOutput \(describeShape(dOutput.shape)), expected \(describeShape(cache.geometry.outputShape))")
        return cache
    }

    // Both gradients into dInput (overwritten, or added to with `accumulate`) and the parameters'.
    private func backward(_ dOutput: Tensor, input: Tensor, geometry: Conv2DGeometry, into dInput: UnsafeMutablePointer<Float>,
                          accumulate: Bool) {
        guard geometry.batch > 0 else { return }
        weight.value.scalars.withUnsafeBufferPointer { weight in
            let weight = weight.baseAddress!
            withGradientPointers(dOutput, input: input) { dOutput, input, dWeight, dBias in
                if let dWeight {
                    conv2DBackward(geometry, input: input, dOutput: dOutput, weight: weight, dInput: dInput,
                                   accumulate: accumulate, dWeight: dWeight, dBias: dBias, workspace: workspace,
                                   precision: precision)
                    return
                }
                if let dBias {
                    addColumnSums(dOutput, rows: geometry.batch * geometry.outputHeight * geometry.outputWidth,
                                  columns: outputChannels, into: dBias)
                }
                conv2DBackwardInput(geometry, dOutput: dOutput, weight: weight, dInput: dInput, workspace: workspace,
                                    accumulate: accumulate, precision: precision)
            }
        }
    }

    // dOutput's and the input's scalars, and the gradients of the trainable parameters (a frozen weight
    // gets no gradient; a frozen bias is left out of the sum).
    private func withGradientPointers(
        _ dOutput: Tensor, input: Tensor,
        _ body: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>?, UnsafeMutablePointer<Float>?) -> Void
    ) {
        dOutput.scalars.withUnsafeBufferPointer { dOutput in
            input.scalars.withUnsafeBufferPointer { input in
                withOptionalMutablePointer(bias) { dBias in
                    withOptionalMutablePointer(weight) { dWeight in
                        body(dOutput.baseAddress!, input.baseAddress!, dWeight, dBias)
                    }
                }
            }
        }
    }

    public func collectState(into state: inout ModuleState) {
        state.add("weight", weight)
        if let bias { state.add("bias", bias) }
    }

    private func geometry(for input: Tensor) throws -> Conv2DGeometry {
        let minimumSize = max(1, kernelSize - 2 * padding)
        let shape = input.shape
        guard shape.count == 4, shape[3] == inputChannels, shape[1] >= minimumSize, shape[2] >= minimumSize else {
            var expected = "[N, H, W, \(inputChannels)] (NHWC)"
            if shape.count == 4 && shape[3] == inputChannels {
                expected += " with H, W ≥ \(minimumSize) for kernel \(kernelSize) and padding \(padding)"
            }
            throw RuntimeError.shapeMismatch(path: "", kind: "Conv2D", expected: expected, found: shape)
        }
        return Conv2DGeometry(
            batch: shape[0], inputHeight: shape[1], inputWidth: shape[2], inputChannels: inputChannels,
            outputChannels: outputChannels, kernelHeight: kernelSize, kernelWidth: kernelSize,
            strideHeight: stride, strideWidth: stride, paddingHeight: padding, paddingWidth: padding, groups: groups)
    }
}

extension Tensor {
    // A tensor whose every scalar `fill` writes, skipping the zeroing pass Tensor(zeros:) would spend.
    // An empty tensor is returned without calling `fill` (its buffer may have no address).
    init(overwrittenBy shape: [Int], _ fill: (UnsafeMutablePointer<Float>) -> Void) {
        let count = shape.reduce(1, *)
        let scalars = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 { fill(buffer.baseAddress!) }
            initialized = count
        }
        self.init(shape: shape, scalars: scalars)
    }
}

// The scalars of an optional tensor as an optional pointer, for kernels that take an optional bias.
func withOptionalPointer<Result>(_ tensor: Tensor?, _ body: (UnsafePointer<Float>?) -> Result) -> Result {
    guard let tensor else { return body(nil) }
    return tensor.scalars.withUnsafeBufferPointer { body($0.baseAddress!) }
}

// A trainable parameter's gradient as an optional pointer: nil without the parameter or while it is frozen.
func withOptionalMutablePointer<Result>(_ parameter: Parameter?, _ body: (UnsafeMutablePointer<Float>?) -> Result) -> Result {
    guard let parameter, parameter.trainable else { return body(nil) }
    return parameter.gradient.scalars.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
}
