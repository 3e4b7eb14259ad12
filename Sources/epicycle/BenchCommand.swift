import ArgumentParser
import EpicycleRuntime
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure training, distillation and inference speed side by side with PyTorch.",
        discussion: """
            Three workloads on synthetic batches, each run in a fresh process so that its peak memory is its own:
              training      ResNet-20 step (forward, cross-entropy, backward, SGD), batch 128
              distillation  ResNet-56 teacher in inference mode + ResNet-20 student, cross-entropy + KL(T=4) \
            + MSE after a 1×1 conv + batch-norm hint on layer2, SGD over student and hint, batch 128
              inference     ResNet-20 in inference mode, batch 256
            PyTorch runs the same workloads (scripts/bench_pytorch.py) in both memory layouts; ratios are \
            against its faster one. Each figure is the median over --repeats timings of --steps steps, after \
            --warmup untimed steps. GFLOP/s counts the convolutions' and the classifier's multiply-adds (a \
            training step as three forwards).

            Example: epicycle bench --python "$(bash scripts/setup-python | tail -n 1)"
            """)

    enum Workload: String, CaseIterable, Codable, ExpressibleByArgument {
        case training, distillation, inference

        var batch: Int { self == .inference ? 256 : 128 }

        // Multiply-adds ×2 per image: forward costs F, backward 2F (input and weight gradients).
        var flopsPerImage: Double {
            let student = resNetForwardFLOPs(depth: 20)
            switch self {
            case .training: return 3 * student
            case .inference: return student
            case .distillation:
                let hint = 2.0 * 16 * 16 * 32 * 32
                return resNetForwardFLOPs(depth: 56) + 3 * student + 3 * hint
            }
        }
    }

    @Option(help: "A workload to run (repeat the option for several; default: all three).")
    var workload: [Workload] = Workload.allCases

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
    var worker: Workload?

    func validate() throws {
        guard threads >= 1, warmup >= 0, repeats >= 1, steps >= 1 else {
            throw ValidationError("--threads, --repeats and --steps must be ≥ 1 and --warmup ≥ 0")
        }
        guard threads <= 1024, warmup <= 1000, repeats <= 1000, steps <= 1000 else {
            throw ValidationError("--threads is at most 1024, --warmup, --repeats and --steps at most 1000")
        }
    }

    func run() throws {
        if let worker {
            let result = try measureEpicycle(worker, threads: threads, warmup: warmup, repeats: repeats, steps: steps)
            print(String(decoding: try JSONEncoder().encode(result), as: UTF8.self))
            return
        }
        let python = python ?? ProcessInfo.processInfo.environment["EPICYCLE_PYTHON"] ?? "python3"
        if !epicycleOnly && !FileManager.default.fileExists(atPath: script) {
            throw ValidationError("\(script) not found. Run from the repository root, pass --script PATH, or use --epicycle-only.")
        }
        print("Epicycle bench: \(threads) threads, medians of \(repeats) × \(steps) steps after \(warmup) warm-up steps")
        print("BLAS: \(blasDescription)")
        print("Swift kernels: \(swiftKernelDescription)")
        print("Load average before: \(loadAverage) (\(ProcessInfo.processInfo.activeProcessorCount) CPUs)")
        print()

        var rows: [[String]] = []
        for workload in workload {
            let common = ["--threads", "\(threads)", "--warmup", "\(warmup)", "--repeats", "\(repeats)", "--steps", "\(steps)"]
            let ours = try decodeRun(Measurement.self, executable: try selfExecutable(),
                                     arguments: ["bench", "--worker", workload.rawValue] + common)
            var theirs: [Measurement] = []
            if !epicycleOnly {
                for layout in ["channels_last", "nchw"] {
                    theirs.append(try decodeRun(Measurement.self, executable: python,
                                                arguments: [script, "--workload", workload.rawValue, "--layout", layout] + common))
                }
            }
            rows.append(tableRow(workload, ours, theirs))
        }
        let header = ["workload", "batch", "Epicycle img/s", "PyTorch img/s (CL / NCHW)", "ratio",
                      "GFLOP/s (E / P)", "peak RSS MiB (E / P)", "RSS ratio", "img/CPU-s (E / P)", "CPU ratio"]
        print(formatTable([header] + rows))
        print("""

            ratio: Epicycle ÷ PyTorch's faster layout (wall clock); RSS ratio: Epicycle ÷ that layout's peak RSS.
            img/CPU-s: images per second of CPU time summed over threads, which other load on the machine
            does not change (wall-clock figures drop when other processes take the cores).
            """)
        print("Load average after: \(loadAverage)")

        if profile {
            print()
            print(try profileTrainingStep(threads: threads, repeats: repeats))
        }
    }

    private func tableRow(_ workload: Workload, _ ours: Measurement, _ theirs: [Measurement]) -> [String] {
        let flops = workload.flopsPerImage
        func gflops(_ rate: Double) -> String { String(format: "%.0f", rate * flops / 1e9) }
        guard let best = theirs.max(by: { $0.imagesPerSecond < $1.imagesPerSecond }) else {
            return [workload.rawValue, "\(workload.batch)", String(format: "%.0f", ours.imagesPerSecond), "–", "–",
                    gflops(ours.imagesPerSecond), String(format: "%.0f", ours.peakRSSMiB), "–",
                    String(format: "%.0f", ours.imagesPerCPUSecond), "–"]
        }
        let layouts = theirs.map { String(format: "%.0f", $0.imagesPerSecond) }.joined(separator: " / ")
        return [workload.rawValue, "\(workload.batch)", String(format: "%.0f", ours.imagesPerSecond), layouts,
                String(format: "%.2f×", ours.imagesPerSecond / best.imagesPerSecond),
                "\(gflops(ours.imagesPerSecond)) / \(gflops(best.imagesPerSecond))",
                String(format: "%.0f / %.0f", ours.peakRSSMiB, best.peakRSSMiB),
                String(format: "%.2f", ours.peakRSSMiB / best.peakRSSMiB),
                String(format: "%.0f / %.0f", ours.imagesPerCPUSecond, best.imagesPerCPUSecond),
                String(format: "%.2f×", ours.imagesPerCPUSecond / best.imagesPerCPUSecond)]
    }
}

