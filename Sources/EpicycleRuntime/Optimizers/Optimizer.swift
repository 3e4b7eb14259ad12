/// A first-order optimizer over groups of named parameters.
///
/// An optimizer supplies two things per parameter (after mlx-swift's `newState` / `applySingle`): a
/// fresh state, created on the parameter's first update, and the update itself. `step()` walks the
/// groups, skips frozen parameters (`trainable == false`) and updates the rest in place. Every
/// hyper-parameter is a plain property read at each step, so schedules may change any of them
/// between steps; `scheduledHyperParameters` declares which ones a schedule may set through `set(_:to:)`.
public protocol Optimizer: AnyObject {
    /// Per-parameter state, e.g. a momentum buffer.
    associatedtype ParameterState

    /// The hyper-parameters this optimizer lets schedules set between steps, its declared table
    /// (SGD: all of them; AdamW: no momentum, its β1 stays as constructed).
    var scheduledHyperParameters: [ScheduledHyperParameter] { get }
    /// Sets one scheduled hyper-parameter; the weight decay goes to the groups that follow the
    /// schedule (`setWeightDecay`).
    /// - Precondition: `scheduledHyperParameters` lists it.
    func set(_ hyperParameter: ScheduledHyperParameter, to value: Float)

    var learningRate: Float { get set }
    var groups: [ParameterGroup] { get set }
    /// State by parameter name; a parameter has none until its first update.
    var parameterStates: [String: ParameterState] { get set }

    /// The state a parameter starts with.
    func newState(for parameter: Parameter) -> ParameterState
    /// Updates one parameter's value from its gradient, with its group's weight decay.
    func update(_ parameter: Parameter, state: inout ParameterState, weightDecay: Float)

    /// Hyper-parameters and per-parameter state as named tensors, for checkpoints.
    func exportState() -> OptimizerState
    /// Restores what `exportState` wrote, for the same parameter names and shapes. Nothing changes
    /// when it throws.
    /// - Throws: `OptimizerError` naming the first kind, hyper-parameter or tensor that does not fit.
    func importState(_ state: OptimizerState) throws
}

extension Optimizer {
    /// One update of every trainable parameter.
    public func step() {
        for group in groups {
            for (name, parameter) in group.parameters where parameter.trainable {
                // The `default:` subscript mutates the stored state in place: no copy of its buffers.
                update(parameter, state: &parameterStates[name, default: newState(for: parameter)],
                       weightDecay: group.weightDecay)
            }
        }
    }

    /// Zeroes the gradients of all parameters in all groups.
    public func zeroGradients() {
        for group in groups {
            for (_, parameter) in group.parameters { parameter.zeroGradient() }
        }
    }

    /// Sets the weight decay of every group that follows the schedule (`decays == true`); the
    /// no-decay group keeps its value.
    public func setWeightDecay(_ value: Float) {
        for index in groups.indices where groups[index].decays { groups[index].weightDecay = value }
    }
}

/// A hyper-parameter that a schedule may change between optimizer steps.
public enum ScheduledHyperParameter: String, CaseIterable, Sendable {
    case learningRate
    /// λ of every group with `decays == true`.
    case weightDecay
    /// μ of SGD's momentum buffer.
    case momentum
}

/// An optimizer's state as a checkpoint stores it.
///
/// Names follow PyTorch's optimizer `state_dict`: hyper-parameters "lr", "momentum", "betas" split
/// as "beta1"/"beta2", "eps", and per group "param_groups.<i>.weight_decay"; per-parameter tensors
/// "<parameter name>.<key>" with keys "momentum_buffer", "exp_avg", "exp_avg_sq" (the parameter's
/// shape) and "step" (a 0-d float32 tensor, as PyTorch keeps it).
public struct OptimizerState: Equatable, Sendable {
    /// "SGD" or "AdamW".
    public var kind: String
    /// Hyper-parameters by name; booleans are 0 or 1.
    public var hyperParameters: [String: Double]
    /// Per-parameter state by "<parameter name>.<key>".
    public var tensors: [String: Tensor]

    public init(kind: String, hyperParameters: [String: Double], tensors: [String: Tensor]) {
        self.kind = kind
        self.hyperParameters = hyperParameters
        self.tensors = tensors
    }
}

