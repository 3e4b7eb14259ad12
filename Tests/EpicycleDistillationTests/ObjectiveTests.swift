import EpicycleCheckpoint
import EpicycleData
import EpicycleDistillation
import EpicycleRuntime
import EpicycleSchedules
import EpicycleTraining
import Foundation
import Testing
import TestSupport

/// Two small ResNet-8s on 12×12 one-channel images; the teacher's batch-norm statistics are perturbed
/// so that a teacher wrongly run in training mode would give other features and change its buffers.
func smallPair() throws -> (student: Model, teacher: Model) {
    let student = try Model(ModelSpec(architecture: "resnet8", inputChannels: 1, numClasses: 5), seed: 2)
    let teacher = try Model(ModelSpec(architecture: "resnet8", inputChannels: 1, numClasses: 5), seed: 1)
    var generator = RandomGenerator(seed: 9)
    for (name, buffer) in teacher.state.buffers {
        guard case let .float32(tensor) = buffer.value else { continue }
        let shift: Float = name.hasSuffix("running_var") ? 1 : 0
        buffer.value = .float32(Tensor(shape: tensor.shape, scalars: tensor.scalars.map { _ in shift + 0.5 * generator.nextUniform() }))
    }
    for (_, parameter) in teacher.state.parameters { parameter.trainable = false }
    return (student, teacher)
}

let allTerms: [DistillTermRecipe] = [
    DistillTermRecipe(kind: .labels, weight: .constant(0.5)),
    DistillTermRecipe(kind: .logits, weight: .constant(2), temperature: .constant(3)),
    DistillTermRecipe(kind: .hint, weight: .constant(1.5), student: "layer2", teacher: "layer2"),
    DistillTermRecipe(kind: .attention, weight: .constant(100), student: "layer3", teacher: "layer3"),
    DistillTermRecipe(kind: .spatialSoftmax, weight: .constant(0.7), temperature: .constant(2), student: "layer3", teacher: "layer3"),
    // A student map twice the teacher's size: average-pooled before the hint.
    DistillTermRecipe(kind: .hint, weight: .constant(1), student: "layer1", teacher: "layer2"),
]

/// Four random 12×12 images with labels 0, 3, 1, 4, as the loader delivers them (normalised).
func batch(seed: UInt64) -> Batch {
    var generator = RandomGenerator(seed: seed)
    let pixels = (0..<4 * 144).map { _ in UInt8(generator.next() % 256) }
    let dataset = ImageDataset(name: "random", height: 12, width: 12, channels: 1, classNames: ["0", "1", "2", "3", "4"],
                               pixels: pixels, labels: [0, 3, 1, 4])
    return Array(DataLoader(dataset: dataset, seed: 0, shuffle: false).epoch(0, batchSize: 4))[0]
}

func step(_ objective: DistillationObjective, _ batch: Batch) throws -> Float {
    try objective.step(batch, value: { $0.value(at: Position(epoch: 0, totalEpochs: 1, step: 0, totalSteps: 1)) },
                       labelLoss: { try CrossEntropyLoss()(logits: $0, labels: batch.labels) }).loss
}

