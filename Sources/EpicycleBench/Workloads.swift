import EpicycleData
import EpicycleDistillation
import EpicycleRuntime
import EpicycleSchedules
import EpicycleTraining

/// What `epicycle bench` times, each on a synthetic batch of CIFAR-shaped images (32×32×3, 10 classes),
/// as `scripts/bench_peers.py` does on the peers' side.
public enum BenchWorkload: String, CaseIterable, Codable, Sendable {
    /// ResNet-20: forward, cross-entropy, backward, SGD; batch 128.
    case training
    /// `DistillationObjective`, as `epicycle distill` runs it: a ResNet-56 teacher in inference mode, a
    /// ResNet-20 student, `distillationTerms`, SGD over the student and the hint regressor; batch 128.
    case distillation
    /// ResNet-20 in inference mode; batch 256.
    case inference

    public var batch: Int { self == .inference ? 256 : 128 }

    /// Multiply-adds ×2 per image: forward costs F, backward 2F (input and weight gradients).
    public var flopsPerImage: Double {
        let student = resNetForwardFLOPs(depth: 20)
        switch self {
        case .training: return 3 * student
        case .inference: return student
        case .distillation:
            let hint = 2.0 * 16 * 16 * 32 * 32
            return resNetForwardFLOPs(depth: 56) + 3 * student + 3 * hint
        }
    }

    /// The distillation workload's loss, as a recipe's `distill.losses` would list it:
    /// `[{kind: labels}, {kind: logits, temperature: 4}, {kind: hint, student: layer2, teacher: layer2}]`,
    /// i.e. CE + KL(T = 4) + MSE after a 1×1 conv + batch-norm regressor on layer2, each of weight 1.
    public static let distillationTerms = [
        DistillTermRecipe(kind: .labels),
        DistillTermRecipe(kind: .logits, temperature: .constant(4)),
        DistillTermRecipe(kind: .hint, student: "layer2", teacher: "layer2"),
    ]
}

/// Multiply-adds ×2 of a CIFAR ResNet (width 1, option A shortcuts) on one 32×32×3 image: the 3×3
/// convolutions and the classifier (batch norm, ReLU and pooling are a few per cent more).
public func resNetForwardFLOPs(depth: Int) -> Double {
    let blocks = (depth - 2) / 6
    func conv(_ size: Int, _ inputChannels: Int, _ outputChannels: Int) -> Double {
        2.0 * Double(size * size * inputChannels * outputChannels * 9)
    }
    var total = conv(32, 3, 16)
    var channels = 16
    for (planes, size) in [(16, 32), (32, 16), (64, 8)] {
        for _ in 0..<blocks {
            total += conv(size, channels, planes) + conv(size, planes, planes)
            channels = planes
        }
    }
    return total + 2.0 * 64 * 10
}

/// `count` random CIFAR-shaped images with random labels, normalised by the loader as training batches are.
public func syntheticBatch(_ count: Int) -> Batch {
    let images = ImageDataset.synthetic(count: count, height: 32, width: 32, channels: 3)
    return DataLoader(dataset: images, seed: 0, shuffle: false).batch(0, epoch: 0, batchSize: count)
}

/// The distillation workload: the product's objective and an SGD over what it trains.
public struct DistillationWorkload {
    public let objective: DistillationObjective
    public let optimizer: SGD
    public let batch: Batch

    /// The student (ResNet-20) and teacher (ResNet-56) with seed 0, the hint regressor with `seed`.
    public init(seed: UInt64 = 0) throws {
        let student = try cifarModel("resnet20"), teacher = try cifarModel("resnet56")
        // A teacher as `epicycle distill` loads it: frozen.
        for (_, parameter) in teacher.state.parameters { parameter.trainable = false }
        batch = syntheticBatch(BenchWorkload.distillation.batch)
        objective = try DistillationObjective(student: student, teacher: teacher, terms: BenchWorkload.distillationTerms,
                                              imageShape: Array(batch.images.shape.dropFirst()), seed: seed)
        optimizer = benchSGD(student.state.parameters + objective.adapters.parameters)
    }

    /// One training step; returns the loss.
    @discardableResult
    public func step() throws -> Float {
        optimizer.zeroGradients()
        let crossEntropy = CrossEntropyLoss(), labels = batch.labels
        // Every term is a constant.
        let (loss, _) = try objective.step(batch, value: { $0.value(at: Position(epoch: 0, totalEpochs: 1, step: 0, totalSteps: 1)) },
                                           labelLoss: { try crossEntropy(logits: $0, labels: labels) })
        optimizer.step()
        return loss
    }
}

func cifarModel(_ architecture: String) throws -> Model {
    try Model(ModelSpec(architecture: architecture, inputChannels: 3, numClasses: 10), seed: 0)
}

func benchSGD(_ parameters: [(name: String, parameter: Parameter)]) -> SGD {
    SGD(groups: ParameterGroup.standard(parameters, weightDecay: 5e-4), learningRate: 0.1, momentum: 0.9)
}

/// One training step of `model` on `batch`: forward, cross-entropy, backward, then `reduce` with the
/// loss (a data-parallel step's gradient all-reduce) and the SGD update.
func trainingStep(_ model: Model, _ optimizer: SGD, _ batch: Batch, reduce: (Float) -> Void = { _ in }) throws {
    optimizer.zeroGradients()
    let output = try model.forward(batch.images, mode: .training)
    let loss = try CrossEntropyLoss()(logits: output.logits, labels: batch.labels)
    model.backward(loss.gradient)
    reduce(loss.value)
    optimizer.step()
}

/// One step of `workload` on its synthetic batch at `precision`, models built once.
func makeStep(_ workload: BenchWorkload, precision: Precision) throws -> () throws -> Void {
    switch workload {
    case .training:
        let batch = syntheticBatch(workload.batch)
        let model = try cifarModel("resnet20")
        model.precision = precision
        let optimizer = benchSGD(model.state.parameters)
        return { try trainingStep(model, optimizer, batch) }
    case .distillation:
        let distillation = try DistillationWorkload()
        distillation.objective.precision = precision
        return { try distillation.step() }
    case .inference:
        let batch = syntheticBatch(workload.batch)
        let model = try cifarModel("resnet20")
        model.precision = precision
        return { _ = try model.forward(batch.images, mode: .inference) }
    }
}
