import EpicycleCheckpoint
import EpicycleData
import EpicycleMPI
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
    /// At most this many threads, whatever the recipe's `threads:` says (a comparison's share of the cores).
    public var threadLimit: Int?
    /// Start afresh in a folder that holds an earlier run, removing its checkpoints and metrics first.
    public var overwrite: Bool
    /// Go as far as training would start (recipe, data, schedules, model size and memory) and stop
    /// there, writing nothing: `epicycle check`.
    public var checkOnly: Bool
    /// The processes to train data-parallel over (`mpirun -np N`); nil: this process alone.
    public var communicator: Communicator?

    public init(output: String? = nil, resume: Bool = false, quiet: Bool = false, threadLimit: Int? = nil,
                overwrite: Bool = false, checkOnly: Bool = false, communicator: Communicator? = nil) {
        self.output = output
        self.resume = resume
        self.quiet = quiet
        self.threadLimit = threadLimit
        self.overwrite = overwrite
        self.checkOnly = checkOnly
        self.communicator = communicator
    }
}

/// What a program did.
public struct ProgramResult: Sendable {
    public var phases: [PhaseResult]
    /// The final checkpoint (`last.h5` of the last phase).
    public var checkpoint: String

    public init(phases: [PhaseResult], checkpoint: String) {
        self.phases = phases
        self.checkpoint = checkpoint
    }

    public var summary: String {
        phases.map { phase in
            let selection = phase.validatesOnTest ? "validation (the test split, as the recipe asks)" : "validation"
            var line = String(format: "%@: %@ top-1 final %.2f %%, best %.2f %%", phase.folder, selection, phase.finalTop1, phase.bestTop1)
            if let test = phase.test {
                line += String(format: "; test top-1 final %.2f %%, best.h5 (epoch %d) %.2f %%%@ on %d images",
                               test.last.top1, test.bestEpoch, test.best.top1, test.othersDescription, test.last.images)
            }
            return line + ", \(formatDuration(phase.seconds)) — \(phase.folder)/last.h5"
        }.joined(separator: "\n")
    }
}

