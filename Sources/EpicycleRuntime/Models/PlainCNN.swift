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

/// conv3×3 (padding 1) → BN → ReLU.
final class ConvBNReLU: Layer {
    let conv: Conv2D
    let bn: BatchNormReLU

    init(inputChannels: Int, outputChannels: Int, generator: inout RandomGenerator) {
        conv = Conv2D(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: 3, padding: 1,
                      generator: &generator)
        bn = BatchNormReLU(channels: outputChannels)
    }

    func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        if mode == .inference {
            return try nested("conv") { try conv.forwardInference(input, normalizedBy: bn.norm, relu: true) }
        }
        return try forward(child: bn, named: "bn", try forward(child: conv, named: "conv", input, mode: mode), mode: mode)
    }

    func backward(_ dOutput: Tensor) -> Tensor {
        conv.backward(bn.backward(dOutput))
    }

    var children: [any Layer] { [conv, bn] }

    func collectState(into state: inout ModuleState) {
        state.add("conv", conv)
        state.add("bn", bn)
    }
}
