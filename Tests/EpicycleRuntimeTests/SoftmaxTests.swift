import EpicycleRuntime
import Foundation
import Testing
import TestSupport

@Suite struct SoftmaxTests {
    // Awkward sizes (rows and classes not multiples of a vector width), temperatures on both sides of 1.
    static let cases: [(rows: Int, classes: Int, temperature: Float)] = [(1, 1, 1), (3, 10, 1), (7, 13, 0.5), (5, 37, 2.5)]

    @Test(arguments: cases)
    func forwardAgreesWithReference(rows: Int, classes: Int, temperature: Float) {
        let logits = randomTensor([rows, classes], seed: 11, low: -4, high: 4).scalars
        var fast = [Float](repeating: 0, count: rows * classes), reference = fast
        softmaxForward(logits: logits, probabilities: &fast, rows: rows, classes: classes, temperature: temperature)
        softmaxForwardReference(logits: logits, probabilities: &reference, rows: rows, classes: classes, temperature: temperature)
        // Float exp and a float32 row sum of ≤ 37 terms in [0, 1]: a few ulps of relative error.
        expectClose(fast, reference, rtol: 1e-5, atol: 1e-7, "softmax")

        logSoftmaxForward(logits: logits, logProbabilities: &fast, rows: rows, classes: classes, temperature: temperature)
        logSoftmaxForwardReference(logits: logits, logProbabilities: &reference, rows: rows, classes: classes, temperature: temperature)
        // Log-probabilities down to about −16 at T = 0.5: absolute error of a few ulps of 16.
        expectClose(fast, reference, rtol: 1e-5, atol: 1e-5, "logSoftmax")
    }

    @Test(arguments: cases)
    func backwardAgreesWithReference(rows: Int, classes: Int, temperature: Float) {
        let logits = randomTensor([rows, classes], seed: 12, low: -3, high: 3)
        let upstream = randomTensor([rows, classes], seed: 13).scalars
        var fast = [Float](repeating: 0, count: rows * classes), reference = fast

        let p = softmax(logits, temperature: temperature).scalars
        softmaxBackward(probabilities: p, dProbabilities: upstream, dLogits: &fast, rows: rows, classes: classes, temperature: temperature)
        softmaxBackwardReference(probabilities: p, dProbabilities: upstream, dLogits: &reference,
                                 rows: rows, classes: classes, temperature: temperature)
        // Entries are differences of products of order 1: absolute float32 rounding ≈ 1e-7.
        expectClose(fast, reference, rtol: 1e-4, atol: 1e-6, "softmaxBackward")

        let l = logSoftmax(logits, temperature: temperature).scalars
        logSoftmaxBackward(logProbabilities: l, dLogProbabilities: upstream, dLogits: &fast,
                           rows: rows, classes: classes, temperature: temperature)
        logSoftmaxBackwardReference(logProbabilities: l, dLogProbabilities: upstream, dLogits: &reference,
                                    rows: rows, classes: classes, temperature: temperature)
        // Σ dl over ≤ 37 terms of size ≤ 1 then scaled: absolute rounding well below 1e-5.
        expectClose(fast, reference, rtol: 1e-4, atol: 1e-5, "logSoftmaxBackward")
    }

    @Test func handComputedValuesAndRowsSumToOne() {
        // Row [0, ln 3]: exponentials 1 and 3, so p = [1/4, 3/4] and log p = [−ln 4, ln 3 − ln 4].
        let logits = Tensor(shape: [2, 2], scalars: [0, Float(log(3.0)), 5, 5])
        expectClose(softmax(logits).scalars, [0.25, 0.75, 0.5, 0.5], rtol: 1e-6, atol: 1e-7, "softmax")
        expectClose(logSoftmax(logits).scalars,
                    [Float(-log(4.0)), Float(log(3.0) - log(4.0)), Float(-log(2.0)), Float(-log(2.0))],
                    rtol: 1e-6, atol: 1e-7, "logSoftmax")
        let wide = softmax(randomTensor([4, 29], seed: 5, low: -6, high: 6), temperature: 0.3)
        for n in 0..<4 {
            let sum = wide.scalars[(n * 29)..<((n + 1) * 29)].reduce(0, +)
            #expect(abs(sum - 1) < 1e-5, "row \(n) sums to \(sum)")
        }
    }

