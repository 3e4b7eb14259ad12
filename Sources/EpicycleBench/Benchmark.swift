import EpicycleRuntime
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One workload's figures, as both the Epicycle worker and scripts/bench_peers.py print them (JSON).
public struct BenchMeasurement: Codable, Sendable {
    public var workload: String
    /// Which peer measured it (`eager-nchw`, `openvino-bf16`, …); nil for Epicycle.
    public var peer: String?
    public var precision: Precision
    /// The framework and its version (`OpenVINO 2026.4.1`); nil for Epicycle.
    public var version: String?
    /// How the peer ran (layout, threads, precision hints); nil for Epicycle.
    public var settings: String?
    public var batch: Int
    public var imagesPerSecond: Double
    public var samples: [Double]
    public var peakRSSMiB: Double
    /// Images per second of CPU time (all threads) over the timed steps: what the work costs, whatever
    /// else the machine runs.
    public var imagesPerCPUSecond: Double

    enum CodingKeys: String, CodingKey {
        case workload, peer, precision, version, settings, batch, imagesPerSecond = "images_per_second", samples
        case peakRSSMiB = "peak_rss_mib", imagesPerCPUSecond = "images_per_cpu_second"
    }

    public init(workload: String, peer: String? = nil, precision: Precision, version: String? = nil, settings: String? = nil,
                batch: Int, imagesPerSecond: Double, samples: [Double], peakRSSMiB: Double, imagesPerCPUSecond: Double) {
        (self.workload, self.peer, self.precision, self.version, self.settings) = (workload, peer, precision, version, settings)
        (self.batch, self.imagesPerSecond, self.samples) = (batch, imagesPerSecond, samples)
        (self.peakRSSMiB, self.imagesPerCPUSecond) = (peakRSSMiB, imagesPerCPUSecond)
    }
}

/// What the peers' script prints for one peer: its figures, or why it could not run.
enum PeerOutcome: Decodable {
    case measured(BenchMeasurement)
    case skipped(String)

    private enum Keys: String, CodingKey { case skipped }

    init(from decoder: Decoder) throws {
        if let reason = try decoder.container(keyedBy: Keys.self).decodeIfPresent(String.self, forKey: .skipped) {
            self = .skipped(reason)
        } else {
            self = .measured(try BenchMeasurement(from: decoder))
        }
    }
}

/// One entry of `bench_peers.py --list-peers`.
struct PeerListing: Decodable {
    var peer: String
    var precision: Precision
}

/// How `epicycle bench` runs: the same for Epicycle and every peer.
public struct BenchOptions: Sendable {
    public var workloads: [BenchWorkload]
    public var threads: Int
    /// Untimed steps before measuring.
    public var warmup: Int
    /// Timed repeats; the median is reported.
    public var repeats: Int
    /// Steps per timed repeat.
    public var steps: Int
    /// A Python with the peers (torch, onnxruntime, openvino); nil measures Epicycle only.
    public var python: String?
    /// The peers' side of the benchmark.
    public var script: String
    /// Also time each layer type of the ResNet-20 training step on its own.
    public var profile: Bool
    /// The precisions Epicycle runs each workload at (see `Precision`); the peers run all of theirs.
    public var precisions: [Precision]

