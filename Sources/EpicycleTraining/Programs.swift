import EpicycleCheckpoint
import EpicycleData
import EpicycleRuntime
import EpicycleSchedules
import Foundation
import Logging
import Yams

/// How a program runs, beyond what the recipe says.
public struct RunOptions: Sendable {
    /// Overrides the recipe's `output` folder.
    public var output: String?
    /// Continue from `last.h5` in the output folder.
    public var resume: Bool
    /// No progress output (metrics files and checkpoints are written all the same).
    public var quiet: Bool

    public init(output: String? = nil, resume: Bool = false, quiet: Bool = false) {
        self.output = output
        self.resume = resume
        self.quiet = quiet
    }
}

/// What a program did.
public struct ProgramResult: Sendable {
    public var phases: [PhaseResult]
    /// The final checkpoint (`last.h5` of the last phase).
    public var checkpoint: String

    package init(phases: [PhaseResult], checkpoint: String) {
        self.phases = phases
        self.checkpoint = checkpoint
    }

    public var summary: String {
        phases.map { phase in
            String(format: "%@: final top-1 %.2f %%, best %.2f %%, %@ — %@", phase.folder, phase.finalTop1, phase.bestTop1,
                   formatDuration(phase.seconds), phase.folder + "/last.h5")
        }.joined(separator: "\n")
    }
}

extension ModelSpec {
    /// The spec as YAML text, as checkpoints store it.
    public var yaml: String {
        get throws { try YAMLEncoder().encode(self) }
    }

    /// Reads a spec from a checkpoint's architecture text.
    public init(yaml text: String, file: String) throws {
        do {
            self = try YAMLDecoder().decode(ModelSpec.self, from: text)
            try validate()
        } catch {
            throw RecipeError(path: "", problem: "\(file): the architecture attribute is not a model spec (\(error))")
        }
    }
}

extension Checkpoint {
    /// The spec of the stored model, decoded and checked against the rest of the file before any
    /// model is built from it.
    public func modelSpec() throws -> ModelSpec {
        let spec = try ModelSpec(yaml: architecture, file: source)
        try checkModelSpec(spec)
        return spec
    }
}

package let logger = Logger(label: "epicycle")

/// A recipe made ready to run: decoded, its data loaded, its cycle laid out and every knob checked.
package struct PreparedRecipe {
    package let recipe: Recipe
    package let text: String
    let name: String
    package let output: String
    package let pretrainData: PreparedData?
    package let finetuneData: PreparedData?

    package init(_ source: RecipeSource, options: RunOptions) throws {
        let recipe = try source.decode(Recipe.self)
        self.recipe = recipe
        text = source.text
        name = recipe.name ?? URL(fileURLWithPath: source.origin).deletingPathExtension().lastPathComponent
        output = options.output ?? recipe.output ?? "Checkpoints/\(name)"
        pretrainData = try recipe.pretrain.map { try PreparedData($0.data, path: "pretrain.data") }
        finetuneData = try recipe.finetune.map { try PreparedData($0.data, path: "finetune.data") }
        if let threads = recipe.threads { setBLASThreads(threads) }
    }

    /// Optimizer steps in a phase's first epoch, the unit per-step schedules count in.
    package func stepsPerEpoch(_ phase: Phase) -> Int {
        let data = (phase == .pretrain ? pretrainData : finetuneData)!
        let batchSize = recipe.knobs(for: phase).schedules[.batchSize].map {
            Int($0.value(at: Position(epoch: 0, totalEpochs: 1, step: 0, totalSteps: 1)))
        } ?? 128
        return max(1, (data.training.count + batchSize - 1) / max(batchSize, 1))
    }

    /// Checks every knob of `phase` over the whole cycle; the message names the recipe key that set it.
    package func validateKnobs(_ phase: Phase, cycle: JointCycle) throws {
        let own = (phase == .pretrain ? recipe.pretrain : recipe.finetune)?.knobs.schedules ?? [:]
        for (knob, schedule) in recipe.knobs(for: phase).schedules {
            let prefix = own[knob] != nil ? "\(phase.rawValue).knobs." : "knobs."
            try KnobSchedules([knob: schedule]).validate(over: cycle, pathPrefix: prefix)
        }
    }

    func makeOptimizer(for model: Model, phase: Phase) -> any Optimizer {
        makeOptimizer(for: model.state.parameters, phase: phase)
    }

    /// The recipe's optimizer over named parameters (a model's, and any adapters beside it).
    package func makeOptimizer(for parameters: [(name: String, parameter: Parameter)], phase: Phase) -> any Optimizer {
        let weightDecay = Float(recipe.knobs(for: phase).schedules[.weightDecay]?.value(
            at: Position(epoch: 0, totalEpochs: 1, step: 0, totalSteps: 1)) ?? 0)
        let groups = recipe.optimizer.noDecayOnNormAndBias
            ? ParameterGroup.standard(parameters, weightDecay: weightDecay)
            : [ParameterGroup(parameters: parameters, weightDecay: weightDecay)]
        switch recipe.optimizer.kind {
        case .sgd:
            return SGD(groups: groups, learningRate: 0.1, momentum: 0.9, nesterov: recipe.optimizer.nesterov,
                       decoupledWeightDecay: recipe.optimizer.decoupledWeightDecay)
        case .adamw:
            return AdamW(groups: groups, beta1: recipe.optimizer.beta1, beta2: recipe.optimizer.beta2,
                         epsilon: recipe.optimizer.epsilon)
        }
    }
}

