/// Parameters that share a weight decay, as a PyTorch `param_group`.
public struct ParameterGroup {
    /// The parameters under their `state_dict` names; names identify optimizer state in checkpoints.
    public var parameters: [(name: String, parameter: Parameter)]
    /// λ, applied as the optimizer defines it (L2 in the gradient for SGD, decoupled for AdamW).
    public var weightDecay: Float
    /// Whether this group follows the weight-decay schedule: `Optimizer.setWeightDecay` changes only
    /// such groups, so the no-decay group of batch-norm parameters and biases stays at 0.
    public var decays: Bool

    public init(parameters: [(name: String, parameter: Parameter)], weightDecay: Float, decays: Bool = true) {
        self.parameters = parameters
        self.weightDecay = weightDecay
        self.decays = decays
    }
}

extension ParameterGroup {
    /// The usual two groups for CNNs (timm's `param_groups_weight_decay`): first the parameters with
    /// `decays == true` (convolution and linear weights) at `weightDecay`, then the rest (batch-norm
    /// scales and shifts, biases) at 0. Both groups are always present, possibly empty, so group
    /// indices in checkpoints are stable.
    public static func standard(_ parameters: [(name: String, parameter: Parameter)], weightDecay: Float) -> [ParameterGroup] {
        [ParameterGroup(parameters: parameters.filter { $0.parameter.decays }, weightDecay: weightDecay, decays: true),
         ParameterGroup(parameters: parameters.filter { !$0.parameter.decays }, weightDecay: 0, decays: false)]
    }
}
