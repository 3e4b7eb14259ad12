import ArgumentParser
import EpicycleDistillation

struct Distill: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train the recipe's model (the student) against a frozen teacher checkpoint.",
        discussion: """
            The student trains on the recipe's pretrain phase; its loss is the weighted sum of the \
            distill.losses terms (labels, logits, hint, attention, spatial_softmax), each weight and \
            temperature a constant or a schedule. The teacher runs in inference mode on the same \
            augmented batch; the progress line shows its share of the step time. Hint regressors are \
            saved under /adapters; the model itself is an ordinary checkpoint.
            Example: epicycle distill --teacher Checkpoints/distill-teacher-resnet20/best.h5 --recipe Experiments/distill-cyclical.yaml
            """)

    @Option(help: ArgumentHelp("The teacher checkpoint (overrides distill.teacher in the recipe).", valueName: "file.h5"))
    var teacher: String?

    @OptionGroup var options: RecipeOptions

    func run() throws {
        let result = try reporting { try distill(teacher: teacher, recipe: try options.source(), options: options.runOptions) }
        printSummary(result)
    }
}
