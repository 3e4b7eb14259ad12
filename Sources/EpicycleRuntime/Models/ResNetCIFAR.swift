// ResNet for CIFAR-sized images: He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition",
// CVPR 2016, §4.2 — a 3×3 stem, three stages of n basic blocks (16, 32, 64 channels, stride 1, 2, 2),
// global average pooling and a linear classifier; depth 6n + 2. Width multiplier W as in RepDistiller's
// resnet8x4/resnet32x4 (Tian et al., "Contrastive Representation Distillation", ICLR 2020): stages
// 16W/32W/64W and a stem of max(16, 8W) channels.

func resNetSteps(spec: ModelSpec, depth: Int, width: Int, generator: inout RandomGenerator) -> [Model.Step] {
    let blocksPerStage = (depth - 2) / 6
    let stem = max(16, 8 * width)
    var steps: [Model.Step] = [
        .init(path: "conv1", layer: Conv2D(inputChannels: spec.inputChannels, outputChannels: stem, kernelSize: 3,
                                           padding: 1, generator: &generator), features: []),
        .init(path: "bn1", layer: BatchNormReLU(channels: stem), features: ["stem"]),
    ]
    let (blocks, channels) = residualStages(widths: [16 * width, 32 * width, 64 * width], blocksPerStage: blocksPerStage,
                                            inputChannels: stem) { input, output, stride in
        BasicBlock(inputChannels: input, outputChannels: output, stride: stride, shortcut: spec.shortcut, generator: &generator)
    }
    steps += blocks
    steps.append(.init(path: "avgpool", layer: GlobalAvgPool2D(), features: ["pool"]))
    steps.append(.init(path: "fc", layer: Linear(inputFeatures: channels, outputFeatures: spec.numClasses,
                                                  generator: &generator), features: []))
    return steps
}

/// conv3×3 → BN → ReLU → conv3×3 → BN, plus the shortcut, then ReLU. Each batch norm runs fused with
/// what follows it (the ReLU; the shortcut add and the ReLU), one pass over memory instead of three.
final class BasicBlock: Layer {
    let conv1: Conv2D
    let bn1: BatchNorm2D
    let conv2: Conv2D
    let bn2: BatchNorm2D
    let shortcut: Shortcut

    enum Shortcut {
        case identity
        case padded(ChannelPadShortcut)
        case projection(Conv2D, BatchNorm2D)
    }

    init(inputChannels: Int, outputChannels: Int, stride: Int, shortcut kind: ModelSpec.Shortcut,
         generator: inout RandomGenerator) {
        conv1 = Conv2D(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: 3, stride: stride,
                       padding: 1, generator: &generator)
        bn1 = BatchNorm2D(channels: outputChannels)
        conv2 = Conv2D(inputChannels: outputChannels, outputChannels: outputChannels, kernelSize: 3, padding: 1,
                       generator: &generator)
        bn2 = BatchNorm2D(channels: outputChannels)
        if stride == 1 && inputChannels == outputChannels {
            shortcut = .identity
        } else if kind == .a {
            shortcut = .padded(ChannelPadShortcut(inputChannels: inputChannels, outputChannels: outputChannels, stride: stride))
        } else {
            shortcut = .projection(
                Conv2D(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: 1, stride: stride,
                       generator: &generator),
                BatchNorm2D(channels: outputChannels))
        }
    }

    var children: [any Layer] {
        switch shortcut {
        case .identity: return [conv1, bn1, conv2, bn2]
        case let .padded(pad): return [conv1, bn1, conv2, bn2, pad]
        case let .projection(conv, bn): return [conv1, bn1, conv2, bn2, conv, bn]
        }
    }