/// Reads `last.h5` to resume, checking it belongs to this program and recipe.
/// Adapters, when given, are restored from the checkpoint's `/adapters` too.
package func resumeState(folder: String, program: TrainingRecord.Program, recipeText: String, model: Model,
                         optimizer: any Optimizer, adapters: ModuleState? = nil) throws -> TrainingRecord? {
    let path = folder + "/last.h5"
    guard FileManager.default.fileExists(atPath: path) else { return nil }
    let checkpoint = try Checkpoint.read(from: path)
    guard let training = checkpoint.training, training.program == program else {
        throw RecipeError(path: "", problem: "\(path) is not a \(program.rawValue) checkpoint; cannot resume from it")
    }
    guard training.recipe == recipeText else {
        throw RecipeError(path: "", problem: "\(path) was trained with a different recipe; resume with the same recipe and --set values, or choose another --output")
    }
    try checkpoint.loadModel(into: model.state)
    if let adapters { try checkpoint.loadAdapters(into: adapters) }
    do {
        try optimizer.importState(try checkpoint.resumableOptimizer().optimizerState)
    } catch let error as OptimizerError {
        throw CheckpointError.invalidValue(file: path, object: "'/optimizer'", reason: "does not fit: \(error)")
    }
    do {
        try model.restoreRandomState(training.rngState)
    } catch let error as RuntimeError {
        throw CheckpointError.invalidValue(file: path, object: "'/training/rng_state'", reason: "does not fit: \(error)")
    }
    logger.info("resuming \(path) after epoch \(training.epoch), step \(training.step)")
    return training
}

/// `epicycle pretrain`: trains a model from scratch on the recipe's `pretrain` phase. When the recipe
/// also has a `finetune` phase, the knobs follow the joint cycle, so a later `finetune` continues it.
public func pretrain(recipe source: RecipeSource, options: RunOptions = RunOptions()) throws -> ProgramResult {
    let prepared = try PreparedRecipe(source, options: options)
    guard let phase = prepared.recipe.pretrain, let data = prepared.pretrainData else {
        throw RecipeError(path: "pretrain", problem: "is required for pretraining")
    }
    let cycle = JointCycle(pretrainingEpochs: phase.epochs, pretrainingStepsPerEpoch: prepared.stepsPerEpoch(.pretrain),
                           finetuningEpochs: prepared.recipe.finetune?.epochs ?? 0,
                           finetuningStepsPerEpoch: prepared.finetuneData == nil ? 1 : prepared.stepsPerEpoch(.finetune))
    try prepared.validateKnobs(.pretrain, cycle: cycle)
    let result = try runPretraining(prepared, data: data, cycle: cycle, folder: prepared.output, options: options)
    return ProgramResult(phases: [result], checkpoint: result.folder + "/last.h5")
}

