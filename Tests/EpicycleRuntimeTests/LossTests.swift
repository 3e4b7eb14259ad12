import EpicycleRuntime
import Foundation
import Testing
import TestSupport

/// Checks a loss gradient against central differences of the loss value at every coordinate.
///
/// Tolerance: the step 1e-2 gives a truncation error ε²/6·|f‴| ≲ 2e-5·(1/T³) for these batch-mean
/// losses of order 1, and float32 rounding of the value (≈1e-7) over the 2e-2 step adds ≈5e-6; the
/// gradients themselves are of order 1/N ≈ 0.1, so atol 2e-4 with rtol 1e-2 still catches a wrong
/// factor or sign.
func expectGradientMatchesFiniteDifferences(
    _ analytic: Tensor, at point: Tensor, atol: Float = 2e-4, _ what: String,
    sourceLocation: SourceLocation = #_sourceLocation, loss: (Tensor) throws -> Float
) throws {
    var probe = point
    let numeric = try centralDifferences(
        indices: Array(0..<point.count), epsilon: 1e-2,
        read: { probe.scalars[$0] }, write: { probe.scalars[$0] = $1 },
        loss: { Double(try loss(probe)) })
    expectClose(analytic.scalars, numeric.map(Float.init), rtol: 1e-2, atol: atol, what, sourceLocation: sourceLocation)
}

// log Σ_k exp(z_k) in Double, the reference the hand computations use.
func logSumExp(_ row: [Double]) -> Double { log(row.map { exp($0) }.reduce(0, +)) }

@Suite struct CrossEntropyLossTests {
    @Test func valueAndGradientByHand() throws {
        // Rows [1, 2, 3] and [1, 0, −1] share c = log(1 + e^−1 + e^−2): log Σ exp is 3 + c and 1 + c.
        // Labels 2 and 2 give −log p = c and (1 + c) − (−1) = 2 + c; the mean is 1 + c.
        let logits = Tensor(shape: [2, 3], scalars: [1, 2, 3, 1, 0, -1])
        let result = try CrossEntropyLoss()(logits: logits, labels: [2, 2])
        let c = log(1 + exp(-1.0) + exp(-2.0))
        #expect(abs(Double(result.value) - (1 + c)) < 1e-6)
        // ∂/∂z = (p − onehot)/N; p of row 1 is [e^−2, e^−1, 1]/(1 + e^−1 + e^−2).
        let s = 1 + exp(-1.0) + exp(-2.0)
        let expected = [exp(-2.0) / s, exp(-1.0) / s, 1 / s - 1, 1 / s, exp(-1.0) / s, exp(-2.0) / s - 1].map { Float($0 / 2) }
        expectClose(result.gradient.scalars, expected, rtol: 1e-5, atol: 1e-7, "gradient")
    }

    @Test(arguments: [(Float(1), Float(0)), (0.5, 0), (2, 0.1), (0.7, 0.25)])
    func gradientMatchesFiniteDifferences(temperature: Float, labelSmoothing: Float) throws {
        let loss = CrossEntropyLoss(temperature: temperature, labelSmoothing: labelSmoothing)
        let logits = randomTensor([4, 5], seed: 41, low: -2, high: 2)
        let labels: [Int32] = [0, 4, 2, 2]
        let result = try loss(logits: logits, labels: labels)
        try expectGradientMatchesFiniteDifferences(result.gradient, at: logits, "CE T=\(temperature) ε=\(labelSmoothing)") {
            try loss(logits: $0, labels: labels).value
        }
    }

    @Test func temperatureScalesLogitsAndGradient() throws {
        let logits = randomTensor([3, 6], seed: 42, low: -3, high: 3)
        let labels: [Int32] = [1, 5, 0]
        let temperature: Float = 2.5
        let tempered = try CrossEntropyLoss(temperature: temperature)(logits: logits, labels: labels)
        let divided = Tensor(shape: logits.shape, scalars: logits.scalars.map { $0 / temperature })
        let plain = try CrossEntropyLoss()(logits: divided, labels: labels)
        // CE_T(z) = CE_1(z/T), and by the chain rule ∂CE_T/∂z = (1/T)·∂CE_1/∂u at u = z/T.
        #expect(abs(tempered.value - plain.value) < 1e-6)
        expectClose(tempered.gradient.scalars, plain.gradient.scalars.map { $0 / temperature }, rtol: 1e-5, atol: 1e-8, "1/T")
    }

