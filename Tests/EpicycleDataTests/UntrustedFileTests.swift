import EpicycleData
import Foundation
import Testing

/// Dataset files that lie: headers checked before payloads, streams read only as far as promised,
/// devices and pipes refused, labels checked against the classes.
@Suite struct UntrustedFileTests {
    @Test func pipesAndDevicesAreRefusedWithoutHanging() throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        try SmallIDX(count: 4).write(to: folder, gzip: false)
        let images = folder + "/train-images-idx3-ubyte"
        try FileManager.default.removeItem(atPath: images)
        try #require(mkfifo(images, 0o600) == 0)
        expectDataError([images, "not a regular file"]) { _ = try loadDataset(DatasetSource(folder: folder, format: .idx)) }
        for device in ["/dev/zero", "/dev/urandom"] {
            try FileManager.default.removeItem(atPath: images)
            try FileManager.default.createSymbolicLink(atPath: images, withDestinationPath: device)
            expectDataError([images, "not a regular file"]) { _ = try loadDataset(DatasetSource(folder: folder, format: .idx)) }
        }
    }

    @Test func gzipStreamLongerThanItsHeaderStopsAtThePromisedBytes() throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        let small = SmallIDX(count: 4)
        try small.write(to: folder, gzip: true)
        // 256 MiB of zeros after the 4 promised images: a few hundred KB compressed.
        let images = folder + "/train-images-idx3-ubyte.gz"
        try writeFile(idxImages(count: 4, rows: 3, columns: 4, pixels: small.pixels) + [UInt8](repeating: 0, count: 1 << 28),
                      to: images, gzip: true)
        let start = Date()
        expectDataError([images, "unexpected bytes after the 4 images of 3×4"]) {
            _ = try loadDataset(DatasetSource(folder: folder, format: .idx))
        }
        // Only the promised bytes and one slice beyond are inflated, not the whole stream.
        #expect(Date().timeIntervalSince(start) < 1)
    }

    @Test func headerPromisingMoreThanTheFileCanHoldIsRefusedBeforeReading() throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        try SmallIDX(count: 4).write(to: folder, gzip: true)
        let images = folder + "/train-images-idx3-ubyte.gz"
        // 2^31 images of 28×28 (1.7 TB) in a file of a few dozen bytes.
        try writeFile(idxImages(count: 1 << 31, rows: 28, columns: 28, pixels: []), to: images, gzip: true)
        expectDataError([images, "the header promises 2147483648 images of 28×28", "more than this", "gzip file can hold"]) {
            _ = try loadDataset(DatasetSource(folder: folder, format: .idx))
        }
        // A label file that promises more labels than it holds is checked before any pixel is read.
        for name in try FileManager.default.contentsOfDirectory(atPath: folder) {
            try FileManager.default.removeItem(atPath: folder + "/" + name)
        }
        try SmallIDX(count: 4).write(to: folder, gzip: false)
        try writeFile([0, 0, 8, 1] + bigEndian(4) + [0, 1], to: folder + "/train-labels-idx1-ubyte", gzip: false)
        expectDataError([folder + "/train-labels-idx1-ubyte", "truncated", "4 labels"]) {
            _ = try loadDataset(DatasetSource(folder: folder, format: .idx))
        }
    }

    @Test func strayLabelInACustomFolderNamesTheSample() throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        let small = SmallIDX(count: 30)
        try small.write(to: folder, gzip: false)
        var labels = (0..<30).map { UInt8($0 % 10) }
        labels[17] = 255
        try writeFile(idxLabels(labels), to: folder + "/train-labels-idx1-ubyte", gzip: false)
        expectDataError([folder + "/train-labels-idx1-ubyte", "sample 17 has label 255", "label 10 never occurs", "classes.txt"]) {
            _ = try loadDataset(DatasetSource(folder: folder, format: .idx))
        }
        // A class-names file decides the classes: 255 is then outside them, named by sample.
        try writeFile(Array((0..<10).map { "class \($0)\n" }.joined().utf8), to: folder + "/classes.txt", gzip: false)
        expectDataError([folder + "/train-labels-idx1-ubyte", "sample 17 has label 255, outside the 10 classes"]) {
            _ = try loadDataset(DatasetSource(folder: folder, format: .idx))
        }
        labels[17] = 7
        try writeFile(idxLabels(labels), to: folder + "/train-labels-idx1-ubyte", gzip: false)
        let splits = try loadDataset(DatasetSource(folder: folder, format: .idx))
        #expect(splits.training.classNames == (0..<10).map { "class \($0)" })
    }

    @Test func classNamesFileMayListClassesThatDoNotOccur() throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        try SmallIDX(count: 6).write(to: folder, gzip: true)  // labels 0, 1, 2
        try writeFile(Array("cat\ndog\nbird\nfish\n".utf8), to: folder + "/classes.txt", gzip: false)
        #expect(try loadDataset(DatasetSource(folder: folder, format: .idx)).training.classCount == 4)
    }
}
