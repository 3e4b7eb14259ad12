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
///
/// - Parameter skippingKinks: for networks with ReLUs behind batch norm, where no input can be kept
///   away from every kink. Each coordinate is differenced with steps ε and ε/2; if the two estimates
///   disagree (beyond the tolerance) a kink lies within the step and the coordinate is skipped. At
///   least two thirds of each tensor's sampled coordinates must survive, so a wrong gradient cannot
///   hide behind skipping: it would make both estimates agree with each other but not with it.
public func expectGradientsMatchFiniteDifferences(
    of layer: any Layer, input: Tensor, epsilon: Float = 1e-2, rtol: Double = 1e-2, atol: Double = 1e-3,
    samples: Int = 40, seed: UInt64 = 7, skippingKinks: Bool = false,
    sourceLocation: SourceLocation = #_sourceLocation
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
    func close(_ a: Double, _ n: Double) -> Bool { abs(a - n) <= atol + rtol * abs(n) }
    func check(_ name: String, analytic: [Float], indices: [Int], read: (Int) -> Float, write: (Int, Float) -> Void) throws {
        let numeric = try centralDifferences(indices: indices, epsilon: epsilon, read: read, write: write, loss: loss)
        let halfStep = skippingKinks
            ? try centralDifferences(indices: indices, epsilon: epsilon / 2, read: read, write: write, loss: loss) : numeric
        var usable = 0
        for (k, index) in indices.enumerated() {
            if skippingKinks && !close(numeric[k], halfStep[k]) { continue }
            usable += 1
            let a = Double(analytic[index])
            if !close(a, numeric[k]) {
                Issue.record("\(name)[\(index)]: backward gives \(a), finite differences \(numeric[k])", sourceLocation: sourceLocation)
                return
            }
        }
        if 3 * usable < 2 * indices.count {
            Issue.record("\(name): only \(usable) of \(indices.count) coordinates are smooth enough to check", sourceLocation: sourceLocation)
        }
    }

    try check("input", analytic: dInput.scalars, indices: sampleIndices(count: input.count, limit: samples, seed: seed &+ 2),
              read: { probe.scalars[$0] }, write: { probe.scalars[$0] = $1 })
    for (p, (name, parameter)) in state.parameters.enumerated() {
        try check(name, analytic: parameterGradients[p],
                  indices: sampleIndices(count: parameter.value.count, limit: samples, seed: seed &+ 3 &+ UInt64(p)),
                  read: { parameter.value.scalars[$0] }, write: { parameter.value.scalars[$0] = $1 })
    }
}