    @Test func labelSmoothingFollowsPyTorchDefinition() throws {
        // With t = (1 − ε)·onehot + ε/K: L = (1 − ε)·(−log p_y) + ε·mean_k(−log p_k), per sample.
        let logits = randomTensor([3, 4], seed: 43, low: -2, high: 2)
        let labels: [Int32] = [3, 0, 1]
        let epsilon = 0.2
        var expected = 0.0
        for n in 0..<3 {
            let row = (0..<4).map { Double(logits.scalars[n * 4 + $0]) }
            let logP = row.map { $0 - logSumExp(row) }
            expected += (1 - epsilon) * -logP[Int(labels[n])] + epsilon * -logP.reduce(0, +) / 4
        }
        expected /= 3
        let result = try CrossEntropyLoss(labelSmoothing: Float(epsilon))(logits: logits, labels: labels)
        #expect(abs(Double(result.value) - expected) < 1e-6)
        // The gradient rows sum to zero: p and t are both distributions.
        for n in 0..<3 { #expect(abs(result.gradient.scalars[(n * 4)..<(n * 4 + 4)].reduce(0, +)) < 1e-7) }
    }

    @Test func mixupEqualsWeightedSumAndSoftTargets() throws {
        let loss = CrossEntropyLoss(temperature: 1.5, labelSmoothing: 0.1)
        let logits = randomTensor([3, 5], seed: 44, low: -2, high: 2)
        let labels: [Int32] = [0, 3, 4], partners: [Int32] = [2, 3, 1]
        let lambda: Float = 0.3
        let mixed = try loss(logits: logits, labels: labels, partnerLabels: partners, mixWeight: lambda)
        let first = try loss(logits: logits, labels: labels), second = try loss(logits: logits, labels: partners)
        #expect(abs(mixed.value - (lambda * first.value + (1 - lambda) * second.value)) < 1e-6)

        // The same through the soft-target path: targets λ·onehot(y_a) + (1 − λ)·onehot(y_b).
        var targets = Tensor(zeros: [3, 5])
        for n in 0..<3 {
            targets.scalars[n * 5 + Int(labels[n])] += lambda
            targets.scalars[n * 5 + Int(partners[n])] += 1 - lambda
        }
        let soft = try loss(logits: logits, targets: targets)
        #expect(abs(soft.value - mixed.value) < 1e-6)
        expectClose(soft.gradient.scalars, mixed.gradient.scalars, rtol: 1e-5, atol: 1e-7, "soft vs mixed")
        try expectGradientMatchesFiniteDifferences(mixed.gradient, at: logits, "mixup") {
            try loss(logits: $0, labels: labels, partnerLabels: partners, mixWeight: lambda).value
        }
    }

    @Test func badLabelsThrowClearErrors() {
        let logits = Tensor(zeros: [2, 10])
        #expect(throws: LossError.labelOutOfRange(loss: "CrossEntropyLoss", label: 10, sample: 1, classCount: 10)) {
            try CrossEntropyLoss()(logits: logits, labels: [3, 10])
        }
        #expect(throws: LossError.labelOutOfRange(loss: "FocalLoss", label: -1, sample: 0, classCount: 10)) {
            try FocalLoss()(logits: logits, labels: [-1, 2])
        }
        #expect(throws: LossError.labelOutOfRange(loss: "CrossEntropyLoss", label: 12, sample: 0, classCount: 10)) {
            try CrossEntropyLoss()(logits: logits, labels: [1, 2], partnerLabels: [12, 0], mixWeight: 0.5)
        }
        #expect(throws: LossError.labelCountMismatch(loss: "CrossEntropyLoss", labelCount: 3, batchSize: 2)) {
            try CrossEntropyLoss()(logits: logits, labels: [1, 2, 3])
        }
        let message = LossError.labelOutOfRange(loss: "CrossEntropyLoss", label: 10, sample: 1, classCount: 10).description
        #expect(message.contains("label 10") && message.contains("10 classes"))
    }

    @Test func badSettingsAndShapesThrow() {
        let logits = Tensor(zeros: [2, 3])
        #expect(throws: LossError.self) { try CrossEntropyLoss(temperature: 0)(logits: logits, labels: [0, 1]) }
        #expect(throws: LossError.self) { try CrossEntropyLoss(labelSmoothing: 1.5)(logits: logits, labels: [0, 1]) }
        #expect(throws: LossError.self) {
            try CrossEntropyLoss()(logits: logits, labels: [0, 1], partnerLabels: [1, 0], mixWeight: 1.2)
        }
        #expect(throws: RuntimeError.self) { try CrossEntropyLoss()(logits: Tensor(zeros: [6]), labels: [0]) }
        #expect(throws: RuntimeError.self) { try CrossEntropyLoss()(logits: logits, targets: Tensor(zeros: [2, 4])) }
    }
}

