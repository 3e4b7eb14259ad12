import EpicycleRuntime

/// Which tensors a load copies. Patterns are globs over state names: `*` matches any run of
/// characters (dots included), `?` one character, so `"fc.*"` covers `fc.weight` and `fc.bias`.
public enum LoadFilter: Sendable, Equatable {
    /// Strict: the model and the file must have exactly the same tensors.
    case all
    /// Strict except for the matching names, which are neither loaded nor required on either side,
    /// e.g. `.allExcept(["fc.*"])` to fine-tune with a fresh classifier head.
    case allExcept([String])
    /// Only the matching names are loaded, and each of them must be on both sides.
    case only([String])

    /// Whether the tensor `name` takes part in the load.
    public func includes(_ name: String) -> Bool {
        switch self {
        case .all: return true
        case let .allExcept(patterns): return !patterns.contains { globMatches($0, name) }
        case let .only(patterns): return patterns.contains { globMatches($0, name) }
        }
    }

    var patterns: [String] {
        switch self {
        case .all: return []
        case let .allExcept(patterns), let .only(patterns): return patterns
        }
    }
}

/// Whether `name` matches the glob `pattern` (`*` any run, `?` any one character).
func globMatches(_ pattern: String, _ name: String) -> Bool {
    let pattern = Array(pattern.unicodeScalars), name = Array(name.unicodeScalars)
    var p = 0, n = 0
    // The position after the last `*` seen and the name position it was tried against, so a failed
    // match can let that star swallow one more character (linear backtracking).
    var star: (pattern: Int, name: Int)? = nil
    while n < name.count {
        if p < pattern.count && (pattern[p] == "?" || pattern[p] == name[n]) {
            p += 1
            n += 1
        } else if p < pattern.count && pattern[p] == "*" {
            star = (p + 1, n)
            p += 1
        } else if let last = star {
            p = last.pattern
            n = last.name + 1
            star = (last.pattern, last.name + 1)
        } else {
            return false
        }
    }
    while p < pattern.count && pattern[p] == "*" { p += 1 }
    return p == pattern.count
}

extension Checkpoint {
    /// Copies the stored model tensors into a live model.
    ///
    /// Everything is checked before anything is copied, so on error the model is unchanged. The
    /// first problem is thrown, in this order: a filter pattern that matches nothing; then, walking
    /// the model's tensors in order, a tensor missing from the file, a dtype mismatch
    /// (`num_batches_tracked` is int64, the rest float32) or a shape mismatch; then a tensor in the
    /// file that the model lacks; then a loaded tensor with NaN or infinite values (a damaged file, or
    /// one saved from a diverged run: reported here, not later as a diverging training).
    public func loadModel(into state: ModuleState, filter: LoadFilter = .all) throws {
        try model.load(into: state, filter: filter, file: sourceName, group: "model")
    }

    /// Copies the stored distillation adapters into live adapters, with the same checks as `loadModel`.
    public func loadAdapters(into state: ModuleState, filter: LoadFilter = .all) throws {
        guard let adapters else { throw CheckpointError.missingEntry(file: sourceName, object: "'/adapters' group") }
        try adapters.load(into: state, filter: filter, file: sourceName, group: "adapters")
    }

    /// The optimizer section a resume needs: present (a missing one would silently restart the
    /// optimizer from scratch) and with finite state tensors.
    public func resumableOptimizer() throws -> OptimizerRecord {
        guard let optimizer else { throw CheckpointError.missingEntry(file: sourceName, object: "'/optimizer' group") }
        try checkFinite(optimizer.tensors.map { ("optimizer/state/\($0.name)", $0.tensor) }, file: sourceName)
        return optimizer
    }

