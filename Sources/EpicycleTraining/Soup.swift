import EpicycleCheckpoint
import EpicycleRuntime
import Foundation

/// How `epicycle soup` chooses its ingredients (Wortsman et al. 2022, "Model soups: averaging weights
/// of multiple fine-tuned models improves accuracy without increasing inference time").
public enum SoupKind: String, CaseIterable, Sendable {
    /// The mean of every ingredient.
    case uniform
    /// Ingredients sorted by their own validation top-1, best first; each is kept only if the soup's
    /// validation top-1 with it does not drop (Wortsman's recipe 1).
    case greedy
}

/// The element-wise mean of several models' parameters and float32 buffers (batch-norm running
/// statistics), summed in Double and rounded once to float32. Integer buffers
/// (`num_batches_tracked`) are the first model's: a count, not a weight.
/// - Precondition: the states have the same names, kinds and shapes in the same order
///   (`checkSameTensors` reports the first difference by name).
public func averagedModelState(_ states: [StateRecord]) -> StateRecord {
    precondition(!states.isEmpty, "averagedModelState: nothing to average")
    func mean(_ tensors: [Tensor]) -> Tensor {
        var sums = [Double](repeating: 0, count: tensors[0].count)
        for tensor in tensors {
            for (index, value) in tensor.scalars.enumerated() { sums[index] += Double(value) }
        }
        let count = Double(tensors.count)
        return Tensor(shape: tensors[0].shape, scalars: sums.map { Float($0 / count) })
    }
    let first = states[0]
    let parameters = first.parameters.indices.map { index in
        (name: first.parameters[index].name, tensor: mean(states.map { $0.parameters[index].tensor }))
    }
    let buffers = first.buffers.indices.map { index -> (name: String, value: Buffer.Value) in
        guard case .float32 = first.buffers[index].value else { return first.buffers[index] }
        let tensors = states.map { state -> Tensor in
            guard case let .float32(tensor) = state.buffers[index].value else { preconditionFailure("buffer kinds differ") }
            return tensor
        }
        return (first.buffers[index].name, .float32(mean(tensors)))
    }
    return StateRecord(parameters: parameters, buffers: buffers)
}

extension CheckpointGroup {
    /// Refuses checkpoints whose models differ: the architecture attribute, then every parameter and
    /// buffer by name, kind and shape.
    func checkSameTensors() throws {
        let reference = checkpoints[0]
        for index in 1..<checkpoints.count {
            let other = checkpoints[index]
            func compare(_ group: String, _ a: [(name: String, shape: String)], _ b: [(name: String, shape: String)]) throws {
                for (position, (x, y)) in zip(a, b).enumerated() where x.name != y.name || x.shape != y.shape {
                    throw x.name != y.name
                        ? differs("tensor \(position + 1) of '/model/\(group)'", index, x.name, y.name)
                        : differs("'/model/\(group)/\(x.name)'", index, x.shape, y.shape)
                }
                if a.count != b.count {
                    let extra = (a.count > b.count ? a : b)[min(a.count, b.count)].name
                    throw differs("the number of tensors in '/model/\(group)'", index,
                                  "\(a.count)", "\(b.count) (first unmatched: \(extra))")
                }
            }
            func shapes(_ state: StateRecord) -> [(name: String, shape: String)] {
                state.parameters.map { ($0.name, "shape \($0.tensor.shape)") }
            }
            func kinds(_ state: StateRecord) -> [(name: String, shape: String)] {
                state.buffers.map { buffer in
                    switch buffer.value {
                    case let .float32(tensor): (buffer.name, "float32 of shape \(tensor.shape)")
                    case .int64: (buffer.name, "int64")
                    }
                }
            }
            try compare("parameters", shapes(reference.model), shapes(other.model))
            try compare("buffers", kinds(reference.model), kinds(other.model))
            if reference.architecture != other.architecture {
                throw differs("the '/model' attribute 'architecture'", index, reference.architecture, other.architecture)
            }
        }
    }
}

/// What `epicycle soup` made.
public struct SoupResult: Sendable {
    public var kind: SoupKind
    /// The ingredients in the order given, each with its own validation score.
    public var ingredients: [(path: String, validation: SplitScore)]
    /// The ingredients in the soup, in the order they were added.
    public var chosen: [String]
    /// The soup's validation score, after batch-norm recalibration.
    public var validation: SplitScore
    /// The images scored, e.g. "fashion-mnist (classes 5–9)".
    public var dataset: String
    public var recalibrationImages: Int
    public var output: String

