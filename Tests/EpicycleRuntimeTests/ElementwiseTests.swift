import EpicycleRuntime
import Testing
import TestSupport

/// Dropout with its generator rewound before every forward: the mask stays fixed, so the layer is one
/// linear map that finite differences can probe (a plain Dropout draws a new mask per forward).
private final class RewoundDropout: Layer {
    let dropout: Dropout
    let start: RandomGenerator

    init(_ dropout: Dropout) {
        self.dropout = dropout
        start = dropout.generator
    }

    func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        dropout.generator = start
        return try dropout.forward(input, mode: mode)
    }

    func backward(_ dOutput: Tensor) -> Tensor { dropout.backward(dOutput) }
}

@Suite struct ElementwiseKernelTests {
    @Test func reluAndResidualKernels() {
        let a: [Float] = [-2, -0.5, 0, 0.5, 3, -1, 1]
        let b: [Float] = [1, 1, 1, -1, -4, 0.5, 0]
        var output = [Float](repeating: 9, count: a.count)
        reluForward(a, into: &output, count: a.count)
        #expect(output == [0, 0, 0, 0.5, 3, 0, 1])
        var dInput = [Float](repeating: 9, count: a.count)
        reluBackward([1, 2, 3, 4, 5, 6, 7], output: output, into: &dInput, count: a.count)
        // Gradient 0 at x = 0 (index 2), as PyTorch.
        #expect(dInput == [0, 0, 0, 4, 5, 0, 7])

        addForward(a, b, into: &output, count: a.count)
        #expect(output == [-1, 0.5, 1, -0.5, -1, -0.5, 1])
        addReLUForward(a, b, into: &output, count: a.count)
        #expect(output == [0, 0.5, 1, 0, 0, 0, 1])
        var destination = b
        accumulate(a, into: &destination, count: a.count)
        #expect(destination == [-1, 0.5, 1, -0.5, -1, -0.5, 1])
    }

    @Test func reluKernelsWorkInPlace() {
        var values: [Float] = [-1, 2, -3, 4]
        values.withUnsafeMutableBufferPointer { reluForward($0.baseAddress!, into: $0.baseAddress!, count: 4) }
        #expect(values == [0, 2, 0, 4])
        var gradient: [Float] = [5, 6, 7, 8]
        gradient.withUnsafeMutableBufferPointer {
            reluBackward($0.baseAddress!, output: values, into: $0.baseAddress!, count: 4)
        }
        #expect(gradient == [0, 6, 0, 8])
    }

    @Test func flattenUsesChannelRowColumnOrder() {
        let (n, h, w, c) = (2, 3, 4, 5)
        let input = (0..<(n * h * w * c)).map(Float.init)
        var output = [Float](repeating: -1, count: input.count), back = output
        flattenForward(input, batch: n, height: h, width: w, channels: c, into: &output)
        for b in 0..<n {
            for y in 0..<h {
                for x in 0..<w {
                    for k in 0..<c {
                        let nhwc = ((b * h + y) * w + x) * c + k
                        let chw = b * c * h * w + (k * h + y) * w + x  // PyTorch's x.flatten(1) of NCHW
                        #expect(output[chw] == input[nhwc])
                    }
                }
            }
        }
        flattenBackward(output, batch: n, height: h, width: w, channels: c, into: &back)
        #expect(back == input)
    }
}

@Suite struct ElementwiseLayerTests {
    @Test func reluGradientsMatchFiniteDifferences() throws {
        // |x| ≥ 0.1 > ε = 1e-2: no perturbation crosses the kink at 0, so ReLU is linear around every
        // probed point and central differences are exact up to rounding.
        var generator = RandomGenerator(seed: 91)
        let values = (0..<(2 * 3 * 3 * 4)).map { _ in
            (0.1 + 0.9 * generator.nextUniform()) * (generator.nextUniform() < 0.5 ? -1 : 1)
        }
        try expectGradientsMatchFiniteDifferences(of: ReLU(), input: Tensor(shape: [2, 3, 3, 4], scalars: values))
    }

    @Test func flattenLayerRoundTripsAndPassesRankTwo() throws {
        let input = randomTensor([2, 3, 2, 4], seed: 92)
        let layer = Flatten()
        let output = try layer.forward(input, mode: .training)
        #expect(output.shape == [2, 24])
        // Element (n = 1, h = 2, w = 0, c = 3) sits at c·H·W + h·W + w = 18 + 4 = 22 of row 1.
        #expect(output.scalars[24 + 22] == input.scalars[((1 * 3 + 2) * 2 + 0) * 4 + 3])
        #expect(layer.backward(output) == input)
        let vectors = randomTensor([3, 7], seed: 93)
        #expect(try layer.forward(vectors, mode: .training) == vectors)
        #expect(layer.backward(vectors) == vectors)
    }

    // A permutation is linear: central differences are exact up to rounding.
    @Test func flattenGradientsMatchFiniteDifferences() throws {
        try expectGradientsMatchFiniteDifferences(of: Flatten(), input: randomTensor([2, 3, 2, 4], seed: 94))
    }