    /// Checks a model spec decoded from `architecture` before any model is built from it: the spec's
    /// own bounds (`ModelSpec.validate`), then agreement with the file's `num_classes` and, when the
    /// file has one, the input pipeline's channels.
    public func checkModelSpec(_ spec: ModelSpec) throws {
        let object = "attribute 'architecture' of '/model'"
        do {
            try spec.validate()
        } catch {
            throw CheckpointError.invalidValue(file: sourceName, object: object, reason: "is not a valid model spec: \(error)")
        }
        guard spec.numClasses == numClasses else {
            throw CheckpointError.invalidValue(file: sourceName, object: object,
                                               reason: "says num_classes \(spec.numClasses), but '/model' has num_classes \(numClasses)")
        }
        if let input, spec.inputChannels != input.channels {
            throw CheckpointError.invalidValue(file: sourceName, object: object,
                                               reason: "says input_channels \(spec.inputChannels), but '/data' has \(input.channels) channels")
        }
    }

    /// The file name for messages; in-memory checkpoints have none.
    var sourceName: String { source.isEmpty ? "(unsaved checkpoint)" : source }
}

extension StateRecord {
    /// - Parameter group: "model" or "adapters", naming tensors in errors ("model/parameters/fc.weight").
    func load(into state: ModuleState, filter: LoadFilter, file: String, group: String) throws {
        let allNames = Set(state.parameters.map(\.name) + state.buffers.map(\.name)
                           + parameters.map(\.name) + buffers.map(\.name))
        for pattern in filter.patterns where !allNames.contains(where: { globMatches(pattern, $0) }) {
            throw CheckpointError.filterMatchesNothing(file: file, pattern: pattern)
        }

        let storedParameters = Dictionary(parameters.map { ($0.name, $0.tensor) }, uniquingKeysWith: { first, _ in first })
        let storedBuffers = Dictionary(buffers.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
        var parameterUpdates: [(name: String, parameter: Parameter, tensor: Tensor)] = []
        var bufferUpdates: [(name: String, buffer: Buffer, value: Buffer.Value)] = []

        for (name, parameter) in state.parameters where filter.includes(name) {
            guard let stored = storedParameters[name] else {
                throw CheckpointError.missingTensor(file: file, name: name)
            }
            guard stored.shape == parameter.value.shape else {
                throw CheckpointError.shapeMismatch(file: file, name: name, found: stored.shape,
                                                   expected: parameter.value.shape)
            }
            parameterUpdates.append((name, parameter, stored))
        }
        for (name, buffer) in state.buffers where filter.includes(name) {
            guard let stored = storedBuffers[name] else {
                throw CheckpointError.missingTensor(file: file, name: name)
            }
            switch (buffer.value, stored) {
            case let (.float32(current), .float32(tensor)):
                guard tensor.shape == current.shape else {
                    throw CheckpointError.shapeMismatch(file: file, name: name, found: tensor.shape, expected: current.shape)
                }
            case (.int64, .int64):
                break
            case (.float32, .int64), (.int64, .float32):
                throw CheckpointError.dtypeMismatch(file: file, object: "tensor '\(name)'", found: stored.dtypeName,
                                                    expected: buffer.value.dtypeName)
            }
            bufferUpdates.append((name, buffer, stored))
        }

        let modelNames = Set(state.parameters.map(\.name) + state.buffers.map(\.name))
        for name in parameters.map(\.name) + buffers.map(\.name) where filter.includes(name) && !modelNames.contains(name) {
            throw CheckpointError.unexpectedTensor(file: file, name: name)
        }

        let floats = parameterUpdates.map { ("\(group)/parameters/\($0.name)", $0.tensor) }
            + bufferUpdates.compactMap { update in
                if case let .float32(tensor) = update.value { ("\(group)/buffers/\(update.name)", tensor) } else { nil }
            }
        try checkFinite(floats, file: file)

        for update in parameterUpdates { update.parameter.value = update.tensor }
        for update in bufferUpdates { update.buffer.value = update.value }
    }
}

extension Buffer.Value {
    var dtypeName: String {
        switch self {
        case .float32: return "float32"
        case .int64: return "int64"
        }
    }
}

/// Throws `CheckpointError.nonFinite` for the first of `tensors` (path, tensor) holding NaN or ±∞.
public func checkFinite(_ tensors: [(path: String, tensor: Tensor)], file: String) throws {
    for (path, tensor) in tensors {
        if let bad = tensor.scalars.first(where: { !$0.isFinite }) {
            throw CheckpointError.nonFinite(file: file, tensor: path, value: bad.isNaN ? "NaN" : "infinite")
        }
    }
}
