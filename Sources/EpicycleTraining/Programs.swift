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
    /// Start afresh in a folder that holds an earlier run, removing its checkpoints and metrics first.
    public var overwrite: Bool
    /// Go as far as training would start (recipe, data, schedules, model size and memory) and stop
    /// there, writing nothing: `epicycle check`.
    public var checkOnly: Bool

    public init(output: String? = nil, resume: Bool = false, quiet: Bool = false, overwrite: Bool = false,
                checkOnly: Bool = false) {
        self.output = output
        self.resume = resume
        self.quiet = quiet
        self.overwrite = overwrite
        self.checkOnly = checkOnly
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
        if options.output == nil && recipe.output == nil && !isSafeRunName(name) {
            throw RecipeError(path: "name", problem: "the recipe has none and its file name '\(shortenedForMessage(name))' is not a safe folder name under Checkpoints/; set name: (letters, digits, '-', '_', '.')")
        }
        output = options.output ?? recipe.output ?? "Checkpoints/\(name)"
        pretrainData = try recipe.pretrain.map { try PreparedData($0.data, path: "pretrain.data") }
        finetuneData = try recipe.finetune.map { try PreparedData($0.data, path: "finetune.data") }
        if let threads = recipe.threads { setBLASThreads(threads) }
    }

    /// Optimizer steps in a phase's first epoch, the unit per-step schedules count in.
    package func stepsPerEpoch(_ phase: Phase) -> Int {
        let data = (phase == .pretrain ? pretrainData : finetuneData)!
        // A batch size out of range is reported by `validateKnobs`; until then it must not trap here.
        let batchSize = recipe.knobs(for: phase).schedules[.batchSize].flatMap {
            Int(exactly: $0.value(at: Position(epoch: 0, totalEpochs: 1, step: 0, totalSteps: 1)).rounded())
        }.map { min(max($0, 1), RecipeLimits.batchSize.upperBound) } ?? 128
        return max(1, (data.training.count + batchSize - 1) / batchSize)
    }

    /// Checks every knob of `phase` over the whole cycle, the message naming the recipe key that set
    /// it, then that the model fits this machine's memory at the phase's largest batch size.
    /// - Parameter spec: the model the phase trains (a fine-tune's comes from its checkpoint);
    ///   default: the recipe's model on the phase's data.
    package func validateKnobs(_ phase: Phase, cycle: JointCycle, model spec: ModelSpec? = nil,
                               modelPath: String = "model.architecture") throws {
        let own = (phase == .pretrain ? recipe.pretrain : recipe.finetune)?.knobs.schedules ?? [:]
        let schedules = recipe.knobs(for: phase).schedules
        for (knob, schedule) in schedules {
            let prefix = own[knob] != nil ? "\(phase.rawValue).knobs." : "knobs."
            try KnobSchedules([knob: schedule]).validate(over: cycle, pathPrefix: prefix)
        }
        guard let data = phase == .pretrain ? pretrainData : finetuneData, let batchSchedule = schedules[.batchSize] else { return }
        let largestBatch = (0..<cycle.totalEpochs).map { Int(cycle.value(of: batchSchedule, at: cycle.startOfEpoch($0))) }.max() ?? 1
        let model = spec ?? recipe.model.spec(inputChannels: data.channels, numClasses: data.classCount)
        let shape = data.training.imageShape
        let estimate: MemoryEstimate
        do {
            estimate = try model.memoryEstimate(height: shape[0], width: shape[1], batchSize: largestBatch,
                                                optimizerSlots: recipe.optimizer.kind == .adamw ? 2 : 1)
        } catch let error as RuntimeError {
            throw RecipeError(path: modelPath, problem: error.description)
        }
        let machine = MachineMemory.current
        guard estimate.bytes <= machine.availableBytes else {
            throw RecipeError(path: modelPath, problem: "\(model.architecture) needs ~\(formatBytes(estimate.bytes)) to train at batch \(largestBatch) on \(shape.map(String.init).joined(separator: "×")) images; this machine has \(formatBytes(machine.totalBytes)), \(formatBytes(machine.availableBytes)) of it available")
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
    if let record = checkpoint.optimizer { try optimizer.importState(record.optimizerState) }
    try model.restoreRandomState(training.rngState)
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
    if options.checkOnly { return ProgramResult(phases: [], checkpoint: prepared.output + "/last.h5") }
    let lock = try openRunFolder(prepared.output, options: options)
    defer { withExtendedLifetime(lock) {} }
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
    let lock = options.checkOnly ? nil : try openRunFolder(prepared.output, options: options)
    defer { withExtendedLifetime(lock) {} }
    let result = try runFinetuning(prepared, from: checkpointPath, folder: prepared.output, options: options)
    return ProgramResult(phases: result.map { [$0] } ?? [], checkpoint: prepared.output + "/last.h5")
}

/// - Returns: nil when `options.checkOnly` stops it before training.
private func runFinetuning(_ prepared: PreparedRecipe, from checkpointPath: String, folder: String,
                           options: RunOptions) throws -> PhaseResult? {
    guard let phase = prepared.recipe.finetune, let data = prepared.finetuneData else {
        throw RecipeError(path: "finetune", problem: "is required for fine-tuning")
    }
    let source = try Checkpoint.read(from: checkpointPath)
    var spec = try ModelSpec(yaml: source.architecture, file: checkpointPath)
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
    try prepared.validateKnobs(.finetune, cycle: cycle, model: spec, modelPath: checkpointPath)
    if options.checkOnly { return nil }

    let model = try Model(spec, seed: prepared.recipe.seed &+ 1)
    try source.loadModel(into: model.state, filter: .allExcept(["fc.*"]))
    let parameters = model.state.parameters
    for prefix in phase.freeze {
        let matching = parameters.filter { $0.name == prefix || $0.name.hasPrefix(prefix + ".") }
        guard !matching.isEmpty else {
            let roots = Set(parameters.map { String($0.name.split(separator: ".").first!) }).sorted()
            throw RecipeError(path: "finetune.freeze", problem: "'\(shortenedForMessage(prefix))' names no parameters; valid prefixes include \(roots.joined(separator: ", "))")
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
    if options.checkOnly { return ProgramResult(phases: [], checkpoint: finetuneFolder + "/last.h5") }
    // The whole run's folder for both phases, and each phase's own, so that no other process (a
    // `pretrain --output <run>/pretrain`) writes into either meanwhile.
    let locks = try [openRunFolder(prepared.output, options: options, phases: ["pretrain", "finetune"]),
                     RunFolderLock(pretrainFolder), RunFolderLock(finetuneFolder)]
    defer { withExtendedLifetime(locks) {} }

    var phases: [PhaseResult] = []
    let finetuneStarted = FileManager.default.fileExists(atPath: finetuneFolder + "/last.h5")
    if !(options.resume && finetuneStarted) {
        phases.append(try runPretraining(prepared, data: pretrainData, cycle: cycle, folder: pretrainFolder, options: options))
    }
    if let finetuned = try runFinetuning(prepared, from: pretrainFolder + "/last.h5", folder: finetuneFolder, options: options) {
        phases.append(finetuned)
    }
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
    let spec = try ModelSpec(yaml: checkpoint.architecture, file: checkpointPath)
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