    @Test func flattenRejectsOtherRanks() {
        #expect(throws: RuntimeError.shapeMismatch(path: "", kind: "Flatten",
                                                   expected: "[N, H, W, C] (NHWC) or [N, features]", found: [2, 3, 4])) {
            try Flatten().forward(Tensor(zeros: [2, 3, 4]), mode: .training)
        }
    }
}

@Suite struct DropoutTests {
    @Test func sameGeneratorGivesTheSameMask() throws {
        let input = randomTensor([4, 8, 8, 3], seed: 101, low: 0.5, high: 1)
        let first = try Dropout(probability: 0.5, generator: RandomGenerator(seed: 7)).forward(input, mode: .training)
        let again = try Dropout(probability: 0.5, generator: RandomGenerator(seed: 7)).forward(input, mode: .training)
        let other = try Dropout(probability: 0.5, generator: RandomGenerator(seed: 8)).forward(input, mode: .training)
        #expect(first == again)
        #expect(first != other)
        // Successive forwards draw fresh masks.
        let layer = Dropout(probability: 0.5, generator: RandomGenerator(seed: 7))
        #expect(try layer.forward(input, mode: .training) != layer.forward(input, mode: .training))
    }

    @Test func aRowsMaskDependsOnItsPlaceInTheBatchNotOnTheRowsBesideIt() throws {
        let input = randomTensor([4, 3, 3, 2], seed: 107, low: 0.5, high: 1)
        let whole = try Dropout(probability: 0.5, generator: RandomGenerator(seed: 9)).forward(input, mode: .training)
        // Rows 1…3 alone, told they start at row 1 of the batch: the whole batch's rows 1…3.
        let block = Dropout(probability: 0.5, generator: RandomGenerator(seed: 9))
        block.firstRow = 1
        let rowSize = input.count / 4
        let tail = try block.forward(Tensor(shape: [3, 3, 3, 2], scalars: Array(input.scalars[rowSize...])), mode: .training)
        #expect(tail.scalars == Array(whole.scalars[rowSize...]))
        // Told they start at row 0, the same rows draw other masks.
        block.firstRow = 0
        block.generator = RandomGenerator(seed: 9)
        #expect(try block.forward(Tensor(shape: [3, 3, 3, 2], scalars: Array(input.scalars[rowSize...])), mode: .training).scalars
                != Array(whole.scalars[rowSize...]))
    }

    @Test func keepsTheExpectedFractionScaledByTheInverseKeepProbability() throws {
        let p: Float = 0.3, count = 200_000
        let input = randomTensor([count], seed: 102, low: 1, high: 2)
        let output = try Dropout(probability: p, generator: RandomGenerator(seed: 5)).forward(input, mode: .training)
        var kept = 0
        for i in 0..<count where output.scalars[i] != 0 {
            kept += 1
            #expect(output.scalars[i] == input.scalars[i] * (1 / (1 - p)))
        }
        // Kept units ~ Binomial(n, 0.7): the fraction has standard deviation √(0.7·0.3/n) ≈ 0.001;
        // 5 standard deviations (0.005) is a bound a correct mask breaks with probability < 10⁻⁶.
        #expect(abs(Double(kept) / Double(count) - 0.7) < 0.005)
    }

    @Test func inferenceIsTheIdentityAndDrawsNothing() throws {
        let layer = Dropout(probability: 0.5, generator: RandomGenerator(seed: 3))
        let input = randomTensor([2, 4, 4, 3], seed: 103)
        #expect(try layer.forward(input, mode: .inference) == input)
        #expect(layer.generator == RandomGenerator(seed: 3))
    }

    @Test func extremeProbabilities() throws {
        let input = randomTensor([64], seed: 104)
        #expect(try Dropout(probability: 0, generator: RandomGenerator(seed: 1)).forward(input, mode: .training) == input)
        #expect(try Dropout(probability: 1, generator: RandomGenerator(seed: 1)).forward(input, mode: .training)
                == Tensor(zeros: [64]))
    }

    @Test func backwardUsesTheForwardMask() throws {
        let layer = Dropout(probability: 0.4, generator: RandomGenerator(seed: 11))
        let ones = Tensor(repeating: 1, shape: [3, 5, 7])
        let mask = try layer.forward(ones, mode: .training)
        let dOutput = randomTensor([3, 5, 7], seed: 105)
        let dInput = layer.backward(dOutput)
        #expect(dInput.scalars == zip(dOutput.scalars, mask.scalars).map { $0 * $1 })
    }

    // With the mask held fixed dropout is linear: central differences are exact up to rounding.
    @Test func gradientsMatchFiniteDifferencesWithTheMaskFixed() throws {
        let dropout = Dropout(probability: 0.3, generator: RandomGenerator(seed: 12))
        try expectGradientsMatchFiniteDifferences(of: RewoundDropout(dropout), input: randomTensor([2, 3, 3, 4], seed: 106))
    }
}
