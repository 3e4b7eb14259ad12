import ArgumentParser
import EpicycleRuntime

@main
struct Epicycle: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "epicycle",
        abstract: "Cyclical pretraining, fine-tuning and knowledge distillation of CNNs.",
        version: "0.1.0",
        subcommands: [Info.self, Inspect.self]
    )
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the BLAS library and the kernel set it selected on this machine.",
        discussion: "Example: epicycle info")

    func run() throws {
        print(blasDescription)
    }
}
