import CZlib
@testable import EpicycleData
import Foundation
import Testing
import TestSupport

/// A textured RGB test image, [height, width, 3].
private func rgbImage(height: Int, width: Int) -> [UInt8] {
    (0..<(height * width * 3)).map { (index: Int) -> UInt8 in UInt8((index * 37 + index / 3 * 11) % 256) }
}

@Suite struct ImageDecodingTests {
    @Test(arguments: [1, 3])
    func pngDecodesExactlyAsWritten(channels: Int) throws {
        let pixels = (0..<(5 * 7 * channels)).map { UInt8($0 * 19 % 256) }
        let image = try decodeImage(encodePNG(pixels: pixels, width: 7, height: 5, channels: channels), channels: channels)
        #expect(image.width == 7 && image.height == 5 && image.channels == channels)
        #expect(image.pixels == pixels)
    }

    @Test func rgbBecomesGreyByBT601LumaAndGreyIsRepeated() throws {
        let rgb: [UInt8] = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 200, 30]
        let grey = try decodeImage(encodePNG(pixels: rgb, width: 4, height: 1, channels: 3), channels: 1)
        // round(0.299·255) = 76, round(0.587·255) = 150, round(0.114·255) = 29, and 0.299·10 + 0.587·200 + 0.114·30 = 123.81.
        #expect(grey.pixels == [76, 150, 29, 124])
        let repeated = try decodeImage(encodePNG(pixels: [9, 250], width: 2, height: 1, channels: 1), channels: 3)
        #expect(repeated.pixels == [9, 9, 9, 250, 250, 250])
    }

    @Test func jpegDecodesCloseToWhatWasWritten() throws {
        // A smooth gradient: JPEG at quality 95 keeps every value within a few levels.
        let (height, width) = (24, 32)
        let pixels = (0..<(height * width * 3)).map { index -> UInt8 in
            let pixel = index / 3, channel = index % 3
            return UInt8((pixel % width) * 4 + (pixel / width) * 2 + channel * 20)
        }
        let file = try encodeJPEG(pixels: pixels, width: width, height: height, channels: 3, quality: 95)
        #expect(file.starts(with: [0xFF, 0xD8, 0xFF]))
        let image = try decodeImage(file, channels: 3)
        #expect(image.width == width && image.height == height)
        let errors = zip(image.pixels, pixels).map { abs(Int($0) - Int($1)) }
        #expect(Double(errors.reduce(0, +)) / Double(errors.count) < 2)
        #expect(errors.max()! <= 12)
        // A greyscale JPEG read as RGB repeats its one channel.
        let greyFile = try encodeJPEG(pixels: [UInt8](repeating: 77, count: 64), width: 8, height: 8, channels: 1)
        let grey = try decodeImage(greyFile, channels: 3)
        #expect(grey.pixels.allSatisfy { abs(Int($0) - 77) <= 1 })
    }

    @Test func damagedFilesAreErrorsNotImages() throws {
        let reasons = [
            [UInt8](),
            Array("width,height\n".utf8),
            [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + [UInt8](repeating: 1, count: 30),
            Array(try encodeJPEG(pixels: rgbImage(height: 16, width: 16), width: 16, height: 16, channels: 3).prefix(300)),
            Array(encodePNG(pixels: rgbImage(height: 16, width: 16), width: 16, height: 16, channels: 3).dropLast(40)),
        ].map { bytes -> String in
            do {
                _ = try decodeImage(bytes, channels: 3)
                return "decoded"
            } catch let error as ImageFileError {
                return error.reason
            } catch {
                return "unexpected \(error)"
            }
        }
        #expect(reasons[0].contains("neither a PNG nor a JPEG") && reasons[0].contains("empty"))
        #expect(reasons[1].contains("neither a PNG nor a JPEG") && reasons[1].contains("77 69 64 74"))
        #expect(reasons[2].hasPrefix("not a readable PNG file (libpng: "))
        #expect(reasons[3].hasPrefix("not a readable JPEG file (libjpeg: "))
        #expect(reasons[4].hasPrefix("not a readable PNG file (libpng: "))
    }

    @Test func aStatedSizeBeyondTheBoundIsRefusedBeforeDecoding() throws {
        // A real 1×1 PNG whose header is rewritten to claim 60000 × 60000 pixels (CRC fixed up).
        var file = encodePNG(pixels: [1, 2, 3], width: 1, height: 1, channels: 3)
        let side: [UInt8] = [0, 0, 0xEA, 0x60]
        file.replaceSubrange(16..<20, with: side)
        file.replaceSubrange(20..<24, with: side)
        let crc = UInt32(crc32(0, Array(file[12..<29]), 17))
        file.replaceSubrange(29..<33, with: [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: crc >> $0) })
        #expect(throws: ImageFileError(reason: """
            states a size of 60000×60000 pixels; images may have 1 to 65500 pixels a side and 268435456 in all
            """)) { try decodeImage(file, channels: 3) }
    }
}

/// A Python with torch (`.ci/run` sets one up); the reference test runs only when it is set.
private let python = ProcessInfo.processInfo.environment["EPICYCLE_PYTHON"]
private let resizeScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("../../scripts/resize_reference.py").standardized.path

@Suite struct ImageResizingTests {
    /// Against torchvision's Resize + CenterCrop with torch's antialiased bilinear interpolation
    /// (scripts/resize_reference.py): shrinking by non-integer factors, enlarging, both orientations,
    /// grey and RGB. Within one level: the reference sums in another order, and rounds half to even.
    @Test(.enabled(if: python != nil, "set EPICYCLE_PYTHON to a Python with torch (scripts/setup-python)"),
          arguments: [(37, 53, 16, 3), (53, 37, 16, 3), (20, 11, 32, 3), (64, 48, 24, 1), (300, 200, 32, 3)])
    func fittingMatchesTorchvision(height: Int, width: Int, size: Int, channels: Int) throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        let pixels = (0..<(height * width * channels)).map { (index: Int) -> UInt8 in
            let pixel = index / channels, x = pixel % width, y = pixel / width
            return UInt8(truncatingIfNeeded: x * 9 + y * 5 + (x * y) % 23 * 4 + index % channels * 50)
        }
        try Data(pixels).write(to: URL(fileURLWithPath: folder + "/pixels.bin"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try #require(python))
        process.arguments = [resizeScript, folder + "/pixels.bin", "\(height)", "\(width)", "\(channels)", "\(size)"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let reference = try JSONDecoder().decode([UInt8].self, from: data)
        let fitted = fittedPixels(DecodedImage(width: width, height: height, channels: channels, pixels: pixels), height: size, width: size)
        #expect(fitted.count == reference.count)
        let differences = zip(fitted, reference).map { abs(Int($0) - Int($1)) }
        #expect(differences.max() ?? 0 <= 1, "largest difference \(differences.max() ?? 0)")
    }

    @Test func shrinkingIsBilinearWithAntialiasing() {
        // Two rows of 0, 70, 140, 210 halved: the triangle filter stretched to ±2 pixels weighs
        // 0.75, 0.75, 0.25 at the left edge and 0.25, 0.75, 0.75 at the right (normalised), and the
        // two rows equally: (0·.75 + 70·.75 + 140·.25) / 1.75 = 50, (70·.25 + 140·.75 + 210·.75) / 1.75 = 160.
        let row: [UInt8] = [0, 70, 140, 210]
        let image = DecodedImage(width: 4, height: 2, channels: 1, pixels: row + row)
        #expect(fittedPixels(image, height: 1, width: 2) == [50, 160])
    }

    @Test func enlargingIsPlainBilinear() {
        // 0 and 100 doubled: output centres fall at input positions −0.25, 0.25, 0.75, 1.25, so the
        // inner two mix 3:1 and the outer two are clamped to the edge.
        let image = DecodedImage(width: 2, height: 1, channels: 1, pixels: [0, 100])
        #expect(fittedPixels(image, height: 2, width: 4) == [0, 25, 75, 100, 0, 25, 75, 100])
    }

    @Test func theShorterSideIsFittedAndTheCentreCut() {
        // 4 rows × 8 columns to 4 × 4: no scaling, columns 2…5 kept.
        let pixels = (0..<32).map { UInt8($0) }
        let image = DecodedImage(width: 8, height: 4, channels: 1, pixels: pixels)
        #expect(fittedPixels(image, height: 4, width: 4) == (0..<4).flatMap { y in (2..<6).map { UInt8(y * 8 + $0) } })
        #expect(coveringSize(height: 20, width: 30, toHeight: 16, width: 16) == (16, 24))
        #expect(coveringSize(height: 30, width: 20, toHeight: 16, width: 16) == (24, 16))
        // torchvision's Resize(16) of 7 × 1000: the longer side is int(16 · 1000 / 7) = 2285.
        #expect(coveringSize(height: 7, width: 1000, toHeight: 16, width: 16) == (16, 2285))
    }

    @Test func aConstantImageStaysConstantAtAnyScale() {
        let image = DecodedImage(width: 37, height: 23, channels: 3, pixels: [UInt8](repeating: 201, count: 37 * 23 * 3))
        for side in [5, 16, 64] {
            #expect(fittedPixels(image, height: side, width: side).allSatisfy { $0 == 201 })
        }
    }
}

@Suite struct ImageFolderTests {
    private func withFixture(validationFolder: Bool = false, _ body: (ImageFolderFixture) throws -> Void) throws {
        let folder = try makeTemporaryFolder()
        defer { removeFolder(folder) }
        try body(try ImageFolderFixture(writingTo: folder, withValidationFolder: validationFolder))
    }

    private func source(_ fixture: ImageFolderFixture, format: DatasetFormat? = nil, channels: Int = 3,
                        badImages: BadImagePolicy = .skip) -> DatasetSource {
        DatasetSource(folder: fixture.root, format: format, name: "shapes",
                      imageFiles: ImageFileOptions(size: ImageFolderFixture.side, channels: channels, badImages: badImages))
    }

    @Test func readsClassFoldersInSortedOrderAndPixelsAsWritten() throws {
        try withFixture { fixture in
            let source = source(fixture)
            #expect(source.format == .folder)  // recognised from train/
            let splits = try loadDataset(source)
            let side = ImageFolderFixture.side
            #expect(splits.training.classNames == ImageFolderFixture.classNames)
            #expect(splits.training.classCounts() == [ImageFolderFixture.trainingPerClass, ImageFolderFixture.trainingPerClass,
                                                      ImageFolderFixture.trainingPerClass])
            #expect(splits.test.classCounts() == [ImageFolderFixture.testPerClass, ImageFolderFixture.testPerClass,
                                                  ImageFolderFixture.testPerClass])
            #expect(splits.training.imageShape == [side, side, 3])
            #expect(splits.validation == nil)
            // train/blue/00.png is the first image, decoded exactly as written.
            let written = ImageFolderFixture.pixels(label: 0, index: 0, height: side, width: side)
            #expect(Array(splits.training.pixels.prefix(side * side * 3)) == written)
            #expect(splits.training.pixels[(3 * side + 5) * 3 + 2] == written[(3 * side + 5) * 3 + 2])
            // The greyscale PNG opens class red; its grey level fills all three channels.
            let grey = try #require(splits.training.labels.firstIndex(of: 2))
            let greyPixels = splits.training.pixels[(grey * side * side * 3)..<((grey + 1) * side * side * 3)]
            #expect(greyPixels.allSatisfy { $0 == ImageFolderFixture.greyLevel })
            // The two undecodable files were left out and named.
            #expect(splits.skippedImages.count == 2)
            #expect(zip(splits.skippedImages, fixture.badFiles).allSatisfy { $0.hasPrefix($1 + ": not a readable") })
            // Resized JPEGs still carry their class's colour: channel 2 − label is the brightest.
            for index in 0..<splits.training.count where index != grey {
                let image = splits.training.pixels[(index * side * side * 3)..<((index + 1) * side * side * 3)]
                let means = (0..<3).map { channel in image.indices.filter { $0 % 3 == channel }.map { Int(image[$0]) }.reduce(0, +) }
                #expect(means.firstIndex(of: means.max()!) == 2 - Int(splits.training.labels[index]))
            }
        }
    }

    @Test func aBadImageIsAnErrorNamingTheFileByDefault() throws {
        try withFixture { fixture in
            #expect(throws: DataError.corruptFile(path: fixture.badFiles[0], problem: """
                not a readable PNG file (libpng: [07][07][07][07]: invalid chunk type); fix or remove the file, or say bad_images: skip
                """)) { try loadDataset(source(fixture, badImages: .error)) }
        }
    }

    @Test func greyscaleDatasetsConvertEveryFile() throws {
        try withFixture { fixture in
            let splits = try loadDataset(source(fixture, channels: 1))
            let side = ImageFolderFixture.side
            #expect(splits.training.imageShape == [side, side, 1])
            let rgb = ImageFolderFixture.pixels(label: 0, index: 0, height: side, width: side)
            let luma = convertedChannels(rgb, from: 3, to: 1)
            #expect(Array(splits.training.pixels.prefix(side * side)) == luma)
        }
    }

    @Test func aValidationFolderIsTheValidationSplit() throws {
        try withFixture(validationFolder: true) { fixture in
            let splits = try loadDataset(source(fixture))
            let validation = try #require(splits.validation)
            #expect(validation.classCounts() == [3, 3, 3])
            #expect(validation.classNames == ImageFolderFixture.classNames)
        }
    }

    @Test func aCSVListGivesTheSameImagesAsTheFolders() throws {
        try withFixture { fixture in
            for split in ["train", "test"] {
                try (fixture.csvLines(split: split).joined(separator: "\r\n") + "\n").write(toFile: "\(fixture.root)/\(split).csv",
                                                                                               atomically: true, encoding: .utf8)
            }
            let fromFolders = try loadDataset(source(fixture, format: .folder))
            let fromLists = try loadDataset(source(fixture, format: .csv))
            #expect(fromLists.training.pixels == fromFolders.training.pixels)
            #expect(fromLists.training.labels == fromFolders.training.labels)
            #expect(fromLists.test.pixels == fromFolders.test.pixels)
            #expect(fromLists.training.classNames == ImageFolderFixture.classNames)
        }
    }

    @Test func listingMistakesNameTheFileAndLine() throws {
        try withFixture { fixture in
            try "path,label\ntrain/blue/00.png\n".write(toFile: fixture.root + "/train.csv", atomically: true, encoding: .utf8)
            #expect(throws: DataError.corruptFile(path: fixture.root + "/train.csv", problem: """
                line 2: expected `path,label` (quote a field holding a comma), got 'train/blue/00.png'
                """)) { try loadDataset(source(fixture, format: .csv)) }
            try "train/blue/00.png,blue\n".write(toFile: fixture.root + "/train.csv", atomically: true, encoding: .utf8)
            try "test/red/00.png,red\n".write(toFile: fixture.root + "/test.csv", atomically: true, encoding: .utf8)
            #expect(throws: DataError.corruptFile(path: fixture.root + "/test.csv", problem: """
                has images of class 'red' (\(fixture.root)/test/red/00.png), which \(fixture.root)/train.csv does not have; \
                every class must have training images
                """)) { try loadDataset(source(fixture, format: .csv)) }
            try FileManager.default.removeItem(atPath: fixture.root + "/test")
            #expect(throws: DataError.self) { try loadDataset(source(fixture, format: .folder)) }
        }
    }

    @Test func csvFieldsFollowRFC4180() {
        #expect(csvFields("a.png,cat") == ["a.png", "cat"])
        #expect(csvFields("\"a, b.png\",\"say \"\"hi\"\"\"") == ["a, b.png", "say \"hi\""])
        #expect(csvFields("\"open,cat") == nil)
        #expect(csvField("plain") == "plain")
        #expect(csvField("a,\"b\"") == "\"a,\"\"b\"\"\"")
        #expect(csvFields(csvField("x,\"y\"") + "," + csvField("z")) == ["x,\"y\"", "z"])
    }

    @Test func classNamesSortLikeTorchvisionOrByNumber() {
        #expect(sortedClassNames(["dog", "Cat", "ant", "élan", "zebra"]) == ["Cat", "ant", "dog", "zebra", "élan"])
        #expect(sortedClassNames(["10", "2", "1", "07", "7"]) == ["1", "2", "07", "7", "10"])
    }
}
