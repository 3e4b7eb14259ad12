import EpicycleData
import Foundation
import Testing

@Suite struct IDXReaderTests {
    @Test(arguments: [false, true])
    func readsHandBuiltFiles(gzip: Bool) throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        let small = SmallIDX(count: 5)
        try small.write(to: folder, gzip: gzip)
        let splits = try loadDataset(DatasetSource(folder: folder, format: .idx))
        #expect(splits.training.count == 5 && splits.test.count == 2)
        #expect(splits.training.imageShape == [3, 4, 1])
        #expect(splits.training.pixels == small.pixels)
        #expect(splits.training.labels == [0, 1, 2, 0, 1])
        #expect(splits.test.pixels == Array(small.pixels.prefix(24)))
        // Unknown folder name: classes are named by number, up to the largest label.
        #expect(splits.training.classNames == ["0", "1", "2"])
    }

    @Test func formatIsRecognisedAndPlainFilesAreFoundToo() throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        try SmallIDX(count: 4).write(to: folder, gzip: false)
        #expect(DatasetSource(folder: folder).format == .idx)
        #expect(try loadDataset(DatasetSource(folder: folder)).training.count == 4)
    }

    @Test func badMagicNamesTheFile() throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        try SmallIDX(count: 4).write(to: folder, gzip: true)
        // Labels given where images belong.
        try writeFile(idxLabels([1, 2]), to: folder + "/train-images-idx3-ubyte.gz", gzip: true)
        expectDataError(["train-images-idx3-ubyte.gz", "bad magic number 0x00000801", "label file"]) {
            _ = try loadDataset(DatasetSource(folder: folder, format: .idx))
        }
        try writeFile([1, 2, 3, 4] + [UInt8](repeating: 0, count: 20), to: folder + "/train-images-idx3-ubyte.gz", gzip: true)
        expectDataError(["train-images-idx3-ubyte.gz", "bad magic number 0x01020304"]) {
            _ = try loadDataset(DatasetSource(folder: folder, format: .idx))
        }
    }

    @Test(arguments: [false, true])
    func truncatedImagesNameTheFile(gzip: Bool) throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        let small = SmallIDX(count: 4)
        try small.write(to: folder, gzip: gzip)
        let name = "/train-images-idx3-ubyte" + (gzip ? ".gz" : "")
        try writeFile(Array(idxImages(count: 4, rows: 3, columns: 4, pixels: small.pixels).dropLast(5)), to: folder + name, gzip: gzip)
        expectDataError([name, "truncated", "4 images of 3×4", "48 bytes", "has 43"]) {
            _ = try loadDataset(DatasetSource(folder: folder, format: .idx))
        }
        try writeFile([0, 0, 8, 3] + [UInt8](repeating: 0xFF, count: 12), to: folder + name, gzip: gzip)
        expectDataError([name, "more than any file can hold"]) {
            _ = try loadDataset(DatasetSource(folder: folder, format: .idx))
        }
    }

    @Test func truncatedGzipStreamNamesTheFile() throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        try SmallIDX(count: 40).write(to: folder, gzip: true)
        let path = folder + "/train-images-idx3-ubyte.gz"
        let compressed = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        try writeFile(Array(compressed.prefix(compressed.count / 2)), to: path, gzip: false)
        expectDataError(["train-images-idx3-ubyte.gz", "truncated gzip stream"]) {
            _ = try loadDataset(DatasetSource(folder: folder, format: .idx))
        }
    }

    @Test func countMismatchNamesBothFiles() throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        try SmallIDX(count: 4).write(to: folder, gzip: false)
        try writeFile(idxLabels([0, 1, 2]), to: folder + "/train-labels-idx1-ubyte", gzip: false)
        expectDataError(["train-images-idx3-ubyte holds 4 images", "train-labels-idx1-ubyte holds 3 labels"]) {
            _ = try loadDataset(DatasetSource(folder: folder, format: .idx))
        }
    }

    @Test func missingFileSuggestsAFix() throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        expectDataError([folder + "/train-images-idx3-ubyte.gz", "no such file", "A folder in idx format holds train-images-idx3-ubyte[.gz]"]) {
            _ = try loadDataset(DatasetSource(folder: folder, format: .idx))
        }
        expectDataError(["/nowhere/fashion-mnist or /nowhere-system/fashion-mnist", "scripts/setup", "dataset-fashion-mnist"]) {
            _ = try DatasetSource.named("fashion-mnist", environment: ["EPICYCLE_DATA": "/nowhere"], systemFolder: "/nowhere-system")
        }
        expectDataError(["unknown dataset 'imagenet'", "fashion-mnist", "cifar100"]) {
            _ = try DatasetSource.named("imagenet")
        }
    }

    @Test func environmentVariableFolderComesFirst() throws {
        let root = try makeTemporaryFolder()
        defer { removeFolder(root) }
        try FileManager.default.createDirectory(atPath: root + "/mnist", withIntermediateDirectories: true)
        try SmallIDX(count: 6).write(to: root + "/mnist", gzip: true)
        let source = try DatasetSource.named("mnist", environment: ["EPICYCLE_DATA": root])
        #expect(source.folder == root + "/mnist" && source.format == .idx)
        let splits = try loadDataset(source)
        #expect(splits.training.count == 6)
        #expect(splits.training.classNames.count == 10)  // MNIST's digits, from the catalog
        #expect(splits.training.name == "mnist train")
    }
}