@Suite struct FocalLossTests {
    // Logits [0, ln 3] give p = [1/4, 3/4].
    static let quarterThreeQuarters = Tensor(shape: [2, 2], scalars: [0, Float(log(3.0)), 0, Float(log(3.0))])

    @Test func valueByHand() throws {
        // Label 1: (1 − 3/4)²·(−ln 3/4) = ln(4/3)/16; label 0: (3/4)²·ln 4 = 9·ln 4/16.
        let result = try FocalLoss(gamma: 2)(logits: Self.quarterThreeQuarters, labels: [1, 0])
        let expected = (log(4.0 / 3) / 16 + 9 * log(4.0) / 16) / 2
        #expect(abs(Double(result.value) - expected) < 1e-6)
    }

    @Test func gammaZeroIsCrossEntropy() throws {
        let logits = randomTensor([4, 6], seed: 51, low: -3, high: 3)
        let labels: [Int32] = [5, 0, 2, 2]
        let focal = try FocalLoss(gamma: 0, temperature: 0.8)(logits: logits, labels: labels)
        let crossEntropy = try CrossEntropyLoss(temperature: 0.8)(logits: logits, labels: labels)
        #expect(abs(focal.value - crossEntropy.value) < 1e-6)
        expectClose(focal.gradient.scalars, crossEntropy.gradient.scalars, rtol: 1e-5, atol: 1e-7, "γ = 0")
    }

    @Test(arguments: [(Float(2), Float(1)), (0.5, 1), (3, 0.7), (1, 2)])
    func gradientMatchesFiniteDifferences(gamma: Float, temperature: Float) throws {
        let loss = FocalLoss(gamma: gamma, temperature: temperature)
        let logits = randomTensor([4, 5], seed: 52, low: -2, high: 2)
        let labels: [Int32] = [1, 4, 0, 3]
        let result = try loss(logits: logits, labels: labels)
        try expectGradientMatchesFiniteDifferences(result.gradient, at: logits, "focal γ=\(gamma) T=\(temperature)") {
            try loss(logits: $0, labels: labels).value
        }
    }

    @Test func labelSmoothingValueByHand() throws {
        // ε = 0.2, K = 2: label 1 has q = [0.1, 0.9]. At p = [1/4, 3/4]:
        // L = −0.1·(3/4)²·ln(1/4) − 0.9·(1/4)²·ln(3/4).
        let result = try FocalLoss(gamma: 2, labelSmoothing: 0.2)(logits: Self.quarterThreeQuarters, labels: [1, 1])
        let expected = 0.1 * 9 / 16 * log(4.0) + 0.9 / 16 * log(4.0 / 3)
        #expect(abs(Double(result.value) - expected) < 1e-6)
        let unsmoothed = try FocalLoss(gamma: 2)(logits: Self.quarterThreeQuarters, labels: [1, 1])
        #expect(abs(Double(unsmoothed.value) - log(4.0 / 3) / 16) < 1e-6, "ε = 0 keeps the true-class term only")
    }

    @Test(arguments: [Float(0.1), 0.3])
    func smoothedGammaZeroIsSmoothedCrossEntropy(labelSmoothing: Float) throws {
        let logits = randomTensor([4, 6], seed: 53, low: -3, high: 3)
        let labels: [Int32] = [5, 0, 2, 2]
        let focal = try FocalLoss(gamma: 0, temperature: 0.8, labelSmoothing: labelSmoothing)(logits: logits, labels: labels)
        let crossEntropy = try CrossEntropyLoss(temperature: 0.8, labelSmoothing: labelSmoothing)(logits: logits, labels: labels)
        #expect(abs(focal.value - crossEntropy.value) < 1e-6)
        expectClose(focal.gradient.scalars, crossEntropy.gradient.scalars, rtol: 1e-5, atol: 1e-7, "γ = 0, ε = \(labelSmoothing)")
    }

    @Test(arguments: [(Float(2), Float(0.1)), (0.5, 0.3), (3, 0.25)])
    func smoothedGradientMatchesFiniteDifferences(gamma: Float, labelSmoothing: Float) throws {
        let loss = FocalLoss(gamma: gamma, temperature: 0.9, labelSmoothing: labelSmoothing)
        let logits = randomTensor([4, 5], seed: 54, low: -2, high: 2)
        let labels: [Int32] = [1, 4, 0, 3]
        let result = try loss(logits: logits, labels: labels)
        try expectGradientMatchesFiniteDifferences(result.gradient, at: logits, "focal γ=\(gamma) ε=\(labelSmoothing)") {
            try loss(logits: $0, labels: labels).value
        }
    }