private func runPretraining(_ prepared: PreparedRecipe, data: PreparedData, cycle: JointCycle, folder: String,
                            options: RunOptions) throws -> PhaseResult {
    let spec = prepared.recipe.model.spec(inputChannels: data.channels, numClasses: data.classCount)
    let model = try Model(spec, seed: prepared.recipe.seed)
    let optimizer = prepared.makeOptimizer(for: model, phase: .pretrain)
    let start = options.resume
        ? try resumeState(folder: folder, program: .pretrain, recipeText: prepared.text, model: model, optimizer: optimizer) : nil
    let trainer = Trainer(model: model, optimizer: optimizer, program: .pretrain, phase: .pretrain, cyclePhase: .pretrain,
                          cycle: cycle, recipe: prepared.recipe, recipeText: prepared.text, data: data, folder: folder,
                          progress: ProgressReporter(quiet: options.quiet))
    return try trainer.run(resumingFrom: start)
}

/// `epicycle finetune`: a new classifier head for the target classes on a pretrained model, the
/// recipe's `freeze` prefixes held fixed, continuing the cycle from the position stored in the checkpoint.
public func finetune(from checkpointPath: String, recipe source: RecipeSource, options: RunOptions = RunOptions()) throws -> ProgramResult {
    let prepared = try PreparedRecipe(source, options: options)
    let result = try runFinetuning(prepared, from: checkpointPath, folder: prepared.output, options: options)
    return ProgramResult(phases: [result], checkpoint: result.folder + "/last.h5")
}

private func runFinetuning(_ prepared: PreparedRecipe, from checkpointPath: String, folder: String,
                           options: RunOptions) throws -> PhaseResult {
    guard let phase = prepared.recipe.finetune, let data = prepared.finetuneData else {
        throw RecipeError(path: "finetune", problem: "is required for fine-tuning")
    }
    let source = try Checkpoint.read(from: checkpointPath)
    var spec = try source.modelSpec()
    guard spec.inputChannels == data.channels else {
        throw RecipeError(path: "finetune.data", problem: "has \(data.channels)-channel images; \(checkpointPath) takes \(spec.inputChannels)")
    }
    spec.numClasses = data.classCount

    // Where the pretraining left the cycle: epochs and steps per epoch from its training record.
    let cycle: JointCycle, cyclePhase: Phase
    if let record = source.training, record.program == .pretrain, record.epoch >= 1 {
        cycle = JointCycle(pretrainingEpochs: record.epoch, pretrainingStepsPerEpoch: max(1, record.step / record.epoch),
                           finetuningEpochs: phase.epochs, finetuningStepsPerEpoch: prepared.stepsPerEpoch(.finetune))
        cyclePhase = .finetune
    } else {
        logger.notice("\(checkpointPath) records no pretraining: the fine-tune is a cycle of its own")
        cycle = JointCycle(pretrainingEpochs: phase.epochs, pretrainingStepsPerEpoch: prepared.stepsPerEpoch(.finetune),
                           finetuningEpochs: 0)
        cyclePhase = .pretrain
    }
    try prepared.validateKnobs(.finetune, cycle: cycle)

    let model = try Model(spec, seed: prepared.recipe.seed &+ 1)
    try source.loadModel(into: model.state, filter: .allExcept(["fc.*"]))
    let parameters = model.state.parameters
    for prefix in phase.freeze {
        let matching = parameters.filter { $0.name == prefix || $0.name.hasPrefix(prefix + ".") }
        guard !matching.isEmpty else {
            let roots = Set(parameters.map { String($0.name.split(separator: ".").first!) }).sorted()
            throw RecipeError(path: "finetune.freeze", problem: "'\(prefix)' names no parameters; valid prefixes include \(roots.joined(separator: ", "))")
        }
        for (_, parameter) in matching { parameter.trainable = false }
    }
    let optimizer = prepared.makeOptimizer(for: model, phase: .finetune)
    let start = options.resume
        ? try resumeState(folder: folder, program: .finetune, recipeText: prepared.text, model: model, optimizer: optimizer) : nil
    let trainer = Trainer(model: model, optimizer: optimizer, program: .finetune, phase: .finetune, cyclePhase: cyclePhase,
                          cycle: cycle, recipe: prepared.recipe, recipeText: prepared.text, data: data, folder: folder,
                          progress: ProgressReporter(quiet: options.quiet))
    return try trainer.run(resumingFrom: start)
}

