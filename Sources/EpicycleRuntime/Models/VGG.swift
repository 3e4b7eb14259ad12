// VGG with batch norm for CIFAR: Simonyan & Zisserman, "Very Deep Convolutional Networks for
// Large-Scale Image Recognition", ICLR 2015, in the form RepDistiller (Tian et al., "Contrastive
// Representation Distillation", ICLR 2020) trains on CIFAR-100: five stages of conv3×3 (with bias) →
// BN → ReLU, 2×2 max-pooling after each of the first three stages, global average pooling and one
// linear classifier (the original's three fully connected layers are gone). Stage widths are the
// paper's configurations A (VGG-11) and B (VGG-13) and RepDistiller's S (VGG-8), scaled by the width
// multiplier. RepDistiller pools once more after the fourth stage for 64×64 inputs only; this model
// always pools three times, and global pooling makes any image size of at least 8×8 work.

/// Convolution widths per stage at width 1, by depth (convolutions plus the original's three fully
/// connected layers).
let vggStages: [Int: [[Int]]] = [
    8: [[64], [128], [256], [512], [512]],
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
]

/// `Int(c · width)`, rounding toward zero as RepDistiller's `int(c * width_mult)` does.
func scaledChannels(_ channels: Int, _ width: Double) -> Int {
    Int((Double(channels) * width).rounded(.towardZero))
}

func vggSteps(spec: ModelSpec, depth: Int, width: Double, generator: inout RandomGenerator) -> [Model.Step] {
    let stages = vggStages[depth]!.map { $0.map { scaledChannels($0, width) } }
    var steps: [Model.Step] = []
    var channels = spec.inputChannels
    for (index, widths) in stages.enumerated() {
        steps.append(.init(path: "block\(index)", layer: VGGStage(inputChannels: channels, widths: widths, generator: &generator),
                           features: ["block\(index)"]))
        if index < 3 { steps.append(.init(path: "pool\(index)", layer: MaxPool2D(kernelSize: 2), features: [])) }
        channels = widths.last!
    }
    steps.append(.init(path: "pool4", layer: GlobalAvgPool2D(), features: ["pool"]))
    steps.append(.init(path: "classifier", layer: Linear(inputFeatures: channels, outputFeatures: spec.numClasses,
                                                         generator: &generator), features: []))
    return steps
}

/// One VGG stage: conv3×3 → BN → ReLU per width, named as RepDistiller's `nn.Sequential` indices
/// (convolution 3i, batch norm 3i + 1; the ReLU at 3i + 2 has no state). The convolutions keep
/// their bias, zero at the start as RepDistiller initialises it, so its checkpoints load one to one.
final class VGGStage: Layer {
    let units: [ConvBNReLU]

    init(inputChannels: Int, widths: [Int], generator: inout RandomGenerator) {
        var units: [ConvBNReLU] = []
        var channels = inputChannels
        for (index, width) in widths.enumerated() {
            let unit = ConvBNReLU(inputChannels: channels, outputChannels: width, bias: true,
                                  names: ("\(3 * index)", "\(3 * index + 1)"), generator: &generator)
            unit.conv.bias!.value = Tensor(zeros: [width])
            units.append(unit)
            channels = width
        }
        self.units = units
    }

    var children: [any Layer] { units }

    func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        var x = input
        for unit in units { x = try unit.forward(x, mode: mode) }
        return x
    }

    func backward(_ dOutput: Tensor) -> Tensor {
        var gradient = dOutput
        for unit in units.reversed() { gradient = unit.backward(gradient) }
        return gradient
    }

    // The units' names are already the stage's indices, so they add their state without a prefix.
    func collectState(into state: inout ModuleState) {
        for unit in units { unit.collectState(into: &state) }
    }
}
