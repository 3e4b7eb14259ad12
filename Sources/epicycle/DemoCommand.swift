import ArgumentParser
import EpicycleExperiments
import Foundation

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "The whole story on Fashion-MNIST in a few minutes: one-cycle teacher, cyclical vs constant distillation.",
        discussion: """
            Pretrains a ResNet-20 teacher on classes 0–4 and fine-tunes it on 5–9 as one cycle, then distils a \
            ResNet-8 student with a constant and a cyclical recipe over two seeds and prints the comparison \
            table and the report's path. Finished steps are kept: running it again only reports.
            Example: epicycle demo --output Checkpoints/demo
            """)

    @Option(help: ArgumentHelp("Where the recipes, checkpoints and results go.", valueName: "folder"))
    var output = "Checkpoints/demo"

    @Option(help: "Distillation runs at a time, each a process with max(1, cores / jobs) threads.")
    var jobs = 2

    func validate() throws {
        try validateCount(jobs, option: "--jobs")
    }

    func run() throws {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let result = try reporting {
            try Demo.run(folder: output, jobs: jobs, executable: executable,
                         command: (["epicycle"] + CommandLine.arguments.dropFirst()).joined(separator: " ")) { print($0) }
        }
        print("\n" + result.comparison.report.markdown)
        print("report: \(result.comparison.reportPath)")
        if !result.comparison.failed.isEmpty {
            throw failure(message: "\(result.comparison.failed.count) run(s) did not finish", hint: "run the same command again to retry them")
        }
    }
}
