import EpicycleRuntime
import Testing

/// The largest elementwise violation of |a − e| ≤ atol + rtol·|e|, as a multiple of the allowance
/// (≤ 1 means close), with the index where it happens.
public func closeness(_ actual: [Float], _ expected: [Float], rtol: Float, atol: Float) -> (ratio: Float, index: Int) {
    precondition(actual.count == expected.count, "closeness: \(actual.count) vs \(expected.count) values")
    var worst: (ratio: Float, index: Int) = (0, -1)
    for i in actual.indices {
        let allowance = atol + rtol * abs(expected[i])
        let ratio = actual[i].isNaN || expected[i].isNaN ? .infinity : abs(actual[i] - expected[i]) / allowance
        if ratio > worst.ratio { worst = (ratio, i) }
    }
    return worst
}

/// Records a test issue naming the first worst element when `actual` and `expected` differ by more
/// than `atol + rtol·|expected|` anywhere.
public func expectClose(
    _ actual: [Float], _ expected: [Float], rtol: Float = 1e-5, atol: Float = 1e-6,
    _ what: String = "", sourceLocation: SourceLocation = #_sourceLocation
) {
    guard actual.count == expected.count else {
        Issue.record("\(what): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
        return
    }
    let (ratio, index) = closeness(actual, expected, rtol: rtol, atol: atol)
    if ratio > 1 {
        Issue.record("""
            \(what): element \(index) is \(actual[index]), expected \(expected[index]) \
            (|diff| is \(ratio)× the allowance atol \(atol) + rtol \(rtol)·|expected|)
            """, sourceLocation: sourceLocation)
    }
}

public func expectClose(
    _ actual: Tensor, _ expected: Tensor, rtol: Float = 1e-5, atol: Float = 1e-6,
    _ what: String = "", sourceLocation: SourceLocation = #_sourceLocation
) {
    guard actual.shape == expected.shape else {
        Issue.record("\(what): shape \(actual.shape), expected \(expected.shape)", sourceLocation: sourceLocation)
        return
    }
    expectClose(actual.scalars, expected.scalars, rtol: rtol, atol: atol, what, sourceLocation: sourceLocation)
}

/// A tensor of the given shape with entries drawn uniformly from [low, high).
public func randomTensor(_ shape: [Int], seed: UInt64, low: Float = -1, high: Float = 1) -> Tensor {
    var generator = RandomGenerator(seed: seed)
    let count = shape.reduce(1, *)
    return Tensor(shape: shape, scalars: (0..<count).map { _ in low + (high - low) * generator.nextUniform() })
}

/// Records an issue when max|actual − expected| exceeds `tolerance` · max|expected|: the normwise
/// relative error, the usual measure when comparing against another framework whose summation order
/// differs (elementwise relative error is meaningless for entries that cancel to near zero).
public func expectNormwiseClose(
    _ actual: Tensor, _ expected: Tensor, tolerance: Float, _ what: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard actual.count == expected.count else {
        Issue.record("\(what): shape \(actual.shape), expected \(expected.shape)", sourceLocation: sourceLocation)
        return
    }
    let scale = expected.scalars.reduce(Float(0)) { max($0, abs($1)) }
    var worst: Float = 0, index = 0
    for i in actual.scalars.indices {
        let difference = abs(actual.scalars[i] - expected.scalars[i])
        if !(difference <= worst) { worst = difference; index = i }
    }
    let relative = scale > 0 ? worst / scale : worst
    if !(relative <= tolerance) {
        Issue.record("""
            \(what): relative error \(relative) > \(tolerance) (element \(index): \(actual.scalars[index]) vs \
            \(expected.scalars[index]), scale \(scale))
            """, sourceLocation: sourceLocation)
    }
}
