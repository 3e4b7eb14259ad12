import EpicycleData
import EpicycleRuntime
import EpicycleSchedules
import EpicycleTraining
import Testing
import TestSupport

/// `KnobValues` built from schedules and bound to the optimizer, and `LabelObjective` against the
/// losses it stands for.
@Suite struct KnobValuesTests {
    static let recipe = """
        model: {architecture: resnet8}
        loss: {kind: cyclical_focal}
        knobs:
          learning_rate: {cosine: {peak: 0.1, final: 0.01}}
          momentum: {cyclical: {easy: 0.8, hard: 0.95}}
          temperature: {cyclical: {easy: 0.5, hard: 2, factor: 2}}
          clip_norm: {cyclical: {easy: 1, hard: 4}}
          batch_size: {cyclical: {easy: 256, hard: 100, factor: 3}}
        pretrain: {data: {first: 10}, epochs: 5}
        """

    static func recipe(_ text: String = recipe, overrides: [String] = []) throws -> Recipe {
        try RecipeSource(text: text, origin: "knobs.yaml", overrides: overrides).decodeRecipe()
    }

    @Test func valuesAreTheSchedulesAtThePosition() throws {
        let schedules = try Self.recipe().knobs(for: .pretrain)
        let cycle = JointCycle(pretrainingEpochs: 5, pretrainingStepsPerEpoch: 3, finetuningEpochs: 0)
        for epoch in 0..<5 {
            for step in 0..<3 {
                let position = cycle.position(epoch: epoch, stepInEpoch: step)
                let values = schedules.values(at: position, in: cycle)
                func value(_ knob: Knob) -> Double { cycle.value(of: schedules.schedules[knob]!, at: position) }
                #expect(values.learningRate == value(.learningRate))
                #expect(values.momentum == value(.momentum))
                #expect(values.temperature == value(.temperature))
                #expect(values.clipNorm == value(.clipNorm))
                #expect(values.focalMix == value(.focalMix), "cyclical_focal gets its default ξ schedule")
                #expect(values.weightDecay == 5e-4 && values.augmentationStrength == 0, "defaults")
                #expect(values.batchSize == Int(value(.batchSize).rounded(.toNearestOrAwayFromZero)))
            }
        }
        // δ = 0.75 at epoch 3 of 5 with f = 3 asks for 197.5, which trains at 198 (`wholeBatchSize`).
        #expect(schedules.values(at: cycle.position(epoch: 3), in: cycle).batchSize == 198)
    }

    @Test func optionalKnobsAreAbsentUnlessSet() throws {
        let plain = try Self.recipe("model: {architecture: resnet8}\npretrain: {data: {first: 10}, epochs: 2}\n")
        let cycle = JointCycle(pretrainingEpochs: 2, finetuningEpochs: 0)
        let values = plain.knobs(for: .pretrain).values(at: cycle.position(epoch: 1), in: cycle)
        #expect(values == KnobValues(), "a recipe without knobs trains at the defaults")
        #expect(values.clipValue == nil && values.clipNorm == nil && values.focalMix == nil)
        #expect(values.momentum == 0.9)
        #expect(Set(values.named.keys) == ["learning_rate", "weight_decay", "momentum", "batch_size", "temperature",
                                           "augmentation_strength"])

        let adamw = try Self.recipe("model: {architecture: resnet8}\noptimizer: {kind: adamw}\npretrain: {data: {first: 10}, epochs: 2}\n")
        let adamwValues = adamw.knobs(for: .pretrain).values(at: cycle.position(epoch: 0), in: cycle)
        #expect(adamwValues.momentum == nil, "AdamW has no momentum knob")
        #expect(adamwValues.named["momentum"] == nil)
    }

    @Test func subscriptCoversEveryKnob() {
        for knob in Knob.allCases {
            var values = KnobValues()
            #expect(values[knob] == knob.defaultValue)
            values[knob] = 0.75
            #expect(values[knob] == (knob == .batchSize ? 1 : 0.75), "\(knob.rawValue) round-trips (a batch size made whole)")
            values[knob] = nil
            let optional = [Knob.momentum, .clipValue, .clipNorm, .focalMix, .sampleLossThreshold, .keepFraction, .sampleLossClip]
                .contains(knob)
            #expect(values[knob] == (optional ? nil : (knob == .batchSize ? 1 : 0.75)),
                    "\(knob.rawValue): nil turns an optional knob off and leaves a required one")
        }
    }

    static func parameters() -> [(name: String, parameter: Parameter)] {
        [("conv.weight", Parameter(Tensor(shape: [2], scalars: [3, -4]), decays: true)),
         ("bn.bias", Parameter(Tensor(shape: [1], scalars: [1]), decays: false))]
    }

    @Test func bindingReachesSGDIncludingMomentum() {
        let sgd = SGD(groups: ParameterGroup.standard(Self.parameters(), weightDecay: 5e-4), learningRate: 0.1, momentum: 0.9)
        #expect(sgd.scheduledHyperParameters.contains(.momentum))
        var values = KnobValues()
        values.learningRate = 0.025
        values.weightDecay = 1e-5
        values.momentum = 0.8
        values.bind(to: sgd)
        #expect(sgd.learningRate == 0.025 && sgd.momentum == 0.8)
        #expect(sgd.groups.map(\.weightDecay) == [1e-5, 0], "the no-decay group keeps 0")
    }

    @Test func bindingReachesAdamWWithoutMomentum() {
        let adamw = AdamW(groups: ParameterGroup.standard(Self.parameters(), weightDecay: 5e-4), beta1: 0.85)
        #expect(!adamw.scheduledHyperParameters.contains(.momentum))
        var values = KnobValues()
        values.learningRate = 0.003
        values.weightDecay = 0.02
        values.momentum = nil
        values.bind(to: adamw)
        #expect(adamw.learningRate == 0.003 && adamw.beta1 == 0.85)
        #expect(adamw.groups.map(\.weightDecay) == [0.02, 0])
    }

    @Test func clippingFollowsTheClippingKnobs() {
        func gradients(clipValue: Double?, clipNorm: Double?) -> [Float] {
            let parameter = Parameter(Tensor(shape: [3], scalars: [0, 0, 0]), decays: true)
            parameter.gradient = Tensor(shape: [3], scalars: [3, -4, 0.5])
            var values = KnobValues()
            values.clipValue = clipValue
            values.clipNorm = clipNorm
            values.clipGradients([parameter])
            return parameter.gradient.scalars
        }
        #expect(gradients(clipValue: nil, clipNorm: nil) == [3, -4, 0.5])
        #expect(gradients(clipValue: 1, clipNorm: nil) == [1, -1, 0.5])
        let norm = Float((9 + 16 + 0.25).squareRoot()), factor = 1 / (norm + 1e-6)
        #expect(gradients(clipValue: nil, clipNorm: 1) == [3 * factor, -4 * factor, 0.5 * factor])
    }
}

