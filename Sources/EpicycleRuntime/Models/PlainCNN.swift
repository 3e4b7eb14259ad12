// A small plain CNN for quick experiments and as a distillation student: three conv3×3 → BN → ReLU
// stages of 32W, 64W, 128W channels, 2×2 max-pooling after the first two, global average pooling and
// a linear classifier. Global pooling makes it work at any image size.

func plainCNNSteps(spec: ModelSpec, width: Int, generator: inout RandomGenerator) -> [Model.Step] {
    let widths = [32 * width, 64 * width, 128 * width]
    return [
        .init(path: "layer1", layer: ConvBNReLU(inputChannels: spec.inputChannels, outputChannels: widths[0],
                                                generator: &generator), features: []),
        .init(path: "pool1", layer: MaxPool2D(kernelSize: 2), features: ["layer1"]),
        .init(path: "layer2", layer: ConvBNReLU(inputChannels: widths[0], outputChannels: widths[1],
                                                generator: &generator), features: []),
        .init(path: "pool2", layer: MaxPool2D(kernelSize: 2), features: ["layer2"]),
        .init(path: "layer3", layer: ConvBNReLU(inputChannels: widths[1], outputChannels: widths[2],
                                                generator: &generator), features: ["layer3"]),
        .init(path: "avgpool", layer: GlobalAvgPool2D(), features: ["pool"]),
        .init(path: "fc", layer: Linear(inputFeatures: widths[2], outputFeatures: spec.numClasses,
                                        generator: &generator), features: []),
    ]
}

/// conv (k×k, padding ⌊k/2⌋) → BN → ReLU, the unit of the plain CNN, VGG and MobileNetV2. Its two
/// parts take the `state_dict` names a model gives them: `conv`/`bn` here, the `nn.Sequential`
/// indices `0`/`1` in RepDistiller's models.
final class ConvBNReLU: Layer {
    let conv: Conv2D
    let bn: BatchNormReLU
    private let names: (conv: String, bn: String)

    init(inputChannels: Int, outputChannels: Int, kernelSize: Int = 3, stride: Int = 1, groups: Int = 1,
         bias: Bool = false, names: (conv: String, bn: String) = ("conv", "bn"), generator: inout RandomGenerator) {
        conv = Conv2D(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: kernelSize, stride: stride,
                      padding: kernelSize / 2, groups: groups, bias: bias, generator: &generator)
        bn = BatchNormReLU(channels: outputChannels)
        self.names = names
    }

    func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        if mode == .inference {
            return try nested(names.conv) { try conv.forwardInference(input, normalizedBy: bn.norm, relu: true) }
        }
        return try forward(child: bn, named: names.bn, try forward(child: conv, named: names.conv, input, mode: mode),
                           mode: mode)
    }

    func backward(_ dOutput: Tensor) -> Tensor {
        conv.backward(bn.backward(dOutput))
    }

    /// `backward`, with the input gradient added to `gradient` (the other branch at a residual join).
    func backward(_ dOutput: Tensor, adding gradient: Tensor) -> Tensor {
        conv.backward(bn.backward(dOutput), adding: gradient)
    }

    var children: [any Layer] { [conv, bn] }

    func collectState(into state: inout ModuleState) {
        state.add(names.conv, conv)
        state.add(names.bn, bn)
    }
}
