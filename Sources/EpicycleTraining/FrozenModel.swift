import EpicycleCheckpoint
import EpicycleRuntime

/// A model read from a checkpoint to be run and never trained — a distillation teacher, or the teacher
/// whose soft targets label a phase's unlabeled images: the architecture from the checkpoint's spec,
/// every tensor strictly (no missing or extra names; `/adapters` of a distilled checkpoint are
/// ignored), every parameter frozen. Also returns the input pipeline the checkpoint stores (nil in
/// older files). Throws the checkpoint's and the spec's own errors; callers say which file it was for.
public func loadFrozenModel(from path: String) throws -> (model: Model, input: InputPipeline?) {
    let checkpoint = try Checkpoint.read(from: path)
    let model = try Model(try checkpoint.modelSpec(), seed: 0)
    try checkpoint.loadModel(into: model.state)
    for (_, parameter) in model.state.parameters { parameter.trainable = false }
    return (model, checkpoint.input)
}
