import EpicycleRuntime
import Foundation
import Testing

extension CLITests {
    /// A stand-in for scripts/bench_peers.py, run by /bin/sh: peers that measure, one the script reports as
    /// not installed, one that crashes. The figures are constructed, so which peer is fastest is known.
    static let fakePeers = #"""
        figure() { echo "{\"workload\": \"inference\", \"peer\": \"$1\", \"precision\": \"$2\", \"version\": \"Fake 1.0\", \"settings\": \"$4\", \"batch\": 256, \"images_per_second\": $3, \"samples\": [$3], \"peak_rss_mib\": 100, \"images_per_cpu_second\": $3}"; }
        case " $* " in
          *" --list-peers "*) echo '[{"peer": "slow-fp32", "precision": "fp32"}, {"peer": "fast-fp32", "precision": "fp32"}, {"peer": "fast-bf16", "precision": "bf16"}, {"peer": "absent", "precision": "fp32"}, {"peer": "broken", "precision": "bf16"}]' ;;
          *" --peer slow-fp32 "*) figure slow-fp32 fp32 10 "slow settings" ;;
          *" --peer fast-fp32 "*) figure fast-fp32 fp32 20 "fast settings" ;;
          *" --peer fast-bf16 "*) figure fast-bf16 bf16 1000000 "bf16 settings" ;;
          *" --peer absent "*) echo '{"workload": "inference", "peer": "absent", "skipped": "ModuleNotFoundError: No module named openvino"}' ;;
          *) echo "noise before the reason" >&2; echo "Fatal: the broken peer crashed" >&2; exit 3 ;;
        esac
        """#

    @Test func benchComparesWithTheFastestPeerAtEachPrecisionAndSkipsFailingPeers() throws {
        let folder = Self.folder("bench-peers")
        try Self.fakePeers.write(toFile: folder + "/peers.sh", atomically: true, encoding: .utf8)
        let arguments = ["bench", "--workload", "inference", "--warmup", "0", "--repeats", "1", "--steps", "1",
                         "--threads", "1", "--python", "/bin/sh", "--script", "peers.sh"]
        // As on a CPU without AVX512-BF16: Epicycle's bf16 row is left out, and the bench says why.
        let run = try Self.run(arguments, in: folder, environment: ["EPICYCLE_FAULT_NO_AVX512_BF16": "1"])
        #expect(run.status == 0, "a failing peer never fails the bench: \(run.errors)")
        let lines = run.output.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        let fp32 = try #require(lines.first { $0.starts(with: ["inference", "fp32", "256"]) }, "fp32 row in \(run.output)")
        #expect(fp32[4] == "fast-fp32" && fp32[5] == "20", "fp32 row against the fastest fp32 peer: \(fp32)")
        let bf16 = try #require(lines.first { $0.starts(with: ["inference", "bf16", "256"]) }, "bf16 row in \(run.output)")
        #expect(Array(bf16[3...6]) == ["—", "fast-bf16", "1000000", "—"], "bf16 row: \(bf16)")
        #expect(run.output.contains("inference bf16: precision bf16 needs a CPU with AVX512-BF16 (VDPBF16PS), which this one lacks: running in fp32; its row is left out"),
                "\(run.output)")
        #expect(run.output.contains("skipped inference / absent: ModuleNotFoundError: No module named openvino\n"))
        #expect(run.output.contains("skipped inference / broken: /bin/sh exited with status 3: Fatal: the broken peer crashed\n"))
        // Every peer that ran is listed with its version and settings.
        for settings in ["slow settings", "fast settings", "bf16 settings"] {
            #expect(run.output.split(separator: "\n").contains { $0.contains("Fake 1.0") && $0.hasSuffix(settings) }, "\(settings)")
        }

        guard Precision.bf16Available else { return }
        let bf16Run = try Self.run(arguments + ["--precision", "bf16"], in: folder)
        let rows = bf16Run.output.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        let measured = try #require(rows.first { $0.starts(with: ["inference", "bf16", "256"]) }, "bf16 row in \(bf16Run.output)")
        #expect(Double(measured[3]) != nil && measured[4] == "fast-bf16" && measured[6].hasSuffix("×"), "bf16 row: \(measured)")
        // Only the precision asked for runs: the fp32 row has the peers' figures alone.
        let unmeasured = try #require(rows.first { $0.starts(with: ["inference", "fp32", "256"]) }, "fp32 row in \(bf16Run.output)")
        #expect(unmeasured[3] == "—", "fp32 row: \(unmeasured)")
    }
}
