/// Lookahead (Zhang, Lucas, Hinton & Ba 2019, "Lookahead Optimizer: k steps forward, 1 step back")
/// around an inner optimizer (SGD or AdamW). Each parameter keeps slow weights φ, equal to the
/// parameter before its first update; every step the inner optimizer updates the fast weights p, and
/// after every k-th fast step
///
///     φ ← φ + α·(p − φ)        p ← φ
///
/// so the fast weights restart from the slow ones. The inner optimizer's own state (momentum, Adam's
/// moments) carries on across the synchronisation, as in the paper's algorithm 1.
///
/// Checkpoints name the kind "Lookahead(<inner kind>)", add the hyper-parameters "lookahead_k" and
/// "lookahead_alpha" to the inner ones, and per parameter "<name>.slow_weights" (its shape) and
/// "<name>.lookahead_step" (0-d float32: fast steps since the last synchronisation, in [0, k)) beside
/// the inner optimizer's tensors.
public final class Lookahead<Inner: Optimizer>: Optimizer {
    public struct State {
        public var inner: Inner.ParameterState
        public var slowWeights: Tensor  // the parameter's shape
        /// Fast steps since the last synchronisation, in 0..<k.
        public var fastSteps: Int
    }

    /// The optimizer that takes the fast steps. Its `parameterStates` stay empty: the states live here,
    /// beside the slow weights, and are handed to it only to export or import them.
    public let inner: Inner
    public var parameterStates: [String: State] = [:]
    /// k: the fast steps between two synchronisations.
    public private(set) var synchronizationPeriod: Int
    /// α: how far the slow weights move toward the fast ones at a synchronisation.
    public private(set) var alpha: Float

    /// The largest k a recipe or checkpoint may carry, far beyond the paper's 5–10.
    public static var maximumSynchronizationPeriod: Int { 1_000_000 }

    /// - Precondition: `1 ≤ synchronizationPeriod ≤ maximumSynchronizationPeriod`, `0 < alpha ≤ 1`,
    ///   and `inner` has not stepped yet.
    public init(_ inner: Inner, synchronizationPeriod: Int, alpha: Float) {
        precondition((1...Self.maximumSynchronizationPeriod).contains(synchronizationPeriod) && alpha > 0 && alpha <= 1,
                     "Lookahead: needs 1 ≤ k ≤ \(Self.maximumSynchronizationPeriod) and 0 < α ≤ 1, got \(synchronizationPeriod), \(alpha)")
        precondition(inner.parameterStates.isEmpty, "Lookahead: wrap an optimizer before its first step")
        self.inner = inner
        self.synchronizationPeriod = synchronizationPeriod
        self.alpha = alpha
    }

    /// The inner optimizer's table: schedules reach it through the wrapper.
    public var scheduledHyperParameters: [ScheduledHyperParameter] { inner.scheduledHyperParameters }

    public func set(_ hyperParameter: ScheduledHyperParameter, to value: Float) {
        inner.set(hyperParameter, to: value)
    }

    public var learningRate: Float {
        get { inner.learningRate }
        set { inner.learningRate = newValue }
    }

    public var groups: [ParameterGroup] {
        get { inner.groups }
        set { inner.groups = newValue }
    }

    public func newState(for parameter: Parameter) -> State {
        State(inner: inner.newState(for: parameter), slowWeights: parameter.value, fastSteps: 0)
    }

    public func update(_ parameter: Parameter, state: inout State, weightDecay: Float) {
        inner.update(parameter, state: &state.inner, weightDecay: weightDecay)
        state.fastSteps += 1
        guard state.fastSteps == synchronizationPeriod else { return }
        state.fastSteps = 0
        let (alpha, count) = (alpha, parameter.value.count)
        state.slowWeights.scalars.withUnsafeMutableBufferPointer { slow in
            parameter.value.scalars.withUnsafeMutableBufferPointer { fast in
                for i in 0..<count {
                    slow[i] += alpha * (fast[i] - slow[i])
                    fast[i] = slow[i]
                }
            }
        }
    }

