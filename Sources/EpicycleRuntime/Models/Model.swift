import CMalloc

// Every training step allocates and frees the same activations and gradients (1–8 MB each for
// ResNet-20 at batch 128). By default glibc serves blocks that size by mmap, or trims them off the heap
// once freed, so each step page-faults its memory back in (246 K page faults and 10 % of the CPU time
// over 21 ResNet-20 steps, 66 K and none of the extra time with this). Keeping freed blocks up to
// 32 MB (glibc's largest mmap threshold) on the heap lets the next step reuse them; peak memory is
// unchanged, since a step holds all of them at once anyway. Set once, by the first model built.
private let retainFreedActivations: Void = {
    #if canImport(Glibc)
    mallopt(M_MMAP_THRESHOLD, 32 << 20)
    mallopt(M_TRIM_THRESHOLD, Int32.max)
    #endif
}()

/// A network as an ordered list of steps, with named intermediate features.
///
/// A forward pass can return features by name (`stem`, `layer1`…`layer3`, any block such as
/// `layer2.0`, and `pool`, the pooled vector before the classifier) without changing what the model
/// returns, as torchdistill's forward hooks do; a backward pass takes extra gradients at those same
/// names, which is how feature-matching losses reach the network.
public final class Model {
    public let spec: ModelSpec

    /// One stage of the forward pass: a layer, its name (the `state_dict` prefix of its state, and the
    /// name errors use), and the feature names that denote its output.
    struct Step {
        let path: String
        let layer: any Layer
        let features: [String]
    }

    let steps: [Step]
    /// The layers that draw random numbers, whose generators a checkpoint must carry for a resumed
    /// run to continue bit for bit.
    private let dropouts: [Dropout]
    /// Every batch norm, in network order.
    public let batchNorms: [BatchNorm2D]
    /// When training on a block of a batch split over processes, what gives the losses computed from
    /// this model's outputs the whole batch's view (data selection); nil for a whole batch.
    public var rowGatherer: (any BatchRowGatherer)?
    /// Every name `forward(_:mode:capture:)` accepts, in network order.
    public let featureNames: [String]

    init(spec: ModelSpec, steps: [Step]) {
        retainFreedActivations
        self.spec = spec
        self.steps = steps
        let layers = steps.flatMap(\.layer.layerTree)
        dropouts = layers.compactMap { $0 as? Dropout }
        batchNorms = layers.compactMap { $0 as? BatchNorm2D }
        featureNames = steps.flatMap(\.features)
        // The layers run one at a time, so one set of convolution scratch buffers serves them all
        // (tens of MB fewer for ResNet-56 than one per layer).
        let workspace = Conv2DWorkspace()
        convolutions = layers.compactMap { $0 as? Conv2D }
        linears = layers.compactMap { $0 as? Linear }
        for convolution in convolutions { convolution.workspace = workspace }
    }

    private let convolutions: [Conv2D]
    private let linears: [Linear]

    /// The number format of the convolutions' and linear layers' products (see `Precision`); set it to
    /// what `Precision.resolved` gives for this machine.
    public var precision: Precision = .fp32 {
        didSet {
            for convolution in convolutions { convolution.precision = precision }
            for linear in linears { linear.precision = precision }
        }
    }

    /// Builds the model a spec describes, with weights drawn from `seed`.
    public convenience init(_ spec: ModelSpec, seed: UInt64) throws {
        try spec.validate()
        var generator = RandomGenerator(seed: seed)
        let steps: [Step]
        switch try spec.family() {
        case let .resNet(depth, width):
            steps = resNetSteps(spec: spec, depth: depth, width: width, generator: &generator)
        case let .wideResNet(depth, widen):
            steps = wideResNetSteps(spec: spec, depth: depth, widen: widen, generator: &generator)
        case let .plainCNN(width):
            steps = plainCNNSteps(spec: spec, width: width, generator: &generator)
        case let .vgg(depth, width):
            steps = vggSteps(spec: spec, depth: depth, width: width, generator: &generator)
        case let .mobileNetV2(width):
            steps = mobileNetV2Steps(spec: spec, width: width, generator: &generator)
        }
        self.init(spec: spec, steps: steps)
    }

    /// The logits and the requested features (all NHWC tensors, `pool` is [N, C]).
    public struct Output {
        public var logits: Tensor          // [N, classes]
        public var features: [String: Tensor]
    }

    /// - Parameters:
    ///   - input: a batch of images, [N, H, W, input channels].
    ///   - capture: feature names to return; unknown names throw and list the valid ones.
    public func forward(_ input: Tensor, mode: Mode, capture: [String] = []) throws -> Output {
        for name in capture where !featureNames.contains(name) {
            throw RuntimeError.unknownFeature(name, valid: featureNames)
        }
        var x = input
        var features: [String: Tensor] = [:]
        var index = 0
        while index < steps.count {
            let step = steps[index]
            // In inference a convolution followed by batch norm + ReLU runs as one, the batch norm folded
            // into the convolution's store (when nothing captures the convolution's own output).
            if mode == .inference, step.features.isEmpty, index + 1 < steps.count,
               let convolution = step.layer as? Conv2D, let norm = steps[index + 1].layer as? BatchNormReLU {
                x = try step.layer.nested(step.path) { try convolution.forwardInference(x, normalizedBy: norm.norm, relu: true) }
                index += 1
            } else {
                x = try step.layer.forward(child: step.layer, named: step.path, x, mode: mode)
            }
            for name in steps[index].features where capture.contains(name) { features[name] = x }
            index += 1
        }
        return Output(logits: x, features: features)
    }

