import EpicycleRuntime
import Testing
import TestSupport

@Suite struct LinearKernelTests {
    @Test(arguments: [(1, 1, 1), (3, 17, 5), (7, 33, 19), (2, 5, 64)])
    func fastAgreesWithReference(batch: Int, inputFeatures: Int, outputFeatures: Int) {
        let (N, I, O) = (batch, inputFeatures, outputFeatures)
        let input = randomTensor([N, I], seed: 1).scalars, weight = randomTensor([O, I], seed: 2).scalars
        let bias = randomTensor([O], seed: 3).scalars, dOutput = randomTensor([N, O], seed: 4).scalars
        // Sums of at most 64 products of numbers in [−1, 1]: float32 rounding ≈ √64·2⁻²⁴·|terms| ≈ 1e-6,
        // far below the ~0.1 a wrong index would cause.
        let (rtol, atol): (Float, Float) = (1e-4, 1e-4)

        var fast = [Float](repeating: .nan, count: N * O), reference = fast
        linearForward(batch: N, inputFeatures: I, outputFeatures: O, input: input, weight: weight, bias: bias, output: &fast)
        linearForwardReference(batch: N, inputFeatures: I, outputFeatures: O, input: input, weight: weight, bias: bias,
                               output: &reference)
        expectClose(fast, reference, rtol: rtol, atol: atol, "forward")
        linearForward(batch: N, inputFeatures: I, outputFeatures: O, input: input, weight: weight, bias: nil, output: &fast)
        linearForwardReference(batch: N, inputFeatures: I, outputFeatures: O, input: input, weight: weight, bias: nil,
                               output: &reference)
        expectClose(fast, reference, rtol: rtol, atol: atol, "forward without bias")

        var dInputFast = [Float](repeating: .nan, count: N * I), dInputReference = dInputFast
        linearBackwardInput(batch: N, inputFeatures: I, outputFeatures: O, dOutput: dOutput, weight: weight, dInput: &dInputFast)
        linearBackwardInputReference(batch: N, inputFeatures: I, outputFeatures: O, dOutput: dOutput, weight: weight,
                                     dInput: &dInputReference)
        expectClose(dInputFast, dInputReference, rtol: rtol, atol: atol, "backward input")

        // Gradients start non-zero: both versions must add to them.
        var dWeightFast = randomTensor([O, I], seed: 5).scalars, dWeightReference = dWeightFast
        var dBiasFast = randomTensor([O], seed: 6).scalars, dBiasReference = dBiasFast
        linearBackwardWeight(batch: N, inputFeatures: I, outputFeatures: O, input: input, dOutput: dOutput,
                             dWeight: &dWeightFast, dBias: &dBiasFast)
        linearBackwardWeightReference(batch: N, inputFeatures: I, outputFeatures: O, input: input, dOutput: dOutput,
                                      dWeight: &dWeightReference, dBias: &dBiasReference)
        expectClose(dWeightFast, dWeightReference, rtol: rtol, atol: atol, "backward weight")
        expectClose(dBiasFast, dBiasReference, rtol: rtol, atol: atol, "backward bias")
    }
}

@Suite struct LinearLayerTests {
    static func handLayer() -> Linear {
        var generator = RandomGenerator(seed: 0)
        let linear = Linear(inputFeatures: 2, outputFeatures: 3, generator: &generator)
        linear.weight.value = Tensor(shape: [3, 2], scalars: [1, 0, -1, 2, 0.5, 0.5])
        linear.bias!.value = Tensor(shape: [3], scalars: [0.125, 0.25, 0.375])
        return linear
    }

    @Test func handComputedTinyCase() throws {
        let linear = Self.handLayer()
        let output = try linear.forward(Tensor(shape: [2, 2], scalars: [1, 2, 3, 4]), mode: .training)
        // Row [1, 2]: 1 + 0.125, −1 + 4 + 0.25, 0.5 + 1 + 0.375; row [3, 4]: 3 + 0.125, −3 + 8 + 0.25, 1.5 + 2 + 0.375.
        #expect(output == Tensor(shape: [2, 3], scalars: [1.125, 3.25, 1.875, 3.125, 5.25, 3.875]))

        let dInput = linear.backward(Tensor(shape: [2, 3], scalars: [1, 0, 0, 0, 1, 1]))
        // Row 0 picks weight row 0; row 1 sums weight rows 1 and 2.
        #expect(dInput == Tensor(shape: [2, 2], scalars: [1, 0, -0.5, 2.5]))
        // dWeight = dOutputᵀ · input: output 0 saw only [1, 2], outputs 1 and 2 only [3, 4].
        #expect(linear.weight.gradient == Tensor(shape: [3, 2], scalars: [1, 2, 3, 4, 3, 4]))
        #expect(linear.bias!.gradient == Tensor(shape: [3], scalars: [1, 1, 1]))
    }

    // Linear is bilinear in input and weight, so central differences are exact up to float32 rounding
    // of L (≈ ulp(|L| ≲ 20) / (2ε) ≈ 1e-4 at ε = 1e-2), inside the helper's atol 1e-3 + rtol 1e-2.
    @Test(arguments: [true, false])
    func gradientsMatchFiniteDifferences(bias: Bool) throws {
        var generator = RandomGenerator(seed: 21)
        let linear = Linear(inputFeatures: 13, outputFeatures: 7, bias: bias, generator: &generator)
        try expectGradientsMatchFiniteDifferences(of: linear, input: randomTensor([5, 13], seed: 22))
    }