    @Test func largeLogitsDoNotOverflow() {
        // exp(1000) overflows float32 (and Double); with the row maximum subtracted the row is
        // [e^−1, 1] / (1 + e^−1) exactly as for logits [0, 1].
        let logits = Tensor(shape: [1, 2], scalars: [1000, 1001])
        let expected = [Float(exp(-1.0) / (1 + exp(-1.0))), Float(1 / (1 + exp(-1.0)))]
        expectClose(softmax(logits).scalars, expected, rtol: 1e-6, atol: 1e-7, "softmax")
        expectClose(logSoftmax(logits).scalars, expected.map { Float(log(Double($0))) }, rtol: 1e-5, atol: 1e-6, "logSoftmax")
        expectClose(softmax(Tensor(shape: [1, 3], scalars: [-1000, -2000, 0])).scalars, [0, 0, 1], rtol: 0, atol: 1e-30, "negative")
    }

    @Test func temperatureDividesTheLogits() {
        let logits = randomTensor([3, 8], seed: 21, low: -3, high: 3)
        let temperature: Float = 1.7
        let divided = Tensor(shape: logits.shape, scalars: logits.scalars.map { $0 / temperature })
        expectClose(softmax(logits, temperature: temperature).scalars, softmax(divided).scalars,
                    rtol: 1e-5, atol: 1e-7, "softmax(z, T) = softmax(z/T)")
        // T > 1 flattens: the largest probability falls, the smallest rises.
        let sharp = softmax(logits).scalars, soft = softmax(logits, temperature: temperature).scalars
        #expect(soft.max()! < sharp.max()!)
        #expect(soft.min()! > sharp.min()!)

        // The backward carries 1/T: at the same probabilities, dz(T) = dz(1) / T.
        let p = softmax(divided).scalars, upstream = randomTensor([3, 8], seed: 22).scalars
        var atOne = [Float](repeating: 0, count: 24), atT = atOne
        softmaxBackward(probabilities: p, dProbabilities: upstream, dLogits: &atOne, rows: 3, classes: 8)
        softmaxBackward(probabilities: p, dProbabilities: upstream, dLogits: &atT, rows: 3, classes: 8, temperature: temperature)
        expectClose(atT, atOne.map { $0 / temperature }, rtol: 1e-5, atol: 1e-8, "1/T")
    }

    // L = Σ R ⊙ softmax(z/T) (and the same for log-softmax) against central differences.
    @Test(arguments: [Float(0.6), 1, 2])
    func backwardMatchesFiniteDifferences(temperature: Float) {
        let (rows, classes) = (3, 6)
        var logits = randomTensor([rows, classes], seed: 31, low: -2, high: 2)
        let weights = randomTensor([rows, classes], seed: 32)
        func weightedSum(_ values: Tensor) -> Double {
            zip(values.scalars, weights.scalars).reduce(0) { $0 + Double($1.0) * Double($1.1) }
        }
        var analytic = [Float](repeating: 0, count: rows * classes)
        let indices = Array(0..<(rows * classes))

        softmaxBackward(probabilities: softmax(logits, temperature: temperature).scalars, dProbabilities: weights.scalars,
                        dLogits: &analytic, rows: rows, classes: classes, temperature: temperature)
        let numeric = centralDifferences(indices: indices, epsilon: 1e-2, read: { logits.scalars[$0] },
                                         write: { logits.scalars[$0] = $1 },
                                         loss: { weightedSum(softmax(logits, temperature: temperature)) })
        // Step 1e-2: truncation ε²/6·|f‴| ≲ 2e-5/T³ for these O(1) sums; rounding ≈ 1e-7/2e-2 = 5e-6.
        expectClose(analytic, numeric.map(Float.init), rtol: 1e-2, atol: 3e-4, "softmax")

        logSoftmaxBackward(logProbabilities: logSoftmax(logits, temperature: temperature).scalars, dLogProbabilities: weights.scalars,
                           dLogits: &analytic, rows: rows, classes: classes, temperature: temperature)
        let numericLog = centralDifferences(indices: indices, epsilon: 1e-2, read: { logits.scalars[$0] },
                                            write: { logits.scalars[$0] = $1 },
                                            loss: { weightedSum(logSoftmax(logits, temperature: temperature)) })
        expectClose(analytic, numericLog.map(Float.init), rtol: 1e-2, atol: 3e-4, "logSoftmax")
    }
}
