// MobileNetV2: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018
// (Table 2), in the CIFAR form RepDistiller trains as a distillation student (`mobile_half` is width
// 0.5): a conv3×3 stem of 32W channels with stride 2, seven stages of inverted residual blocks
// (expansion t, output channels c·W, n blocks, the first with stride s):
//
//     t  c    n  s          t  c    n  s
//     1  16   1  1          6  96   3  1
//     6  24   2  1          6  160  3  2
//     6  32   3  2          6  320  1  1
//     6  64   4  2
//
// then a 1×1 convolution to 1280 channels (1280·W when W > 1), global average pooling and a linear
// classifier. Channel counts round toward zero (RepDistiller's `int(c * width_mult)`). As in
// RepDistiller, the activations are ReLU (the paper's ReLU6 is not used) and a block with t = 1 still
// has its 1×1 expansion convolution. On 32×32 inputs the last feature map is 2×2 (28×28: 2×2 too).

/// (expansion t, channels c at width 1, blocks n, stride s of the first block) per stage.
let mobileNetV2Stages: [(expansion: Int, channels: Int, blocks: Int, stride: Int)] = [
    (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
]

/// The channels of the last 1×1 convolution: 1280, widened (never narrowed) by the multiplier.
func mobileNetV2LastChannels(_ width: Double) -> Int { width > 1 ? scaledChannels(1280, width) : 1280 }

func mobileNetV2Steps(spec: ModelSpec, width: Double, generator: inout RandomGenerator) -> [Model.Step] {
    var channels = scaledChannels(32, width)
    var steps: [Model.Step] = [
        .init(path: "conv1", layer: ConvBNReLU(inputChannels: spec.inputChannels, outputChannels: channels, stride: 2,
                                               names: ("0", "1"), generator: &generator), features: ["stem"]),
    ]
    // Blocks are named `blocks.<stage>.<index>`; a stage's last block also answers to `blocks.<stage>`.
    for (stage, setting) in mobileNetV2Stages.enumerated() {
        let output = scaledChannels(setting.channels, width)
        for index in 0..<setting.blocks {
            let block = InvertedResidual(inputChannels: channels, outputChannels: output,
                                         stride: index == 0 ? setting.stride : 1, expansion: setting.expansion,
                                         generator: &generator)
            let path = "blocks.\(stage).\(index)"
            steps.append(.init(path: path, layer: block, features: [path] + (index == setting.blocks - 1 ? ["blocks.\(stage)"] : [])))
            channels = output
        }
    }
    let last = mobileNetV2LastChannels(width)
    steps.append(.init(path: "conv2", layer: ConvBNReLU(inputChannels: channels, outputChannels: last, kernelSize: 1,
                                                        names: ("0", "1"), generator: &generator), features: []))
    steps.append(.init(path: "avgpool", layer: GlobalAvgPool2D(), features: ["pool"]))
    steps.append(.init(path: "classifier.0", layer: Linear(inputFeatures: last, outputFeatures: spec.numClasses,
                                                           generator: &generator), features: []))
    return steps
}

/// 1×1 expansion to t·C channels → BN → ReLU → depthwise 3×3 (the stride) → BN → ReLU → 1×1 linear
/// projection → BN, plus the input where the shape is unchanged (stride 1, equal channels). Named as
/// RepDistiller's `conv` `nn.Sequential`: `conv.0`/`conv.1`, `conv.3`/`conv.4`, `conv.6`/`conv.7`.
final class InvertedResidual: Layer {
    let expand: ConvBNReLU
    let depthwise: ConvBNReLU
    let project: Conv2D
    let projectNorm: BatchNorm2D
    let hasResidual: Bool

    init(inputChannels: Int, outputChannels: Int, stride: Int, expansion: Int, generator: inout RandomGenerator) {
        let hidden = inputChannels * expansion
        expand = ConvBNReLU(inputChannels: inputChannels, outputChannels: hidden, kernelSize: 1,
                            names: ("conv.0", "conv.1"), generator: &generator)
        depthwise = ConvBNReLU(inputChannels: hidden, outputChannels: hidden, stride: stride, groups: hidden,
                               names: ("conv.3", "conv.4"), generator: &generator)
        project = Conv2D(inputChannels: hidden, outputChannels: outputChannels, kernelSize: 1, generator: &generator)
        projectNorm = BatchNorm2D(channels: outputChannels)
        hasResidual = stride == 1 && inputChannels == outputChannels
    }

    var children: [any Layer] { [expand, depthwise, project, projectNorm] }

    func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        let expanded = try expand.forward(input, mode: mode)
        let filtered = try depthwise.forward(expanded, mode: mode)
        // Inference folds the last batch norm and the residual add into the projection's store.
        if mode == .inference {
            return try nested("conv.6") {
                try project.forwardInference(filtered, normalizedBy: projectNorm, adding: hasResidual ? input : nil, relu: false)
            }
        }
        var out = try forward(child: projectNorm, named: "conv.7",
                              try forward(child: project, named: "conv.6", filtered, mode: mode), mode: mode)
        if hasResidual { out += input }
        return out
    }

    func backward(_ dOutput: Tensor) -> Tensor {
        let dFiltered = project.backward(projectNorm.backward(dOutput))
        let dExpanded = depthwise.backward(dFiltered)
        // The residual join passes dOutput to the input unchanged; it is added in the first convolution's store.
        return hasResidual ? expand.backward(dExpanded, adding: dOutput) : expand.backward(dExpanded)
    }

    // The units carry their full names inside the block (`conv.0`, …), so they add their state unprefixed.
    func collectState(into state: inout ModuleState) {
        expand.collectState(into: &state)
        depthwise.collectState(into: &state)
        state.add("conv.6", project)
        state.add("conv.7", projectNorm)
    }
}
