import EpicycleRuntime
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One workload's figures, as both the Epicycle worker and scripts/bench_pytorch.py print them (JSON).
public struct BenchMeasurement: Codable, Sendable {
    public var workload: String
    public var batch: Int
    public var imagesPerSecond: Double
    public var samples: [Double]
    public var peakRSSMiB: Double
    /// Images per second of CPU time (all threads) over the timed steps: what the work costs, whatever
    /// else the machine runs.
    public var imagesPerCPUSecond: Double

    enum CodingKeys: String, CodingKey {
        case workload, batch, imagesPerSecond = "images_per_second", samples, peakRSSMiB = "peak_rss_mib"
        case imagesPerCPUSecond = "images_per_cpu_second"
    }
}

/// How `epicycle bench` runs: the same for both frameworks.
public struct BenchOptions: Sendable {
    public var workloads: [BenchWorkload]
    public var threads: Int
    /// Untimed steps before measuring.
    public var warmup: Int
    /// Timed repeats; the median is reported.
    public var repeats: Int
    /// Steps per timed repeat.
    public var steps: Int
    /// A Python with torch; nil measures Epicycle only.
    public var python: String?
    /// PyTorch's side of the benchmark.
    public var script: String
    /// Also time each layer type of the ResNet-20 training step on its own.
    public var profile: Bool

    public init(workloads: [BenchWorkload] = BenchWorkload.allCases, threads: Int = 2, warmup: Int = 3, repeats: Int = 7,
                steps: Int = 3, python: String? = nil, script: String = "scripts/bench_pytorch.py", profile: Bool = false) {
        (self.workloads, self.threads, self.warmup, self.repeats, self.steps) = (workloads, threads, warmup, repeats, steps)
        (self.python, self.script, self.profile) = (python, script, profile)
    }

    /// Checks the counts; `runBenchmark` and `measureWorkload` check them too.
    public func validate() throws {
        guard threads >= 1, warmup >= 0, repeats >= 1, steps >= 1 else {
            throw BenchError("--threads, --repeats and --steps must be ≥ 1 and --warmup ≥ 0")
        }
        guard threads <= 1024, warmup <= 1000, repeats <= 1000, steps <= 1000 else {
            throw BenchError("--threads is at most 1024, --warmup, --repeats and --steps at most 1000")
        }
    }

    var commonArguments: [String] {
        ["--threads", "\(threads)", "--warmup", "\(warmup)", "--repeats", "\(repeats)", "--steps", "\(steps)"]
    }
}

/// Why the benchmark could not run.
public struct BenchError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// `epicycle bench`: each workload in a fresh process of `executable` (`epicycle bench --worker …`) so
/// that its peak memory is its own, and PyTorch's side in both memory layouts; the table of the two,
/// and with `profile` the per-layer profile of the training step, go to `log` as they are ready.
public func runBenchmark(_ options: BenchOptions, executable: String, log: (String) -> Void) throws {
    try options.validate()
    if options.python != nil && !FileManager.default.fileExists(atPath: options.script) {
        throw BenchError("\(options.script) not found. Run from the repository root, pass --script PATH, or use --epicycle-only.")
    }
    log("Epicycle bench: \(options.threads) threads, medians of \(options.repeats) × \(options.steps) steps after \(options.warmup) warm-up steps")
    log("BLAS: \(blasDescription)")
    log("Swift kernels: \(swiftKernelDescription)")
    log("Load average before: \(loadAverage) (\(onlineProcessorCount) CPUs)\n")

    var rows: [[String]] = []
    for workload in options.workloads {
        let ours = try decodeRun(BenchMeasurement.self, executable: executable,
                                 arguments: ["bench", "--worker", workload.rawValue] + options.commonArguments)
        var theirs: [BenchMeasurement] = []
        if let python = options.python {
            for layout in ["channels_last", "nchw"] {
                theirs.append(try decodeRun(BenchMeasurement.self, executable: python,
                                            arguments: [options.script, "--workload", workload.rawValue, "--layout", layout]
                                                + options.commonArguments))
            }
        }
        rows.append(tableRow(workload, ours, theirs))
    }
    let header = ["workload", "batch", "Epicycle img/s", "PyTorch img/s (CL / NCHW)", "ratio",
                  "GFLOP/s (E / P)", "peak RSS MiB (E / P)", "RSS ratio", "img/CPU-s (E / P)", "CPU ratio"]
    log(formatTable([header] + rows))
    log("""

        ratio: Epicycle ÷ PyTorch's faster layout (wall clock); RSS ratio: Epicycle ÷ that layout's peak RSS.
        img/CPU-s: images per second of CPU time summed over threads, which other load on the machine
        does not change (wall-clock figures drop when other processes take the cores).
        """)
    log("Load average after: \(loadAverage)")
    if options.profile {
        log("\n" + (try profileTrainingStep(threads: options.threads, repeats: options.repeats)))
    }
}

/// `epicycle bench --worker`: one workload measured in this process, as JSON for `runBenchmark`.
public func measureWorkload(_ workload: BenchWorkload, options: BenchOptions) throws -> String {
    try options.validate()
    setThreads(options.threads)
    let step = try makeStep(workload)
    for _ in 0..<options.warmup { try step() }
    var rates: [Double] = []
    let cpuStart = processCPUSeconds()
    for _ in 0..<options.repeats {
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<options.steps { try step() }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        rates.append(Double(workload.batch * options.steps) / seconds)
    }
    let cpuSeconds = processCPUSeconds() - cpuStart
    let measurement = BenchMeasurement(
        workload: workload.rawValue, batch: workload.batch, imagesPerSecond: median(rates), samples: rates,
        peakRSSMiB: peakResidentMiB(), imagesPerCPUSecond: Double(workload.batch * options.steps * options.repeats) / cpuSeconds)
    return String(decoding: try JSONEncoder().encode(measurement), as: UTF8.self)
}

private func tableRow(_ workload: BenchWorkload, _ ours: BenchMeasurement, _ theirs: [BenchMeasurement]) -> [String] {
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

func median(_ values: [Double]) -> Double {
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
        throw BenchError("\(executable) \(arguments.joined(separator: " ")) failed (status \(process.terminationStatus)): \(text.suffix(500))")
    }
    return value
}

func formatTable(_ rows: [[String]]) -> String {
    let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
    return rows.enumerated().map { index, row in
        let line = zip(row, widths).enumerated().map { column, pair in
            let padding = String(repeating: " ", count: pair.1 - pair.0.count)
            return column == 0 ? pair.0 + padding : padding + pair.0
        }.joined(separator: "  ")
        return index == 0 ? line + "\n" + String(repeating: "-", count: line.count) : line
    }.joined(separator: "\n")
}
