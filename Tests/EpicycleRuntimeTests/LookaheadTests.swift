import EpicycleRuntime
import Testing
import TestSupport

@Suite struct LookaheadTests {
    /// k = 2, α = 0.5 around plain SGD (η = 0.1) on L = p²/2, so g = p and a fast step is p ← 0.9·p.
    /// From p = 1 (φ = 1): step 1 p = 0.9; step 2 p = 0.81, then φ = 1 + 0.5·(0.81 − 1) = 0.905 = p;
    /// step 3 p = 0.8145; step 4 p = 0.73305, then φ = 0.905 + 0.5·(0.73305 − 0.905) = 0.819025 = p;
    /// step 5 p = 0.7371225.
    @Test func followsTheHandComputedSequence() {
        let p = parameter([1, -2])
        let lookahead = Lookahead(SGD(groups: [ParameterGroup(parameters: [("w", p)], weightDecay: 0)], learningRate: 0.1),
                                  synchronizationPeriod: 2, alpha: 0.5)
        let expected: [Float] = [0.9, 0.905, 0.8145, 0.819025, 0.7371225]
        for (index, value) in expected.enumerated() {
            p.gradient = p.value
            lookahead.step()
            expectClose(p.value.scalars, [value, -2 * value], rtol: 1e-6, atol: 1e-7, "step \(index + 1)")
        }
        #expect(lookahead.parameterStates["w"]!.fastSteps == 1)
        expectClose(lookahead.parameterStates["w"]!.slowWeights.scalars, [0.819025, -1.63805], rtol: 1e-6, atol: 1e-7, "slow")
    }

    /// Around AdamW with k = 3: the same as AdamW's own steps on a copy, interpolated by hand after
    /// steps 3 and 6, bit for bit; Adam's moments carry on across the synchronisations.
    @Test func wrapsAdamWAndKeepsItsMoments() {
        let p = parameter(startValues), copy = parameter(startValues)
        let lookahead = Lookahead(AdamW(groups: [ParameterGroup(parameters: [("w", p)], weightDecay: 0.01)], learningRate: 0.05),
                                  synchronizationPeriod: 3, alpha: 0.4)
        let plain = AdamW(groups: [ParameterGroup(parameters: [("w", copy)], weightDecay: 0.01)], learningRate: 0.05)
        var slow = copy.value.scalars
        for step in 1...7 {
            let gradient = step % 2 == 0 ? firstGradient : secondGradient
            setGradient(p, gradient)
            setGradient(copy, gradient)
            lookahead.step()
            plain.step()
            if step % 3 == 0 {
                for i in slow.indices {
                    slow[i] += 0.4 * (copy.value.scalars[i] - slow[i])
                    copy.value.scalars[i] = slow[i]
                }
            }
            #expect(p.value.scalars.map(\.bitPattern) == copy.value.scalars.map(\.bitPattern), "step \(step)")
        }
        #expect(lookahead.parameterStates["w"]!.inner.step == 7)
    }

    @Test func oneStepWithFullAlphaIsTheInnerOptimizer() {
        let p = parameter(startValues), copy = parameter(startValues)
        let lookahead = Lookahead(SGD(groups: [ParameterGroup(parameters: [("w", p)], weightDecay: 0.01)], learningRate: 0.1,
                                      momentum: 0.9, nesterov: true), synchronizationPeriod: 1, alpha: 1)
        let plain = SGD(groups: [ParameterGroup(parameters: [("w", copy)], weightDecay: 0.01)], learningRate: 0.1,
                        momentum: 0.9, nesterov: true)
        for gradient in [firstGradient, secondGradient, firstGradient] {
            setGradient(p, gradient)
            setGradient(copy, gradient)
            lookahead.step()
            plain.step()
        }
        #expect(p.value == copy.value)
    }

