/// A model's inference-mode computation as a list of operations on numbered values, for exporters
/// (ONNX) that rebuild it in another framework: batch norm that follows a convolution is folded into
/// the convolution's weights and bias, dropout is gone, and every batch norm reads its running
/// statistics, so the graph computes what `forward(_:mode: .inference)` does.
///
/// Operations are format-neutral and say nothing of memory layout: feature maps have a batch, a channel
/// and two spatial axes, and `Flatten` orders features (channel, row, column) as PyTorch does.
public struct InferenceGraph {
    /// A value of the graph: the input (0) or the output of node `index - 1`.
    public struct Value: Hashable, Sendable {
        public let index: Int
    }

    public enum Operation {
        /// Weight [outputChannels, inputChannels / groups, k, k] (PyTorch's layout), bias [outputChannels].
        case convolution(weight: Tensor, bias: [Float], stride: Int, padding: Int, groups: Int)
        /// y = x·scale[c] + shift[c] per channel: a batch norm with nothing to fold into.
        case channelAffine(scale: [Float], shift: [Float])
        case relu
        /// The elementwise sum of the node's two inputs.
        case add
        case maxPool(kernelSize: Int, stride: Int, padding: Int)
        case averagePool(kernelSize: Int, stride: Int, padding: Int, countIncludePad: Bool)
        /// The mean over both spatial axes: [N, C, H, W] → [N, C].
        case globalAveragePool
        /// [N, C, H, W] → [N, C·H·W] in (c, h, w) order; a [N, features] input passes as it is.
        case flatten
        /// Weight [outputFeatures, inputFeatures], bias [outputFeatures] (zeros for a layer without one).
        case linear(weight: Tensor, bias: [Float])
        /// ResNet option A: keeps every `stride`-th row and column, then `front` zero channels before
        /// and `back` after.
        case subsampleAndPadChannels(stride: Int, front: Int, back: Int)
    }

    public struct Node {
        public let operation: Operation
        public let inputs: [Value]
        /// The layer it comes from, as its `state_dict` prefix (`layer2.0.conv1`), for names in the export.
        public let path: String
    }

    public private(set) var nodes: [Node] = []
    public static let input = Value(index: 0)
    /// The last node's value (the input for an empty graph).
    public var output: Value { Value(index: nodes.count) }
    /// The layer path new nodes are named under (see `nested`).
    private var prefix = ""

    public init() {}

    /// Appends a node and returns its value; `name` (empty for the layer itself) extends the layer path.
    @discardableResult
    public mutating func append(_ operation: Operation, _ inputs: Value..., name: String) -> Value {
        nodes.append(Node(operation: operation, inputs: inputs, path: [prefix, name].filter { !$0.isEmpty }.joined(separator: ".")))
        return output
    }

    /// Runs `body` with `name` prefixed to the paths of the nodes it appends.
    public mutating func nested<T>(_ name: String, _ body: (inout InferenceGraph) throws -> T) rethrows -> T {
        let outer = prefix
        prefix = prefix.isEmpty ? name : prefix + "." + name
        defer { prefix = outer }
        return try body(&self)
    }

    /// A convolution with the inference-mode batch norm after it folded in: W'[o] = W[o]·scale[o],
    /// b'[o] = b[o]·scale[o] + shift[o], with scale and shift from `BatchNorm2D.inferenceAffine`.
    mutating func convolution(_ convolution: Conv2D, normalizedBy norm: BatchNorm2D?, _ input: Value, name: String) -> Value {
        var weight = convolution.weight.value
        var bias = convolution.bias?.value.scalars ?? [Float](repeating: 0, count: convolution.outputChannels)
        if let norm {
            let (scale, shift) = norm.inferenceAffine()
            let perOutput = weight.count / convolution.outputChannels
            for output in 0..<convolution.outputChannels {
                for index in output * perOutput..<(output + 1) * perOutput { weight.scalars[index] *= scale[output] }
                bias[output] = bias[output] * scale[output] + shift[output]
            }
        }
        return append(.convolution(weight: weight, bias: bias, stride: convolution.stride, padding: convolution.padding,
                                   groups: convolution.groups), input, name: name)
    }
}

/// A layer that can describe its inference-mode computation. A model exports only when every one of
/// its top-level layers conforms; a new block type adds its conformance here, beside the others.
public protocol InferenceDescribable: Layer {
    /// Appends the layer's inference computation on `input` and returns its output value.
    func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value
}

extension Model {
    /// The inference computation of the whole model, its input being the normalised images.
    /// A convolution followed by a batch norm step is folded, as `forward` fuses them in inference.
    /// - Throws: `RuntimeError.invalidSpec` naming a layer that cannot describe itself.
    public func inferenceGraph() throws -> InferenceGraph {
        var graph = InferenceGraph()
        var value = InferenceGraph.input
        var index = 0
        while index < steps.count {
            let step = steps[index]
            let next = index + 1 < steps.count ? steps[index + 1] : nil
            if let convolution = step.layer as? Conv2D, let norm = next.flatMap({ foldableNorm($0.layer) }) {
                value = graph.convolution(convolution, normalizedBy: norm, value, name: step.path)
                if next!.layer is BatchNormReLU { value = graph.append(.relu, value, name: next!.path) }
                index += 2
                continue
            }
            guard let layer = step.layer as? any InferenceDescribable else {
                throw RuntimeError.invalidSpec("\(spec.architecture): layer '\(step.path)' (\(type(of: step.layer))) has no inference description to export")
            }
            value = try graph.nested(step.path) { try layer.describeInference(value, into: &$0) }
            index += 1
        }
        return graph
    }

