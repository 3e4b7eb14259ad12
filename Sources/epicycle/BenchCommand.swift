import ArgumentParser
import EpicycleBench
import EpicycleMPI
import EpicycleRuntime
import Foundation

extension BenchWorkload: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training, distillation and inference speed side by side with PyTorch, ONNX Runtime and OpenVINO.",
        discussion: """
            Three workloads on synthetic batches, each run in a fresh process so that its peak memory is its own:
              training      ResNet-20 step (forward, cross-entropy, backward, SGD), batch 128
              distillation  the distillation objective of `epicycle distill`: ResNet-56 teacher in inference \
            mode + ResNet-20 student, cross-entropy + KL(T=4) + MSE after a 1×1 conv + batch-norm hint on \
            layer2, SGD over student and hint, batch 128
              inference     ResNet-20 in inference mode, batch 256
            The peers run the same workloads (scripts/bench_peers.py), each in its own process: PyTorch eager \
            in both memory layouts and under torch.autocast bf16; for inference also torch.compile, ONNX Runtime \
            and OpenVINO (f32 and bf16 hints) on the PyTorch twin exported to ONNX. Ratios are against the \
            fastest peer at the same precision; a peer that is missing or fails is \
            listed with its reason and skipped. Each figure is the median over --repeats timings of --steps steps, after \
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

    @Option(help: "A Python with the peers (torch, onnxruntime, openvino) for the comparison (default: $EPICYCLE_PYTHON, else python3).")
    var python: String?

    @Option(help: "The peers' side of the benchmark.")
    var script = "scripts/bench_peers.py"

    @Flag(help: "Measure Epicycle only.")
    var epicycleOnly = false

    @Flag(help: "Also time each layer type of the ResNet-20 training step on its own.")
    var profile = false

    @Option(help: "A precision to run Epicycle at (repeat for several; default: fp32 and bf16). bf16 needs AVX512-BF16.")
    var precision: [Precision] = Precision.allCases

    @Option(help: .hidden)
    var worker: BenchWorkload?

    private var options: BenchOptions {
        let python = epicycleOnly ? nil : python ?? ProcessInfo.processInfo.environment["EPICYCLE_PYTHON"] ?? "python3"
        return BenchOptions(workloads: workload, threads: threads, warmup: warmup, repeats: repeats, steps: steps,
                            python: python, script: script, profile: profile,
                            precisions: Precision.allCases.filter(precision.contains))
    }

    func validate() throws {
        try reporting { try options.validate() }
    }

    func run() throws {
        if let worker {
            // The worker runs the one precision it is given, resolved by the parent.
            print(try reporting { try measureWorkload(worker, precision: precision.first ?? .fp32, options: options) })
            return
        }
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        try reporting { try runBenchmark(options, executable: executable) { print($0) } }
    }
}

struct BenchMPI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-mpi",
        abstract: "Measure what data-parallel training spends on communication (run it under mpirun).",
        discussion: """
            An all-reduce sweep from 4 bytes to 16 MiB (latency α and bandwidth 1/β), the data-parallel \
            ResNet-20 and ResNet-56 training step at 128 images per process split into compute and \
            communication, and the α–β estimate of that step on 8 and 32 machines, over this machine's \
            measured α and β and over typical 10 GbE and 1 GbE figures.
            Example: mpirun -np 2 epicycle bench-mpi
            """)

    @Option(help: "Timed repeats; the median is reported.")
    var repeats = 5

    @Option(help: "Steps per timed repeat.")
    var steps = 3

    func validate() throws {
        try validateCount(repeats, option: "--repeats")
        try validateCount(steps, option: "--steps")
    }

    func run() throws {
        guard let world = Communicator.world, world.size > 1 else {
            throw failure(message: "bench-mpi measures communication between processes: run it under mpirun with at least 2",
                          hint: "mpirun -np 2 epicycle bench-mpi (as root add --allow-run-as-root; on few cores --oversubscribe)")
        }
        setThreads(max(1, onlineProcessorCount / world.localSize))
        let report = try reporting { try runCommunicationBenchmark(communicator: world, repeats: repeats, steps: steps) }
        if let report { print(report.text) }
    }
}