    func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        let residual: Tensor
        switch shortcut {
        case .identity:
            residual = input
        case let .padded(pad):
            residual = try pad.forward(input, mode: mode)
        case let .projection(conv, bn):
            residual = mode == .inference
                ? try nested("downsample.0") { try conv.forwardInference(input, normalizedBy: bn, relu: false) }
                : try forward(child: bn, named: "downsample.1",
                              try forward(child: conv, named: "downsample.0", input, mode: mode), mode: mode)
        }
        // Inference folds each batch norm (with the shortcut add and the ReLU) into its convolution.
        if mode == .inference {
            let hidden = try nested("conv1") { try conv1.forwardInference(input, normalizedBy: bn1, relu: true) }
            return try nested("conv2") { try conv2.forwardInference(hidden, normalizedBy: bn2, adding: residual, relu: true) }
        }
        var out = try forward(child: conv1, named: "conv1", input, mode: mode)
        out = try nested("bn1") { try bn1.forwardReLU(out, mode: mode) }
        out = try forward(child: conv2, named: "conv2", out, mode: mode)
        return try nested("bn2") { try bn2.forwardReLU(out, adding: residual, mode: mode) }
    }

    func backward(_ dOutput: Tensor) -> Tensor {
        // The residual join sends the same gradient (behind the final ReLU) down both branches; their
        // input gradients sum, the shortcut's added in the first convolution's store.
        let (dBranch, dResidual) = bn2.backwardThroughReLU(dOutput)
        guard let dSum = dResidual else { preconditionFailure("BasicBlock: bn2 ran without the residual") }
        let dShortcut: Tensor
        switch shortcut {
        case .identity: dShortcut = dSum
        case let .padded(pad): dShortcut = pad.backward(dSum)
        case let .projection(conv, bn): dShortcut = conv.backward(bn.backward(dSum))
        }
        return conv1.backward(bn1.backwardThroughReLU(conv2.backward(dBranch)).dInput, adding: dShortcut)
    }

    func collectState(into state: inout ModuleState) {
        state.add("conv1", conv1)
        state.add("bn1", bn1)
        state.add("conv2", conv2)
        state.add("bn2", bn2)
        if case let .projection(conv, bn) = shortcut {
            state.add("downsample.0", conv)
            state.add("downsample.1", bn)
        }
    }
}

/// Option A shortcut: keeps every `stride`-th pixel and zero-pads the channels, half in front and
/// half behind (as `F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))` in the common PyTorch version).
final class ChannelPadShortcut: Layer {
    let inputChannels: Int
    let outputChannels: Int
    let stride: Int
    private var inputShape: [Int]?  // [N, H, W, C] of the last training forward

    init(inputChannels: Int, outputChannels: Int, stride: Int) {
        precondition(outputChannels >= inputChannels, "ChannelPadShortcut cannot drop channels")
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.stride = stride
    }

    private var padFront: Int { (outputChannels - inputChannels) / 2 }

    func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        guard input.rank == 4, input.shape[3] == inputChannels else {
            throw RuntimeError.shapeMismatch(path: "", kind: "ChannelPadShortcut",
                                             expected: "[N, H, W, \(inputChannels)] (NHWC)", found: input.shape)
        }
        let (n, h, w) = (input.shape[0], input.shape[1], input.shape[2])
        let (oh, ow) = ((h + stride - 1) / stride, (w + stride - 1) / stride)
        let (front, back) = (padFront, outputChannels - inputChannels - padFront)
        let output = Tensor(overwrittenBy: [n, oh, ow, outputChannels]) { y in
            input.scalars.withUnsafeBufferPointer { x in
                forEachImage(n, elements: n * oh * ow * outputChannels) { b in
                    for i in 0..<oh {
                        for j in 0..<ow {
                            let source = x.baseAddress! + ((b * h + i * stride) * w + j * stride) * inputChannels
                            let target = y + ((b * oh + i) * ow + j) * outputChannels
                            for c in 0..<front { target[c] = 0 }
                            for c in 0..<inputChannels { target[front + c] = source[c] }
                            for c in 0..<back { target[front + inputChannels + c] = 0 }
                        }
                    }
                }
            }
        }
        inputShape = mode == .training ? input.shape : nil
        return output
    }

    func backward(_ dOutput: Tensor) -> Tensor {
        guard let shape = inputShape else { preconditionFailure("ChannelPadShortcut.backward needs a training forward") }
        let (n, h, w) = (shape[0], shape[1], shape[2])
        let (oh, ow) = (dOutput.shape[1], dOutput.shape[2])
        let front = padFront
        return Tensor(overwrittenBy: shape) { dx in
            dOutput.scalars.withUnsafeBufferPointer { dy in
                forEachImage(n, elements: n * h * w * inputChannels) { b in
                    // Pixels the stride skipped get no gradient.
                    (dx + b * h * w * inputChannels).update(repeating: 0, count: h * w * inputChannels)
                    for i in 0..<oh {
                        for j in 0..<ow {
                            let target = dx + ((b * h + i * stride) * w + j * stride) * inputChannels
                            let source = dy.baseAddress! + ((b * oh + i) * ow + j) * outputChannels + front
                            for c in 0..<inputChannels { target[c] = source[c] }
                        }
                    }
                }
            }
        }
    }
}

// Calls body(image) for each of `images` images, split over the kernel threads when the pass touches
// enough `elements` for a second core to pay.
private func forEachImage(_ images: Int, elements: Int, _ body: (Int) -> Void) {
    let threads = elements >= parallelElementThreshold ? max(1, min(kernelThreads, images)) : 1
    parallelFor(threads) { t in
        for b in partition(images, parts: threads, index: t) { body(b) }
    }
}