@Suite struct ObjectiveTests {
    @Test func teacherStaysFixedWhileStudentAndRegressorsLearn() throws {
        let (student, teacher) = try smallPair()
        let objective = try DistillationObjective(student: student, teacher: teacher, terms: allTerms, imageShape: [12, 12, 1], seed: 0)
        #expect(objective.adapters.parameters.map(\.name) == [
            "hint.0.conv.weight", "hint.0.bn.weight", "hint.0.bn.bias", "hint.1.conv.weight", "hint.1.bn.weight", "hint.1.bn.bias",
        ])
        let teacherBefore = StateRecord(teacher.state)
        let regressorsBefore = objective.adapters.parameters.map(\.parameter.value)
        let optimizer = SGD(groups: [ParameterGroup(parameters: student.state.parameters + objective.adapters.parameters, weightDecay: 0)],
                            learningRate: 0.05, momentum: 0.9)
        for index in 0..<3 {
            optimizer.zeroGradients()
            let loss = try step(objective, batch(seed: UInt64(index)))
            #expect(loss.isFinite && loss > 0)
            // Every regressor parameter receives a gradient from its hint.
            for (name, parameter) in objective.adapters.parameters {
                #expect(parameter.gradient.scalars.contains { $0 != 0 }, "\(name) got no gradient")
            }
            optimizer.step()
        }
        let teacherAfter = StateRecord(teacher.state)
        for (before, after) in zip(teacherBefore.parameters, teacherAfter.parameters) {
            #expect(before.tensor == after.tensor, "teacher parameter \(before.name) changed")
        }
        for (before, after) in zip(teacherBefore.buffers, teacherAfter.buffers) {
            #expect(before.value == after.value, "teacher buffer \(before.name) changed: it ran in training mode")
        }
        for ((name, parameter), before) in zip(objective.adapters.parameters, regressorsBefore) {
            #expect(parameter.value != before, "\(name) did not move")
        }
    }

    /// The weighted sum's gradient at the regressors and the classifier (both smooth: no ReLU lies
    /// between them and the loss) against central differences of the objective, every term active.
    ///
    /// Tolerance: rtol 1e-2 plus 2e-3 of the gradient's scale, as in `expectMatchesFiniteDifferences`,
    /// but rounding needs care: the total is about 5, so one ulp of it (5e-7) over a 2ε = 2e-2 step is
    /// 2.4e-5, as large as the hints' gradients allow. A regressor only reaches its own hint term, so
    /// its differences are taken of Σ w·L over the hint terms (values near 1) with ε = 5e-2 (the path
    /// conv → BN → MSE is smooth, so the truncation error ε²/6·f‴ stays below 1e-3 of the gradient),
    /// which brings the rounding to 1e-6; the classifier's gradient (scale 0.1) is checked on the total.
    @Test func weightedSumGradientMatchesFiniteDifferences() throws {
        let (student, teacher) = try smallPair()
        let objective = try DistillationObjective(student: student, teacher: teacher, terms: allTerms, imageShape: [12, 12, 1], seed: 0)
        let input = batch(seed: 11)
        let hintTerms = allTerms.indices.filter { allTerms[$0].kind == .hint }
        let start = Position(epoch: 0, totalEpochs: 1, step: 0, totalSteps: 1)
        let hintSum = { hintTerms.reduce(0.0) { $0 + allTerms[$1].weight.value(at: start) * Double(objective.lastValues[$1]) } }
        let checked = objective.adapters.parameters.map { ($0, $1, Float(5e-2), true) }
            + student.state.parameters.filter { $0.name == "fc.weight" }.map { ($0, $1, Float(1e-2), false) }
        for (name, parameter, epsilon, hintsOnly) in checked {
            for (_, any) in student.state.parameters + objective.adapters.parameters { any.zeroGradient() }
            _ = try step(objective, input)
            let analytic = parameter.gradient
            let original = parameter.value
            let indices = sampleIndices(count: original.count, limit: 12, seed: 3)
            var probe = original
            let numeric = try centralDifferences(
                indices: indices, epsilon: epsilon, read: { probe.scalars[$0] }, write: { probe.scalars[$0] = $1 },
                loss: {
                    parameter.value = probe
                    defer { parameter.value = original }
                    let total = Double(try step(objective, input))
                    return hintsOnly ? hintSum() : total
                })
            let scale = analytic.scalars.reduce(Float(0)) { max($0, abs($1)) }
            #expect(scale > 0, "\(name) has no gradient")
            expectClose(indices.map { analytic.scalars[$0] }, numeric.map(Float.init), rtol: 1e-2, atol: 2e-3 * scale, name)
        }
    }

    @Test func unknownFeatureNamesListTheValidOnes() throws {
        let (student, teacher) = try smallPair()
        let terms = [DistillTermRecipe(kind: .attention, student: "layer4", teacher: "layer3")]
        #expect(throws: RecipeError(path: "distill.losses[0].student", problem: "'layer4' is not a feature of the student (resnet8); valid names: stem, layer1.0, layer1, layer2.0, layer2, layer3.0, layer3, pool")) {
            try DistillationObjective(student: student, teacher: teacher, terms: terms, imageShape: [12, 12, 1], seed: 0)
        }
    }

    @Test func sizesThatDoNotDivideAreAnError() throws {
        // 10×10 images: layer1 is 10×10, layer3 3×3.
        let (student, teacher) = try smallPair()
        let terms = [DistillTermRecipe(kind: .hint, student: "layer1", teacher: "layer3")]
        #expect(throws: RecipeError.self) {
            try DistillationObjective(student: student, teacher: teacher, terms: terms, imageShape: [10, 10, 1], seed: 0)
        }
    }

    @Test func spatialSoftmaxNeedsEqualChannels() throws {
        let (student, teacher) = try smallPair()
        let terms = [DistillTermRecipe(kind: .spatialSoftmax, student: "layer2", teacher: "layer3")]
        #expect(throws: RecipeError.self) {
            try DistillationObjective(student: student, teacher: teacher, terms: terms, imageShape: [12, 12, 1], seed: 0)
        }
    }
}
