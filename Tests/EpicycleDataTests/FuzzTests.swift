import EpicycleData
import EpicycleRuntime
import Foundation
import Testing
import TestSupport

/// Seeded fuzzing of dataset files, IDX and CIFAR, gzip and raw: crafted header words (counts and
/// sizes up to 2^32 − 1), flipped bytes, truncations, appended bytes, damaged gzip streams. Every
/// input is read or rejected with a `DataError` naming the file; none may trap or take more than
/// 10 s. `EPICYCLE_FUZZ_ITERATIONS` sets the number of inputs (default 1500).
@Suite struct DatasetFuzzTests {
    @Test func mutatedDatasetFilesAreReadOrRejectedByName() throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        var random = RandomGenerator(seed: 20_260_514)
        func pick(_ count: Int) -> Int { Int(random.next() % UInt64(count)) }
        let watchdog = FuzzWatchdog(limit: 10)
        defer { watchdog.stop() }
        var accepted = 0, rejected = 0
        let iterations = fuzzIterations(default: 1500)
        for iteration in 0..<iterations {
            for name in try FileManager.default.contentsOfDirectory(atPath: folder) {
                try FileManager.default.removeItem(atPath: folder + "/" + name)
            }
            let gzip = pick(2) == 0
            let isIDX = pick(3) != 0
            // The file to mutate and its plain bytes; the others of the folder stay sound.
            let (target, bytes): (String, [UInt8])
            if isIDX {
                let small = SmallIDX(count: 6 + pick(20))
                try small.write(to: folder, gzip: gzip)
                let images = pick(2) == 0
                target = folder + (images ? "/train-images-idx3-ubyte" : "/train-labels-idx1-ubyte") + (gzip ? ".gz" : "")
                bytes = images ? idxImages(count: small.count, rows: SmallIDX.rows, columns: SmallIDX.columns, pixels: small.pixels)
                               : idxLabels(small.labels)
            } else {
                for file in 1...5 {
                    try writeFile(cifarRecords(labels: [[UInt8(file)]]), to: "\(folder)/data_batch_\(file).bin", gzip: gzip)
                }
                bytes = cifarRecords(labels: (0..<(1 + pick(3))).map { _ in [UInt8(pick(10))] })
                target = folder + "/test_batch.bin"
            }
            var mutated = bytes
            let mutation = pick(5)
            switch mutation {
            case 0:  // a header word (IDX) or label byte (CIFAR) set to an extreme value
                if isIDX {
                    let word = 4 * (1 + pick(mutated.count >= 16 && mutated[3] == 3 ? 3 : 1))
                    let value = [0, 1, 255, 1 << 16, 1 << 24, Int(Int32.max), Int(UInt32.max)][pick(7)]
                    mutated.replaceSubrange(word ..< word + 4, with: bigEndian(value))
                } else {
                    mutated[3073 * pick(mutated.count / 3073)] = UInt8(pick(256))
                }
            case 1:  // flipped bytes
                for _ in 0...pick(4) { mutated[pick(mutated.count)] ^= UInt8(1 + pick(255)) }
            case 2:  // truncated
                mutated.removeLast(1 + pick(mutated.count - 1))
            case 3:  // bytes appended, up to 16 MiB of zeros (a few KB compressed)
                mutated += [UInt8](repeating: 0, count: [1, 100, 1 << 24][pick(3)])
            default:  // the compressed stream itself damaged, or the plain file's magic
                break
            }
            try writeFile(mutated, to: target, gzip: gzip)
            if mutation == 4 {
                try modifyFile(target) { $0[pick($0.count)] ^= UInt8(1 + pick(255)) }
            }
            watchdog.run("iteration \(iteration): \(isIDX ? "IDX" : "CIFAR") \(gzip ? "gzip" : "raw"), mutation \(mutation)") {
                do {
                    _ = try loadDataset(DatasetSource(folder: folder, format: isIDX ? .idx : .cifar10))
                    accepted += 1
                } catch let error as DataError {
                    rejected += 1
                    #expect(error.description.contains(folder + "/"), "iteration \(iteration): '\(error)' names no file")
                } catch {
                    Issue.record("iteration \(iteration): \(error) is not a DataError")
                }
            }
        }
        #expect(accepted + rejected == iterations && rejected > iterations / 2)
        print("dataset fuzz: \(iterations) inputs, \(accepted) accepted, \(rejected) rejected by name, 0 crashes, "
              + "slowest \(String(format: "%.3f", watchdog.slowest)) s")
    }
}

/// Rewrites a file's bytes in place.
private func modifyFile(_ path: String, _ change: (inout [UInt8]) -> Void) throws {
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    change(&bytes)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}
