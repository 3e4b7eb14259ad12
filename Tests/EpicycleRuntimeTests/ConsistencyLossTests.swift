import EpicycleRuntime
import Foundation
import Testing
import TestSupport

/// Golden values of `scripts/make_semi_supervised_fixtures.py`.
func consistencyGolden(_ name: String) throws -> GoldenTensors {
    let url = try #require(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures"),
                           "run scripts/make_semi_supervised_fixtures.py")
    return try GoldenTensors(manifest: url)
}

/// Both sides compute in float32 with different summation orders; 1e-5 normwise is ~100 ulps, and a
/// formula error (a mean over the confident rows instead of all, a missing T²) is off by 10 % or more.
private let goldenTolerance: Float = 1e-5

@Suite struct ConsistencyLossTests {
    /// The mask and the pseudo-labels agree with PyTorch's, row by row.
    private func expectTargets(_ result: ConsistencyResult, _ fixture: GoldenTensors, _ name: String) throws {
        let mask = try #require(fixture["mask"]).scalars, labels = try #require(fixture["labels"]).scalars
        #expect(result.confident == mask.map { $0 == 1 }, "\(name) mask")
        #expect(result.pseudoLabels == labels.map { Int32($0) }, "\(name) pseudo-labels")
        #expect(result.maskRate == Double(mask.reduce(0, +)) / Double(mask.count), "\(name) mask rate")
    }

    @Test(arguments: ["fixmatch-tau0.8", "fixmatch-tau0"]) func fixMatchMatchesPyTorch(_ name: String) throws {
        let fixture = try consistencyGolden(name)
        let loss = FixMatchLoss(threshold: Float(fixture.settings["threshold"]!))
        let weak = try #require(fixture["weak"]), strong = try #require(fixture["strong"])
        let result = try loss(weakLogits: weak, strongLogits: strong)
        try expectTargets(result, fixture, name)
        expectNormwiseClose(Tensor(shape: [1], scalars: [result.loss.value]), fixture["loss"]!, tolerance: goldenTolerance, "\(name) loss")
        expectNormwiseClose(result.loss.gradient, fixture["grad/strong"]!, tolerance: goldenTolerance, "\(name) gradient")
        // The mask is fixed by the weak view, so the loss is smooth in the strong logits.
        try expectGradientMatchesFiniteDifferences(result.loss.gradient, at: strong, name) {
            try loss(weakLogits: weak, strongLogits: $0).loss.value
        }
    }

    @Test(arguments: ["soft-targets-T2-tau0.6", "soft-targets-T1-tau0"]) func softTargetsMatchPyTorch(_ name: String) throws {
        let fixture = try consistencyGolden(name)
        let loss = SoftTargetConsistencyLoss(temperature: Float(fixture.settings["temperature"]!),
                                             threshold: Float(fixture.settings["threshold"]!))
        let teacher = try #require(fixture["teacher"]), student = try #require(fixture["student"])
        let result = try loss(teacherLogits: teacher, studentLogits: student)
        try expectTargets(result, fixture, name)
        expectNormwiseClose(Tensor(shape: [1], scalars: [result.loss.value]), fixture["loss"]!, tolerance: goldenTolerance, "\(name) loss")
        expectNormwiseClose(result.loss.gradient, fixture["grad/student"]!, tolerance: goldenTolerance, "\(name) gradient")
        try expectGradientMatchesFiniteDifferences(result.loss.gradient, at: student, name) {
            try loss(teacherLogits: teacher, studentLogits: $0).loss.value
        }
    }

    @Test func masksCountInTheMeanAsZeros() throws {
        // Row 0 is confident (softmax of [10, 0] is 0.99995), row 1 is not ([0, 0] gives 0.5): the
        // loss is row 0's cross-entropy halved, and row 1 gets no gradient.
        let weak = Tensor(shape: [2, 2], scalars: [10, 0, 0, 0])
        let strong = Tensor(shape: [2, 2], scalars: [0, 1, 2, 0])
        let result = try FixMatchLoss(threshold: 0.9)(weakLogits: weak, strongLogits: strong)
        #expect(result.confident == [true, false])
        #expect(result.pseudoLabels == [0, 0])
        let rowLoss = log(1 + exp(1.0))  // −log softmax([0, 1])[0]
        #expect(abs(Double(result.loss.value) - rowLoss / 2) < 1e-6)
        #expect(Array(result.loss.gradient.scalars[2...]) == [0, 0])
        // With τ = 0 the soft-target loss is logit distillation exactly.
        let kd = try KLDivergenceLoss(temperature: 3)(studentLogits: strong, teacherLogits: weak)
        let soft = try SoftTargetConsistencyLoss(temperature: 3, threshold: 0)(teacherLogits: weak, studentLogits: strong)
        #expect(abs(soft.loss.value - kd.value) < 1e-6)
        expectClose(soft.loss.gradient.scalars, kd.gradient.scalars, rtol: 1e-6, atol: 1e-8, "τ = 0 soft targets")
    }

    @Test func refusesBadSettingsAndShapes() {
        #expect(throws: LossError.self) { try FixMatchLoss(threshold: 1.5)(weakLogits: Tensor(zeros: [1, 2]), strongLogits: Tensor(zeros: [1, 2])) }
        #expect(throws: LossError.self) {
            try SoftTargetConsistencyLoss(temperature: 0)(teacherLogits: Tensor(zeros: [1, 2]), studentLogits: Tensor(zeros: [1, 2]))
        }
        #expect(throws: RuntimeError.self) { try FixMatchLoss()(weakLogits: Tensor(zeros: [2, 3]), strongLogits: Tensor(zeros: [3, 3])) }
    }
}