    @Test func confidentSamplesStayFinite() throws {
        // p_t = 1 in float32: (1 − p)^(γ−1) with γ < 1 would be ∞·0 if not handled.
        let logits = Tensor(shape: [1, 3], scalars: [0, 60, -5])
        for gamma: Float in [0.5, 1, 2] {
            let result = try FocalLoss(gamma: gamma)(logits: logits, labels: [1])
            #expect(result.value.isFinite && result.value >= 0)
            #expect(result.gradient.scalars.allSatisfy { $0.isFinite && abs($0) < 1e-6 }, "γ = \(gamma): \(result.gradient)")
        }
    }
}

@Suite struct CyclicalFocalLossTests {
    @Test func endpointsAreFocalAndHighConfidence() throws {
        let logits = randomTensor([4, 5], seed: 61, low: -2, high: 2)
        let labels: [Int32] = [2, 2, 0, 4]
        let atZero = try CyclicalFocalLoss(gammaHighConfidence: 3, gammaFocal: 2, xi: 0, temperature: 1.3)(logits: logits, labels: labels)
        let focal = try FocalLoss(gamma: 2, temperature: 1.3)(logits: logits, labels: labels)
        #expect(abs(atZero.value - focal.value) < 1e-7)
        expectClose(atZero.gradient.scalars, focal.gradient.scalars, rtol: 1e-6, atol: 1e-9, "ξ = 0")

        // ξ = 1 is L_hc: at p = [1/4, 3/4], label 1 gives (7/4)³·ln(4/3), label 0 gives (5/4)³·ln 4.
        let atOne = try CyclicalFocalLoss(gammaHighConfidence: 3, xi: 1)(logits: FocalLossTests.quarterThreeQuarters, labels: [1, 0])
        let expected = (pow(1.75, 3) * log(4.0 / 3) + pow(1.25, 3) * log(4.0)) / 2
        #expect(abs(Double(atOne.value) - expected) < 1e-6)
    }

    @Test func valueIsTheConvexCombination() throws {
        let logits = randomTensor([3, 4], seed: 62, low: -2, high: 2)
        let labels: [Int32] = [3, 1, 0]
        let xi: Float = 0.35
        let mixed = try CyclicalFocalLoss(xi: xi)(logits: logits, labels: labels)
        let high = try CyclicalFocalLoss(xi: 1)(logits: logits, labels: labels)
        let focal = try CyclicalFocalLoss(xi: 0)(logits: logits, labels: labels)
        #expect(abs(mixed.value - (xi * high.value + (1 - xi) * focal.value)) < 1e-6)
    }

    @Test(arguments: [Float(0), 0.35, 1])
    func gradientMatchesFiniteDifferences(xi: Float) throws {
        let loss = CyclicalFocalLoss(gammaHighConfidence: 3, gammaFocal: 2, xi: xi, temperature: 0.8)
        let logits = randomTensor([4, 5], seed: 63, low: -2, high: 2)
        let labels: [Int32] = [0, 1, 4, 4]
        let result = try loss(logits: logits, labels: labels)
        // L_hc's weight reaches 2³ = 8: allow a proportionally larger truncation error.
        try expectGradientMatchesFiniteDifferences(result.gradient, at: logits, atol: 1e-3, "cyclical focal ξ=\(xi)") {
            try loss(logits: $0, labels: labels).value
        }
    }

    @Test(arguments: [Float(0), 0.35, 1])
    func smoothedGradientMatchesFiniteDifferences(xi: Float) throws {
        let loss = CyclicalFocalLoss(gammaHighConfidence: 3, gammaFocal: 2, xi: xi, temperature: 0.8, labelSmoothing: 0.2)
        let logits = randomTensor([4, 5], seed: 64, low: -2, high: 2)
        let labels: [Int32] = [0, 1, 4, 4]
        let result = try loss(logits: logits, labels: labels)
        try expectGradientMatchesFiniteDifferences(result.gradient, at: logits, atol: 1e-3, "cyclical focal ξ=\(xi) ε=0.2") {
            try loss(logits: $0, labels: labels).value
        }
        // ξ = 0 is the smoothed focal loss.
        if xi == 0 {
            let focal = try FocalLoss(gamma: 2, temperature: 0.8, labelSmoothing: 0.2)(logits: logits, labels: labels)
            #expect(abs(result.value - focal.value) < 1e-7)
        }
    }

