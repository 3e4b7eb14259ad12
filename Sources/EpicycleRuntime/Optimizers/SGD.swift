/// Stochastic gradient descent with momentum, exactly as `torch.optim.SGD`, plus an optional
/// decoupled weight decay. With g the gradient, p the parameter, λ the group's weight decay, μ the
/// momentum, d the dampening and η the learning rate, one step is:
///
///     g ← g + λ·p                      (L2, unless decoupled; then instead p ← p·(1 − η·λ) first,
///                                       the convention of torch.optim.AdamW)
///     if μ ≠ 0:
///         b ← g                        on the parameter's first step with momentum (PyTorch's rule:
///                                       no dampening then)
///         b ← μ·b + (1 − d)·g          afterwards
///         g ← g + μ·b   if nesterov,   else g ← b
///     p ← p − η·g
public final class SGD: Optimizer {
    /// The per-parameter state: PyTorch's "momentum_buffer", absent until the first step with μ ≠ 0.
    public struct State {
        public var momentumBuffer: Tensor?  // the parameter's shape
    }

    public var groups: [ParameterGroup]
    public var parameterStates: [String: State] = [:]
    public var learningRate: Float
    public var momentum: Float
    public var dampening: Float
    public var nesterov: Bool
    /// Whether weight decay shrinks the parameter directly (p ← p·(1 − η·λ)) instead of adding λ·p to
    /// the gradient (where momentum would carry it).
    public var decoupledWeightDecay: Bool

    /// - Precondition: parameter names are unique across groups; Nesterov momentum needs μ > 0 and
    ///   d = 0, as PyTorch requires.
    public init(groups: [ParameterGroup], learningRate: Float, momentum: Float = 0, dampening: Float = 0,
                nesterov: Bool = false, decoupledWeightDecay: Bool = false) {
        precondition(!nesterov || (momentum > 0 && dampening == 0), "SGD: Nesterov momentum requires momentum > 0 and dampening = 0")
        checkUniqueNames(groups, optimizer: "SGD")
        self.groups = groups
        self.learningRate = learningRate
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.decoupledWeightDecay = decoupledWeightDecay
    }

    public var scheduledHyperParameters: [ScheduledHyperParameter] { ScheduledHyperParameter.allCases }

    public func set(_ hyperParameter: ScheduledHyperParameter, to value: Float) {
        switch hyperParameter {
        case .learningRate: learningRate = value
        case .weightDecay: setWeightDecay(value)
        case .momentum: momentum = value
        }
    }

    public func newState(for parameter: Parameter) -> State {
        State(momentumBuffer: nil)
    }

    public func update(_ parameter: Parameter, state: inout State, weightDecay: Float) {
        let (lr, mu, nesterov) = (learningRate, momentum, nesterov)
        let l2 = decoupledWeightDecay ? 0 : weightDecay
        let shrink = decoupledWeightDecay ? 1 - learningRate * weightDecay : 1
        let (count, shape) = (parameter.value.count, parameter.value.shape)
        parameter.gradient.scalars.withUnsafeBufferPointer { g in
            parameter.value.scalars.withUnsafeMutableBufferPointer { p in
                if mu == 0 {
                    for i in 0..<count {
                        p[i] *= shrink
                        p[i] -= lr * (g[i] + l2 * p[i])
                    }
                    return
                }
                let isFirst = state.momentumBuffer == nil
                if isFirst { state.momentumBuffer = Tensor(zeros: shape) }
                // On the first step b = g: taking μ = 0 and 1 − d = 1 in the general rule gives exactly that.
                let (keep, add) = isFirst ? (Float(0), Float(1)) : (mu, 1 - dampening)
                state.momentumBuffer!.scalars.withUnsafeMutableBufferPointer { b in
                    for i in 0..<count {
                        p[i] *= shrink
                        let gradient = g[i] + l2 * p[i]
                        b[i] = keep * b[i] + add * gradient
                        p[i] -= lr * (nesterov ? gradient + mu * b[i] : b[i])
                    }
                }
            }
        }
    }

    public func exportState() -> OptimizerState {
        var hyperParameters: [String: Double] = [
            "lr": Double(learningRate), "momentum": Double(momentum), "dampening": Double(dampening),
            "nesterov": nesterov ? 1 : 0, "decoupled_weight_decay": decoupledWeightDecay ? 1 : 0,
        ]
        exportWeightDecays(groups, into: &hyperParameters)
        var tensors: [String: Tensor] = [:]
        for (name, state) in parameterStates {
            if let buffer = state.momentumBuffer { tensors[name + ".momentum_buffer"] = buffer }
        }
        return OptimizerState(kind: "SGD", hyperParameters: hyperParameters, tensors: tensors)
    }

    public func importState(_ state: OptimizerState) throws {
        let tensors = try importedStateTensors(state, kind: "SGD", groups: groups, keys: ["momentum_buffer"])
        let weightDecays = try importedWeightDecays(state, groups: groups)
        let values = try ["lr", "momentum", "dampening", "nesterov", "decoupled_weight_decay"].map {
            try state.hyperParameter($0)
        }
        parameterStates = tensors.mapValues { State(momentumBuffer: $0["momentum_buffer"]) }
        for index in groups.indices { groups[index].weightDecay = weightDecays[index] }
        learningRate = Float(values[0])
        momentum = Float(values[1])
        dampening = Float(values[2])
        nesterov = values[3] != 0
        decoupledWeightDecay = values[4] != 0
    }
}

/// - Precondition: no parameter name appears twice; names key the optimizer state.
func checkUniqueNames(_ groups: [ParameterGroup], optimizer: String) {
    var seen = Set<String>()
    for group in groups {
        for (name, _) in group.parameters {
            precondition(seen.insert(name).inserted, "\(optimizer): parameter '\(name)' appears twice in the parameter groups")
        }
    }
}