@Suite struct LabelObjectiveTests {
    static func batch(mixed: Bool = false) throws -> Batch {
        let images = ImageDataset.synthetic(count: 6, height: 8, width: 8, channels: 1, classCount: 3)
        let policy = mixed ? try AugmentationPolicy(parsing: "mixup") : .none
        return DataLoader(dataset: images, policy: policy, seed: 1, shuffle: false).batch(0, epoch: 0, batchSize: 6, strength: 1)
    }

    static func model() throws -> Model {
        try Model(ModelSpec(architecture: "resnet8", inputChannels: 1, numClasses: 3), seed: 2)
    }

    static func loss(_ kind: LossRecipe.Kind, smoothing: Float = 0.1) -> LossRecipe {
        var loss = LossRecipe()
        loss.kind = kind
        loss.labelSmoothing = smoothing
        return loss
    }

    /// The objective's step is the model's forward, the recipe's loss and the backward, to the bit.
    @Test func stepIsForwardLossAndBackward() throws {
        let batch = try Self.batch()
        var knobs = KnobValues()
        knobs.temperature = 1.5
        let model = try Self.model(), reference = try Self.model()
        let objective = LabelObjective(model: model, loss: Self.loss(.crossEntropy))
        let (loss, logits) = try objective.step(batch, knobs: knobs,
                                                at: CyclePosition(Position(epoch: 0, totalEpochs: 1, step: 0, totalSteps: 1),
                                                                  in: JointCycle(pretrainingEpochs: 1, finetuningEpochs: 0)))

        let output = try reference.forward(batch.images, mode: .training)
        let expected = try CrossEntropyLoss(temperature: 1.5, labelSmoothing: 0.1)(logits: output.logits, labels: batch.labels)
        reference.backward(expected.gradient)
        #expect(loss.bitPattern == expected.value.bitPattern)
        #expect(logits.scalars.map(\.bitPattern) == output.logits.scalars.map(\.bitPattern))
        for (ours, theirs) in zip(model.state.parameters, reference.state.parameters) {
            #expect(ours.parameter.gradient.scalars.map(\.bitPattern) == theirs.parameter.gradient.scalars.map(\.bitPattern),
                    "\(ours.name)")
        }
    }

    /// Each loss kind gets the knob values it reads: temperature, and ξ for the cyclical focal loss.
    @Test func labelLossReadsTheKnobs() throws {
        let batch = try Self.batch()
        let logits = randomTensor([6, 3], seed: 4, low: -3, high: 3)
        var knobs = KnobValues()
        knobs.temperature = 0.7
        knobs.focalMix = 0.25
        let model = try Self.model()
        let cases: [(LossRecipe.Kind, any ClassificationLoss)] = [
            (.crossEntropy, CrossEntropyLoss(temperature: 0.7, labelSmoothing: 0.1)),
            (.focal, FocalLoss(gamma: 2, temperature: 0.7, labelSmoothing: 0.1)),
            (.cyclicalFocal, CyclicalFocalLoss(gammaHighConfidence: 3, gammaFocal: 2, xi: 0.25, temperature: 0.7, labelSmoothing: 0.1)),
        ]
        for (kind, reference) in cases {
            let result = try LabelObjective(model: model, loss: Self.loss(kind)).labelLoss(logits: logits, batch: batch, knobs: knobs)
            let expected = try reference(logits: logits, labels: batch.labels)
            #expect(result.value.bitPattern == expected.value.bitPattern, "\(kind)")
            #expect(result.gradient.scalars.map(\.bitPattern) == expected.gradient.scalars.map(\.bitPattern), "\(kind)")
        }
        knobs.focalMix = nil
        #expect(throws: RecipeError(path: "knobs.focal_mix", problem: "is required with loss.kind: cyclical_focal")) {
            try LabelObjective(model: model, loss: Self.loss(.cyclicalFocal)).labelLoss(logits: logits, batch: batch, knobs: knobs)
        }
    }

    /// The data selection knobs weigh each sample's loss (`SampleSelection`), for plain and mixed
    /// batches, and the objective counts the samples they drop.
    @Test func selectionKnobsWeighTheSamplesAndCountTheDropped() throws {
        let logits = randomTensor([6, 3], seed: 6, low: -3, high: 3)
        var knobs = KnobValues()
        knobs.temperature = 0.8
        knobs.keepFraction = 0.5
        knobs.sampleLossClip = 1.5
        let objective = LabelObjective(model: try Self.model(), loss: Self.loss(.focal))
        let reference = FocalLoss(gamma: 2, temperature: 0.8, labelSmoothing: 0.1)
        var counted = 0
        for mixed in [false, true] {
            let batch = try Self.batch(mixed: mixed)
            let losses = try batch.partnerLabels.map {
                try reference.perSample(logits: logits, labels: batch.labels, partnerLabels: $0, mixWeight: batch.mixWeight)
            } ?? reference.perSample(logits: logits, labels: batch.labels)
            let (expected, dropped) = SampleSelection(keepFraction: 0.5, lossClip: 1.5).apply(to: losses)
            let result = try objective.labelLoss(logits: logits, batch: batch, knobs: knobs)
            #expect(result == expected, "mixed: \(mixed)")
            #expect(dropped >= 3, "⌈0.5·6⌉ = 3 kept at most")
            counted += dropped
            #expect(objective.droppedSamples == counted, "a running count")
        }
        _ = try objective.labelLoss(logits: logits, batch: try Self.batch(), knobs: KnobValues())
        #expect(objective.droppedSamples == counted, "no selection drops nothing")
    }

    /// A mixed batch (mixup) scores both label sets, weighted by λ.
    @Test func mixedBatchesUseBothLabels() throws {
        let batch = try Self.batch(mixed: true)
        let partners = try #require(batch.partnerLabels)
        let logits = randomTensor([6, 3], seed: 5, low: -3, high: 3)
        let result = try LabelObjective(model: try Self.model(), loss: Self.loss(.crossEntropy, smoothing: 0))
            .labelLoss(logits: logits, batch: batch, knobs: KnobValues())
        let first = try CrossEntropyLoss()(logits: logits, labels: batch.labels)
        let second = try CrossEntropyLoss()(logits: logits, labels: partners)
        let expected = batch.mixWeight * first.value + (1 - batch.mixWeight) * second.value
        #expect(abs(result.value - expected) <= 1e-6 * max(1, abs(expected)))
    }

    /// The label loss's gradient with respect to the logits, against central differences.
    @Test func labelLossGradientMatchesFiniteDifferences() throws {
        let batch = try Self.batch()
        var logits = randomTensor([6, 3], seed: 6, low: -2, high: 2)
        var knobs = KnobValues()
        knobs.temperature = 1.3
        knobs.focalMix = 0.4
        let objective = LabelObjective(model: try Self.model(), loss: Self.loss(.cyclicalFocal))
        let analytic = try objective.labelLoss(logits: logits, batch: batch, knobs: knobs).gradient.scalars
        let numeric = try centralDifferences(indices: Array(0..<18), epsilon: 1e-2,
                                             read: { logits.scalars[$0] }, write: { logits.scalars[$0] = $1 }) {
            Double(try objective.labelLoss(logits: logits, batch: batch, knobs: knobs).value)
        }
        for (index, (a, n)) in zip(analytic, numeric).enumerated() {
            #expect(abs(Double(a) - n) <= 1e-3 + 1e-2 * abs(n), "logit \(index): analytic \(a), numeric \(n)")
        }
    }
}
