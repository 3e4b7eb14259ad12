import EpicycleBench
import EpicycleDistillation
import EpicycleRuntime
import EpicycleTraining
import Testing

/// `epicycle bench`'s distillation workload is `epicycle distill`'s objective, not a copy of it.
@Suite struct DistillationWorkloadTests {
    /// The terms as a recipe states them (README, "Performance": CE + KL(T = 4) + MSE hint on layer2).
    static let recipe = """
        model: {architecture: resnet20}
        knobs: {batch_size: 128, learning_rate: 0.1, weight_decay: 5e-4}
        pretrain: {data: {dataset: fashion-mnist}, epochs: 1}
        distill:
          losses:
            - {kind: labels}
            - {kind: logits, temperature: 4}
            - {kind: hint, student: layer2, teacher: layer2}
        """

    @Test func benchStepIsTheDistillationObjectiveOfTheRecipe() throws {
        let losses = try #require(try RecipeSource(text: Self.recipe, origin: "bench.yaml").decodeRecipe(sections: [DistillRecipe.self]).section(DistillRecipe.self)).losses
        #expect(BenchWorkload.distillationTerms == losses)

        // The objective `epicycle distill` builds for those terms, on the same models, seeds and batch.
        let student = try Model(ModelSpec(architecture: "resnet20", inputChannels: 3, numClasses: 10), seed: 0)
        let teacher = try Model(ModelSpec(architecture: "resnet56", inputChannels: 3, numClasses: 10), seed: 0)
        for (_, parameter) in teacher.state.parameters { parameter.trainable = false }
        let batch = syntheticBatch(128)
        let objective = try DistillationObjective(student: student, teacher: teacher, terms: losses,
                                                  imageShape: [32, 32, 3], seed: 0)
        let (expectedLoss, _) = try objective.step(batch, value: { $0.value(at: .init(epoch: 0, totalEpochs: 1, step: 0, totalSteps: 1)) },
                                                   labelLoss: { try CrossEntropyLoss()(logits: $0, labels: batch.labels) })

        let workload = try DistillationWorkload()
        #expect(workload.batch == batch)
        let loss = try workload.step()
        #expect(loss.bitPattern == expectedLoss.bitPattern, "bench loss \(loss), objective \(expectedLoss)")
        #expect(objective.lastValues.allSatisfy { $0.isFinite && $0 > 0 }, "every term contributes: \(objective.lastValues)")
        #expect(workload.objective.lastValues.map(\.bitPattern) == objective.lastValues.map(\.bitPattern))
        let gradients = workload.objective.student.state.parameters, expected = student.state.parameters
        #expect(gradients.map(\.name) == expected.map(\.name))
        for ((name, parameter), (_, reference)) in zip(gradients, expected) {
            #expect(parameter.gradient.scalars.map(\.bitPattern) == reference.gradient.scalars.map(\.bitPattern), "\(name)")
        }
        let adapters = workload.objective.adapters.parameters, expectedAdapters = objective.adapters.parameters
        #expect(!adapters.isEmpty && adapters.map(\.name) == expectedAdapters.map(\.name))
        for ((name, parameter), (_, reference)) in zip(adapters, expectedAdapters) {
            #expect(parameter.gradient.scalars.map(\.bitPattern) == reference.gradient.scalars.map(\.bitPattern), "\(name)")
        }
    }
}