    /// Schedules set the inner optimizer's hyper-parameters through the wrapper's declared table.
    @Test func scheduledHyperParametersReachTheInnerOptimizer() {
        let p = parameter([1, 2])
        let sgd = Lookahead(SGD(groups: ParameterGroup.standard([("fc.weight", p)], weightDecay: 0), learningRate: 0.1),
                            synchronizationPeriod: 5, alpha: 0.5)
        #expect(sgd.scheduledHyperParameters == sgd.inner.scheduledHyperParameters)
        sgd.set(.momentum, to: 0.7)
        sgd.set(.learningRate, to: 0.02)
        sgd.set(.weightDecay, to: 0.3)
        #expect(sgd.inner.momentum == 0.7 && sgd.inner.learningRate == 0.02 && sgd.inner.groups[0].weightDecay == 0.3)
        let adamw = Lookahead(AdamW(groups: [ParameterGroup(parameters: [("w", p)], weightDecay: 0)]), synchronizationPeriod: 5, alpha: 0.5)
        #expect(!adamw.scheduledHyperParameters.contains(.momentum))
    }

    @Test func exportsItsStateBesideTheInnerOptimizers() {
        let p = parameter([1, 2])
        let lookahead = Lookahead(SGD(groups: [ParameterGroup(parameters: [("fc.weight", p)], weightDecay: 0)],
                                      learningRate: 0.1, momentum: 0.9), synchronizationPeriod: 5, alpha: 0.5)
        setGradient(p, [1, 1])
        lookahead.step()
        let state = lookahead.exportState()
        #expect(state.kind == "Lookahead(SGD)")
        #expect(Set(state.tensors.keys) == ["fc.weight.momentum_buffer", "fc.weight.slow_weights", "fc.weight.lookahead_step"])
        #expect(state.tensors["fc.weight.slow_weights"] == Tensor(shape: [2], scalars: [1, 2]))
        #expect(state.tensors["fc.weight.lookahead_step"] == Tensor(shape: [], scalars: [1]))
        #expect(state.hyperParameters["lookahead_k"] == 5 && state.hyperParameters["lookahead_alpha"] == 0.5)
        #expect(state.hyperParameters["momentum"] == Double(Float(0.9)))
        #expect(lookahead.inner.parameterStates.isEmpty, "the inner optimizer's states live in the wrapper")
    }

    @Test func restoreRejectsMismatchesByName() {
        let p = parameter([1, 2])
        func make() -> Lookahead<SGD> {
            Lookahead(SGD(groups: [ParameterGroup(parameters: [("fc.weight", p)], weightDecay: 0)], learningRate: 0.1, momentum: 0.9),
                      synchronizationPeriod: 3, alpha: 0.5)
        }
        let lookahead = make()
        setGradient(p, [1, 1])
        lookahead.step()
        let good = lookahead.exportState()

        let plain = SGD(groups: [ParameterGroup(parameters: [("fc.weight", p)], weightDecay: 0)], learningRate: 0.1)
        #expect(throws: OptimizerError.kindMismatch(expected: "SGD", found: "Lookahead(SGD)")) { try plain.importState(good) }
        #expect(throws: OptimizerError.kindMismatch(expected: "Lookahead(SGD)", found: "SGD")) {
            try make().importState(plain.exportState())
        }
        var badStep = good
        badStep.tensors["fc.weight.lookahead_step"] = Tensor(shape: [], scalars: [3])
        #expect(throws: OptimizerError.invalidStep(name: "fc.weight.lookahead_step", value: 3)) { try lookahead.importState(badStep) }
        var noSlow = good
        noSlow.tensors["fc.weight.slow_weights"] = nil
        #expect(throws: OptimizerError.missingStateTensor(name: "fc.weight.slow_weights")) { try lookahead.importState(noSlow) }
        var badPeriod = good
        badPeriod.hyperParameters["lookahead_k"] = 0
        #expect(throws: OptimizerError.invalidHyperParameter(kind: "Lookahead(SGD)", name: "lookahead_k", value: 0,
                                                             expected: "a whole number from 1 to 1000000")) {
            try lookahead.importState(badPeriod)
        }
        var wrongShape = good
        wrongShape.tensors["fc.weight.slow_weights"] = Tensor(zeros: [3])
        #expect(throws: OptimizerError.stateShapeMismatch(name: "fc.weight.slow_weights", expected: [2], found: [3])) {
            try lookahead.importState(wrongShape)
        }
        // A failed restore leaves the optimizer as it was.
        #expect(lookahead.exportState() == good)
    }
}
