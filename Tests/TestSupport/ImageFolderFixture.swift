import EpicycleData
import Foundation

/// A small image-folder dataset (torchvision's ImageFolder layout), written with Epicycle's own PNG
/// and JPEG writers: three classes told apart by colour, PNG and JPEG files, some larger than the
/// dataset's side (so they are resized and cropped), one greyscale PNG among the RGB ones, and two
/// files that cannot be decoded (a damaged PNG and a truncated JPEG), beside hidden ones that are not read.
public struct ImageFolderFixture {
    /// In sorted order, so label i is `classNames[i]`.
    public static let classNames = ["blue", "green", "red"]
    /// The side images are fitted to.
    public static let side = 16
    public static let trainingPerClass = 12
    public static let testPerClass = 6
    public static let validationPerClass = 3

    public let root: String
    /// `train/blue/00.png`, written at `side` × `side`: decoded exactly as written.
    public let firstTrainingFile: String
    /// `train/red/00.png`, greyscale, every pixel `greyLevel`.
    public let greyFile: String
    public static let greyLevel: UInt8 = 123
    /// The files that cannot be decoded, in the order the reader meets them.
    public let badFiles: [String]

    /// Writes train/ and test/ (and val/ when asked) under `root`.
    public init(writingTo root: String, withValidationFolder: Bool = false) throws {
        self.root = root
        var splits = [("train", Self.trainingPerClass), ("test", Self.testPerClass)]
        if withValidationFolder { splits.append(("val", Self.validationPerClass)) }
        for (split, count) in splits {
            for (label, name) in Self.classNames.enumerated() {
                let folder = "\(root)/\(split)/\(name)"
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                for index in 0..<count {
                    let path = "\(folder)/\(String(format: "%02d", index))"
                    if split == "train" && label == 2 && index == 0 {
                        try writePNG(pixels: [UInt8](repeating: Self.greyLevel, count: Self.side * Self.side),
                                     width: Self.side, height: Self.side, channels: 1, to: path + ".png")
                        continue
                    }
                    // Every third image is larger than the dataset's side; odd ones are JPEG.
                    let (height, width) = index % 3 == 2 ? (Self.side + 8, Self.side + 4) : (Self.side, Self.side)
                    let pixels = Self.pixels(label: label, index: index, height: height, width: width)
                    if index % 2 == 1 {
                        try writeJPEG(pixels: pixels, width: width, height: height, channels: 3, quality: 95, to: path + ".jpg")
                    } else {
                        try writePNG(pixels: pixels, width: width, height: height, channels: 3, to: path + ".png")
                    }
                }
            }
        }
        firstTrainingFile = "\(root)/train/blue/00.png"
        greyFile = "\(root)/train/red/00.png"
        // A PNG signature followed by nothing a PNG holds, and the first half of a real JPEG.
        let damaged = "\(root)/train/blue/damaged.png", truncated = "\(root)/train/green/truncated.jpg"
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array(repeating: 7, count: 40)).write(to: URL(fileURLWithPath: damaged))
        let jpeg = try encodeJPEG(pixels: Self.pixels(label: 1, index: 99, height: 32, width: 32), width: 32, height: 32, channels: 3)
        try Data(jpeg.prefix(jpeg.count / 2)).write(to: URL(fileURLWithPath: truncated))
        badFiles = [damaged, truncated]
        // Hidden entries are neither classes nor images: a notebook's checkpoint folder, macOS's AppleDouble file.
        try FileManager.default.createDirectory(atPath: "\(root)/train/.ipynb_checkpoints", withIntermediateDirectories: true)
        try writePNG(pixels: [0, 0, 0], width: 1, height: 1, channels: 3, to: "\(root)/train/.ipynb_checkpoints/00.png")
        try Data([0, 5, 22, 7]).write(to: URL(fileURLWithPath: "\(root)/train/green/._01.jpg"))
    }

    /// The RGB pixels of one image: the class's own channel bright, the others dark, with a little
    /// deterministic texture.
    public static func pixels(label: Int, index: Int, height: Int, width: Int) -> [UInt8] {
        var pixels = [UInt8](repeating: 0, count: height * width * 3)
        for y in 0..<height {
            for x in 0..<width {
                let texture = (x * 7 + y * 13 + index * 29) % 31
                for channel in 0..<3 {
                    // Label 0 (blue) is bright in channel 2, label 1 (green) in 1, label 2 (red) in 0.
                    let bright = channel == 2 - label
                    pixels[(y * width + x) * 3 + channel] = UInt8((bright ? 190 : 40) + texture)
                }
            }
        }
        return pixels
    }

    /// The images of one split, as `path,label` lines of a CSV list in `root` (paths relative to it).
    public func csvLines(split: String) throws -> [String] {
        var lines = ["path,label"]
        for name in Self.classNames {
            let files = try FileManager.default.contentsOfDirectory(atPath: "\(root)/\(split)/\(name)").sorted()
            lines += files.map { "\(split)/\(name)/\($0),\(name)" }
        }
        return lines
    }
}
