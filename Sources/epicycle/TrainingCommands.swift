import ArgumentParser
import EpicycleData
import EpicycleExperiments
import EpicycleMPI
import EpicycleRuntime
import EpicycleTraining
import Foundation

/// The recipe, its overrides and the run options every training command takes.
struct RecipeOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The recipe (YAML).", valueName: "file.yaml"))
    var recipe: String

    @Option(name: .customLong("set"), help: ArgumentHelp(
        "Override a recipe value, e.g. --set knobs.weight_decay=5e-4 or --set 'knobs.temperature={cyclical: {easy: 0.5, hard: 2}}'. Repeatable.",
        valueName: "key.path=value"))
    var overrides: [String] = []

    @Option(help: ArgumentHelp("Where checkpoints and metrics go (default: the recipe's output, else Checkpoints/<recipe name>).",
                               valueName: "folder"))
    var output: String?

    @Flag(help: "Continue from last.h5 in the output folder.")
    var resume = false

    @Flag(help: "Start afresh in an output folder that holds an earlier run, removing its checkpoints and metrics first.")
    var overwrite = false

    @Flag(help: "No progress output.")
    var quiet = false

    func source() throws -> RecipeSource { try RecipeSource(contentsOf: recipe, overrides: overrides) }
    /// Under `mpirun`, data-parallel over the launch's processes, each with its share of this machine's cores.
    var runOptions: RunOptions {
        let world = Communicator.world
        return RunOptions(output: output, resume: resume, quiet: quiet, threadLimit: world.map { max(1, onlineProcessorCount / $0.localSize) },
                          overwrite: overwrite, communicator: world)
    }
}

/// Runs a command's work. A runtime error is printed as what it is, on one line (`error: …`, key
/// path or file first; then `hint: …` where the error has one), and exits with status 1 — the usage
/// text is for argument errors, which ArgumentParser reports before `run()`. An interrupted run
/// exits with 130, as a shell reports Ctrl-C. Under `mpirun` with several processes, an error ends
/// the whole launch (`Communicator.abort`), since the other processes would wait for this one forever;
/// an interruption is agreed on by all of them, which then exit together.
func reporting<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as ExitCode {
        throw error
    } catch let error as TrainingError {
        if case .interrupted = error {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(130)
        }
        throw endingLaunch(failure(error))
    } catch {
        throw endingLaunch(failure(error))
    }
}

/// Prints a training command's summary, once under `mpirun`: from process 0.
func printSummary(_ result: ProgramResult) {
    if (Communicator.world?.rank ?? 0) == 0 { print(result.summary) }
}

/// `code`, after ending every other process of a launch of several (which never returns).
private func endingLaunch(_ code: ExitCode) -> ExitCode {
    if let world = Communicator.world, world.size > 1 { world.abort(code: code.rawValue) }
    return code
}

/// Prints `error` as `reporting` does and returns the exit code to throw.
func failure(_ error: any Error) -> ExitCode {
    failure(message: errorMessage(error), hint: (error as? ErrorWithHint)?.hint)
}

func failure(message: String, hint: String?) -> ExitCode {
    FileHandle.standardError.write(Data(("error: " + message + "\n" + (hint.map { "hint: " + $0 + "\n" } ?? "")).utf8))
    return ExitCode.failure
}

struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model from scratch on the recipe's pretrain phase.",
        discussion: """
            When the recipe also has a finetune phase, the knobs follow the joint cycle, and a later \
            `epicycle finetune` continues it.
            Example: epicycle pretrain --recipe Experiments/teacher-resnet20-cyclical.yaml --set pretrain.epochs=5
            """)

    @OptionGroup var options: RecipeOptions

    func run() throws {
        let result = try reporting { try pretrain(recipe: try options.source(), options: options.runOptions) }
        printSummary(result)
    }
}

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune a pretrained checkpoint on the recipe's finetune phase, continuing its cycle.",
        discussion: """
            A new classifier head is trained for the target classes; `finetune.freeze` lists parameter \
            prefixes to hold fixed. The cycle continues from the position stored in the checkpoint.
            Example: epicycle finetune --from Checkpoints/cycle-fmnist-cyclical/pretrain/last.h5 --recipe Experiments/cycle-fmnist-cyclical.yaml --set seed=1 --output Checkpoints/finetune-seed1
            """)

    @Option(name: .customLong("from"), help: ArgumentHelp("The pretrained checkpoint.", valueName: "file.h5"))
    var checkpoint: String

    @OptionGroup var options: RecipeOptions

    func run() throws {
        let result = try reporting { try finetune(from: checkpoint, recipe: try options.source(), options: options.runOptions) }
        printSummary(result)
    }
}