@Suite struct CIFARReaderTests {
    @Test(arguments: [false, true])
    func readsCIFAR10(gzip: Bool) throws {
        let parent = try makeTemporaryFolder()
        defer { removeFolder(parent) }
        let folder = parent + "/cifar-10-batches-bin"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        // Two records per training file, labels 2·file and 2·file + 1 (mod 10).
        for file in 1...5 {
            let labels = [[UInt8((2 * file) % 10)], [UInt8((2 * file + 1) % 10)]]
            try writeFile(cifarRecords(labels: labels, firstRecord: 2 * (file - 1)), to: "\(folder)/data_batch_\(file).bin", gzip: gzip)
        }
        try writeFile(cifarRecords(labels: [[9]], firstRecord: 100), to: folder + "/test_batch.bin", gzip: gzip)
        // Given the parent folder: the upstream tarball's subfolder is found, the format recognised.
        let source = DatasetSource(folder: parent)
        #expect(source.format == .cifar10)
        let splits = try loadDataset(source)
        #expect(splits.training.count == 10 && splits.test.count == 1)
        #expect(splits.training.imageShape == [32, 32, 3])
        #expect(splits.training.labels == [2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
        #expect(splits.training.classNames[0] == "airplane")
        // Planes become interleaved channels.
        for (record, y, x) in [(0, 0, 0), (3, 5, 17), (9, 31, 31)] {
            for channel in 0..<3 {
                #expect(splits.training.pixels[((record * 32 + y) * 32 + x) * 3 + channel]
                        == cifarPixel(record: record, y: y, x: x, channel: channel))
            }
        }
        #expect(splits.test.pixels[((0 * 32 + 2) * 32 + 3) * 3 + 1] == cifarPixel(record: 100, y: 2, x: 3, channel: 1))
    }

    @Test(arguments: CIFAR100Labels.allCases)
    func readsCIFAR100(labels: CIFAR100Labels) throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        try writeFile(cifarRecords(labels: [[3, 71], [19, 99], [0, 5]]), to: folder + "/train.bin", gzip: false)
        try writeFile(cifarRecords(labels: [[7, 42]], firstRecord: 3), to: folder + "/test.bin", gzip: false)
        try writeFile(Array((0..<20).map { "super\($0)\n" }.joined().utf8), to: folder + "/coarse_label_names.txt", gzip: false)
        let splits = try loadDataset(DatasetSource(folder: folder, format: .cifar100, cifar100Labels: labels))
        #expect(splits.training.labels == (labels == .fine ? [71, 99, 5] : [3, 19, 0]))
        #expect(splits.test.labels == (labels == .fine ? [42] : [7]))
        #expect(splits.training.classCount == (labels == .fine ? 100 : 20))
        #expect(splits.training.classNames[1] == (labels == .fine ? "class 1" : "super1"))
        #expect(splits.training.pixels[((2 * 32 + 4) * 32 + 6) * 3 + 2] == cifarPixel(record: 2, y: 4, x: 6, channel: 2))
    }

    @Test func partialRecordNamesTheFileAndSizes() throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        try writeFile(Array(cifarRecords(labels: [[1, 2], [3, 4]]).dropLast(10)), to: folder + "/train.bin", gzip: false)
        try writeFile(cifarRecords(labels: [[1, 2]]), to: folder + "/test.bin", gzip: false)
        expectDataError([folder + "/train.bin", "size 6138 bytes is not a whole number of 3074-byte CIFAR-100 records"]) {
            _ = try loadDataset(DatasetSource(folder: folder, format: .cifar100))
        }
    }

    @Test func labelOutOfRangeNamesTheRecord() throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        for file in 1...5 { try writeFile(cifarRecords(labels: [[1]]), to: "\(folder)/data_batch_\(file).bin", gzip: false) }
        try writeFile(cifarRecords(labels: [[4], [12]]), to: folder + "/test_batch.bin", gzip: false)
        expectDataError([folder + "/test_batch.bin", "record 1 has label 12, outside the 10 classes"]) {
            _ = try loadDataset(DatasetSource(folder: folder, format: .cifar10))
        }
        try FileManager.default.removeItem(atPath: folder + "/data_batch_3.bin")
        expectDataError([folder + "/data_batch_3.bin", "no such file"]) {
            _ = try loadDataset(DatasetSource(folder: folder, format: .cifar10))
        }
    }
}
