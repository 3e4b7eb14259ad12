import EpicycleDistillation
import EpicycleRuntime
import Foundation
import Testing
import TestSupport

func golden(_ name: String) throws -> GoldenTensors {
    let url = try #require(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures"),
                           "run scripts/make_distillation_fixtures.py")
    return try GoldenTensors(manifest: url)
}

/// Checks an analytic gradient against central differences of `loss` at every coordinate of `point`.
///
/// Tolerance: with ε = 1e-2 the truncation error is ε²/6·|f‴|, about 1e-5 of the gradient's scale for
/// these smooth losses of inputs of order 1, and float32 rounding of values of order 1 adds about
/// 1e-7/1e-2 = 1e-5; so rtol 1e-2 plus atol 1e-3 of the largest gradient entry passes a right gradient
/// and fails a wrong factor, sign or missing term (each off by far more than 1 %).
func expectMatchesFiniteDifferences(
    _ analytic: Tensor, at point: Tensor, _ what: String, sourceLocation: SourceLocation = #_sourceLocation,
    loss: (Tensor) throws -> Float
) throws {
    var probe = point
    let numeric = try centralDifferences(
        indices: Array(0..<point.count), epsilon: 1e-2,
        read: { probe.scalars[$0] }, write: { probe.scalars[$0] = $1 },
        loss: { Double(try loss(probe)) })
    let scale = analytic.scalars.reduce(Float(0)) { max($0, abs($1)) }
    #expect(scale > 0, "\(what): the gradient is zero, so the check would be empty", sourceLocation: sourceLocation)
    expectClose(analytic.scalars, numeric.map(Float.init), rtol: 1e-2, atol: 1e-3 * scale, what, sourceLocation: sourceLocation)
}

/// Tolerance against PyTorch: both compute in float32 with different summation orders, so values and
/// gradients agree to a few ulps of their scale; 1e-5 normwise is ~100 ulps, and any formula error
/// (a missing T², a mean instead of a sum) is off by 10 % or more.
let goldenTolerance: Float = 1e-5

@Suite struct LogitDistillationTests {
    @Test(arguments: ["kd-T4", "kd-T0.5"]) func matchesPyTorch(_ name: String) throws {
        let fixture = try golden(name)
        let loss = KLDivergenceLoss(temperature: Float(fixture.settings["temperature"]!))
        let result = try loss(studentLogits: fixture["student"]!, teacherLogits: fixture["teacher"]!)
        expectNormwiseClose(Tensor(shape: [1], scalars: [result.value]), fixture["loss"]!, tolerance: goldenTolerance, "\(name) loss")
        expectNormwiseClose(result.gradient, fixture["grad/student"]!, tolerance: goldenTolerance, "\(name) gradient")
        try expectMatchesFiniteDifferences(result.gradient, at: fixture["student"]!, name) {
            try loss(studentLogits: $0, teacherLogits: fixture["teacher"]!).value
        }
    }
}

@Suite struct HintLossTests {
    func loss(from fixture: GoldenTensors) -> HintLoss {
        var generator = RandomGenerator(seed: 0)
        let regressor = HintRegressor(studentChannels: 4, teacherChannels: 6, generator: &generator)
        regressor.convolution.weight.value = fixture["conv.weight"]!
        regressor.normalization.weight.value = fixture["bn.weight"]!
        regressor.normalization.bias.value = fixture["bn.bias"]!
        return HintLoss(regressor: regressor)
    }

    @Test func matchesPyTorch() throws {
        let fixture = try golden("hint")
        let hint = loss(from: fixture)
        let result = try hint(student: fixture["student"]!, teacher: fixture["teacher"]!)
        expectNormwiseClose(Tensor(shape: [1], scalars: [result.value]), fixture["loss"]!, tolerance: goldenTolerance, "loss")
        expectNormwiseClose(result.gradient, fixture["grad/student"]!, tolerance: goldenTolerance, "student gradient")
        for (name, parameter) in hint.regressor.state.parameters {
            expectNormwiseClose(parameter.gradient, fixture["grad/" + name]!, tolerance: goldenTolerance, "\(name) gradient")
        }
    }

    @Test func gradientsMatchFiniteDifferences() throws {
        let fixture = try golden("hint")
        let hint = loss(from: fixture)
        let student = fixture["student"]!, teacher = fixture["teacher"]!
        let result = try hint(student: student, teacher: teacher)
        try expectMatchesFiniteDifferences(result.gradient, at: student, "student") {
            try hint(student: $0, teacher: teacher).value
        }
        // The regressor's parameters, one at a time (each forward also accumulates gradients, which
        // the analytic copies taken first are immune to).
        for (name, parameter) in hint.regressor.state.parameters {
            for (_, other) in hint.regressor.state.parameters { other.zeroGradient() }
            _ = try hint(student: student, teacher: teacher)
            let analytic = parameter.gradient
            let original = parameter.value
            try expectMatchesFiniteDifferences(analytic, at: original, name) { value in
                parameter.value = value
                defer { parameter.value = original }
                return try hint(student: student, teacher: teacher).value
            }
        }
    }