    /// Propagates the loss gradient back through the network, accumulating parameter gradients.
    ///
    /// The images get no gradient, as inputs that do not require one in PyTorch: the first layer, when
    /// it is a convolution, computes only its parameter gradients (`backwardToInput` also returns the
    /// images' gradient).
    ///
    /// - Parameters:
    ///   - dLogits: the loss gradient with respect to the logits, [N, classes].
    ///   - featureGradients: extra gradients with respect to captured features (same shapes), added
    ///     where the backward pass reaches them.
    public func backward(_ dLogits: Tensor, featureGradients: [String: Tensor] = [:]) {
        propagate(dLogits, featureGradients: featureGradients, toInput: false)
    }

    /// `backward`, returning the gradient with respect to the input images as well.
    public func backwardToInput(_ dLogits: Tensor, featureGradients: [String: Tensor] = [:]) -> Tensor {
        propagate(dLogits, featureGradients: featureGradients, toInput: true)!
    }

    @discardableResult
    private func propagate(_ dLogits: Tensor, featureGradients: [String: Tensor], toInput: Bool) -> Tensor? {
        var gradient = dLogits
        for (index, step) in steps.enumerated().reversed() {
            for name in step.features {
                guard let extra = featureGradients[name] else { continue }
                precondition(extra.shape == gradient.shape,
                             "Model.backward: gradient for '\(name)' has shape \(extra.shape), the feature has \(gradient.shape)")
                gradient += extra
            }
            if index == 0 && !toInput, let convolution = step.layer as? Conv2D {
                convolution.accumulateParameterGradients(gradient)
                return nil
            }
            gradient = step.layer.backward(gradient)
        }
        return gradient
    }

    /// Parameters and buffers under PyTorch `state_dict` names, in network order.
    public var state: ModuleState {
        var state = ModuleState()
        for step in steps { state.add(step.path, step.layer) }
        return state
    }

    /// The dropout generators' state words, in network order (empty for models without dropout).
    public var randomStateWords: [UInt64] { dropouts.flatMap(\.generator.stateWords) }

    /// Tells the dropouts where the rows of the next training forwards' input stand in the whole batch
    /// (`Dropout.firstRow`): 0 for a whole batch, the block's first row for a block of one.
    public func setDropoutFirstRow(_ row: Int) {
        for dropout in dropouts { dropout.firstRow = row }
    }

    /// Restores what `randomStateWords` returned.
    public func restoreRandomState(_ words: [UInt64]) throws {
        guard words.count == 4 * dropouts.count else {
            throw RuntimeError.invalidSpec("random state has \(words.count) words; this model's \(dropouts.count) dropout layers need \(4 * dropouts.count)")
        }
        for (index, dropout) in dropouts.enumerated() {
            dropout.generator = RandomGenerator(state: Array(words[4 * index..<4 * index + 4]))
        }
    }

    /// Recomputes every batch norm's running statistics as the plain average over `batches` with the
    /// current weights ("precise BN": PyTorch's `swa_utils.update_bn`, momentum None), in place of
    /// the moving averages, which lag weights that moved fast. Dropout draws no numbers the training
    /// would see: its generators are restored afterwards.
    public func recalibrateBatchNorm(on batches: some Sequence<Tensor>) throws {
        let randomState = randomStateWords
        setDropoutFirstRow(0)
        for norm in batchNorms { norm.beginPlainAverage() }
        defer { for norm in batchNorms { norm.endPlainAverage() } }
        for images in batches { _ = try forward(images, mode: .training) }
        try restoreRandomState(randomState)
    }

    public var parameterCount: Int { state.parameters.reduce(0) { $0 + $1.parameter.value.count } }
}

/// The three stages of a CIFAR-style residual network (stride 1, 2, 2): blocks named `layer<s>.<i>`,
/// the last block of each stage also answering to `layer<s>`, the stage's first block taking the stride.
/// - Returns: the blocks as steps, and the channels coming out of the last one.
func residualStages(widths: [Int], blocksPerStage: Int, inputChannels: Int,
                    makeBlock: (_ input: Int, _ output: Int, _ stride: Int) -> any Layer) -> (steps: [Model.Step], channels: Int) {
    var steps: [Model.Step] = []
    var channels = inputChannels
    for (stage, (planes, stride)) in zip(widths, [1, 2, 2]).enumerated() {
        for index in 0..<blocksPerStage {
            let name = "layer\(stage + 1).\(index)"
            let isLast = index == blocksPerStage - 1
            steps.append(.init(path: name, layer: makeBlock(channels, planes, index == 0 ? stride : 1),
                               features: isLast ? [name, "layer\(stage + 1)"] : [name]))
            channels = planes
        }
    }
    return (steps, channels)
}
