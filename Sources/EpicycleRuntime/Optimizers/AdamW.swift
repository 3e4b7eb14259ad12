#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Adam with decoupled weight decay (Loshchilov & Hutter 2019), exactly as `torch.optim.AdamW`
/// (amsgrad off). With t the parameter's step count after incrementing, λ its group's weight decay:
///
///     p ← p·(1 − η·λ)
///     m ← β1·m + (1 − β1)·g,        v ← β2·v + (1 − β2)·g²
///     p ← p − (η / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
public final class AdamW: Optimizer {
    /// The per-parameter state under PyTorch's names "exp_avg", "exp_avg_sq" and "step".
    public struct State {
        public var expAvg: Tensor     // the parameter's shape
        public var expAvgSq: Tensor   // the parameter's shape
        public var step: Int
    }

    public var groups: [ParameterGroup]
    public var parameterStates: [String: State] = [:]
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float

    /// PyTorch's defaults except the weight decay, which comes from the groups (PyTorch's default is
    /// 0.01; `ParameterGroup.standard(_:weightDecay:)` sets it).
    /// - Precondition: parameter names are unique across groups.
    public init(groups: [ParameterGroup], learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
                epsilon: Float = 1e-8) {
        checkUniqueNames(groups, optimizer: "AdamW")
        self.groups = groups
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
    }

    public var scheduledHyperParameters: [ScheduledHyperParameter] { [.learningRate, .weightDecay] }

    public func set(_ hyperParameter: ScheduledHyperParameter, to value: Float) {
        switch hyperParameter {
        case .learningRate: learningRate = value
        case .weightDecay: setWeightDecay(value)
        case .momentum: preconditionFailure("AdamW has no scheduled momentum: its β1 is fixed when it is constructed")
        }
    }

    public func newState(for parameter: Parameter) -> State {
        State(expAvg: Tensor(zeros: parameter.value.shape), expAvgSq: Tensor(zeros: parameter.value.shape), step: 0)
    }

    public func update(_ parameter: Parameter, state: inout State, weightDecay: Float) {
        state.step += 1
        let t = Double(state.step)
        // Bias corrections in Double, as PyTorch computes them in Python floats; the operation order
        // below follows torch.optim.AdamW's single-tensor path, so roundings agree too.
        let stepSize = Float(Double(learningRate) / (1 - pow(Double(beta1), t)))
        let correction2Root = Float((1 - pow(Double(beta2), t)).squareRoot())
        let shrink = 1 - learningRate * weightDecay
        let (beta1, beta2, epsilon) = (beta1, beta2, epsilon)
        let count = parameter.value.count
        parameter.gradient.scalars.withUnsafeBufferPointer { g in
            parameter.value.scalars.withUnsafeMutableBufferPointer { p in
                state.expAvg.scalars.withUnsafeMutableBufferPointer { m in
                    state.expAvgSq.scalars.withUnsafeMutableBufferPointer { v in
                        for i in 0..<count {
                            p[i] *= shrink
                            m[i] += (1 - beta1) * (g[i] - m[i])
                            v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i]
                            p[i] -= stepSize * (m[i] / (v[i].squareRoot() / correction2Root + epsilon))
                        }
                    }
                }
            }
        }
    }

    public func exportState() -> OptimizerState {
        var hyperParameters: [String: Double] = [
            "lr": Double(learningRate), "beta1": Double(beta1), "beta2": Double(beta2), "eps": Double(epsilon),
        ]
        exportWeightDecays(groups, into: &hyperParameters)
        var tensors: [String: Tensor] = [:]
        for (name, state) in parameterStates {
            tensors[name + ".exp_avg"] = state.expAvg
            tensors[name + ".exp_avg_sq"] = state.expAvgSq
            tensors[name + ".step"] = Tensor(shape: [], scalars: [Float(state.step)])
        }
        return OptimizerState(kind: "AdamW", hyperParameters: hyperParameters, tensors: tensors)
    }

    public func importState(_ state: OptimizerState) throws {
        let tensors = try importedStateTensors(state, kind: "AdamW", groups: groups, keys: ["exp_avg", "exp_avg_sq", "step"])
        let weightDecays = try importedWeightDecays(state, groups: groups)
        let values = try ["lr", "beta1", "beta2", "eps"].map { try state.hyperParameter($0) }
        var states: [String: State] = [:]
        for (name, entry) in tensors {
            let step = entry["step"]!.scalars[0]
            guard step >= 0, step == step.rounded(), step < 16_777_216 else {
                throw OptimizerError.invalidStep(name: name + ".step", value: step)
            }
            states[name] = State(expAvg: entry["exp_avg"]!, expAvgSq: entry["exp_avg_sq"]!, step: Int(step))
        }
        parameterStates = states
        for index in groups.indices { groups[index].weightDecay = weightDecays[index] }
        learningRate = Float(values[0])
        beta1 = Float(values[1])
        beta2 = Float(values[2])
        epsilon = Float(values[3])
    }
}