/// One workload's figures, as both the Epicycle worker and scripts/bench_pytorch.py print them (JSON).
struct Measurement: Codable {
    var workload: String
    var batch: Int
    var imagesPerSecond: Double
    var samples: [Double]
    var peakRSSMiB: Double
    /// Images per second of CPU time (all threads) over the timed steps: what the work costs, whatever
    /// else the machine runs.
    var imagesPerCPUSecond: Double

    enum CodingKeys: String, CodingKey {
        case workload, batch, imagesPerSecond = "images_per_second", samples, peakRSSMiB = "peak_rss_mib"
        case imagesPerCPUSecond = "images_per_cpu_second"
    }
}

// Multiply-adds ×2 of a CIFAR ResNet (width 1, option A shortcuts) on one 32×32×3 image: the 3×3
// convolutions and the classifier (batch norm, ReLU and pooling are a few per cent more).
func resNetForwardFLOPs(depth: Int) -> Double {
    let blocks = (depth - 2) / 6
    func conv(_ size: Int, _ inputChannels: Int, _ outputChannels: Int) -> Double {
        2.0 * Double(size * size * inputChannels * outputChannels * 9)
    }
    var total = conv(32, 3, 16)
    var channels = 16
    for (planes, size) in [(16, 32), (32, 16), (64, 8)] {
        for _ in 0..<blocks {
            total += conv(size, channels, planes) + conv(size, planes, planes)
            channels = planes
        }
    }
    return total + 2.0 * 64 * 10
}

// MARK: - Epicycle's workloads

private func measureEpicycle(_ workload: Bench.Workload, threads: Int, warmup: Int, repeats: Int, steps: Int) throws -> Measurement {
    setBLASThreads(threads)
    setKernelThreads(threads)
    let step = try makeStep(workload)
    for _ in 0..<warmup { try step() }
    var rates: [Double] = []
    let cpuStart = processCPUSeconds()
    for _ in 0..<repeats {
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<steps { try step() }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        rates.append(Double(workload.batch * steps) / seconds)
    }
    let cpuSeconds = processCPUSeconds() - cpuStart
    return Measurement(workload: workload.rawValue, batch: workload.batch, imagesPerSecond: median(rates),
                       samples: rates, peakRSSMiB: peakResidentMiB(),
                       imagesPerCPUSecond: Double(workload.batch * steps * repeats) / cpuSeconds)
}

private func syntheticBatch(_ batch: Int) -> (images: Tensor, labels: [Int32]) {
    var generator = RandomGenerator(seed: 0)
    let images = Tensor(shape: [batch, 32, 32, 3], scalars: (0..<(batch * 32 * 32 * 3)).map { _ in generator.nextNormal() })
    return (images, (0..<batch).map { _ in Int32(generator.next() % 10) })
}

