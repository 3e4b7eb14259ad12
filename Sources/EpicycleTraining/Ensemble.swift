import EpicycleCheckpoint
import EpicycleData
import EpicycleRuntime
#if canImport(Glibc)
import Glibc
#endif

/// The mean of the members' softmax outputs for one batch (inference mode): `[N, classes]`, each row
/// a probability distribution. Snapshot ensembles (Huang et al. 2017) and plain ensembles average
/// probabilities, not logits.
/// - Precondition: the members have the same number of classes.
public func ensembleProbabilities(_ members: [Model], images: Tensor) throws -> Tensor {
    precondition(!members.isEmpty && members.allSatisfy { $0.spec.numClasses == members[0].spec.numClasses },
                 "ensembleProbabilities: members must share their classes")
    var sums: [Double] = []
    for member in members {
        let probabilities = softmax(try member.forward(images, mode: .inference).logits)
        if sums.isEmpty { sums = [Double](repeating: 0, count: probabilities.count) }
        for (index, value) in probabilities.scalars.enumerated() { sums[index] += Double(value) }
    }
    let count = Double(members.count)
    return Tensor(shape: [images.shape[0], members[0].spec.numClasses], scalars: sums.map { Float($0 / count) })
}

/// The members' mean softmax scored on `loader`'s images (see `evaluateEnsemble` for the loss).
func evaluateEnsembleOutputs(_ members: [Model], on loader: DataLoader, split: String,
                             source: String) throws -> (score: SplitScore, confusion: [[Int]]) {
    try evaluateOutputs(on: loader, classes: members[0].spec.numClasses, split: split, source: source) { batch in
        var probabilities = try ensembleProbabilities(members, images: batch)
        // log p̄ as logits: softmax(log p̄) = p̄, so cross-entropy is −log p̄_y and the ranking is p̄'s.
        probabilities.scalars = probabilities.scalars.map { log(max($0, .leastNormalMagnitude)) }
        return probabilities
    }
}

/// `epicycle eval --ensemble`: the members' mean softmax output scored on one split, as `evaluate`
/// scores one checkpoint. The members may differ in architecture but must share the input pipeline
/// (`/data`) and the splits (the first member's recipe decides them). The loss is the negative log of
/// the mean probability of the true class (a probability that underflows to 0 counts as the smallest
/// normal float, so the loss stays finite); top-1 and top-5 rank the mean probabilities.
public func evaluateEnsemble(checkpoints paths: [String], split: EvaluationSplit = .test, dataset: String? = nil,
                             folder: String? = nil, classes: [Int]? = nil, precision: Precision = .fp32) throws -> EvaluationResult {
    let group = try CheckpointGroup(paths, what: "ensemble", dataset: dataset, folder: folder, classes: classes)
    let precision = resolvedPrecision(precision)
    let members = try group.checkpoints.map { try loadedModel($0, precision: precision) }
    let data = try group.data(spec: members[0].spec)
    let images = data.images(of: split)
    guard images.count > 0 else {
        throw RecipeError(path: "data", problem: "the \(split.rawValue) split of \(data.source) has no images")
    }
    let (score, confusion) = try evaluateEnsembleOutputs(members, on: data.loader(for: images), split: split.rawValue,
                                                         source: "the ensemble")
    var result = EvaluationResult(split: split, isTestSplit: data.isTest(split), score: score, dataset: data.source,
                                  classNames: images.classNames, confusion: confusion)
    result.ensembleSize = members.count
    return result
}
