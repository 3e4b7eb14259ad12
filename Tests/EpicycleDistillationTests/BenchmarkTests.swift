import EpicycleData
import EpicycleDistillation
import EpicycleRuntime
import EpicycleSchedules
import EpicycleTraining
import Foundation
import Testing

@Suite struct DistillationBenchmark {
    /// One distillation step as `epicycle distill` runs it: ResNet-56 teacher (inference), ResNet-20
    /// student, batch 128 of 32×32×3 images, CE + KD + one hint (layer2), SGD update of student and
    /// regressor. Prints images per second over 10 timed steps after 2 warm-up steps; compare with
    /// `scripts/bench_distillation.py` in the same sitting. Runs only when EPICYCLE_BENCHMARK is set
    /// (with `swift test -c release --filter DistillationBenchmark`).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["EPICYCLE_BENCHMARK"] != nil, "set EPICYCLE_BENCHMARK"))
    func distillationStep() throws {
        let teacher = try Model(ModelSpec(architecture: "resnet56", inputChannels: 3, numClasses: 10), seed: 1)
        for (_, parameter) in teacher.state.parameters { parameter.trainable = false }
        let student = try Model(ModelSpec(architecture: "resnet20", inputChannels: 3, numClasses: 10), seed: 2)
        let terms = [
            DistillTermRecipe(kind: .labels, weight: .constant(1)),
            DistillTermRecipe(kind: .logits, weight: .constant(1), temperature: .constant(4)),
            DistillTermRecipe(kind: .hint, weight: .constant(1), student: "layer2", teacher: "layer2"),
        ]
        let objective = try DistillationObjective(student: student, teacher: teacher, terms: terms, imageShape: [32, 32, 3], seed: 0)
        let optimizer = SGD(groups: ParameterGroup.standard(student.state.parameters + objective.adapters.parameters, weightDecay: 5e-4),
                            learningRate: 0.05, momentum: 0.9)
        var generator = RandomGenerator(seed: 4)
        let count = 128
        let dataset = ImageDataset(name: "random", height: 32, width: 32, channels: 3, classNames: (0..<10).map(String.init),
                                   pixels: (0..<count * 32 * 32 * 3).map { _ in UInt8(generator.next() % 256) },
                                   labels: (0..<count).map { Int32($0 % 10) })
        let batch = Array(DataLoader(dataset: dataset, seed: 0, shuffle: false).epoch(0, batchSize: count))[0]
        let start = Position(epoch: 0, totalEpochs: 1, step: 0, totalSteps: 1)
        func step() throws {
            optimizer.zeroGradients()
            let (loss, _) = try objective.step(batch, value: { $0.value(at: start) },
                                               labelLoss: { try CrossEntropyLoss()(logits: $0, labels: batch.labels) })
            #expect(loss.isFinite)
            optimizer.step()
        }
        for _ in 0..<2 { try step() }
        let timed = 10
        let began = Date()
        for _ in 0..<timed { try step() }
        let seconds = Date().timeIntervalSince(began)
        print(String(format: "distillation step (ResNet-56 → ResNet-20, batch 128, CE + KD + hint): %.0f img/s, teacher %.0f%% of the step (%@)",
                     Double(timed * count) / seconds, 100 * objective.teacherSeconds / objective.stepSeconds, blasDescription))
    }
}
