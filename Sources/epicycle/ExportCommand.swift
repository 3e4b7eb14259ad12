import ArgumentParser
import EpicycleTraining

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a checkpoint's model for other tools: an ONNX inference graph (opset 17).",
        discussion: """
            The graph takes 'images', float32 [batch, channels, height, width] with pixel values in [0, 1], \
            normalises them with the checkpoint's mean and std, and returns 'logits' [batch, classes]; batch norm \
            is folded into the convolutions and the batch dimension is dynamic. The class names are in the \
            model's metadata ('classes', one a line).

            Example: epicycle export Checkpoints/quickstart/finetune/best.h5 --onnx model.onnx
            """)

    @Argument(help: "The checkpoint file (.h5).")
    var checkpoint: String

    @Option(help: "The ONNX file to write.")
    var onnx: String

    func run() throws {
        print(try reporting { try exportONNX(checkpoint: checkpoint, to: onnx) }.description)
    }
}