    public func exportState() -> OptimizerState {
        inner.parameterStates = parameterStates.mapValues(\.inner)
        var state = inner.exportState()
        inner.parameterStates = [:]
        state.kind = Self.kind(wrapping: state.kind)
        state.hyperParameters[Self.periodKey] = Double(synchronizationPeriod)
        state.hyperParameters[Self.alphaKey] = Double(alpha)
        for (name, own) in parameterStates {
            state.tensors[name + "." + Self.slowKey] = own.slowWeights
            state.tensors[name + "." + Self.stepKey] = Tensor(shape: [], scalars: [Float(own.fastSteps)])
        }
        return state
    }

    public func importState(_ state: OptimizerState) throws {
        let innerKind = inner.exportState().kind, kind = Self.kind(wrapping: innerKind)
        let ownKeys = [Self.slowKey, Self.stepKey]
        let isOwn = { (name: String) in ownKeys.contains { name.hasSuffix("." + $0) } }
        let own = try importedStateTensors(
            OptimizerState(kind: state.kind, hyperParameters: [:], tensors: state.tensors.filter { isOwn($0.key) }),
            kind: kind, groups: groups, keys: ownKeys)
        let period = try state.hyperParameter(Self.periodKey), alpha = try state.hyperParameter(Self.alphaKey)
        guard period >= 1, period <= Double(Self.maximumSynchronizationPeriod), period == period.rounded() else {
            throw OptimizerError.invalidHyperParameter(
                kind: kind, name: Self.periodKey, value: period,
                expected: "a whole number from 1 to \(Self.maximumSynchronizationPeriod)")
        }
        guard alpha > 0, alpha <= 1 else {
            throw OptimizerError.invalidHyperParameter(kind: kind, name: Self.alphaKey, value: alpha, expected: "in (0, 1]")
        }
        var fastSteps: [String: Int] = [:]
        for (name, tensors) in own {
            let value = tensors[Self.stepKey]!.scalars[0]
            guard value >= 0, value < Float(period), value == value.rounded() else {
                throw OptimizerError.invalidStep(name: name + "." + Self.stepKey, value: value)
            }
            fastSteps[name] = Int(value)
        }
        // Inner tensors are "<parameter>.<key>": a parameter with inner state has been updated, so it
        // has slow weights too.
        let innerTensors = state.tensors.filter { !isOwn($0.key) }
        for name in innerTensors.keys.sorted() {
            if let dot = name.lastIndex(of: "."), own[String(name[..<dot])] == nil {
                throw OptimizerError.missingStateTensor(name: name[..<dot] + "." + Self.slowKey)
            }
        }
        try inner.importState(OptimizerState(kind: innerKind, hyperParameters: state.hyperParameters, tensors: innerTensors))
        let parameters = Dictionary(uniqueKeysWithValues: groups.flatMap(\.parameters).map { ($0.name, $0.parameter) })
        var states: [String: State] = [:]
        for (name, tensors) in own {
            // SGD without momentum keeps no tensors: its state is the fresh one.
            states[name] = State(inner: inner.parameterStates[name] ?? inner.newState(for: parameters[name]!),
                                 slowWeights: tensors[Self.slowKey]!, fastSteps: fastSteps[name]!)
        }
        inner.parameterStates = [:]
        parameterStates = states
        synchronizationPeriod = Int(period)
        self.alpha = Float(alpha)
    }

    /// "Lookahead(SGD)" for an inner kind "SGD".
    static func kind(wrapping inner: String) -> String { "Lookahead(\(inner))" }
    private static var periodKey: String { "lookahead_k" }
    private static var alphaKey: String { "lookahead_alpha" }
    private static var slowKey: String { "slow_weights" }
    private static var stepKey: String { "lookahead_step" }
}