struct Cycle: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pretrain then fine-tune as one cycle that peaks at the end of pretraining.",
        discussion: """
            The cycle spans both phases; a cyclical knob without an explicit factor gets \
            f = (E_pre + E_fine) / E_pre, so it is hardest where pretraining ends.
            Example: epicycle cycle --recipe Experiments/cycle-fmnist-cyclical.yaml
            """)

    @OptionGroup var options: RecipeOptions

    func run() throws {
        let result = try reporting { try cycle(recipe: try options.source(), options: options.runOptions) }
        printSummary(result)
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Accuracy of a checkpoint, or of an ensemble, on one split of its dataset (by default the test split).",
        discussion: """
            The images are fed as the checkpoint's input pipeline says (its stored normalisation and \
            classes), and the splits are those of the phase that produced it, from the recipe stored in it. \
            --ensemble averages the softmax outputs of several checkpoints that share the input pipeline \
            and classes (the first one's recipe decides the splits).
            Example: epicycle eval Checkpoints/cycle-fmnist-cyclical/finetune/best.h5 --per-class
            Example: epicycle eval --ensemble Experiments/results/knobs-4k/runs/constant/seed-{0,1,2}/last.h5
            """)

    @Argument(help: "The checkpoint file (.h5).")
    var checkpoint: String?

    @Option(parsing: .upToNextOption, help: ArgumentHelp("Score the mean softmax output of these checkpoints instead.",
                                                         valueName: "file.h5"))
    var ensemble: [String] = []

    @Option(help: "Which split: train, validation or test.")
    var split: EvaluationSplit = .test

    @Option(help: "Dataset name (fashion-mnist, mnist, kmnist, cifar10, cifar100).")
    var dataset: String?

    @Option(help: "A folder holding the dataset's files.")
    var folder: String?

    @Option(parsing: .upToNextOption, help: "Keep these classes, relabelled 0..k−1 (default: the checkpoint's).")
    var classes: [Int] = []

    @Flag(help: "Also print the accuracy of each class.")
    var perClass = false

    @Option(help: "fp32, or bf16 for the convolutions' products (needs AVX512-BF16; else fp32, with a warning).")
    var precision: Precision = .fp32

    @Flag(help: "Also print the confusion matrix (rows: true class, columns: predicted).")
    var confusion = false

    func validate() throws {
        guard (checkpoint == nil) != ensemble.isEmpty else {
            throw ValidationError(checkpoint == nil ? "Give a checkpoint, or --ensemble with the checkpoints to average."
                                                    : "Give one checkpoint or --ensemble, not both.")
        }
    }

    func run() throws {
        let classes = classes.isEmpty ? nil : classes
        let result = try reporting {
            if let checkpoint {
                return try evaluate(checkpoint: checkpoint, split: split, dataset: dataset, folder: folder, classes: classes,
                                    precision: precision)
            }
            return try evaluateEnsemble(checkpoints: ensemble, split: split, dataset: dataset, folder: folder, classes: classes,
                                        precision: precision)
        }
        print(result.summary)
        if perClass { print("\n" + result.perClassTable) }
        if confusion { print("\n" + result.confusionTable) }
    }
}

extension EvaluationSplit: ExpressibleByArgument {}