/// `epicycle cycle`: pretraining then fine-tuning as one cycle that peaks at the end of pretraining.
/// Checkpoints go to `<output>/pretrain` and `<output>/finetune`; `--resume` continues whichever
/// phase was running.
public func cycle(recipe source: RecipeSource, options: RunOptions = RunOptions()) throws -> ProgramResult {
    let prepared = try PreparedRecipe(source, options: options)
    guard let pretrainPhase = prepared.recipe.pretrain, let finetunePhase = prepared.recipe.finetune,
          let pretrainData = prepared.pretrainData else {
        throw RecipeError(path: "", problem: "a cycle recipe needs both a 'pretrain' and a 'finetune' phase")
    }
    let cycle = JointCycle(pretrainingEpochs: pretrainPhase.epochs, pretrainingStepsPerEpoch: prepared.stepsPerEpoch(.pretrain),
                           finetuningEpochs: finetunePhase.epochs, finetuningStepsPerEpoch: prepared.stepsPerEpoch(.finetune))
    try prepared.validateKnobs(.pretrain, cycle: cycle)
    try prepared.validateKnobs(.finetune, cycle: cycle)
    let pretrainFolder = prepared.output + "/pretrain", finetuneFolder = prepared.output + "/finetune"

    var phases: [PhaseResult] = []
    let finetuneStarted = FileManager.default.fileExists(atPath: finetuneFolder + "/last.h5")
    if !(options.resume && finetuneStarted) {
        phases.append(try runPretraining(prepared, data: pretrainData, cycle: cycle, folder: pretrainFolder, options: options))
    }
    phases.append(try runFinetuning(prepared, from: pretrainFolder + "/last.h5", folder: finetuneFolder, options: options))
    return ProgramResult(phases: phases, checkpoint: finetuneFolder + "/last.h5")
}

/// Accuracy of a checkpoint's model on a dataset's test split.
public struct EvaluationResult: Sendable {
    public var images: Int
    public var loss: Double
    public var top1: Double
    public var top5: Double
    public var dataset: String

    public var summary: String {
        String(format: "%@: %d images, loss %.4f, top-1 %.2f %%, top-5 %.2f %%", dataset, images, loss, top1, top5)
    }
}

/// `epicycle eval`: the model of `checkpointPath` on `data`'s validation images (by default the data
/// of the phase that produced the checkpoint, from the recipe it stores).
public func evaluate(checkpoint checkpointPath: String, data override: DataRecipe? = nil) throws -> EvaluationResult {
    let checkpoint = try Checkpoint.read(from: checkpointPath)
    let spec = try checkpoint.modelSpec()
    var dataRecipe = override ?? DataRecipe()
    if override == nil, let record = checkpoint.training,
       let recipe = try? RecipeSource(text: record.recipe, origin: checkpointPath).decode(Recipe.self) {
        // A distilled student trained on the recipe's pretrain phase.
        let phase = record.program == .finetune ? recipe.finetune : recipe.pretrain
        dataRecipe = phase?.data ?? dataRecipe
    }
    let data = try PreparedData(dataRecipe, path: "data")
    guard data.channels == spec.inputChannels, data.classCount == spec.numClasses else {
        throw RecipeError(path: "data", problem: "\(data.source) has \(data.channels)-channel images in \(data.classCount) classes; \(checkpointPath) expects \(spec.inputChannels) channels and \(spec.numClasses) classes (choose classes with --classes)")
    }
    let model = try Model(spec, seed: 0)
    try checkpoint.loadModel(into: model.state)
    var metrics = RunningMetrics()
    for batch in data.validationLoader().epoch(0, batchSize: 256) {
        let logits = try model.forward(batch.images, mode: .inference).logits
        metrics.add(loss: try CrossEntropyLoss()(logits: logits, labels: batch.labels).value, logits: logits, labels: batch.labels)
    }
    return EvaluationResult(images: metrics.images, loss: metrics.loss, top1: metrics.top1, top5: metrics.top5, dataset: data.source)
}