    public init(workloads: [BenchWorkload] = BenchWorkload.allCases, threads: Int = 2, warmup: Int = 3, repeats: Int = 7,
                steps: Int = 3, python: String? = nil, script: String = "scripts/bench_peers.py", profile: Bool = false,
                precisions: [Precision] = Precision.allCases) {
        (self.workloads, self.threads, self.warmup, self.repeats, self.steps) = (workloads, threads, warmup, repeats, steps)
        (self.python, self.script, self.profile, self.precisions) = (python, script, profile, precisions)
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
/// that its peak memory is its own, then every peer the script lists for it, each in a fresh process too;
/// the comparison against the fastest peer at each precision, every peer's figures, version and settings,
/// and with `profile` the per-layer profile of the training step go to `log` as they are ready. A peer
/// that is missing or fails is logged with its reason and left out; it never fails the benchmark.
public func runBenchmark(_ options: BenchOptions, executable: String, log: (String) -> Void) throws {
    try options.validate()
    if options.python != nil && !FileManager.default.fileExists(atPath: options.script) {
        throw BenchError("\(options.script) not found. Run from the repository root, pass --script PATH, or use --epicycle-only.")
    }
    log("Epicycle bench: \(options.threads) threads, medians of \(options.repeats) × \(options.steps) steps after \(options.warmup) warm-up steps")
    log("BLAS: \(blasDescription)")
    log("Swift kernels: \(swiftKernelDescription); bf16 kernels (AVX512-BF16): \(Precision.bf16Available ? "yes" : "no, this CPU lacks it")")
    log("Load average before: \(loadAverage) (\(onlineProcessorCount) CPUs)\n")

    // The peers' ONNX export and their standard error go here; removed at the end.
    let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("epicycle-bench-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: scratch) }

    var rows: [[String]] = [], peerRows: [[String]] = []
    for workload in options.workloads {
        let ours = try options.precisions.compactMap { precision -> BenchMeasurement? in
            let (runs, note) = Precision.resolved(precision)
            if let note {
                log("\(workload.rawValue) \(precision.rawValue): \(note); its row is left out")
                return nil
            }
            return try decodeRun(BenchMeasurement.self, executable: executable,
                                 arguments: ["bench", "--worker", workload.rawValue, "--precision", runs.rawValue]
                                     + options.commonArguments)
        }
        var peers: [BenchMeasurement] = []
        if let python = options.python {
            for (peer, precision, outcome) in measurePeers(workload, python: python, options: options, scratch: scratch) {
                switch outcome {
                case .measured(let measurement):
                    peers.append(measurement)
                    peerRows.append(peerRow(measurement))
                case .skipped(let reason):
                    log("skipped \(workload.rawValue) / \(peer): \(reason)")
                    peerRows.append([workload.rawValue, peer, precision?.rawValue ?? "", "skipped", "", "", "", reason])
                }
            }
        }
        rows += comparisonRows(workload, ours: ours, peers: peers)
    }
    log(formatTable([comparisonHeader] + rows, textColumns: [4]))
    log("""

        ratio: Epicycle ÷ the fastest peer at the same precision (wall clock); RSS ratio: Epicycle ÷ that
        peer's peak RSS. bf16: convolution products in bf16 with fp32 sums, the rest in fp32, on both sides.
        img/CPU-s: images per second of CPU time summed over threads, which other load on the machine
        does not change (wall-clock figures drop when other processes take the cores).

        """)
    if !peerRows.isEmpty {
        log("Every peer (\(options.script)):\n" + formatTable([peerHeader] + peerRows, textColumns: [1, 6, 7]) + "\n")
    }
    log("Load average after: \(loadAverage)")
    if options.profile {
        for precision in options.precisions where Precision.resolved(precision).note == nil {
            log("\n" + (try profileTrainingStep(threads: options.threads, repeats: options.repeats, precision: precision)))
        }
        log("\n" + profileConvolutionAlgorithms(threads: options.threads, repeats: options.repeats))
    }
}

/// The peers `options.script` lists for `workload`, each measured in its own process, in the listed
/// order; a listing that fails is one skipped entry named `peers`.
private func measurePeers(_ workload: BenchWorkload, python: String, options: BenchOptions,
                          scratch: String) -> [(peer: String, precision: Precision?, outcome: PeerOutcome)] {
    let errors = scratch + "/peer-stderr.txt"
    let listing: [PeerListing]
    do {
        listing = try decodeRun([PeerListing].self, executable: python, errors: errors,
                                arguments: [options.script, "--list-peers", "--workload", workload.rawValue])
    } catch {
        return [("peers", nil, .skipped("\(error)"))]
    }
    return listing.map { entry in
        let arguments = [options.script, "--workload", workload.rawValue, "--peer", entry.peer, "--scratch", scratch]
        do {
            return (entry.peer, entry.precision, try decodeRun(PeerOutcome.self, executable: python, errors: errors,
                                                                arguments: arguments + options.commonArguments))
        } catch {
            return (entry.peer, entry.precision, .skipped("\(error)"))
        }
    }
}

/// The fastest of `peers` at `precision` (wall clock): what Epicycle's figure at that precision is
/// compared with, so that a bf16 peer never stands against an fp32 figure.
public func fastestPeer(_ peers: [BenchMeasurement], at precision: Precision) -> BenchMeasurement? {
    peers.filter { $0.precision == precision }.max { $0.imagesPerSecond < $1.imagesPerSecond }
}

/// The columns of `comparisonRows`.
public let comparisonHeader = ["workload", "precision", "batch", "Epicycle img/s", "fastest peer", "peer img/s", "ratio",
                        "GFLOP/s (E / P)", "peak RSS MiB (E / P)", "RSS ratio", "img/CPU-s (E / P)", "CPU ratio"]
let peerHeader = ["workload", "peer", "precision", "img/s", "peak RSS MiB", "img/CPU-s", "version", "settings"]

/// One row per precision that Epicycle or a peer measured `workload` at (columns of `comparisonHeader`):
/// Epicycle's figure there against `fastestPeer` at that precision, "—" where either side has none.
public func comparisonRows(_ workload: BenchWorkload, ours: [BenchMeasurement], peers: [BenchMeasurement]) -> [[String]] {
    let measured = Set((ours + peers).map(\.precision))
    return Precision.allCases.filter(measured.contains).map { precision in
        let epicycle = ours.first { $0.precision == precision }, peer = fastestPeer(peers, at: precision)
        func figure(_ side: BenchMeasurement?, _ value: (BenchMeasurement) -> Double) -> String {
            side.map { String(format: "%.0f", value($0)) } ?? "—"
        }
        func pair(_ value: (BenchMeasurement) -> Double) -> String { "\(figure(epicycle, value)) / \(figure(peer, value))" }
        func ratio(_ value: (BenchMeasurement) -> Double, _ format: String) -> String {
            guard let epicycle, let peer else { return "—" }
            return String(format: format, value(epicycle) / value(peer))
        }
        let gflops = { (side: BenchMeasurement) in side.imagesPerSecond * workload.flopsPerImage / 1e9 }
        return [workload.rawValue, precision.rawValue, "\(workload.batch)", figure(epicycle, \.imagesPerSecond),
                peer?.peer ?? "—", figure(peer, \.imagesPerSecond), ratio(\.imagesPerSecond, "%.2f×"), pair(gflops),
                pair(\.peakRSSMiB), ratio(\.peakRSSMiB, "%.2f"), pair(\.imagesPerCPUSecond), ratio(\.imagesPerCPUSecond, "%.2f×")]
    }
}

private func peerRow(_ peer: BenchMeasurement) -> [String] {
    [peer.workload, peer.peer ?? "", peer.precision.rawValue, String(format: "%.0f", peer.imagesPerSecond),
     String(format: "%.0f", peer.peakRSSMiB), String(format: "%.0f", peer.imagesPerCPUSecond), peer.version ?? "", peer.settings ?? ""]
}

/// `epicycle bench --worker`: one workload measured in this process, as JSON for `runBenchmark`.
public func measureWorkload(_ workload: BenchWorkload, precision: Precision, options: BenchOptions) throws -> String {
    try options.validate()
    setThreads(options.threads)
    let step = try makeStep(workload, precision: precision)
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
        workload: workload.rawValue, precision: precision, batch: workload.batch, imagesPerSecond: median(rates), samples: rates,
        peakRSSMiB: peakResidentMiB(), imagesPerCPUSecond: Double(workload.batch * options.steps * options.repeats) / cpuSeconds)
    return String(decoding: try JSONEncoder().encode(measurement), as: UTF8.self)
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

// Runs a program to completion and decodes its standard output's last line as JSON. Its standard error
// goes to the file `errors` when given (the last line of it is then the failure's reason), else to ours.
private func decodeRun<T: Decodable>(_ type: T.Type, executable: String, errors: String? = nil, arguments: [String]) throws -> T {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable.contains("/") ? executable : "/usr/bin/env")
    process.arguments = executable.contains("/") ? arguments : [executable] + arguments
    let output = Pipe()
    process.standardOutput = output
    if let errors {
        guard FileManager.default.createFile(atPath: errors, contents: nil), let handle = FileHandle(forWritingAtPath: errors) else {
            throw BenchError("cannot write \(errors)")
        }
        process.standardError = handle
    }
    do { try process.run() } catch { throw BenchError("cannot run \(executable): \(error.localizedDescription)") }
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    guard process.terminationStatus == 0,
          let line = text.split(separator: "\n").last, let json = line.data(using: .utf8),
          let value = try? JSONDecoder().decode(type, from: json) else {
        if let errors {
            let said = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
            let reason = said.split(separator: "\n").last { !$0.allSatisfy(\.isWhitespace) } ?? text.split(separator: "\n").last ?? "no output"
            throw BenchError("\(executable) exited with status \(process.terminationStatus): \(reason.prefix(300))")
        }
        throw BenchError("\(executable) \(arguments.joined(separator: " ")) failed (status \(process.terminationStatus)): \(text.suffix(500))")
    }
    return value
}

/// `rows` in columns, the first row a header; numbers right-aligned, the first column and the
/// `textColumns` left-aligned; no trailing spaces.
func formatTable(_ rows: [[String]], textColumns: Set<Int> = []) -> String {
    let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
    let rule = String(repeating: "-", count: widths.reduce(2 * (widths.count - 1), +))
    return rows.enumerated().map { index, row in
        let cells = zip(row, widths).enumerated().map { column, pair in
            let padding = String(repeating: " ", count: pair.1 - pair.0.count)
            return column == 0 || textColumns.contains(column) ? pair.0 + padding : padding + pair.0
        }
        let line = String(cells.joined(separator: "  ").reversed().drop { $0 == " " }.reversed())
        return index == 0 ? line + "\n" + rule : line
    }.joined(separator: "\n")
}
