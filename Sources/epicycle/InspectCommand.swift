import ArgumentParser
import EpicycleCheckpoint

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarise a checkpoint: architecture, tensors, optimizer, training state and recipe.",
        discussion: "Example: epicycle inspect Checkpoints/teacher-resnet20-cyclical/last.h5 --all")

    @Argument(help: "The checkpoint file (.h5).")
    var file: String

    @Flag(help: "List every tensor instead of folding long lists.")
    var all = false

    func run() throws {
        print(try reporting { try Checkpoint.read(from: file).summary(listingEveryTensor: all) })
    }
}
