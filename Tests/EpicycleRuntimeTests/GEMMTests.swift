import EpicycleRuntime
import Testing
import TestSupport

@Suite struct GEMMTests {
    // Awkward sizes and every transpose combination, with sub-matrix leading dimensions.
    @Test(arguments: [(false, false), (false, true), (true, false), (true, true)])
    func agreesWithReference(transposeA: Bool, transposeB: Bool) {
        let (m, n, k) = (37, 19, 53)
        let lda = (transposeA ? m : k) + 3, ldb = (transposeB ? k : n) + 2, ldc = n + 5
        let a = randomTensor([(transposeA ? k : m) * lda], seed: 1).scalars
        let b = randomTensor([(transposeB ? n : k) * ldb], seed: 2).scalars
        let start = randomTensor([m * ldc], seed: 3).scalars
        var fast = start, reference = start
        gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda,
             b: b, ldb: ldb, beta: 2, c: &fast, ldc: ldc)
        gemmReference(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda,
                      b: b, ldb: ldb, beta: 2, c: &reference, ldc: ldc)
        // Sums of 53 products of numbers below 1: float32 rounding stays far below 1e-4.
        expectClose(fast, reference, rtol: 1e-4, atol: 1e-5, "gemm")
    }
}

@Suite struct RandomGeneratorTests {
    @Test func sameSeedSameStreamAndStateRestores() {
        var a = RandomGenerator(seed: 42), b = RandomGenerator(seed: 42)
        for _ in 0..<10 { _ = a.next() }
        for _ in 0..<10 { _ = b.next() }
        #expect(a == b)
        var restored = RandomGenerator(state: a.stateWords)
        #expect(a.next() == restored.next())
        var one = RandomGenerator(seed: 1), two = RandomGenerator(seed: 2)
        #expect(one.next() != two.next())
    }

    @Test func normalHasUnitMoments() {
        var generator = RandomGenerator(seed: 9)
        let n = 200_000
        var sum = 0.0, sumSquares = 0.0
        for _ in 0..<n { let x = Double(generator.nextNormal()); sum += x; sumSquares += x * x }
        let mean = sum / Double(n), variance = sumSquares / Double(n) - mean * mean
        // Standard errors: mean 1/√n ≈ 0.0022, variance √(2/n) ≈ 0.0032; allow ~5 of them.
        #expect(abs(mean) < 0.012)
        #expect(abs(variance - 1) < 0.016)
    }
}