/// Why a saved optimizer state cannot be restored.
public enum OptimizerError: Error, Equatable, CustomStringConvertible {
    case kindMismatch(expected: String, found: String)
    case missingHyperParameter(kind: String, name: String)
    /// A hyper-parameter outside the range the optimizer accepts.
    case invalidHyperParameter(kind: String, name: String, value: Double, expected: String)
    /// A tensor whose parameter name or key this optimizer does not know.
    case unknownStateTensor(name: String)
    /// A parameter with only part of its state (e.g. "exp_avg" without "exp_avg_sq").
    case missingStateTensor(name: String)
    case stateShapeMismatch(name: String, expected: [Int], found: [Int])
    /// A step count that is not a whole number in [0, 2^24) (float32 counts exactly only that far).
    case invalidStep(name: String, value: Float)

    public var description: String {
        switch self {
        case let .kindMismatch(expected, found):
            return "optimizer state is for \(found), but the optimizer is \(expected); resume with the same optimizer"
        case let .missingHyperParameter(kind, name):
            return "\(kind) state lacks the hyper-parameter '\(name)'"
        case let .invalidHyperParameter(kind, name, value, expected):
            return "\(kind) state has the hyper-parameter '\(name)' = \(value), expected \(expected)"
        case let .unknownStateTensor(name):
            return "optimizer state tensor '\(name)' matches no parameter of the model; was it saved from another architecture?"
        case let .missingStateTensor(name):
            return "optimizer state tensor '\(name)' is missing while the same parameter's other state is present"
        case let .stateShapeMismatch(name, expected, found):
            return "optimizer state tensor '\(name)' has shape \(describeShape(found)), expected \(describeShape(expected))"
        case let .invalidStep(name, value):
            return "optimizer state tensor '\(name)' holds \(value), expected a whole step count in [0, 16777216)"
        }
    }
}

// MARK: - Shared export/import

extension OptimizerState {
    func hyperParameter(_ name: String) throws -> Double {
        guard let value = hyperParameters[name] else {
            throw OptimizerError.missingHyperParameter(kind: kind, name: name)
        }
        return value
    }
}

func weightDecayKey(group index: Int) -> String { "param_groups.\(index).weight_decay" }

func exportWeightDecays(_ groups: [ParameterGroup], into hyperParameters: inout [String: Double]) {
    for (index, group) in groups.enumerated() { hyperParameters[weightDecayKey(group: index)] = Double(group.weightDecay) }
}

/// The saved weight decays of `groups`, checked to exist.
func importedWeightDecays(_ state: OptimizerState, groups: [ParameterGroup]) throws -> [Float] {
    try groups.indices.map { Float(try state.hyperParameter(weightDecayKey(group: $0))) }
}

/// The saved per-parameter tensors grouped by parameter name, after checking that the state is of
/// `kind`, that every tensor names a known parameter and key, that each parameter has all of `keys`
/// or none, and that shapes fit (step counts, keys ending in "step", are 0-d; the others have the
/// parameter's shape).
func importedStateTensors(
    _ state: OptimizerState, kind: String, groups: [ParameterGroup], keys: [String]
) throws -> [String: [String: Tensor]] {
    guard state.kind == kind else { throw OptimizerError.kindMismatch(expected: kind, found: state.kind) }
    var shapes: [String: [Int]] = [:]
    for group in groups {
        for (name, parameter) in group.parameters { shapes[name] = parameter.value.shape }
    }
    var result: [String: [String: Tensor]] = [:]
    for (tensorName, tensor) in state.tensors.sorted(by: { $0.key < $1.key }) {
        guard let key = keys.first(where: { tensorName.hasSuffix("." + $0) }),
              case let parameterName = String(tensorName.dropLast(key.count + 1)),
              let parameterShape = shapes[parameterName] else {
            throw OptimizerError.unknownStateTensor(name: tensorName)
        }
        let expected = key.hasSuffix("step") ? [] : parameterShape
        guard tensor.shape == expected else {
            throw OptimizerError.stateShapeMismatch(name: tensorName, expected: expected, found: tensor.shape)
        }
        result[parameterName, default: [:]][key] = tensor
    }
    for (parameterName, tensors) in result.sorted(by: { $0.key < $1.key }) {
        if let missing = keys.first(where: { tensors[$0] == nil }) {
            throw OptimizerError.missingStateTensor(name: parameterName + "." + missing)
        }
    }
    return result
}
