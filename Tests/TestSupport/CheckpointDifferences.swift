import EpicycleCheckpoint
import EpicycleRuntime

/// The fields in which two checkpoints differ, comparing every tensor, number and text bit for bit
/// (so NaN payloads and −0 count); empty when identical. The `source` path is not compared.
/// - Parameters:
///   - comparingCreated: false leaves out the creation time, which no two runs share.
///   - ignoringColumns: metrics columns left out (wall-clock figures such as "seconds").
public func checkpointDifferences(_ actual: Checkpoint, _ expected: Checkpoint, comparingCreated: Bool = true,
                                  ignoringColumns: Set<String> = []) -> [String] {
    var found: [String] = []
    func compare<Value: Equatable>(_ what: String, _ a: Value, _ e: Value) {
        if a != e { found.append("\(what): \(a) vs \(e)") }
    }
    func compare(_ what: String, _ a: [(name: String, tensor: Tensor)]?, _ e: [(name: String, tensor: Tensor)]?) {
        compare(what + " names", a?.map(\.name), e?.map(\.name))
        compare(what + " shapes", a?.map(\.tensor.shape), e?.map(\.tensor.shape))
        if a?.map({ $0.tensor.scalars.map(\.bitPattern) }) != e?.map({ $0.tensor.scalars.map(\.bitPattern) }) {
            found.append(what + " values")
        }
    }
    func compare(_ what: String, _ a: StateRecord?, _ e: StateRecord?) {
        compare(what + " parameters", a?.parameters, e?.parameters)
        func split(_ buffers: [(name: String, value: Buffer.Value)]?) -> (floats: [(name: String, tensor: Tensor)]?, counts: [String]?) {
            (buffers?.compactMap { if case let .float32(tensor) = $0.value { ($0.name, tensor) } else { nil } },
             buffers?.compactMap { if case let .int64(count) = $0.value { "\($0.name) \(count)" } else { nil } })
        }
        let (aBuffers, eBuffers) = (split(a?.buffers), split(e?.buffers))
        compare(what + " buffer order", a?.buffers.map(\.name), e?.buffers.map(\.name))
        compare(what + " float buffers", aBuffers.floats, eBuffers.floats)
        compare(what + " int64 buffers", aBuffers.counts, eBuffers.counts)
    }
    compare("architecture", actual.architecture, expected.architecture)
    compare("numClasses", actual.numClasses, expected.numClasses)
    if comparingCreated { compare("created", actual.created, expected.created) }
    compare("softwareVersion", actual.softwareVersion, expected.softwareVersion)
    compare("input", actual.input, expected.input)
    compare("model", actual.model, expected.model)
    compare("adapters", actual.adapters, expected.adapters)
    compare("averages", actual.averages.map { "\($0.name) \($0.updates)" }, expected.averages.map { "\($0.name) \($0.updates)" })
    for (a, e) in zip(actual.averages, expected.averages) { compare("averaging/\(a.name)", a.model, e.model) }
    compare("optimizer kind", actual.optimizer?.kind, expected.optimizer?.kind)
    compare("optimizer hyperparameters", actual.optimizer?.hyperparameters.mapValues(\.bitPattern),
            expected.optimizer?.hyperparameters.mapValues(\.bitPattern))
    compare("optimizer counters", actual.optimizer?.counters, expected.optimizer?.counters)
    compare("optimizer state", actual.optimizer?.tensors, expected.optimizer?.tensors)
    let (a, e) = (actual.training, expected.training)
    compare("program", a?.program, e?.program)
    compare("epoch", a?.epoch, e?.epoch)
    compare("step", a?.step, e?.step)
    compare("cyclePosition", a?.cyclePosition.bitPattern, e?.cyclePosition.bitPattern)
    compare("seed", a?.seed, e?.seed)
    compare("rngState", a?.rngState, e?.rngState)
    compare("recipe", a?.recipe, e?.recipe)
    compare("bestTop1", a?.bestTop1?.bitPattern, e?.bestTop1?.bitPattern)
    compare("epochProgress", a?.epochProgress, e?.epochProgress)
    compare("test", a?.test, e?.test)
    compare("metrics columns", a?.metrics.columns, e?.metrics.columns)
    func rows(_ metrics: MetricsTable?) -> [[UInt64]]? {
        metrics.map { table in
            let kept = table.columns.indices.filter { !ignoringColumns.contains(table.columns[$0]) }
            return table.rows.map { row in kept.map { row[$0].bitPattern } }
        }
    }
    compare("metrics rows", rows(a?.metrics), rows(e?.metrics))
    return found
}