private func cifarModel(_ architecture: String) throws -> Model {
    try Model(ModelSpec(architecture: architecture, inputChannels: 3, numClasses: 10), seed: 0)
}

private func sgd(_ parameters: [(name: String, parameter: Parameter)]) -> SGD {
    SGD(groups: ParameterGroup.standard(parameters, weightDecay: 5e-4), learningRate: 0.1, momentum: 0.9)
}

private func makeStep(_ workload: Bench.Workload) throws -> () throws -> Void {
    let (images, labels) = syntheticBatch(workload.batch)
    let crossEntropy = CrossEntropyLoss()
    switch workload {
    case .training:
        let model = try cifarModel("resnet20")
        let optimizer = sgd(model.state.parameters)
        return {
            optimizer.zeroGradients()
            let output = try model.forward(images, mode: .training)
            model.backward(try crossEntropy(logits: output.logits, labels: labels).gradient)
            optimizer.step()
        }
    case .distillation:
        let teacher = try cifarModel("resnet56"), student = try cifarModel("resnet20")
        var generator = RandomGenerator(seed: 1)
        let hintConv = Conv2D(inputChannels: 32, outputChannels: 32, kernelSize: 1, generator: &generator)
        let hintNorm = BatchNorm2D(channels: 32)
        var hintState = ModuleState()
        hintState.add("hint.0", hintConv)
        hintState.add("hint.1", hintNorm)
        let optimizer = sgd(student.state.parameters + hintState.parameters)
        let distillation = KLDivergenceLoss(temperature: 4), hint = MeanSquaredErrorLoss()
        return {
            optimizer.zeroGradients()
            let target = try teacher.forward(images, mode: .inference, capture: ["layer2"])
            let output = try student.forward(images, mode: .training, capture: ["layer2"])
            let regressed = try hintNorm.forward(try hintConv.forward(output.features["layer2"]!, mode: .training), mode: .training)
            var dLogits = try crossEntropy(logits: output.logits, labels: labels).gradient
            dLogits += try distillation(studentLogits: output.logits, teacherLogits: target.logits).gradient
            let dRegressed = try hint(prediction: regressed, target: target.features["layer2"]!).gradient
            let dFeature = hintConv.backward(hintNorm.backward(dRegressed))
            student.backward(dLogits, featureGradients: ["layer2": dFeature])
            optimizer.step()
        }
    case .inference:
        let model = try cifarModel("resnet20")
        return { _ = try model.forward(images, mode: .inference) }
    }
}

// MARK: - Per-layer profile