    /// bf16 is the fp32 layer on bf16-rounded operands (input, weight, dOutput), bit for bit: the same
    /// products in the same order; and it differs from fp32 on unrounded ones.
    @Test func bf16RoundsEveryOperandOfTheProducts() throws {
        var generator = RandomGenerator(seed: 8)
        let mixed = Linear(inputFeatures: 24, outputFeatures: 5, generator: &generator)
        let plain = Linear(inputFeatures: 24, outputFeatures: 5, generator: &generator)
        mixed.precision = .bf16
        plain.weight.value = Tensor(shape: mixed.weight.value.shape, scalars: BFloat16Reference.rounded(mixed.weight.value.scalars))
        plain.bias!.value = mixed.bias!.value
        let input = randomTensor([6, 24], seed: 9), dOutput = randomTensor([6, 5], seed: 10)
        func rounded(_ tensor: Tensor) -> Tensor { Tensor(shape: tensor.shape, scalars: BFloat16Reference.rounded(tensor.scalars)) }

        #expect(try mixed.forward(input, mode: .training) == plain.forward(rounded(input), mode: .training))
        let dInput = mixed.backward(dOutput)
        let expected = plain.backward(rounded(dOutput))
        // dInput = round(dOutput) · round(weight), from the rounded copy of the weight.
        #expect(dInput == expected)
        #expect(mixed.weight.gradient == plain.weight.gradient && mixed.bias!.gradient == plain.bias!.gradient)
        mixed.precision = .fp32
        #expect(try mixed.forward(input, mode: .inference) != plain.forward(rounded(input), mode: .inference))
    }

    @Test func parameterGradientsAccumulate() throws {
        var generator = RandomGenerator(seed: 3)
        let linear = Linear(inputFeatures: 6, outputFeatures: 4, generator: &generator)
        let dOutput = randomTensor([3, 4], seed: 5)
        _ = try linear.forward(randomTensor([3, 6], seed: 4), mode: .training)
        let firstInputGradient = linear.backward(dOutput)
        let once = (linear.weight.gradient, linear.bias!.gradient)
        let secondInputGradient = linear.backward(dOutput)
        #expect(once.0.scalars.contains { $0 != 0 })
        // The second call adds the same values again; doubling is exact in floating point.
        expectClose(linear.weight.gradient.scalars, once.0.scalars.map { 2 * $0 }, rtol: 1e-6, atol: 0, "dWeight")
        expectClose(linear.bias!.gradient.scalars, once.1.scalars.map { 2 * $0 }, rtol: 1e-6, atol: 0, "dBias")
        #expect(firstInputGradient == secondInputGradient)
    }

    @Test func shapeErrorsNameTheLayerAndBothShapes() {
        var generator = RandomGenerator(seed: 1)
        let linear = Linear(inputFeatures: 64, outputFeatures: 10, generator: &generator)
        #expect(throws: RuntimeError.shapeMismatch(path: "", kind: "Linear", expected: "[N, 64]", found: [8, 32])) {
            try linear.forward(Tensor(zeros: [8, 32]), mode: .inference)
        }
        do {
            _ = try linear.forward(Tensor(zeros: [8, 1, 1, 64]), mode: .inference)
            Issue.record("an unflattened feature map was accepted")
        } catch {
            #expect("\(error)" == "Linear: expected input [N, 64], got [8, 1, 1, 64]")
        }
    }

    @Test func initializationFollowsPyTorch() {
        var generator = RandomGenerator(seed: 5)
        let linear = Linear(inputFeatures: 100, outputFeatures: 30, generator: &generator)
        #expect(linear.state.parameters.map(\.name) == ["weight", "bias"])
        #expect(linear.weight.value.shape == [30, 100] && linear.weight.decays)
        #expect(linear.bias!.value.shape == [30] && !linear.bias!.decays)
        // Weight and bias both U(−b, b) with b = 1/√in = 0.1: all inside, and some near each end.
        for values in [linear.weight.value.scalars, linear.bias!.value.scalars] {
            #expect(values.allSatisfy { abs($0) <= 0.1 })
            #expect(values.contains { $0 > 0.05 } && values.contains { $0 < -0.05 })
        }
        #expect(Linear(inputFeatures: 3, outputFeatures: 2, bias: false, generator: &generator).bias == nil)
    }

    // See Conv2DLayerTests.inferenceForwardKeepsNoCache.
    @Test func inferenceForwardKeepsNoCache() async {
        await #expect(processExitsWith: .success) {
            var generator = RandomGenerator(seed: 1)
            let linear = Linear(inputFeatures: 3, outputFeatures: 2, generator: &generator)
            _ = try linear.forward(Tensor(zeros: [4, 3]), mode: .training)
            _ = linear.backward(Tensor(zeros: [4, 2]))
        }
        await #expect(processExitsWith: .failure) {
            var generator = RandomGenerator(seed: 1)
            let linear = Linear(inputFeatures: 3, outputFeatures: 2, generator: &generator)
            _ = try linear.forward(Tensor(zeros: [4, 3]), mode: .training)
            _ = try linear.forward(Tensor(zeros: [4, 3]), mode: .inference)
            _ = linear.backward(Tensor(zeros: [4, 2]))
        }
    }
}