    public var summary: String {
        var lines = ["\(kind.rawValue) soup of \(ingredients.count) checkpoints, on the validation split of \(dataset) "
                     + "(\(validation.images) images)",
                     "  validation top-1  in soup  ingredient"]
        for (path, score) in ingredients {
            let mark = (chosen.contains(path) ? "yes" : "no").padding(toLength: 7, withPad: " ", startingAt: 0)
            lines.append(String(format: "  %15.2f %%  ", score.top1) + mark + "  " + path)
        }
        lines.append(String(format: "soup of %d: validation top-1 %.2f %%, loss %.4f, after batch-norm recalibration on %d "
                            + "training images → %@", chosen.count, validation.top1, validation.loss, recalibrationImages, output))
        return lines.joined(separator: "\n")
    }
}

/// `epicycle soup`: averages the weights of checkpoints of one architecture and input pipeline
/// (fine-tunings of one pretraining, say) into one model, recalibrates its batch-norm statistics on
/// the first `recalibrationImages` un-augmented training images (the averaged running statistics
/// belong to no model), and writes it to `output` with the first ingredient's `/data`.
///
/// Scores come from the validation split the first checkpoint's recipe holds out (as `epicycle eval
/// --split validation`); every ingredient must share it. Each ingredient is scored as saved, every soup
/// after recalibration; a greedy soup starts from the best ingredient and keeps each next one whose
/// addition does not lower that soup's validation top-1 (ties in individual top-1 keep the given order).
/// The output's training record is the best ingredient's (recipe, position in the cycle, per-epoch
/// metrics) without its best and test scores, so `eval` finds the same splits and `finetune --from`
/// continues the cycle from there.
public func makeSoup(_ kind: SoupKind, of paths: [String], output: String,
                     recalibrationImages: Int = PreciseBNRecipe().images) throws -> SoupResult {
    let group = try CheckpointGroup(paths, what: "soup")
    try group.checkSameTensors()
    let outputURL = URL(fileURLWithPath: output).standardizedFileURL
    if let clash = paths.first(where: { URL(fileURLWithPath: $0).standardizedFileURL == outputURL }) {
        throw IncompatibleCheckpoints(description: "--output \(output) is the ingredient \(clash); write the soup to a new file")
    }
    let model = try loadedModel(group.checkpoints[0])
    let data = try group.data(spec: model.spec)
    guard data.validation.count > 0 else {
        throw RecipeError(path: "data", problem: "the validation split of \(data.source) has no images to choose a soup with")
    }
    let recalibration = data.loader(for: data.training.samples(
        at: Array(0..<min(recalibrationImages, data.training.count)),
        name: "\(data.training.name), first \(recalibrationImages) for batch-norm recalibration"))
    let validation = data.validationLoader(), first = group.checkpoints[0]
    func score(_ state: StateRecord, recalibrate: Bool) throws -> SplitScore {
        try Checkpoint(architecture: first.architecture, numClasses: first.numClasses, model: state).loadModel(into: model.state)
        if recalibrate {
            try model.recalibrateBatchNorm(on: recalibration.epoch(0, batchSize: Trainer.evaluationBatchSize).lazy.map(\.images))
        }
        return try evaluateModel(model, on: validation, split: "validation", source: "the soup").score
    }

    let individual = try group.checkpoints.map { try score($0.model, recalibrate: false) }
    let order = individual.indices.sorted { individual[$0].top1 > individual[$1].top1 || (individual[$0].top1 == individual[$1].top1 && $0 < $1) }
    var chosen = kind == .uniform ? Array(individual.indices) : [order[0]]
    var soupScore = try score(averagedModelState(chosen.map { group.checkpoints[$0].model }), recalibrate: true)
    var soup = StateRecord(model.state)
    if kind == .greedy {
        for candidate in order.dropFirst() {
            let candidateScore = try score(averagedModelState((chosen + [candidate]).map { group.checkpoints[$0].model }),
                                           recalibrate: true)
            guard candidateScore.top1 >= soupScore.top1 else { continue }
            chosen.append(candidate)
            (soupScore, soup) = (candidateScore, StateRecord(model.state))
        }
    }

    let origin = group.checkpoints[order[0]].training.map { record in
        // The stored recipe's relative paths point from its checkpoint's folder; the soup may be elsewhere.
        let recipe = (try? RecipeSource(text: record.recipe, origin: paths[order[0]], folder: RecipePaths.folder(of: paths[order[0]]))
            .relocated(to: RecipePaths.folder(of: output)).text) ?? record.recipe
        return TrainingRecord(program: record.program, epoch: record.epoch, step: record.step, cyclePosition: record.cyclePosition,
                              seed: record.seed, rngState: record.rngState, recipe: recipe, metrics: record.metrics)
    }
    try FileManager.default.createDirectory(at: outputURL.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Checkpoint(architecture: first.architecture, numClasses: first.numClasses, model: soup, training: origin,
                   input: first.input).write(to: output)
    return SoupResult(kind: kind, ingredients: Array(zip(paths, individual)), chosen: chosen.map { paths[$0] },
                      validation: soupScore, dataset: data.source, recalibrationImages: min(recalibrationImages, data.training.count),
                      output: output)
}
