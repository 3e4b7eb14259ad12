import ArgumentParser
import EpicycleTraining
import Foundation

extension LRRangeRamp: ExpressibleByArgument {}

struct LRRange: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lr-range",
        abstract: "The LR range test: raise the learning rate step by step, plot loss and accuracy against it, suggest bounds.",
        discussion: """
            Smith 2017, "Cyclical Learning Rates for Training Neural Networks", §3.3. Trains the recipe's \
            pretrain phase (a fresh model; no checkpoint) with the learning rate rising from --start to --end \
            over every step of its epochs, linearly (Smith) or exponentially; the other knobs follow the \
            recipe. Stops early when the smoothed loss passes 4 × its lowest. Writes lr-range.csv and \
            lr-range.svg and prints the suggested base and max learning rates with the rule that chose them, \
            as triangular and cyclical schedules ready to paste into a recipe.
            Example: epicycle lr-range --recipe Experiments/base/resnet8-4k.yaml --epochs 2
            """)

    @Option(help: ArgumentHelp("The recipe (YAML).", valueName: "file.yaml"))
    var recipe: String

    @Option(name: .customLong("set"), help: ArgumentHelp("Override a recipe value (as for pretrain).", valueName: "key.path=value"))
    var overrides: [String] = []

    @Option(help: ArgumentHelp("Epochs of the ramp (default: the recipe's pretrain.epochs).", valueName: "n"))
    var epochs: Int?

    @Option(help: "Learning rate of the first step.")
    var start = 1e-5

    @Option(help: "Learning rate of the last step.")
    var end = 1.0

    @Option(help: "How the learning rate rises: linear (Smith 2017) or exp (equal ratios per step).")
    var mode = LRRangeRamp.linear

    @Option(help: "Validation scorings per epoch.")
    var evaluationsPerEpoch = 8

    @Option(help: "Validation images each scoring reads (the first of the held-out split).")
    var validationImages = 2000

    @Option(help: ArgumentHelp("Folder for lr-range.csv and lr-range.svg (default: the run folder + '-lr-range').", valueName: "folder"))
    var output: String?

    @Flag(help: "No progress lines.")
    var quiet = false

    func run() throws {
        let result = try reporting {
            try lrRangeTest(recipe: try RecipeSource(contentsOf: recipe, overrides: overrides + (epochs.map { ["pretrain.epochs=\($0)"] } ?? [])),
                            options: LRRangeOptions(start: start, end: end, ramp: mode, evaluationsPerEpoch: evaluationsPerEpoch,
                                                    validationImages: validationImages, output: output, quiet: quiet))
        }
        if let step = result.divergedAtStep {
            print(String(format: "stopped at step %d of %d: the loss diverged (learning rate %.4g)", step, result.plannedSteps,
                         result.steps.last?.learningRate ?? .nan))
        }
        if let suggestion = result.suggestion, let block = result.scheduleBlock {
            print(String(format: "suggested learning-rate bounds: base %.3g, max %.3g", suggestion.base, suggestion.maximum))
            print("rule: " + suggestion.rule)
            if suggestion.maximumAtEnd { print("note: the maximum is the last learning rate tried; raise --end to see the peak") }
            print(block)
        } else {
            print("no suggestion: no step had a finite loss")
        }
        print("wrote \(result.csvPath) and \(result.svgPath)")
    }
}
