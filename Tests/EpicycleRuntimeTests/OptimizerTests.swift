import EpicycleRuntime
import Testing
import TestSupport

/// A parameter whose gradient is set by the test.
func parameter(_ values: [Float], decays: Bool = true) -> Parameter {
    Parameter(Tensor(shape: [values.count], scalars: values), decays: decays)
}

func setGradient(_ parameter: Parameter, _ values: [Float]) {
    parameter.gradient = Tensor(shape: parameter.value.shape, scalars: values)
}

// Step values shared by the two-step tests; the expected results were computed by hand from the
// update rules in Double (derivations in the comments).
let startValues: [Float] = [1, -2, 0.5]
let firstGradient: [Float] = [0.1, 0.2, -0.3]
let secondGradient: [Float] = [0.2, -0.1, 0.4]

@Suite struct SGDTests {
    @Test func twoStepsWithNesterovMomentumAndWeightDecay() {
        let p = parameter(startValues)
        let sgd = SGD(groups: [ParameterGroup(parameters: [("w", p)], weightDecay: 0.01)],
                      learningRate: 0.1, momentum: 0.9, nesterov: true)
        setGradient(p, firstGradient)
        sgd.step()
        // Element 0: g = 0.1 + 0.01·1 = 0.11; b = g = 0.11 (first step); g + μ·b = 0.209;
        // p = 1 − 0.1·0.209 = 0.9791.
        expectClose(p.value.scalars, [0.9791, -2.0342, 0.55605], rtol: 1e-6, atol: 1e-7, "step 1")
        expectClose(sgd.parameterStates["w"]!.momentumBuffer!.scalars, [0.11, 0.18, -0.295], rtol: 1e-6, atol: 1e-7, "buffer 1")

        // The learning rate changes between steps, as a schedule would change it.
        sgd.learningRate = 0.05
        setGradient(p, secondGradient)
        sgd.step()
        // Element 0: g = 0.2 + 0.01·0.9791 = 0.209791; b = 0.9·0.11 + 0.209791 = 0.308791;
        // g + μ·b = 0.4877029; p = 0.9791 − 0.05·0.4877029 = 0.954714855.
        expectClose(p.value.scalars, [0.954714855, -2.03005751, 0.5294692525], rtol: 1e-6, atol: 1e-7, "step 2")
        expectClose(sgd.parameterStates["w"]!.momentumBuffer!.scalars, [0.308791, 0.041658, 0.1400605],
                    rtol: 1e-5, atol: 1e-7, "buffer 2")
    }

    @Test func dampeningSkipsFirstStepAndDecoupledDecayShrinks() {
        let p = parameter(startValues)
        let sgd = SGD(groups: [ParameterGroup(parameters: [("w", p)], weightDecay: 0.1)],
                      learningRate: 0.1, momentum: 0.9, dampening: 0.5, decoupledWeightDecay: true)
        setGradient(p, firstGradient)
        sgd.step()
        // Element 0: p = 1·(1 − 0.1·0.1) = 0.99; b = g = 0.1 (no dampening on the first step);
        // p = 0.99 − 0.1·0.1 = 0.98.
        expectClose(p.value.scalars, [0.98, -2.0, 0.525], rtol: 1e-6, atol: 1e-7, "step 1")
        setGradient(p, secondGradient)
        sgd.step()
        // Element 0: p = 0.98·0.99 = 0.9702; b = 0.9·0.1 + 0.5·0.2 = 0.19; p = 0.9702 − 0.019 = 0.9512.
        expectClose(p.value.scalars, [0.9512, -1.993, 0.52675], rtol: 1e-6, atol: 1e-7, "step 2")
    }

    @Test func plainSGDWithL2() {
        let p = parameter([2, -1])
        let sgd = SGD(groups: [ParameterGroup(parameters: [("w", p)], weightDecay: 0.5)], learningRate: 0.1)
        setGradient(p, [1, 1])
        sgd.step()
        // p − 0.1·(g + 0.5·p): 2 − 0.1·2 = 1.8; −1 − 0.1·0.5 = −1.05. No momentum: no state buffer.
        expectClose(p.value.scalars, [1.8, -1.05], rtol: 1e-6, atol: 1e-7, "step")
        #expect(sgd.parameterStates["w"]?.momentumBuffer == nil)
    }