extension ModelSpec {
    /// The spec as YAML text, as checkpoints store it (`dropout: 0`, not Yams's `0e+0`).
    public var yaml: String {
        get throws { try withPlainNumbers(YAMLEncoder().encode(self)) }
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

/// The log every program writes its notices to (an objective's program too).
public let logger = Logger(label: "epicycle")

/// A recipe made ready to run: decoded, its data loaded, its cycle laid out and every knob checked.
public struct PreparedRecipe {
    public let recipe: Recipe
    /// The recipe as given, overrides applied.
    public let source: RecipeSource
    let name: String
    /// The run folder.
    public let output: String
    public let pretrainData: PreparedData?
    public let finetuneData: PreparedData?

    /// - Parameter objective: the objective that will train on it; the recipe may hold its section.
    public init(_ source: RecipeSource, options: RunOptions, for objective: any TrainingObjective.Type = LabelObjective.self) throws {
        let recipe = try source.decodeRecipe(sections: objective.recipeSection.map { [$0] } ?? [])
        self.recipe = recipe
        self.source = source
        name = recipe.name ?? URL(fileURLWithPath: source.origin).deletingPathExtension().lastPathComponent
        if options.output == nil && recipe.output == nil && !isSafeRunName(name) {
            throw RecipeError(path: "name", problem: "the recipe has none and its file name '\(shortenedForMessage(name))' is not a safe folder name under Checkpoints/; set name: (letters, digits, '-', '_', '.')")
        }
        output = options.output ?? recipe.output ?? "Checkpoints/\(name)"
        pretrainData = try recipe.pretrain.map {
            try PreparedData($0.data, path: "pretrain.data", unlabeled: $0.unlabeled, unlabeledPath: "pretrain.unlabeled")
        }
        finetuneData = try recipe.finetune.map {
            try PreparedData($0.data, path: "finetune.data", unlabeled: $0.unlabeled, unlabeledPath: "finetune.unlabeled")
        }
        // Every run sets its threads, so one that follows another in the same process does not inherit them.
        setThreads(min(recipe.threads ?? onlineProcessorCount, options.threadLimit ?? .max))
    }

    /// The recipe text the checkpoints in `folder` store: relative paths made relative to `folder`.
    public func storedText(in folder: String) throws -> String { try source.relocated(to: folder).text }

    /// The optimizer steps of each of `epochs` epochs of `phase`, which are epochs `firstEpoch`… of a
    /// cycle of `cycleEpochs` epochs with default factor `factor`. The batch size changes only per
    /// epoch (`KnobSchedules` refuses a per-step one), so every epoch's length is known before training
    /// and reads no step count.
    func epochSteps(_ phase: Phase, epochs: Int, firstEpoch: Int, cycleEpochs: Int, factor: Double) -> [Int] {
        guard epochs > 0 else { return [] }
        let loader = (phase == .pretrain ? pretrainData : finetuneData)!.trainingLoader(seed: 0)
        let batchSize = recipe.knobs(for: phase).schedules[.batchSize]!.withDefaultFactor(factor)
        return (firstEpoch..<firstEpoch + epochs).map { epoch in
            let value = batchSize.value(at: Position(epoch: epoch, totalEpochs: cycleEpochs, step: 0, totalSteps: 1))
            return loader.batchCount(batchSize: wholeBatchSize(value))
        }
    }

    /// The cycle of the recipe's phases as `pretrain`, `cycle` and `schedule` run it: pretraining then
    /// fine-tuning, or a recipe's only phase as a cycle of its own.
    public var jointCycle: JointCycle {
        guard let pretraining = recipe.pretrain?.epochs else {
            let epochs = recipe.finetune!.epochs
            return JointCycle(pretrainingEpochSteps: epochSteps(.finetune, epochs: epochs, firstEpoch: 0, cycleEpochs: epochs, factor: 1),
                              finetuningEpochSteps: [])
        }
        let finetuning = recipe.finetune?.epochs ?? 0
        let factor = JointCycle.defaultFactor(pretrainingEpochs: pretraining, finetuningEpochs: finetuning)
        let epochs = pretraining + finetuning
        return JointCycle(
            pretrainingEpochSteps: epochSteps(.pretrain, epochs: pretraining, firstEpoch: 0, cycleEpochs: epochs, factor: factor),
            finetuningEpochSteps: epochSteps(.finetune, epochs: finetuning, firstEpoch: pretraining, cycleEpochs: epochs, factor: factor))
    }

    /// Checks every knob of `phase` over the whole cycle, the message naming the recipe key that set
    /// it, then that the model fits this machine's memory at the phase's largest batch size.
    /// - Parameter spec: the model the phase trains (a fine-tune's comes from its checkpoint);
    ///   default: the recipe's model on the phase's data.
    public func validateKnobs(_ phase: Phase, cycle: JointCycle, model spec: ModelSpec? = nil,
                              modelPath: String = "model.architecture") throws {
        let own = (phase == .pretrain ? recipe.pretrain : recipe.finetune)?.knobs.schedules ?? [:]
        let schedules = recipe.knobs(for: phase).schedules
        for (knob, schedule) in schedules {
            let prefix = own[knob] != nil ? "\(phase.rawValue).knobs." : "knobs."
            do { try schedule.validate(totalEpochs: cycle.totalEpochs, totalSteps: cycle.totalSteps) } catch {
                let nested = error.nested(in: prefix + knob.rawValue)
                throw RecipeError(path: nested.path, problem: nested.problem)
            }
            try KnobSchedules([knob: schedule]).validate(over: cycle, pathPrefix: prefix)
        }
        if let learningRate = recipe.averaging(for: phase)?.swa?.learningRate {
            let path = ((phase == .pretrain ? recipe.pretrain : recipe.finetune)?.averaging != nil ? "\(phase.rawValue)." : "")
                + "averaging.swa.lr"
            do { try learningRate.validate(totalEpochs: cycle.totalEpochs, totalSteps: cycle.totalSteps) } catch {
                let nested = error.nested(in: path)
                throw RecipeError(path: nested.path, problem: nested.problem)
            }
            do { try KnobSchedules([.learningRate: learningRate]).validate(over: cycle, pathPrefix: "") } catch let error as RecipeError {
                throw RecipeError(path: path, problem: error.problem)
            }
        }
        guard let data = phase == .pretrain ? pretrainData : finetuneData, let batchSchedule = schedules[.batchSize] else { return }
        let largestLabeledBatch = (0..<cycle.totalEpochs).map { Int(cycle.value(of: batchSchedule, at: cycle.startOfEpoch($0))) }.max() ?? 1
        // A semi-supervised step runs the labeled batch and both views of μ times as many unlabeled images.
        let largestBatch = largestLabeledBatch * (1 + 2 * (data.unlabeled?.ratio ?? 0))
        let model = spec ?? recipe.model.spec(inputChannels: data.channels, numClasses: data.classCount)
        let shape = data.training.imageShape
        let estimate: MemoryEstimate
        do {
            estimate = try model.memoryEstimate(height: shape[0], width: shape[1], batchSize: largestBatch,
                                                optimizerSlots: (recipe.optimizer.kind == .adamw ? 2 : 1)
                                                    + (recipe.optimizer.lookahead == nil ? 0 : 1))
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
    public func makeOptimizer(for parameters: [(name: String, parameter: Parameter)], phase: Phase) -> any Optimizer {
        let weightDecay = Float(recipe.knobs(for: phase).schedules[.weightDecay]?.value(
            at: Position(epoch: 0, totalEpochs: 1, step: 0, totalSteps: 1)) ?? 0)
        let groups = recipe.optimizer.noDecayOnNormAndBias
            ? ParameterGroup.standard(parameters, weightDecay: weightDecay)
            : [ParameterGroup(parameters: parameters, weightDecay: weightDecay)]
        let lookahead = recipe.optimizer.lookahead
        switch recipe.optimizer.kind {
        case .sgd:
            let sgd = SGD(groups: groups, learningRate: 0.1, momentum: 0.9, nesterov: recipe.optimizer.nesterov,
                          decoupledWeightDecay: recipe.optimizer.decoupledWeightDecay)
            return lookahead.map { Lookahead(sgd, synchronizationPeriod: $0.k, alpha: $0.alpha) } ?? sgd
        case .adamw:
            let adamw = AdamW(groups: groups, beta1: recipe.optimizer.beta1, beta2: recipe.optimizer.beta2,
                              epsilon: recipe.optimizer.epsilon)
            return lookahead.map { Lookahead(adamw, synchronizationPeriod: $0.k, alpha: $0.alpha) } ?? adamw
        }
    }
}

/// Reads `last.h5` to resume, checking it belongs to this program and recipe.
/// Adapters, when given, are restored from the checkpoint's `/adapters` too.
public func resumeState(folder: String, program: TrainingRecord.Program, recipeText: String, model: Model,
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
    guard prepared.recipe.pretrain != nil, let data = prepared.pretrainData else {
        throw RecipeError(path: "pretrain", problem: "is required for pretraining")
    }
    let cycle = prepared.jointCycle
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
        ? try resumeState(folder: folder, program: .pretrain, recipeText: prepared.storedText(in: folder), model: model, optimizer: optimizer) : nil
    let trainer = try Trainer(model: model, optimizer: optimizer, program: .pretrain, phase: .pretrain, cyclePhase: .pretrain,
                          cycle: cycle, recipe: prepared.recipe, recipeText: prepared.storedText(in: folder), data: data, folder: folder,
                          progress: ProgressReporter(quiet: options.quiet),
                          objective: try phaseObjective(model: model, recipe: prepared.recipe, data: data, phase: .pretrain),
                          communicator: options.communicator)
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
    guard let phase = prepared.recipe.finetune, var data = prepared.finetuneData else {
        throw RecipeError(path: "finetune", problem: "is required for fine-tuning")
    }
    let source = try Checkpoint.read(from: checkpointPath)
    var spec = try source.modelSpec()
    guard spec.inputChannels == data.channels else {
        throw RecipeError(path: "finetune.data", problem: "has \(data.channels)-channel images; \(checkpointPath) takes \(spec.inputChannels)")
    }
    // The pretrained features expect the inputs normalised as in pretraining (as timm fine-tunes with
    // the pretrained model's mean and std).
    if let input = source.input { data = try data.adopting(input, from: checkpointPath, path: "finetune.data") }
    spec.numClasses = data.classCount

    // Where the pretraining left the cycle: its epochs and their steps, from its training record.
    let cycle: JointCycle, cyclePhase: Phase
    if let record = source.training, record.program == .pretrain, record.epoch >= 1 {
        let epochs = record.epoch + phase.epochs
        let factor = JointCycle.defaultFactor(pretrainingEpochs: record.epoch, finetuningEpochs: phase.epochs)
        cycle = JointCycle(pretrainingEpochSteps: try completedEpochSteps(of: record, file: checkpointPath),
                           finetuningEpochSteps: prepared.epochSteps(.finetune, epochs: phase.epochs, firstEpoch: record.epoch,
                                                                     cycleEpochs: epochs, factor: factor))
        cyclePhase = .finetune
    } else {
        logger.notice("\(checkpointPath) records no pretraining: the fine-tune is a cycle of its own")
        cycle = JointCycle(pretrainingEpochSteps: prepared.epochSteps(.finetune, epochs: phase.epochs, firstEpoch: 0,
                                                                      cycleEpochs: phase.epochs, factor: 1),
                           finetuningEpochSteps: [])
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
        ? try resumeState(folder: folder, program: .finetune, recipeText: prepared.storedText(in: folder), model: model, optimizer: optimizer) : nil
    let trainer = try Trainer(model: model, optimizer: optimizer, program: .finetune, phase: .finetune, cyclePhase: cyclePhase,
                          cycle: cycle, recipe: prepared.recipe, recipeText: prepared.storedText(in: folder), data: data, folder: folder,
                          progress: ProgressReporter(quiet: options.quiet),
                          objective: try phaseObjective(model: model, recipe: prepared.recipe, data: data, phase: .finetune),
                          communicator: options.communicator)
    return try trainer.run(resumingFrom: start)
}

/// The optimizer steps of each of a training record's `epoch` completed epochs, from the `step` column
/// of its metrics (the steps completed at the end of each epoch).
private func completedEpochSteps(of record: TrainingRecord, file: String) throws -> [Int] {
    let table = record.metrics
    guard let column = table.columns.firstIndex(of: "step"), table.rows.count >= record.epoch else {
        throw RecipeError(path: "", problem: "\(file): its training metrics do not list the steps of its \(record.epoch) epochs, which the fine-tune needs to continue the cycle")
    }
    var steps: [Int] = [], previous = 0
    for (index, row) in table.rows.prefix(record.epoch).enumerated() {
        let end = row[column]
        guard end.isFinite, end == end.rounded(), end > Double(previous), end <= Double(record.step) else {
            throw RecipeError(path: "", problem: "\(file): metrics row \(index + 1) says \(end) steps after epoch \(index + 1); expected a whole number above \(previous) and at most the recorded \(record.step)")
        }
        steps.append(Int(end) - previous)
        previous = Int(end)
    }
    return steps
}

/// `epicycle cycle`: pretraining then fine-tuning as one cycle that peaks at the end of pretraining.
/// Checkpoints go to `<output>/pretrain` and `<output>/finetune`; `--resume` continues whichever
/// phase was running.
public func cycle(recipe source: RecipeSource, options: RunOptions = RunOptions()) throws -> ProgramResult {
    let prepared = try PreparedRecipe(source, options: options)
    guard prepared.recipe.pretrain != nil, prepared.recipe.finetune != nil,
          let pretrainData = prepared.pretrainData else {
        throw RecipeError(path: "", problem: "a cycle recipe needs both a 'pretrain' and a 'finetune' phase")
    }
    let cycle = prepared.jointCycle
    try prepared.validateKnobs(.pretrain, cycle: cycle)
    try prepared.validateKnobs(.finetune, cycle: cycle)
    let pretrainFolder = prepared.output + "/pretrain", finetuneFolder = prepared.output + "/finetune"
    if options.checkOnly { return ProgramResult(phases: [], checkpoint: finetuneFolder + "/last.h5") }
    // The whole run's folder for both phases, and each phase's own, so that no other process (a
    // `pretrain --output <run>/pretrain`) writes into either meanwhile.
    let locks = try openRunFolder(prepared.output, options: options, phases: ["pretrain", "finetune"], lockingPhases: true)
    defer { withExtendedLifetime(locks) {} }

    // Armed across both phases, so that a Ctrl-C after pretraining's last check stops the run here
    // rather than being cleared when the fine-tune arms.
    let interrupt = InterruptFlag.shared
    interrupt.arm()
    defer { interrupt.disarm() }
    var phases: [PhaseResult] = []
    let finetuneStarted = FileManager.default.fileExists(atPath: finetuneFolder + "/last.h5")
    if !(options.resume && finetuneStarted) {
        phases.append(try runPretraining(prepared, data: pretrainData, cycle: cycle, folder: pretrainFolder, options: options))
        if interrupt.isSet { throw TrainingError.interrupted(savedTo: pretrainFolder + "/last.h5") }
    }
    if let finetuned = try runFinetuning(prepared, from: pretrainFolder + "/last.h5", folder: finetuneFolder, options: options) {
        phases.append(finetuned)
    }
    return ProgramResult(phases: phases, checkpoint: finetuneFolder + "/last.h5")
}

/// The splits a phase's data has.
public enum EvaluationSplit: String, CaseIterable, Sendable {
    case train, validation, test
}

/// Accuracy of a checkpoint's model on one split.
public struct EvaluationResult: Sendable {
    public var split: EvaluationSplit
    /// True when the split's images are the test images (also `--split validation` of a recipe that said `validation: test`).
    public var isTestSplit: Bool
    public var score: SplitScore
    public var dataset: String
    /// One name per output index.
    public var classNames: [String]
    /// `confusion[label][predicted]` image counts.
    public var confusion: [[Int]]
    /// The members averaged (`evaluateEnsemble`); 1 for one checkpoint.
    public var ensembleSize = 1

    public var summary: String {
        let name = isTestSplit && split != .test ? "\(split.rawValue) split (the test images)" : "\(split.rawValue) split"
        let model = ensembleSize > 1 ? "ensemble of \(ensembleSize) (mean softmax), " : ""
        var line = String(format: "%@%@ of %@: %d images, loss %.4f, top-1 %.2f %%", model, name, dataset, score.images, score.loss, score.top1)
        if classNames.count > 5 { line += String(format: ", top-5 %.2f %%", score.top5) }
        return line
    }

    /// Accuracy per class: `class  images  top-1`.
    public var perClassTable: String {
        let titles = classNames.enumerated().map { "\($0.offset)  \($0.element)" }
        let width = max(5, titles.map(\.count).max() ?? 0) + 2
        var lines = ["class".padding(toLength: width, withPad: " ", startingAt: 0) + " images    top-1"]
        for (label, row) in confusion.enumerated() {
            let images = row.reduce(0, +)
            let accuracy = images == 0 ? Double.nan : 100 * Double(row[label]) / Double(images)
            lines.append(titles[label].padding(toLength: width, withPad: " ", startingAt: 0) + String(format: " %6d  %6.2f %%", images, accuracy))
        }
        return lines.joined(separator: "\n")
    }

    /// The confusion matrix: a row per true label, a column per predicted label.
    public var confusionTable: String {
        let cell = max(5, String(confusion.flatMap { $0 }.max() ?? 0).count + 1)
        func padded(_ text: String) -> String { String(repeating: " ", count: max(0, cell - text.count)) + text }
        let header = "true \\ predicted"
        var lines = [header + confusion.indices.map { padded(String($0)) }.joined()]
        for (label, row) in confusion.enumerated() {
            lines.append(String(label).padding(toLength: header.count, withPad: " ", startingAt: 0) + row.map { padded(String($0)) }.joined())
        }
        return lines.joined(separator: "\n")
    }
}

/// Loss (plain cross-entropy, T = 1), top-1, top-5 and the confusion matrix of `model` in inference
/// mode over `loader`'s images.
/// - Throws: `TrainingError.nonFiniteOutputs` when an output is NaN or infinite: a number computed from
///   NaN is no accuracy.
func evaluateModel(_ model: Model, on loader: DataLoader, split: String, source: String) throws -> (score: SplitScore, confusion: [[Int]]) {
    try evaluateOutputs(on: loader, classes: model.spec.numClasses, split: split, source: source) { images in
        try model.forward(images, mode: .inference).logits
    }
}

/// `evaluateModel` for any function from a batch of images to logits `[N, classes]` (an ensemble
/// passes the logarithm of its mean probabilities).
func evaluateOutputs(on loader: DataLoader, classes: Int, split: String, source: String,
                     logits computeLogits: (Tensor) throws -> Tensor) throws -> (score: SplitScore, confusion: [[Int]]) {
    var metrics = RunningMetrics()
    var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
    for batch in loader.epoch(0, batchSize: Trainer.evaluationBatchSize) {
        let logits = try computeLogits(batch.images)
        guard logits.scalars.allSatisfy(\.isFinite) else { throw TrainingError.nonFiniteOutputs(split: split, folder: source) }
        metrics.add(loss: try CrossEntropyLoss()(logits: logits, labels: batch.labels).value, logits: logits, labels: batch.labels)
        logits.scalars.withUnsafeBufferPointer { z in
            for (row, label) in batch.labels.enumerated() {
                var predicted = 0
                for j in 1..<classes where z[row * classes + j] > z[row * classes + predicted] { predicted = j }
                confusion[Int(label)][predicted] += 1
            }
        }
    }
    return (SplitScore(images: metrics.images, loss: metrics.loss, top1: metrics.top1, top5: metrics.top5), confusion)
}

/// Where a checkpoint is scored: its own dataset and classes, with the splits of the phase that
/// produced it (the data section of the recipe it stores, so the validation split is held out with
/// the same fixed seed as in training); without a training record, its `/data` dataset and classes.
struct EvaluationSource {
    var dataRecipe = DataRecipe()
    /// Whether `dataRecipe.folder` is the stored recipe's (a relative one points from the checkpoint's folder).
    private var folderFromCheckpoint = false

    /// - Parameters: dataset, folder, classes: replace the stored ones when given.
    init(_ checkpoint: Checkpoint, path: String, dataset: String? = nil, folder: String? = nil, classes: [Int]? = nil) {
        if let record = checkpoint.training,
           let recipe = try? RecipeSource(text: record.recipe, origin: path, folder: RecipePaths.folder(of: path)).decodeRecipe(ignoringOtherSections: true) {
            // A distilled student trained on the recipe's pretrain phase.
            dataRecipe = (record.program == .finetune ? recipe.finetune : recipe.pretrain)?.data ?? dataRecipe
        } else if let input = checkpoint.input {
            dataRecipe.dataset = input.dataset
            dataRecipe.classes = input.classes
        }
        folderFromCheckpoint = dataRecipe.folder != nil && dataset == nil && folder == nil
        if let dataset { dataRecipe.dataset = dataset; dataRecipe.folder = nil }
        if let folder { dataRecipe.folder = folder }
        if let classes { dataRecipe.classes = classes }
    }

    /// The images, fed as the checkpoint's `/data` says, checked to fit its model's input and classes.
    func data(for checkpoint: Checkpoint, path: String, spec: ModelSpec) throws -> PreparedData {
        if folderFromCheckpoint, let folder = dataRecipe.folder, !FileManager.default.fileExists(atPath: folder) {
            throw RecipeError(path: "data", problem: "\(path) was trained on \(folder), which does not exist (its recipe's data.folder, "
                              + "relative to the checkpoint's folder, which moved without it?); give the dataset with --folder")
        }
        var data = try PreparedData(dataRecipe, path: "data")
        if let input = checkpoint.input { data = try data.adopting(input, from: path, path: "data") }
        guard data.channels == spec.inputChannels, data.classCount == spec.numClasses else {
            throw RecipeError(path: "data", problem: "\(data.source) has \(data.channels)-channel images in \(data.classCount) classes; \(path) expects \(spec.inputChannels) channels and \(spec.numClasses) classes (choose classes with --classes)")
        }
        return data
    }
}

extension PreparedData {
    /// The images of `split`.
    func images(of split: EvaluationSplit) -> ImageDataset {
        switch split {
        case .train: training
        case .validation: validation
        case .test: test
        }
    }

    /// Whether `split`'s images are the test images.
    func isTest(_ split: EvaluationSplit) -> Bool { split == .test || (split == .validation && validatesOnTest) }
}

/// The model a checkpoint holds, its spec checked against the file, computing at `precision` (as
/// `Precision.resolved` gives it for this machine).
func loadedModel(_ checkpoint: Checkpoint, precision: Precision = .fp32) throws -> Model {
    let model = try Model(try checkpoint.modelSpec(), seed: 0)
    try checkpoint.loadModel(into: model.state)
    model.precision = resolvedPrecision(precision)
    return model
}

/// What `requested` runs at on this machine, logging why when that is fp32 instead of bf16.
public func resolvedPrecision(_ requested: Precision) -> Precision {
    let (precision, note) = Precision.resolved(requested)
    if let note { logger.warning("\(note)") }
    return precision
}

/// `epicycle eval`: the model of `checkpointPath` on one split of its own dataset (by default the test
/// split), fed as the checkpoint's input pipeline says (`/data`: normalisation and classes).
///
/// The splits are those of the phase that produced the checkpoint, rebuilt from the recipe it stores
/// (the validation split is held out with the same fixed seed); `dataset`, `folder` and `classes`
/// override the stored ones (the checkpoint's own classes give the same figures as no override).
///
/// `precision` bf16 runs the convolutions' products in bf16 (see `Precision`).
public func evaluate(checkpoint checkpointPath: String, split: EvaluationSplit = .test, dataset: String? = nil,
                     folder: String? = nil, classes: [Int]? = nil, precision: Precision = .fp32) throws -> EvaluationResult {
    let checkpoint = try Checkpoint.read(from: checkpointPath)
    let model = try loadedModel(checkpoint, precision: precision)
    let data = try EvaluationSource(checkpoint, path: checkpointPath, dataset: dataset, folder: folder, classes: classes)
        .data(for: checkpoint, path: checkpointPath, spec: model.spec)
    let images = data.images(of: split)
    guard images.count > 0 else {
        throw RecipeError(path: "data", problem: "the \(split.rawValue) split of \(data.source) has no images")
    }
    let (score, confusion) = try evaluateModel(model, on: data.loader(for: images), split: split.rawValue, source: checkpointPath)
    return EvaluationResult(split: split, isTestSplit: data.isTest(split), score: score,
                            dataset: data.source, classNames: images.classNames, confusion: confusion)
}