    private func foldableNorm(_ layer: any Layer) -> BatchNorm2D? {
        (layer as? BatchNorm2D) ?? (layer as? BatchNormReLU)?.norm
    }
}

extension Conv2D: InferenceDescribable {
    public func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value {
        graph.convolution(self, normalizedBy: nil, input, name: "")
    }
}

extension BatchNorm2D: InferenceDescribable {
    public func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value {
        let (scale, shift) = inferenceAffine()
        return graph.append(.channelAffine(scale: scale, shift: shift), input, name: "")
    }
}

extension BatchNormReLU: InferenceDescribable {
    public func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value {
        graph.append(.relu, try norm.describeInference(input, into: &graph), name: "relu")
    }
}

extension ReLU: InferenceDescribable {
    public func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value {
        graph.append(.relu, input, name: "")
    }
}

extension Dropout: InferenceDescribable {
    /// The identity: inference draws no dropout.
    public func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value {
        input
    }
}

extension MaxPool2D: InferenceDescribable {
    public func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value {
        graph.append(.maxPool(kernelSize: kernelSize, stride: stride, padding: padding), input, name: "")
    }
}

extension AvgPool2D: InferenceDescribable {
    public func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value {
        graph.append(.averagePool(kernelSize: kernelSize, stride: stride, padding: padding, countIncludePad: countIncludePad),
                     input, name: "")
    }
}

extension GlobalAvgPool2D: InferenceDescribable {
    public func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value {
        graph.append(.globalAveragePool, input, name: "")
    }
}

extension Flatten: InferenceDescribable {
    public func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value {
        graph.append(.flatten, input, name: "")
    }
}

extension Linear: InferenceDescribable {
    public func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value {
        graph.append(.linear(weight: weight.value, bias: bias?.value.scalars ?? [Float](repeating: 0, count: outputFeatures)),
                     input, name: "")
    }
}

extension ConvBNReLU: InferenceDescribable {
    func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value {
        graph.append(.relu, graph.convolution(conv, normalizedBy: bn.norm, input, name: "conv"), name: "relu")
    }
}

extension ChannelPadShortcut: InferenceDescribable {
    func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value {
        let front = (outputChannels - inputChannels) / 2
        return graph.append(.subsampleAndPadChannels(stride: stride, front: front, back: outputChannels - inputChannels - front),
                            input, name: "shortcut")
    }
}

extension BasicBlock: InferenceDescribable {
    func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value {
        let residual: InferenceGraph.Value
        switch shortcut {
        case .identity: residual = input
        case let .padded(pad): residual = try pad.describeInference(input, into: &graph)
        case let .projection(conv, bn): residual = graph.convolution(conv, normalizedBy: bn, input, name: "downsample.0")
        }
        let hidden = graph.append(.relu, graph.convolution(conv1, normalizedBy: bn1, input, name: "conv1"), name: "relu1")
        let sum = graph.append(.add, graph.convolution(conv2, normalizedBy: bn2, hidden, name: "conv2"), residual, name: "add")
        return graph.append(.relu, sum, name: "relu2")
    }
}

extension WideBlock: InferenceDescribable {
    func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value {
        // bn1 follows the previous block's sum, which the shortcut also reads: it stays a separate affine map.
        let activated = try graph.nested("bn1") { try bn1.describeInference(input, into: &$0) }
        let hidden = graph.append(.relu, graph.convolution(conv1, normalizedBy: bn2.norm, activated, name: "conv1"), name: "bn2.relu")
        let branch = graph.convolution(conv2, normalizedBy: nil, hidden, name: "conv2")
        let residual = shortcut.map { graph.convolution($0, normalizedBy: nil, activated, name: "shortcut") } ?? input
        return graph.append(.add, branch, residual, name: "add")
    }
}

extension VGGStage: InferenceDescribable {
    func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value {
        var value = input
        for (index, unit) in units.enumerated() {
            value = try graph.nested("\(3 * index)") { try unit.describeInference(value, into: &$0) }
        }
        return value
    }
}

extension InvertedResidual: InferenceDescribable {
    func describeInference(_ input: InferenceGraph.Value, into graph: inout InferenceGraph) throws -> InferenceGraph.Value {
        let expanded = try graph.nested("conv.0") { try expand.describeInference(input, into: &$0) }
        let filtered = try graph.nested("conv.3") { try depthwise.describeInference(expanded, into: &$0) }
        let projected = graph.convolution(project, normalizedBy: projectNorm, filtered, name: "conv.6")
        return hasResidual ? graph.append(.add, projected, input, name: "add") : projected
    }
}