    @Test func frozenParametersAreSkipped() {
        let trained = parameter([1]), frozen = parameter([1])
        frozen.trainable = false
        let sgd = SGD(groups: [ParameterGroup(parameters: [("a", trained), ("b", frozen)], weightDecay: 0)],
                      learningRate: 0.5, momentum: 0.9)
        setGradient(trained, [1])
        setGradient(frozen, [1])
        sgd.step()
        #expect(trained.value.scalars == [0.5])
        #expect(frozen.value.scalars == [1])
        #expect(sgd.parameterStates["b"] == nil)
        sgd.zeroGradients()
        #expect(trained.gradient.scalars == [0] && frozen.gradient.scalars == [0])
    }
}

@Suite struct AdamWTests {
    @Test func twoStepsByHand() {
        let p = parameter(startValues)
        let adam = AdamW(groups: [ParameterGroup(parameters: [("w", p)], weightDecay: 0.1)], learningRate: 0.01)
        setGradient(p, firstGradient)
        adam.step()
        // Element 0, t = 1: p = 1·(1 − 0.01·0.1) = 0.999; m = 0.01, v = 1e-5; m̂ = 0.1, √v̂ = 0.1;
        // p = 0.999 − 0.01·0.1/(0.1 + 1e-8) = 0.989000001.
        expectClose(p.value.scalars, [0.989000001, -2.0079999995, 0.5094999996666667], rtol: 1e-6, atol: 1e-7, "step 1")
        setGradient(p, secondGradient)
        adam.step()
        // Element 0, t = 2: p = 0.989000001·0.999; m = 0.9·0.01 + 0.1·0.2 = 0.029, v = 0.999·1e-5 + 0.001·0.04
        // = 4.999e-5; p −= (0.01/0.19)·0.029/(√v/√0.001999 + 1e-8) → 0.9783591813511252.
        expectClose(p.value.scalars, [0.9783591813511252, -2.0086553697286322, 0.5070553956303643],
                    rtol: 1e-6, atol: 1e-7, "step 2")
        #expect(adam.parameterStates["w"]!.step == 2)
        expectClose(adam.parameterStates["w"]!.expAvg.scalars, [0.029, 0.008, 0.013], rtol: 1e-5, atol: 1e-8, "exp_avg")
    }
}

@Suite struct ParameterGroupTests {
    @Test func standardGroupsExemptBatchNormAndBiases() {
        let weight = parameter([1, 1]), bias = parameter([1], decays: false), scale = parameter([1], decays: false)
        let groups = ParameterGroup.standard([("conv.weight", weight), ("conv.bias", bias), ("bn.weight", scale)],
                                             weightDecay: 0.1)
        #expect(groups.map { $0.parameters.map(\.name) } == [["conv.weight"], ["conv.bias", "bn.weight"]])
        #expect(groups.map(\.weightDecay) == [0.1, 0])

        let sgd = SGD(groups: groups, learningRate: 0.5)
        for p in [weight, bias, scale] { setGradient(p, [Float](repeating: 0, count: p.value.count)) }
        sgd.step()
        // Zero gradients: only the decaying weight moves, by −η·λ·p = −0.05.
        #expect(weight.value.scalars == [0.95, 0.95])
        #expect(bias.value.scalars == [1] && scale.value.scalars == [1])

        sgd.setWeightDecay(0.2)
        #expect(sgd.groups.map(\.weightDecay) == [0.2, 0])
    }
}

@Suite struct OptimizerStateTests {
    // Saving after one step and restoring into a fresh optimizer must continue exactly as the original.
    func expectResumesExactly<O: Optimizer>(make: ([ParameterGroup]) -> O) throws {
        let original = parameter(startValues), copy = parameter(startValues)
        let a = make([ParameterGroup(parameters: [("layer.weight", original)], weightDecay: 0.01)])
        setGradient(original, firstGradient)
        a.step()
        copy.value = original.value
        let b = make([ParameterGroup(parameters: [("layer.weight", copy)], weightDecay: 0.3)])
        b.learningRate = 7
        try b.importState(a.exportState())
        #expect(b.learningRate == a.learningRate && b.groups[0].weightDecay == 0.01)
        setGradient(original, secondGradient)
        setGradient(copy, secondGradient)
        a.step()
        b.step()
        #expect(copy.value == original.value)
    }

    @Test func roundTripsContinueTraining() throws {
        try expectResumesExactly { SGD(groups: $0, learningRate: 0.1, momentum: 0.9, nesterov: true) }
        try expectResumesExactly { AdamW(groups: $0, learningRate: 0.01) }
        // Saved one fast step into a period of two: the restored counter makes the next step synchronise.
        try expectResumesExactly { Lookahead(SGD(groups: $0, learningRate: 0.1, momentum: 0.9), synchronizationPeriod: 2, alpha: 0.5) }
        try expectResumesExactly { Lookahead(AdamW(groups: $0, learningRate: 0.01), synchronizationPeriod: 3, alpha: 0.8) }
    }

