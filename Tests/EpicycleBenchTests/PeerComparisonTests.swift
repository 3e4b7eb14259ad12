import EpicycleBench
import EpicycleRuntime
import Testing

/// `epicycle bench` compares Epicycle with the fastest peer at the same precision, never across precisions.
@Suite struct PeerComparisonTests {
    static func measurement(_ peer: String?, _ precision: Precision, _ rate: Double, rss: Double = 400) -> BenchMeasurement {
        BenchMeasurement(workload: "inference", peer: peer, precision: precision, batch: 256, imagesPerSecond: rate,
                         samples: [rate], peakRSSMiB: rss, imagesPerCPUSecond: rate / 2)
    }

    // The fastest peer overall is bf16; the fp32 comparison must not pick it.
    static let peers = [
        measurement("eager-channels_last", .fp32, 2600, rss: 440), measurement("onnxruntime", .fp32, 4200, rss: 180),
        measurement("openvino-f32", .fp32, 3900, rss: 150), measurement("autocast-bf16", .bf16, 5500, rss: 370),
        measurement("openvino-bf16", .bf16, 10_000, rss: 130), measurement("eager-nchw", .fp32, 2800, rss: 410),
    ]

    static func column(_ row: [String], _ name: String) throws -> String {
        row[try #require(comparisonHeader.firstIndex(of: name), "column \(name)")]
    }

    @Test func fastestPeerIsTheFastestAtThatPrecision() {
        #expect(fastestPeer(Self.peers, at: .fp32)?.peer == "onnxruntime")
        #expect(fastestPeer(Self.peers, at: .bf16)?.peer == "openvino-bf16")
        #expect(fastestPeer(Self.peers.filter { $0.precision == .fp32 }, at: .bf16) == nil)
        #expect(fastestPeer([], at: .fp32) == nil)
    }

    @Test func fp32RowComparesWithTheFastestFP32PeerAndBF16RowHasNoEpicycleFigure() throws {
        let ours = Self.measurement(nil, .fp32, 6300, rss: 90)
        let rows = comparisonRows(.inference, ours: [ours], peers: Self.peers)
        #expect(rows.map { $0.count } == [comparisonHeader.count, comparisonHeader.count])
        #expect(rows.map { $0[1] } == ["fp32", "bf16"])

        let fp32 = rows[0], bf16 = rows[1]
        #expect(try Self.column(fp32, "fastest peer") == "onnxruntime")
        #expect(try Self.column(fp32, "Epicycle img/s") == "6300")
        #expect(try Self.column(fp32, "peer img/s") == "4200")
        #expect(try Self.column(fp32, "ratio") == "1.50×")
        #expect(try Self.column(fp32, "peak RSS MiB (E / P)") == "90 / 180")
        #expect(try Self.column(fp32, "RSS ratio") == "0.50")
        #expect(try Self.column(fp32, "img/CPU-s (E / P)") == "3150 / 2100")

        #expect(try Self.column(bf16, "fastest peer") == "openvino-bf16")
        #expect(try Self.column(bf16, "Epicycle img/s") == "—")
        #expect(try Self.column(bf16, "peer img/s") == "10000")
        #expect(try Self.column(bf16, "ratio") == "—")
        #expect(try Self.column(bf16, "RSS ratio") == "—")
        #expect(try Self.column(bf16, "peak RSS MiB (E / P)") == "— / 130")
    }

    @Test func withoutPeersOnlyEpicycleRowRemains() throws {
        let rows = comparisonRows(.training, ours: [Self.measurement(nil, .fp32, 1200)], peers: [])
        #expect(rows.count == 1)
        #expect(try Self.column(rows[0], "fastest peer") == "—")
        #expect(try Self.column(rows[0], "ratio") == "—")
        #expect(try Self.column(rows[0], "Epicycle img/s") == "1200")
    }
}