    @Test func weightScalesEveryGradient() throws {
        let fixture = try golden("hint")
        let hint = loss(from: fixture)
        let parameters = hint.regressor.state.parameters.map(\.parameter)
        let once = try hint(student: fixture["student"]!, teacher: fixture["teacher"]!)
        let unweighted = parameters.map(\.gradient)
        for parameter in parameters { parameter.zeroGradient() }
        let weighted = try hint(student: fixture["student"]!, teacher: fixture["teacher"]!, weight: 2.5)
        #expect(weighted.value == once.value)
        // The student gradient comes out of the regressor's batch-norm backward, where (g − mean g) −
        // k·(x − μ) cancels for some elements: scaling g by 2.5 rounds differently there, so a
        // per-element tolerance would judge rounding noise on near-zero entries. Normwise, a wrong
        // weighting (a missing or doubled factor) is off by 60 % or more.
        expectNormwiseClose(weighted.gradient, Tensor(shape: once.gradient.shape, scalars: once.gradient.scalars.map { 2.5 * $0 }),
                            tolerance: 1e-5, "student")
        for (parameter, gradient) in zip(parameters, unweighted) {
            expectClose(parameter.gradient.scalars, gradient.scalars.map { 2.5 * $0 }, rtol: 1e-5, atol: 1e-9, "regressor")
        }
    }
}

@Suite struct AttentionTransferTests {
    @Test func matchesPyTorchAndFiniteDifferences() throws {
        let fixture = try golden("attention")
        let loss = AttentionTransferLoss()
        let result = try loss(student: fixture["student"]!, teacher: fixture["teacher"]!)
        expectNormwiseClose(Tensor(shape: [1], scalars: [result.value]), fixture["loss"]!, tolerance: goldenTolerance, "loss")
        expectNormwiseClose(result.gradient, fixture["grad/student"]!, tolerance: goldenTolerance, "gradient")
        try expectMatchesFiniteDifferences(result.gradient, at: fixture["student"]!, "student") {
            try loss(student: $0, teacher: fixture["teacher"]!).value
        }
    }

    @Test func identicalAttentionCostsNothing() throws {
        // Scaling a map's features leaves its normalised attention unchanged.
        let teacher = randomTensor([2, 3, 3, 4], seed: 5)
        let student = Tensor(shape: teacher.shape, scalars: teacher.scalars.map { 3 * $0 })
        #expect(try AttentionTransferLoss()(student: student, teacher: teacher).value < 1e-12)
    }

    @Test func spatialSizesMustAgree() {
        #expect(throws: RuntimeError.self) {
            try AttentionTransferLoss()(student: Tensor(zeros: [1, 4, 4, 2]), teacher: Tensor(zeros: [1, 2, 2, 2]))
        }
    }
}

@Suite struct SpatialSoftmaxTests {
    @Test(arguments: ["spatial-softmax-T1", "spatial-softmax-T4"]) func matchesPyTorchAndFiniteDifferences(_ name: String) throws {
        let fixture = try golden(name)
        let loss = SpatialSoftmaxLoss(temperature: Float(fixture.settings["temperature"]!))
        let result = try loss(student: fixture["student"]!, teacher: fixture["teacher"]!)
        expectNormwiseClose(Tensor(shape: [1], scalars: [result.value]), fixture["loss"]!, tolerance: goldenTolerance, "\(name) loss")
        expectNormwiseClose(result.gradient, fixture["grad/student"]!, tolerance: goldenTolerance, "\(name) gradient")
        try expectMatchesFiniteDifferences(result.gradient, at: fixture["student"]!, name) {
            try loss(student: $0, teacher: fixture["teacher"]!).value
        }
        let weighted = try loss(student: fixture["student"]!, teacher: fixture["teacher"]!, weight: 0.5)
        expectClose(weighted.gradient.scalars, result.gradient.scalars.map { 0.5 * $0 }, rtol: 1e-6, atol: 0, "weighted")
    }

    @Test func channelsMustAgree() {
        #expect(throws: RuntimeError.self) {
            try SpatialSoftmaxLoss(temperature: 1)(student: Tensor(zeros: [1, 2, 2, 3]), teacher: Tensor(zeros: [1, 2, 2, 4]))
        }
    }
}
