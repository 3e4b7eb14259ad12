import ArgumentParser
import EpicycleData
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

    @Flag(help: "No progress output.")
    var quiet = false

    func source() throws -> RecipeSource { try RecipeSource(contentsOf: recipe, overrides: overrides) }
    var runOptions: RunOptions { RunOptions(output: output, resume: resume, quiet: quiet) }
}

/// Prints a library error as the message it is (key path or file first), not as a Swift dump. An
/// interrupted run exits with 130, as a shell reports Ctrl-C.
func reporting<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as TrainingError {
        if case .interrupted = error {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(130)
        }
        throw ValidationError(error.description)
    } catch let error as CustomStringConvertible & Error {
        throw ValidationError(error.description)
    }
}

struct Pretrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model from scratch on the recipe's pretrain phase.",
        discussion: """
            When the recipe also has a finetune phase, the knobs follow the joint cycle, and a later \
            `epicycle finetune` continues it.
            Example: epicycle pretrain --recipe Experiments/teacher-resnet20.yaml --set pretrain.epochs=5
            """)

    @OptionGroup var options: RecipeOptions

    func run() throws {
        let result = try reporting { try pretrain(recipe: try options.source(), options: options.runOptions) }
        print(result.summary)
    }
}

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune a pretrained checkpoint on the recipe's finetune phase, continuing its cycle.",
        discussion: """
            A new classifier head is trained for the target classes; `finetune.freeze` lists parameter \
            prefixes to hold fixed. The cycle continues from the position stored in the checkpoint.
            Example: epicycle finetune --from Checkpoints/cycle/pretrain/last.h5 --recipe Experiments/cycle-fmnist.yaml
            """)

    @Option(name: .customLong("from"), help: ArgumentHelp("The pretrained checkpoint.", valueName: "file.h5"))
    var checkpoint: String

    @OptionGroup var options: RecipeOptions

    func run() throws {
        let result = try reporting { try finetune(from: checkpoint, recipe: try options.source(), options: options.runOptions) }
        print(result.summary)
    }
}

struct Cycle: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pretrain then fine-tune as one cycle that peaks at the end of pretraining.",
        discussion: """
            The cycle spans both phases; a cyclical knob without an explicit factor gets \
            f = (E_pre + E_fine) / E_pre, so it is hardest where pretraining ends.
            Example: epicycle cycle --recipe Experiments/cycle-fmnist.yaml
            """)

    @OptionGroup var options: RecipeOptions

    func run() throws {
        let result = try reporting { try cycle(recipe: try options.source(), options: options.runOptions) }
        print(result.summary)
    }
}

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Accuracy of a checkpoint on one split of its dataset (by default the test split).",
        discussion: """
            The images are fed as the checkpoint's input pipeline says (its stored normalisation and \
            classes), and the splits are those of the phase that produced it, from the recipe stored in it.
            Example: epicycle eval Checkpoints/cycle-fmnist-cyclical/finetune/best.h5 --per-class
            """)

    @Argument(help: "The checkpoint file (.h5).")
    var checkpoint: String

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

    @Flag(help: "Also print the confusion matrix (rows: true class, columns: predicted).")
    var confusion = false

    func run() throws {
        let result = try reporting {
            try evaluate(checkpoint: checkpoint, split: split, dataset: dataset, folder: folder, classes: classes.isEmpty ? nil : classes)
        }
        print(result.summary)
        if perClass { print("\n" + result.perClassTable) }
        if confusion { print("\n" + result.confusionTable) }
    }
}

extension EvaluationSplit: ExpressibleByArgument {}

struct ScheduleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "schedule",
        abstract: "Print each knob's value per epoch and plot the curves as SVG, before spending compute.",
        discussion: "Example: epicycle schedule --recipe Experiments/cycle-fmnist.yaml --plot cycle.svg")

    @Option(help: ArgumentHelp("The recipe (YAML).", valueName: "file.yaml"))
    var recipe: String

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a recipe value (as for pretrain).", valueName: "key.path=value"))
    var overrides: [String] = []

    @Option(help: ArgumentHelp("Where to write the SVG plot.", valueName: "file.svg"))
    var plot = "schedule.svg"

    func run() throws {
        let table = try reporting {
            try scheduleTable(recipe: try RecipeSource(contentsOf: recipe, overrides: overrides))
        }
        print(table.text)
        try reporting { try table.svg.write(toFile: plot, atomically: true, encoding: .utf8) }
        print("wrote \(plot)")
    }
}
