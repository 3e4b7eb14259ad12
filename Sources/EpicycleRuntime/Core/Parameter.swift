/// A trainable tensor with its gradient.
///
/// Gradients accumulate (`+=`) across backward calls until an optimizer step or `zeroGradient()`,
/// as in PyTorch, so several losses can feed one parameter.
public final class Parameter {
    public var value: Tensor
    public var gradient: Tensor
    /// False for batch-norm scales/shifts and biases: the default parameter groups exempt them from
    /// weight decay, the usual practice for CNNs (timm's `param_groups_weight_decay`).
    public let decays: Bool
    /// False while the parameter is frozen (e.g. early layers during fine-tuning).
    public var trainable: Bool = true

    public init(_ value: Tensor, decays: Bool) {
        self.value = value
        self.gradient = Tensor(zeros: value.shape)
        self.decays = decays
    }

    public func zeroGradient() {
        gradient.scalars.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }
}

/// A non-trainable tensor that is part of a model's state (batch-norm running statistics).
public final class Buffer {
    /// PyTorch stores `num_batches_tracked` as a 0-d int64 tensor; the others are float32.
    public enum Value: Equatable, Sendable {
        case float32(Tensor)
        case int64(Int64)
    }
    public var value: Value

    public init(_ value: Value) { self.value = value }
}

/// The named state of a module: parameters and buffers under PyTorch `state_dict` names.
///
/// Layers add their own entries with local names (`"weight"`); composites add children with a
/// prefix (`add("layer1", child)`), so dotted paths such as `layer1.0.conv1.weight` are built in one
/// place and nobody concatenates them by hand.
public struct ModuleState {
    public private(set) var parameters: [(name: String, parameter: Parameter)] = []
    public private(set) var buffers: [(name: String, buffer: Buffer)] = []
    private let prefix: String

    public init() { prefix = "" }
    private init(prefix: String) { self.prefix = prefix }

    public mutating func add(_ name: String, _ parameter: Parameter) {
        parameters.append((prefix + name, parameter))
    }

    public mutating func add(_ name: String, _ buffer: Buffer) {
        buffers.append((prefix + name, buffer))
    }

    public mutating func add(_ name: String, _ child: any Layer) {
        var nested = ModuleState(prefix: prefix + name + ".")
        child.collectState(into: &nested)
        parameters += nested.parameters
        buffers += nested.buffers
    }
}
