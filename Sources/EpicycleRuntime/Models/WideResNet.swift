// Wide residual networks: Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016. WRN-d-k has a
// 3×3 stem of 16 channels, three stages of (d − 4)/6 pre-activation blocks of 16k, 32k, 64k channels
// (stride 1, 2, 2), then BN → ReLU → global average pooling → linear. A 1×1 convolution on the
// pre-activated input forms the shortcut where the shape changes.

func wideResNetSteps(spec: ModelSpec, depth: Int, widen: Int, generator: inout RandomGenerator) -> [Model.Step] {
    let blocksPerStage = (depth - 4) / 6
    var steps: [Model.Step] = [
        .init(path: "conv1", layer: Conv2D(inputChannels: spec.inputChannels, outputChannels: 16, kernelSize: 3,
                                           padding: 1, generator: &generator), features: ["stem"]),
    ]
    let (blocks, channels) = residualStages(widths: [16 * widen, 32 * widen, 64 * widen], blocksPerStage: blocksPerStage,
                                            inputChannels: 16) { input, output, stride in
        WideBlock(inputChannels: input, outputChannels: output, stride: stride, dropout: spec.dropout, generator: &generator)
    }
    steps += blocks
    steps.append(.init(path: "bn", layer: BatchNormReLU(channels: channels), features: []))
    steps.append(.init(path: "avgpool", layer: GlobalAvgPool2D(), features: ["pool"]))
    steps.append(.init(path: "fc", layer: Linear(inputFeatures: channels, outputFeatures: spec.numClasses,
                                                  generator: &generator), features: []))
    return steps
}

/// BN → ReLU → conv3×3 → BN → ReLU → dropout → conv3×3, plus the shortcut.
final class WideBlock: Layer {
    let bn1: BatchNormReLU
    let conv1: Conv2D
    let bn2: BatchNormReLU
    let dropout: Dropout?
    let conv2: Conv2D
    /// Present where the shape changes; it reads the pre-activated input.
    let shortcut: Conv2D?

    init(inputChannels: Int, outputChannels: Int, stride: Int, dropout probability: Float,
         generator: inout RandomGenerator) {
        bn1 = BatchNormReLU(channels: inputChannels)
        conv1 = Conv2D(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: 3, stride: stride,
                       padding: 1, generator: &generator)
        bn2 = BatchNormReLU(channels: outputChannels)
        dropout = probability > 0 ? Dropout(probability: probability, generator: generator.derived(1)) : nil
        conv2 = Conv2D(inputChannels: outputChannels, outputChannels: outputChannels, kernelSize: 3, padding: 1,
                       generator: &generator)
        shortcut = stride == 1 && inputChannels == outputChannels ? nil
            : Conv2D(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: 1, stride: stride,
                     generator: &generator)
    }

    var children: [any Layer] { [bn1, conv1, bn2] + (dropout.map { [$0] } ?? []) + [conv2] + (shortcut.map { [$0] } ?? []) }

    func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        let activated = try forward(child: bn1, named: "bn1", input, mode: mode)
        var out = try forward(child: conv1, named: "conv1", activated, mode: mode)
        out = try forward(child: bn2, named: "bn2", out, mode: mode)
        if let dropout { out = try dropout.forward(out, mode: mode) }
        out = try forward(child: conv2, named: "conv2", out, mode: mode)
        if let shortcut {
            out += try forward(child: shortcut, named: "shortcut", activated, mode: mode)
        } else {
            out += input
        }
        return out
    }

    func backward(_ dOutput: Tensor) -> Tensor {
        var dOut = conv2.backward(dOutput)
        if let dropout { dOut = dropout.backward(dOut) }
        var dActivated = conv1.backward(bn2.backward(dOut))
        if let shortcut { dActivated += shortcut.backward(dOutput) }
        var dInput = bn1.backward(dActivated)
        if shortcut == nil { dInput += dOutput }
        return dInput
    }

    func collectState(into state: inout ModuleState) {
        state.add("bn1", bn1)
        state.add("conv1", conv1)
        state.add("bn2", bn2)
        state.add("conv2", conv2)
        if let shortcut { state.add("shortcut", shortcut) }
    }
}