    @Test func xiOutsideUnitIntervalThrows() {
        #expect(throws: LossError.invalidHyperParameter(loss: "CyclicalFocalLoss", name: "xi", value: 1.5, requirement: "in [0, 1]")) {
            try CyclicalFocalLoss(xi: 1.5)(logits: Tensor(zeros: [1, 2]), labels: [0])
        }
    }
}

@Suite struct KLDivergenceLossTests {
    @Test func valueByHandIncludingTSquared() throws {
        // Teacher p = [1/4, 3/4], student [1/2, 1/2]: KL = ¼·ln(½) + ¾·ln(3/2).
        let kl = 0.25 * log(0.5) + 0.75 * log(1.5)
        let student = Tensor(shape: [1, 2], scalars: [0, 0])
        let atOne = try KLDivergenceLoss(temperature: 1)(studentLogits: student, teacherLogits: Tensor(shape: [1, 2], scalars: [0, Float(log(3.0))]))
        #expect(abs(Double(atOne.value) - kl) < 1e-6)
        // At T = 2 the teacher logits [0, 2·ln 3] soften to the same distribution; the value gains T² = 4.
        let atTwo = try KLDivergenceLoss(temperature: 2)(studentLogits: student, teacherLogits: Tensor(shape: [1, 2], scalars: [0, Float(2 * log(3.0))]))
        #expect(abs(Double(atTwo.value) - 4 * kl) < 4e-6)
        // ∂/∂z_s = T·(p − q)/N = 2·([½, ½] − [¼, ¾]).
        expectClose(atTwo.gradient.scalars, [0.5, -0.5], rtol: 1e-5, atol: 1e-7, "gradient")
    }

    @Test func zeroWhenTeacherEqualsStudent() throws {
        let logits = randomTensor([3, 7], seed: 71, low: -4, high: 4)
        let result = try KLDivergenceLoss(temperature: 3)(studentLogits: logits, teacherLogits: logits)
        #expect(abs(result.value) < 1e-6)
        #expect(result.gradient.scalars.allSatisfy { abs($0) < 1e-7 })
    }

    @Test(arguments: [Float(1), 2, 4])
    func gradientMatchesFiniteDifferences(temperature: Float) throws {
        let loss = KLDivergenceLoss(temperature: temperature)
        let student = randomTensor([3, 5], seed: 72, low: -3, high: 3)
        let teacher = randomTensor([3, 5], seed: 73, low: -3, high: 3)
        let result = try loss(studentLogits: student, teacherLogits: teacher)
        try expectGradientMatchesFiniteDifferences(result.gradient, at: student, "KL T=\(temperature)") {
            try loss(studentLogits: $0, teacherLogits: teacher).value
        }
    }

    @Test func mismatchedShapesThrow() {
        #expect(throws: RuntimeError.self) {
            try KLDivergenceLoss(temperature: 2)(studentLogits: Tensor(zeros: [2, 3]), teacherLogits: Tensor(zeros: [2, 4]))
        }
    }
}

@Suite struct MeanSquaredErrorLossTests {
    @Test func valueAndGradientByHand() throws {
        // Differences [1, −2, 0, 0.5]: mean of squares (1 + 4 + 0 + 0.25)/4; gradient 2·diff/4.
        let prediction = Tensor(shape: [2, 2], scalars: [1, 0, 3, 1.5])
        let target = Tensor(shape: [2, 2], scalars: [0, 2, 3, 1])
        let result = try MeanSquaredErrorLoss()(prediction: prediction, target: target)
        #expect(abs(result.value - 5.25 / 4) < 1e-7)
        expectClose(result.gradient.scalars, [0.5, -1, 0, 0.25], rtol: 1e-6, atol: 0, "gradient")
    }

    @Test func gradientMatchesFiniteDifferences() throws {
        let prediction = randomTensor([2, 3, 2], seed: 81), target = randomTensor([2, 3, 2], seed: 82)
        let result = try MeanSquaredErrorLoss()(prediction: prediction, target: target)
        try expectGradientMatchesFiniteDifferences(result.gradient, at: prediction, "MSE") {
            try MeanSquaredErrorLoss()(prediction: $0, target: target).value
        }
    }

    @Test func mismatchedShapesThrow() {
        #expect(throws: RuntimeError.shapeMismatch(path: "", kind: "MeanSquaredErrorLoss",
                                                   expected: "target [2, 2] like the prediction, non-empty", found: [4])) {
            try MeanSquaredErrorLoss()(prediction: Tensor(zeros: [2, 2]), target: Tensor(zeros: [4]))
        }
    }
}
