import EpicycleRuntime
import Testing

/// Central finite differences of a scalar function, in Double, at chosen coordinates.
///
/// - Parameters:
///   - indices: which scalars to perturb (sampling keeps large tensors cheap).
///   - epsilon: the step; float32 forward passes need ~1e-2…1e-3 so rounding (≈ulp(f)/ε) stays small
///     against truncation (≈ε²·f‴).
///   - read/write: access to the perturbed scalar.
///   - loss: the function, recomputed after each perturbation.
public func centralDifferences(
    indices: [Int], epsilon: Float,
    read: (Int) -> Float, write: (Int, Float) -> Void,
    loss: () throws -> Double
) rethrows -> [Double] {
    var result: [Double] = []
    for index in indices {
        let original = read(index)
        write(index, original + epsilon)
        let plus = try loss()
        write(index, original - epsilon)
        let minus = try loss()
        write(index, original)
        // Divide by the step actually taken in float32, not the nominal one.
        let step = Double(original + epsilon) - Double(original - epsilon)
        result.append((plus - minus) / step)
    }
    return result
}

/// Up to `limit` distinct indices in 0..<count, deterministic for a seed.
public func sampleIndices(count: Int, limit: Int, seed: UInt64) -> [Int] {
    if count <= limit { return Array(0..<count) }
    var generator = RandomGenerator(seed: seed)
    var chosen = Set<Int>()
    while chosen.count < limit { chosen.insert(Int(generator.next() % UInt64(count))) }
    return chosen.sorted()
}

/// Checks a layer's backward against finite differences of L = Σ output ⊙ R for a fixed random R:
/// the input gradient and every parameter gradient, at up to `samples` coordinates each.
/// Records an issue naming the tensor and coordinate where |analytic − numeric| > atol + rtol·|numeric|.
public func expectGradientsMatchFiniteDifferences(
    of layer: any Layer, input: Tensor, epsilon: Float = 1e-2, rtol: Double = 1e-2, atol: Double = 1e-3,
    samples: Int = 40, seed: UInt64 = 7, sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let output = try layer.forward(input, mode: .training)
    let weights = randomTensor(output.shape, seed: seed &+ 1)
    let state = layer.state
    for (_, parameter) in state.parameters { parameter.zeroGradient() }
    let dInput = layer.backward(weights)
    let parameterGradients = state.parameters.map { $0.parameter.gradient.scalars }

    var probe = input
    func loss() throws -> Double {
        let out = try layer.forward(probe, mode: .training)
        var sum: Double = 0
        for i in out.scalars.indices { sum += Double(out.scalars[i]) * Double(weights.scalars[i]) }
        return sum
    }
    func compare(_ name: String, analytic: [Float], numeric: [Double], at indices: [Int]) {
        for (k, index) in indices.enumerated() {
            let a = Double(analytic[index]), n = numeric[k]
            if abs(a - n) > atol + rtol * abs(n) {
                Issue.record("\(name)[\(index)]: backward gives \(a), finite differences \(n)", sourceLocation: sourceLocation)
                return
            }
        }
    }

    let inputIndices = sampleIndices(count: input.count, limit: samples, seed: seed &+ 2)
    let numericInput = try centralDifferences(
        indices: inputIndices, epsilon: epsilon,
        read: { probe.scalars[$0] }, write: { probe.scalars[$0] = $1 }, loss: loss)
    compare("input", analytic: dInput.scalars, numeric: numericInput, at: inputIndices)

    for (p, (name, parameter)) in state.parameters.enumerated() {
        let indices = sampleIndices(count: parameter.value.count, limit: samples, seed: seed &+ 3 &+ UInt64(p))
        let numeric = try centralDifferences(
            indices: indices, epsilon: epsilon,
            read: { parameter.value.scalars[$0] }, write: { parameter.value.scalars[$0] = $1 }, loss: loss)
        compare(name, analytic: parameterGradients[p], numeric: numeric, at: indices)
    }
}
