/// Whether a forward pass may be followed by a backward pass.
public enum Mode: Sendable {
    /// Batch statistics in batch norm, dropout active, caches kept for `backward`.
    case training
    /// Running statistics, no dropout, and no caches: nothing is kept for a backward pass.
    case inference
}

/// A differentiable function with its parameters.
///
/// Backward rules (after llm.c): parameter gradients accumulate, the returned input gradient is fresh,
/// and `backward` uses what the last training-mode `forward` cached.
public protocol Layer: AnyObject {
    /// - Throws: `RuntimeError.shapeMismatch` when the input does not fit the layer.
    func forward(_ input: Tensor, mode: Mode) throws -> Tensor
    /// The gradient with respect to the last training-mode forward's input.
    /// - Precondition: the last `forward` ran in `.training` mode with an input of the same shape.
    func backward(_ dOutput: Tensor) -> Tensor
    /// Adds parameters and buffers under their `state_dict` names.
    func collectState(into state: inout ModuleState)
    /// The layers a composite layer is made of (none for a plain layer), so a model can walk them
    /// instead of knowing every block type.
    var children: [any Layer] { get }
}

extension Layer {
    public func collectState(into state: inout ModuleState) {}

    public var children: [any Layer] { [] }

    /// This layer and every layer inside it, depth first.
    public var layerTree: [any Layer] { [self] + children.flatMap(\.layerTree) }

    /// Parameters and buffers of this layer and its children, named as in PyTorch's `state_dict`.
    public var state: ModuleState {
        var state = ModuleState()
        collectState(into: &state)
        return state
    }

    /// Runs a child's forward pass; a shape error from inside it gets the child's name prefixed,
    /// so the message names the full path (`layer2.0.conv1 (Conv2D): …`).
    public func forward(child: any Layer, named name: String, _ input: Tensor, mode: Mode) throws -> Tensor {
        try nested(name) { try child.forward(input, mode: mode) }
    }

    /// Runs `body` (a child's work, such as a fused call into several children), prefixing `name` to
    /// the path of a shape error from inside it.
    public func nested(_ name: String, _ body: () throws -> Tensor) throws -> Tensor {
        do {
            return try body()
        } catch let error as RuntimeError {
            throw error.nested(in: name)
        }
    }
}