    @Test func exportUsesPyTorchNames() {
        let p = parameter([1, 2])
        let adam = AdamW(groups: ParameterGroup.standard([("fc.weight", p)], weightDecay: 0.05))
        setGradient(p, [1, 1])
        adam.step()
        let state = adam.exportState()
        #expect(state.kind == "AdamW")
        #expect(Set(state.tensors.keys) == ["fc.weight.exp_avg", "fc.weight.exp_avg_sq", "fc.weight.step"])
        #expect(state.tensors["fc.weight.step"] == Tensor(shape: [], scalars: [1]))
        #expect(state.hyperParameters["param_groups.0.weight_decay"] == Double(Float(0.05)))
        #expect(state.hyperParameters["param_groups.1.weight_decay"] == 0)
        #expect(state.hyperParameters["lr"] == Double(Float(1e-3)))
    }

    @Test func restoreRejectsMismatchesByName() {
        let p = parameter([1, 2])
        let adam = AdamW(groups: [ParameterGroup(parameters: [("fc.weight", p)], weightDecay: 0)])
        setGradient(p, [1, 1])
        adam.step()
        let good = adam.exportState()

        var wrongShape = good
        wrongShape.tensors["fc.weight.exp_avg"] = Tensor(zeros: [3])
        #expect(throws: OptimizerError.stateShapeMismatch(name: "fc.weight.exp_avg", expected: [2], found: [3])) {
            try adam.importState(wrongShape)
        }
        var unknown = good
        unknown.tensors["head.weight.exp_avg"] = Tensor(zeros: [2])
        #expect(throws: OptimizerError.unknownStateTensor(name: "head.weight.exp_avg")) { try adam.importState(unknown) }
        var partial = good
        partial.tensors["fc.weight.exp_avg_sq"] = nil
        #expect(throws: OptimizerError.missingStateTensor(name: "fc.weight.exp_avg_sq")) { try adam.importState(partial) }
        var missingRate = good
        missingRate.hyperParameters["lr"] = nil
        #expect(throws: OptimizerError.missingHyperParameter(kind: "AdamW", name: "lr")) { try adam.importState(missingRate) }
        let sgd = SGD(groups: [ParameterGroup(parameters: [("fc.weight", p)], weightDecay: 0)], learningRate: 0.1)
        #expect(throws: OptimizerError.kindMismatch(expected: "SGD", found: "AdamW")) { try sgd.importState(good) }

        // A failed restore leaves the optimizer as it was.
        #expect(adam.parameterStates["fc.weight"]!.step == 1)
        #expect(adam.exportState() == good)
    }
}

@Suite struct GradientClippingTests {
    @Test func byValueClampsEachElement() {
        let a = parameter([0, 0, 0]), frozen = parameter([0])
        frozen.trainable = false
        setGradient(a, [-5, 0.5, 3])
        setGradient(frozen, [9])
        clipGradientsByValue([a, frozen], threshold: 1)
        #expect(a.gradient.scalars == [-1, 0.5, 1])
        #expect(frozen.gradient.scalars == [9])
    }

    @Test func byNormScalesGloballyAndReturnsTheNorm() {
        // Gradients [3, 4] and [12]: global norm √(9 + 16 + 144) = 13.
        let a = parameter([0, 0]), b = parameter([0])
        setGradient(a, [3, 4])
        setGradient(b, [12])
        let norm = clipGradientsByNorm([a, b], maxNorm: 6.5)
        #expect(norm == 13)
        let factor = Float(6.5 / (13 + 1e-6))
        expectClose(a.gradient.scalars + b.gradient.scalars, [3 * factor, 4 * factor, 12 * factor], rtol: 1e-6, atol: 0, "clipped")

        // Below the limit nothing changes; the norm is still reported.
        let c = parameter([0, 0, 0, 0, 0, 0, 0, 0, 0])
        setGradient(c, [Float](repeating: 1, count: 9))
        #expect(clipGradientsByNorm([c], maxNorm: 10) == 3)
        #expect(c.gradient.scalars == [Float](repeating: 1, count: 9))
    }

    @Test func nonFiniteNormLeavesGradientsAlone() {
        let a = parameter([0, 0])
        setGradient(a, [.infinity, 1])
        #expect(clipGradientsByNorm([a], maxNorm: 1) == .infinity)
        #expect(a.gradient.scalars == [.infinity, 1])
    }
}
