import EpicycleCheckpoint
import EpicycleRuntime
import EpicycleSchedules
import EpicycleTraining
import Foundation

/// Why a distillation cannot start.
public enum DistillationError: Error, Equatable, CustomStringConvertible {
    /// Neither `--teacher` nor `distill.teacher` names a checkpoint.
    case noTeacher
    /// The teacher file is not a model checkpoint (not HDF5, not Epicycle's, no `/model`, a bad spec,
    /// tensors that do not fit the spec).
    case teacherNotAModel(file: String, reason: String)
    case classCountMismatch(teacher: String, teacherClasses: Int, studentClasses: Int)
    case inputChannelMismatch(teacher: String, teacherChannels: Int, dataChannels: Int)
    /// The teacher's outputs stand for other original labels than the student's.
    case classMismatch(teacher: String, teacherClasses: [Int], studentClasses: [Int])

    public var description: String {
        switch self {
        case .noTeacher:
            return "distill.teacher: is required (a teacher checkpoint), or pass --teacher <checkpoint.h5>"
        case let .teacherNotAModel(file, reason):
            return "teacher \(file) is not a model checkpoint: \(reason)"
        case let .classCountMismatch(teacher, teacherClasses, studentClasses):
            return "teacher \(teacher) predicts \(teacherClasses) classes but the student's data (pretrain.data) has \(studentClasses); "
                + "logit distillation needs the same classes — choose them with pretrain.data.classes, or drop the 'logits' term"
        case let .classMismatch(teacher, teacherClasses, studentClasses):
            return "teacher \(teacher) predicts the dataset's classes \(teacherClasses) (its /data input pipeline) but the student's "
                + "data (pretrain.data) has \(studentClasses); logit distillation needs the same classes in the same order"
        case let .inputChannelMismatch(teacher, teacherChannels, dataChannels):
            return "teacher \(teacher) takes \(teacherChannels)-channel images but the student's data has \(dataChannels)-channel images"
        }
    }
}

/// Loads a teacher (`loadFrozenModel`), its errors naming the teacher.
public func loadTeacher(from path: String) throws -> Model {
    try loadTeacherAndInput(from: path).model
}

/// `loadTeacher`, with the input pipeline the teacher's checkpoint stores (nil in older files).
func loadTeacherAndInput(from path: String) throws -> (model: Model, input: InputPipeline?) {
    do {
        return try loadFrozenModel(from: path)
    } catch let error as CheckpointError {
        throw DistillationError.teacherNotAModel(file: path, reason: error.description)
    } catch let error as RecipeError {
        throw DistillationError.teacherNotAModel(file: path, reason: error.problem)
    }
}

/// `epicycle distill`: trains the recipe's model (the student) on its `pretrain` phase against a frozen
/// teacher, with the loss the `distill:` section lists. Checkpoints record the program `distill` and
/// keep hint regressors under `/adapters`; the model in them is an ordinary one (`eval`, `finetune`,
/// and `distill --teacher` take it). `--resume` continues from `last.h5` as for pretraining.
/// - Parameter teacherPath: overrides `distill.teacher`; it is written into the recipe text the
///   checkpoints store, so a resumed run must name the same teacher.
public func distill(teacher teacherPath: String?, recipe source: RecipeSource, options: RunOptions = RunOptions()) throws -> ProgramResult {
    var source = source
    if let teacherPath {
        let quoted = "\"" + teacherPath.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        source = try source.overriding(["distill.teacher=" + quoted])
    }
    let prepared = try PreparedRecipe(source, options: options, for: DistillationObjective.self)
    let recipe = prepared.recipe
    let distillRecipe = try DistillRecipe.required(in: recipe)
    if recipe.pretrain?.unlabeled != nil {
        throw RecipeError(path: "pretrain.unlabeled", problem: "distill trains the student on labeled images only; remove the unlabeled section")
    }
    guard var data = prepared.pretrainData else { throw DistillRecipe.missingPretrain }
    guard let path = distillRecipe.teacher else { throw DistillationError.noTeacher }
    let (teacher, teacherInput) = try loadTeacherAndInput(from: path)
    guard teacher.spec.inputChannels == data.channels else {
        throw DistillationError.inputChannelMismatch(teacher: path, teacherChannels: teacher.spec.inputChannels, dataChannels: data.channels)
    }
    let matchesLogits = distillRecipe.losses.contains { $0.kind == .logits }
    if matchesLogits, teacher.spec.numClasses != data.classCount {
        throw DistillationError.classCountMismatch(teacher: path, teacherClasses: teacher.spec.numClasses, studentClasses: data.classCount)
    }
    if let teacherInput {
        // The teacher sees the student's batches, so both are fed as the teacher was trained.
        data = try data.adopting(teacherInput, from: path, path: "pretrain.data")
        if matchesLogits, teacherInput.classes != data.classes {
            throw DistillationError.classMismatch(teacher: path, teacherClasses: teacherInput.classes, studentClasses: data.classes)
        }
    }

    let cycle = prepared.jointCycle
    try prepared.validateKnobs(.pretrain, cycle: cycle)
    try distillRecipe.validate(over: cycle)
    if options.checkOnly { return ProgramResult(phases: [], checkpoint: prepared.output + "/last.h5") }
    let lock = try openRunFolder(prepared.output, options: options)
    defer { withExtendedLifetime(lock) {} }

    let student = try Model(recipe.model.spec(inputChannels: data.channels, numClasses: data.classCount), seed: recipe.seed)
    let objective = try DistillationObjective(student: student, teacher: teacher, terms: distillRecipe.losses,
                                              imageShape: data.training.imageShape, seed: recipe.seed, loss: recipe.loss)
    let adapters = objective.adapters.parameters.isEmpty ? nil : objective.adapters
    let optimizer = prepared.makeOptimizer(for: student.state.parameters + objective.adapters.parameters, phase: .pretrain)
    let start = options.resume
        ? try resumeState(folder: prepared.output, program: .distill, recipeText: prepared.storedText(in: prepared.output), model: student,
                          optimizer: optimizer, adapters: adapters) : nil
    let trainer = try Trainer(model: student, optimizer: optimizer, program: .distill, phase: .pretrain, cyclePhase: .pretrain,
                          cycle: cycle, recipe: recipe, recipeText: prepared.storedText(in: prepared.output), data: data, folder: prepared.output,
                          progress: ProgressReporter(quiet: options.quiet), objective: objective, communicator: options.communicator)
    logger.info("distilling \(recipe.model.architecture) from \(teacher.spec.architecture) (\(path))")
    let result = try trainer.run(resumingFrom: start)
    return ProgramResult(phases: [result], checkpoint: result.folder + "/last.h5")
}