// Times each layer type of the ResNet-20 training step on its own, at the step's shapes (batch 128),
// and multiplies by how often the network uses it; the rest of the step (pooling, classifier, loss,
// optimizer, glue) is the difference to the measured step.
private func profileTrainingStep(threads: Int, repeats: Int) throws -> String {
    setBLASThreads(threads)
    setKernelThreads(threads)
    // Built first, so that the layers below run under the same allocator settings as the model's.
    let step = try makeStep(.training)
    var generator = RandomGenerator(seed: 2)
    struct Entry { var name: String; var count: Int; var forward: Double; var backward: Double }
    var entries: [Entry] = []

    func time(_ body: () throws -> Void) rethrows -> Double {
        try body()
        var samples: [Double] = []
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        return median(samples)
    }
    func add(_ name: String, count: Int, forward: () throws -> Tensor, backward: (Tensor) -> Void) throws {
        var output = Tensor(zeros: [0])
        let forwardTime = try time { output = try forward() }
        let dOutput = Tensor(repeating: 0.01, shape: output.shape)
        let backwardTime = time { backward(dOutput) }
        entries.append(Entry(name: name, count: count, forward: forwardTime, backward: backwardTime))
    }
    func activation(_ size: Int, _ channels: Int) -> Tensor {
        var generator = RandomGenerator(seed: UInt64(size * channels))
        return Tensor(shape: [128, size, size, channels], scalars: (0..<(128 * size * size * channels)).map { _ in generator.nextNormal() })
    }

    // The stem's backward is its weight gradient only: the images need no gradient.
    let convolutions: [(String, Int, Int, Int, Int, Int)] = [
        ("conv 3×3 3→16 @32² (weight gradient only)", 1, 32, 3, 16, 1), ("conv 3×3 16→16 @32²", 6, 32, 16, 16, 1),
        ("conv 3×3 16→32 /2 @32²", 1, 32, 16, 32, 2), ("conv 3×3 32→32 @16²", 5, 16, 32, 32, 1),
        ("conv 3×3 32→64 /2 @16²", 1, 16, 32, 64, 2), ("conv 3×3 64→64 @8²", 5, 8, 64, 64, 1),
    ]
    for (name, count, size, inputChannels, outputChannels, stride) in convolutions {
        let layer = Conv2D(inputChannels: inputChannels, outputChannels: outputChannels, kernelSize: 3, stride: stride,
                           padding: 1, generator: &generator)
        let input = activation(size, inputChannels)
        let isStem = inputChannels == 3
        try add(name, count: count, forward: { try layer.forward(input, mode: .training) },
                backward: { if isStem { layer.accumulateParameterGradients($0) } else { _ = layer.backward($0) } })
    }
    // Per stage: each block's bn1 + ReLU (and the stem's) and bn2 + shortcut add + ReLU.
    for (size, channels) in [(32, 16), (16, 32), (8, 64)] {
        let input = activation(size, channels), residual = activation(size, channels)
        let norm = BatchNorm2D(channels: channels)
        try add("batch norm + ReLU \(channels) @\(size)²", count: channels == 16 ? 4 : 3,
                forward: { try norm.forwardReLU(input, mode: .training) },
                backward: { _ = norm.backwardThroughReLU($0) })
        try add("batch norm + add + ReLU \(channels) @\(size)²", count: 3,
                forward: { try norm.forwardReLU(input, adding: residual, mode: .training) },
                backward: { _ = norm.backwardThroughReLU($0) })
    }

    let total = try time { try step() }
    let accounted = entries.reduce(0) { $0 + Double($1.count) * ($1.forward + $1.backward) }
    var rows = [["layer (ResNet-20, batch 128)", "count", "forward ms", "backward ms", "total ms", "share"]]
    for entry in entries {
        let sum = Double(entry.count) * (entry.forward + entry.backward)
        rows.append([entry.name, "\(entry.count)", String(format: "%.2f", entry.forward), String(format: "%.2f", entry.backward),
                     String(format: "%.1f", sum), String(format: "%.0f %%", 100 * sum / total)])
    }
    rows.append(["rest (option-A shortcuts, pooling, classifier, loss, SGD, glue)", "", "", "",
                 String(format: "%.1f", total - accounted), String(format: "%.0f %%", 100 * (total - accounted) / total)])
    rows.append(["training step (measured)", "", "", "", String(format: "%.1f", total), "100 %"])
    return "Per-layer profile, \(threads) threads, medians of \(repeats):\n" + formatTable(rows)
}

// MARK: - Helpers

private func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

private func peakResidentMiB() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024  // KiB on Linux
}

private func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

private var loadAverage: String {
    let text = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? ""
    return text.split(separator: " ").prefix(3).joined(separator: " ")
}

// Which vector instructions the kernels were compiled for: the package builds them for the building
// machine's CPU, so this machine's flags are what the code uses when it was built here.
private var swiftKernelDescription: String {
    let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
    let flags = info.split(separator: "\n").first { $0.hasPrefix("flags") }.map { Set($0.split(separator: " ")) } ?? []
    let set = flags.contains("avx512f") ? "AVX-512 (16-float vectors)" : flags.contains("avx2") ? "AVX2 + FMA (8-float vectors)" : "SSE"
    return "compiled with -target-cpu native; this CPU has \(set)"
}

private func selfExecutable() throws -> String {
    try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
}

// Runs a program to completion and decodes its standard output's last line as JSON.
private func decodeRun<T: Decodable>(_ type: T.Type, executable: String, arguments: [String]) throws -> T {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable.contains("/") ? executable : "/usr/bin/env")
    process.arguments = executable.contains("/") ? arguments : [executable] + arguments
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    guard process.terminationStatus == 0,
          let line = text.split(separator: "\n").last, let json = line.data(using: .utf8),
          let value = try? JSONDecoder().decode(type, from: json) else {
        throw ValidationError("\(executable) \(arguments.joined(separator: " ")) failed (status \(process.terminationStatus)): \(text.suffix(500))")
    }
    return value
}

private func formatTable(_ rows: [[String]]) -> String {
    let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
    return rows.enumerated().map { index, row in
        let line = zip(row, widths).enumerated().map { column, pair in
            let padding = String(repeating: " ", count: pair.1 - pair.0.count)
            return column == 0 ? pair.0 + padding : padding + pair.0
        }.joined(separator: "  ")
        return index == 0 ? line + "\n" + String(repeating: "-", count: line.count) : line
    }.joined(separator: "\n")
}