struct Soup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Average the weights of checkpoints of one architecture into one model (a model soup).",
        discussion: """
            Wortsman et al. 2022. The checkpoints must share the architecture, every tensor's name and \
            shape, the input pipeline and the validation split (the first one's recipe decides it). A \
            greedy soup adds ingredients in order of their own validation top-1 and keeps each that does \
            not lower the soup's; a uniform soup averages all. The soup's batch-norm statistics are \
            recalibrated on training images before it is scored and saved.
            Example: epicycle soup Checkpoints/cycle-fmnist-cyclical/finetune/last.h5 Checkpoints/finetune-seed1/last.h5 --output soup.h5
            """)

    @Argument(help: "The checkpoints to average (.h5).")
    var checkpoints: [String]

    @Option(help: "greedy (validation-driven) or uniform.")
    var kind: SoupKind = .greedy

    @Option(help: ArgumentHelp("Where to write the soup.", valueName: "file.h5"))
    var output: String

    @Option(help: "Un-augmented training images for the batch-norm recalibration.")
    var recalibrationImages = PreciseBNRecipe().images

    func validate() throws {
        guard RecipeLimits.samples.contains(recalibrationImages) && recalibrationImages > 0 else {
            throw ValidationError("--recalibration-images must be from 1 to \(RecipeLimits.samples.upperBound), got \(recalibrationImages).")
        }
    }

    func run() throws {
        let result = try reporting {
            try makeSoup(kind, of: checkpoints, output: output, recalibrationImages: recalibrationImages)
        }
        print(result.summary)
    }
}

extension SoupKind: ExpressibleByArgument {}

struct ScheduleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule",
        abstract: "Print each knob's value per epoch (and with --plot, the curves as SVG), before spending compute.",
        discussion: "Example: epicycle schedule --recipe Experiments/cycle-fmnist-cyclical.yaml --plot cycle.svg")

    @Option(help: ArgumentHelp("The recipe (YAML).", valueName: "file.yaml"))
    var recipe: String

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a recipe value (as for pretrain).", valueName: "key.path=value"))
    var overrides: [String] = []

    @Option(help: ArgumentHelp("Also plot the curves into this SVG file (nothing is written without it).", valueName: "file.svg"))
    var plot: String?

    func run() throws {
        let table = try reporting {
            try scheduleTable(recipe: try RecipeSource(contentsOf: recipe, overrides: overrides))
        }
        print(table.text)
        guard let plot else { return }
        try reporting { try table.svg.write(toFile: plot, atomically: true, encoding: .utf8) }
        print("wrote \(plot)")
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check recipes and experiments without training: one line per file, ok or the first problem.",
        discussion: """
            Goes exactly as far as the training command would before its first step: the recipe and its \
            --set values, the data, every knob over the whole cycle, the model's size and whether it fits \
            this machine's memory (and for distillation the teacher). Nothing is written. A recipe is checked \
            as `distill` when it has a distill section, else as `cycle` (both phases) or `pretrain`; a \
            fine-tune-only recipe needs --from. An experiment file (with `program:`) is checked as `compare` \
            would check it. Exit status 1 when any file has a problem.
            Example: epicycle check Experiments/*.yaml
            """)

    @Argument(help: ArgumentHelp("Recipes or experiments (YAML).", valueName: "file.yaml"))
    var files: [String]

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a recipe value (as for pretrain).", valueName: "key.path=value"))
    var overrides: [String] = []

    @Option(name: .customLong("from"), help: ArgumentHelp("The checkpoint a fine-tune-only recipe starts from.", valueName: "file.h5"))
    var checkpoint: String?

    func validate() throws {
        guard files.count <= 10_000 else { throw ValidationError("at most 10000 files at once, got \(files.count)") }
    }

    func run() throws {
        var failed = false
        for file in files {
            do {
                print("\(file): " + (try checkFile(file, overrides: overrides, checkpoint: checkpoint)))
            } catch {
                failed = true
                print("\(file): error: " + errorMessage(error))
            }
        }
        if failed { throw ExitCode.failure }
    }
}
