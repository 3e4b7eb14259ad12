/// A fully connected layer with PyTorch's parameters (`torch.nn.Linear`):
/// output[N, out] = input[N, in] · weightᵀ + bias.
public final class Linear: Layer {
    public let inputFeatures: Int
    public let outputFeatures: Int
    /// `[outputFeatures, inputFeatures]`, decays.
    public let weight: Parameter
    /// `[outputFeatures]`, exempt from weight decay; nil without a bias.
    public let bias: Parameter?
    /// The number format of the products (see `Precision`). bf16 rounds the operands of each product
    /// and multiplies them with OpenBLAS in fp32, which gives what a bf16 kernel with fp32 sums gives:
    /// a classifier is too small a share of a network's work to need one.
    public var precision = Precision.fp32
    // [N, in]: the last training-mode input (rounded when bf16), which backward needs for the weight
    // gradient. Inference-mode forwards clear it.
    private var cachedInput: Tensor?

    // `tensor` as this layer's products take it.
    private func operand(_ tensor: Tensor) -> Tensor {
        precision == .bf16 ? Tensor(shape: tensor.shape, scalars: BFloat16Reference.rounded(tensor.scalars)) : tensor
    }

    /// - Parameters:
    ///   - initializer: for the weight, with fan-in = inputFeatures and fan-out = outputFeatures. The bias,
    ///     when present, is U(−1/√inputFeatures, 1/√inputFeatures) as in PyTorch.
    /// - Precondition: both feature counts ≥ 1.
    public init(
        inputFeatures: Int, outputFeatures: Int, bias: Bool = true,
        initializer: Initializer = .pytorchDefault, generator: inout RandomGenerator
    ) {
        precondition(inputFeatures >= 1 && outputFeatures >= 1, "Linear: feature counts must be ≥ 1")
        self.inputFeatures = inputFeatures
        self.outputFeatures = outputFeatures
        weight = Parameter(
            initializer.tensor(shape: [outputFeatures, inputFeatures], fanIn: inputFeatures,
                               fanOut: outputFeatures, generator: &generator),
            decays: true)
        self.bias = bias
            ? Parameter(Initializer.pytorchDefault.tensor(shape: [outputFeatures], fanIn: inputFeatures,
                                                          fanOut: outputFeatures, generator: &generator),
                        decays: false)
            : nil
    }

    public func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        guard input.rank == 2, input.shape[1] == inputFeatures else {
            throw RuntimeError.shapeMismatch(path: "", kind: "Linear", expected: "[N, \(inputFeatures)]", found: input.shape)
        }
        let batch = input.shape[0], input = operand(input)
        // Tensors are copy-on-write, so keeping the input shares the caller's storage.
        cachedInput = mode == .training ? input : nil
        return Tensor(overwrittenBy: [batch, outputFeatures]) { output in
            input.scalars.withUnsafeBufferPointer { input in
                operand(weight.value).scalars.withUnsafeBufferPointer { weight in
                    withOptionalPointer(bias?.value) { bias in
                        linearForward(batch: batch, inputFeatures: inputFeatures, outputFeatures: outputFeatures,
                                      input: input.baseAddress!, weight: weight.baseAddress!, bias: bias, output: output)
                    }
                }
            }
        }
    }

    public func backward(_ dOutput: Tensor) -> Tensor {
        guard let input = cachedInput else {
            preconditionFailure("Linear.backward: no training-mode forward to differentiate")
        }
        let batch = input.shape[0]
        precondition(dOutput.shape == [batch, outputFeatures],
                     "Linear.backward: dOutput \(describeShape(dOutput.shape)), expected \(describeShape([batch, outputFeatures]))")
        let dOutput = operand(dOutput)
        return Tensor(overwrittenBy: input.shape) { dInput in
            dOutput.scalars.withUnsafeBufferPointer { dOutput in
                input.scalars.withUnsafeBufferPointer { input in
                    withOptionalMutablePointer(bias) { dBias in
                        // A frozen weight gets no gradient; a frozen bias is left out of the sum.
                        if weight.trainable {
                            weight.gradient.scalars.withUnsafeMutableBufferPointer { dWeight in
                                linearBackwardWeight(batch: batch, inputFeatures: inputFeatures, outputFeatures: outputFeatures,
                                                     input: input.baseAddress!, dOutput: dOutput.baseAddress!,
                                                     dWeight: dWeight.baseAddress!, dBias: dBias)
                            }
                        } else if let dBias {
                            addColumnSums(dOutput.baseAddress!, rows: batch, columns: outputFeatures, into: dBias)
                        }
                    }
                }
                operand(weight.value).scalars.withUnsafeBufferPointer { weight in
                    linearBackwardInput(batch: batch, inputFeatures: inputFeatures, outputFeatures: outputFeatures,
                                        dOutput: dOutput.baseAddress!, weight: weight.baseAddress!, dInput: dInput)
                }
            }
        }
    }

    public func collectState(into state: inout ModuleState) {
        state.add("weight", weight)
        if let bias { state.add("bias", bias) }
    }
}
