import ArgumentParser
import EpicycleBench
import Foundation

extension BenchWorkload: ExpressibleByArgument {}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training, distillation and inference speed side by side with PyTorch.",
        discussion: """
            Three workloads on synthetic batches, each run in a fresh process so that its peak memory is its own:
              training      ResNet-20 step (forward, cross-entropy, backward, SGD), batch 128
              distillation  the distillation objective of `epicycle distill`: ResNet-56 teacher in inference \
            mode + ResNet-20 student, cross-entropy + KL(T=4) + MSE after a 1×1 conv + batch-norm hint on \
            layer2, SGD over student and hint, batch 128
              inference     ResNet-20 in inference mode, batch 256
            PyTorch runs the same workloads (scripts/bench_pytorch.py) in both memory layouts; ratios are \
            against its faster one. Each figure is the median over --repeats timings of --steps steps, after \
            --warmup untimed steps. GFLOP/s counts the convolutions' and the classifier's multiply-adds (a \
            training step as three forwards).

            Example: epicycle bench --python "$(bash scripts/setup-python | tail -n 1)"
            """)

    @Option(help: "A workload to run (repeat the option for several; default: all three).")
    var workload: [BenchWorkload] = BenchWorkload.allCases

    @Option(help: "Threads for both frameworks.")
    var threads = 2

    @Option(help: "Untimed steps before measuring.")
    var warmup = 3

    @Option(help: "Timed repeats; the median is reported.")
    var repeats = 7

    @Option(help: "Steps per timed repeat.")
    var steps = 3

    @Option(help: "A Python with torch for the comparison (default: $EPICYCLE_PYTHON, else python3).")
    var python: String?

    @Option(help: "PyTorch's side of the benchmark.")
    var script = "scripts/bench_pytorch.py"

    @Flag(help: "Measure Epicycle only.")
    var epicycleOnly = false

    @Flag(help: "Also time each layer type of the ResNet-20 training step on its own.")
    var profile = false

    @Option(help: .hidden)
    var worker: BenchWorkload?

    private var options: BenchOptions {
        let python = epicycleOnly ? nil : python ?? ProcessInfo.processInfo.environment["EPICYCLE_PYTHON"] ?? "python3"
        return BenchOptions(workloads: workload, threads: threads, warmup: warmup, repeats: repeats, steps: steps,
                            python: python, script: script, profile: profile)
    }

    func validate() throws {
        try reporting { try options.validate() }
    }

    func run() throws {
        if let worker {
            print(try reporting { try measureWorkload(worker, options: options) })
            return
        }
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        try reporting { try runBenchmark(options, executable: executable) { print($0) } }
    }
}
