import ArgumentParser
import EpicycleCheckpoint
import EpicycleRuntime

@main
struct Epicycle: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "epicycle",
        abstract: "Cyclical pretraining, fine-tuning and knowledge distillation of CNNs.",
        discussion: """
            Every knob that usually stays constant can follow one cyclical schedule: easy → hard → easy \
            (Smith, "General Cyclical Training of Neural Networks", 2022). Recipes are YAML; see Experiments/.
            """,
        version: epicycleSoftwareVersion,
        subcommands: [DemoCommand.self, Pretrain.self, Finetune.self, Cycle.self, Distill.self, Compare.self, CompareRun.self,
                      Evaluate.self, Soup.self, ScheduleCommand.self, Check.self, Inspect.self, DataCommand.self, Bench.self, BenchMPI.self, Info.self]
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
