import CZlib
import EpicycleData
import EpicycleRuntime
import Foundation
import Testing

/// A fresh temporary folder for one test's files.
func makeTemporaryFolder() throws -> String {
    let path = NSTemporaryDirectory() + "epicycle-data-tests-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func removeFolder(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// Writes bytes to `path`, through zlib's gzip writer when `gzip` is true.
func writeFile(_ bytes: [UInt8], to path: String, gzip: Bool) throws {
    guard gzip else {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return
    }
    let file = try #require(gzopen(path, "wb"))
    let written = bytes.withUnsafeBytes { gzwrite(file, $0.baseAddress, UInt32($0.count)) }
    #expect(gzclose(file) == Z_OK)
    #expect(Int(written) == bytes.count)
}

func bigEndian(_ value: Int) -> [UInt8] { [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: value >> $0) } }

/// The bytes of an IDX image file: magic 0x00000803, count, rows, columns, pixels.
func idxImages(count: Int, rows: Int, columns: Int, pixels: [UInt8]) -> [UInt8] {
    [0, 0, 8, 3] + bigEndian(count) + bigEndian(rows) + bigEndian(columns) + pixels
}

/// The bytes of an IDX label file: magic 0x00000801, count, labels.
func idxLabels(_ labels: [UInt8]) -> [UInt8] {
    [0, 0, 8, 1] + bigEndian(labels.count) + labels
}

/// A small hand-built IDX dataset: image i has pixel (y, x) = (37·i + 5·y + x) mod 256, label i mod 3.
struct SmallIDX {
    static let (rows, columns) = (3, 4)
    let count: Int
    var pixels: [UInt8] {
        (0..<count).flatMap { i in
            (0..<(Self.rows * Self.columns)).map { p in UInt8((37 * i + 5 * (p / Self.columns) + p % Self.columns) % 256) }
        }
    }
    var labels: [UInt8] { (0..<count).map { UInt8($0 % 3) } }

    /// Writes the four files of a train/test pair (test = the first `testCount` samples).
    func write(to folder: String, gzip: Bool, testCount: Int = 2) throws {
        let suffix = gzip ? ".gz" : ""
        try writeFile(idxImages(count: count, rows: Self.rows, columns: Self.columns, pixels: pixels),
                      to: folder + "/train-images-idx3-ubyte" + suffix, gzip: gzip)
        try writeFile(idxLabels(labels), to: folder + "/train-labels-idx1-ubyte" + suffix, gzip: gzip)
        try writeFile(idxImages(count: testCount, rows: Self.rows, columns: Self.columns,
                                pixels: Array(pixels.prefix(testCount * Self.rows * Self.columns))),
                      to: folder + "/t10k-images-idx3-ubyte" + suffix, gzip: gzip)
        try writeFile(idxLabels(Array(labels.prefix(testCount))), to: folder + "/t10k-labels-idx1-ubyte" + suffix, gzip: gzip)
    }
}

/// CIFAR record i: pixel (y, x) of channel c is (i + 3·y + 7·x + 50·c) mod 256.
func cifarPixel(record: Int, y: Int, x: Int, channel: Int) -> UInt8 {
    UInt8((record + 3 * y + 7 * x + 50 * channel) % 256)
}

/// The bytes of CIFAR records in the binary layout: label byte(s), then the R, G and B planes.
func cifarRecords(labels: [[UInt8]], firstRecord: Int = 0) -> [UInt8] {
    var bytes = [UInt8]()
    for (offset, recordLabels) in labels.enumerated() {
        bytes += recordLabels
        for channel in 0..<3 {
            for y in 0..<32 {
                for x in 0..<32 { bytes.append(cifarPixel(record: firstRecord + offset, y: y, x: x, channel: channel)) }
            }
        }
    }
    return bytes
}

/// Expects `body` to throw a `DataError` whose description contains every one of `fragments`.
func expectDataError(_ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    do {
        try body()
        Issue.record("expected an error mentioning \(fragments)", sourceLocation: sourceLocation)
    } catch let error as DataError {
        for fragment in fragments where !error.description.contains(fragment) {
            Issue.record("error '\(error)' does not mention '\(fragment)'", sourceLocation: sourceLocation)
        }
    } catch {
        Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
    }
}
