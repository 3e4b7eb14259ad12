import Foundation

// Datasets of image files, decoded once into the same in-memory `ImageDataset` the IDX and CIFAR
// readers produce.
//
// `folder` follows torchvision's ImageFolder: `root/train/<class name>/…/*.png|jpg|jpeg` and
// `root/test/<class name>/…`, and `root/val/<class name>/…` when the validation images are chosen by
// hand. Class index i is the i-th class folder of train/ in sorted order (code-point order, Python's
// `sorted`); the files of a class are taken recursively in sorted order; other files, and hidden
// files and folders, are ignored.
// `csv` is a folder with `train.csv`, `test.csv` and optionally `val.csv`, each of `path,label` lines
// (an optional `path,label` header; paths relative to the CSV file), labels being class names sorted
// the same way — numerically when every label is a whole number.

/// What an image file that cannot be decoded does to a dataset: stop with its name and the reason,
/// or leave it out and say how many were left out.
public enum BadImagePolicy: String, Sendable, CaseIterable {
    case skip, error
}

/// How image files become a dataset's images.
public struct ImageFileOptions: Sendable, Equatable {
    /// Every image is fitted to `size` × `size` (shorter side resized, centre cropped).
    public var size: Int
    /// 1 (grey) or 3 (RGB): every file converts to this.
    public var channels: Int
    public var badImages: BadImagePolicy

    public static let defaultSize = 32
    public static let defaultChannels = 3

    public init(size: Int = defaultSize, channels: Int = defaultChannels, badImages: BadImagePolicy = .error) {
        self.size = size
        self.channels = channels
        self.badImages = badImages
    }
}

/// One image file and its class.
struct LabeledFile {
    var path: String
    var label: String
}

/// The image file extensions a folder dataset reads (compared in lower case, as torchvision does).
public let imageFileExtensions: Set<String> = ["png", "jpg", "jpeg"]

/// The split folders (or CSV files, without `.csv`) of an image-file dataset.
private let trainingSplit = "train", validationSplit = "val", testSplit = "test"

/// The largest CSV list read (1 GiB: 10 million lines of 100 bytes).
private let maximumListBytes = 1 << 30

/// Class folders deeper than this under a class folder are not searched (symbolic-link loops end).
private let maximumFolderDepth = 32

func loadImageFiles(_ source: DatasetSource) throws -> DatasetSplits {
    let options = source.imageFiles
    guard ImageFileLimits.outputSide.contains(options.size) else {
        throw DataError.invalidRequest("image size \(options.size) is outside \(ImageFileLimits.outputSide.lowerBound)…\(ImageFileLimits.outputSide.upperBound)")
    }
    guard options.channels == 1 || options.channels == 3 else {
        throw DataError.invalidRequest("image files are read with 1 (grey) or 3 (RGB) channels, not \(options.channels)")
    }
    var budget = ImageFileLimits.files
    /// A split's images, nil when its folder or CSV file is absent.
    func split(_ name: String) throws -> (where: String, files: [LabeledFile])? {
        let location = source.folder + "/" + name + (source.format == .csv ? ".csv" : "")
        let files = source.format == .csv ? try csvListing(location, budget: &budget) : try folderListing(location, budget: &budget)
        return files.map { (location, $0) }
    }
    func required(_ name: String) throws -> (where: String, files: [LabeledFile]) {
        guard let listed = try split(name) else {
            throw DataError.missingFile(path: source.folder + "/" + name + (source.format == .csv ? ".csv" : ""), hint: source.missingFileHint)
        }
        return listed
    }
    let training = try required(trainingSplit), test = try required(testSplit)
    let validation = try split(validationSplit)
    let classNames = sortedClassNames(Set(training.files.map(\.label)))
    guard !classNames.isEmpty else {
        throw DataError.corruptFile(path: training.where, problem: source.format == .csv ? "lists no images" : "holds no class folders with images")
    }
    guard classNames.count <= ImageFileLimits.classes else {
        throw DataError.corruptFile(path: training.where, problem: "has \(classNames.count) classes, more than \(ImageFileLimits.classes)")
    }
    let labels = Dictionary(uniqueKeysWithValues: classNames.enumerated().map { ($0.element, Int32($0.offset)) })
    for other in [test, validation].compactMap({ $0 }) {
        if let stray = other.files.first(where: { labels[$0.label] == nil }) {
            throw DataError.corruptFile(path: other.where, problem: """
                has images of class '\(shortened(stray.label))' (\(stray.path)), which \(training.where) does not have; \
                every class must have training images
                """)
        }
    }
    let side = options.size
    let total = [training, test, validation].compactMap { $0 }.reduce(0) { $0 + $1.files.count }
    guard total <= maximumDatasetFileBytes / (side * side * options.channels) else {
        throw DataError.invalidRequest("""
            \(source.folder): \(total) images of \(side)×\(side)×\(options.channels) bytes would take more than \
            \(maximumDatasetFileBytes >> 30) GiB; choose a smaller image_size
            """)
    }
    var skipped = [String]()
    func dataset(_ listed: (where: String, files: [LabeledFile]), _ part: String) throws -> ImageDataset {
        var pixels = [UInt8](), kept = [Int32]()
        pixels.reserveCapacity(listed.files.count * side * side * options.channels)
        for file in listed.files {
            do {
                pixels += try readFittedImage(file.path, height: side, width: side, channels: options.channels)
                kept.append(labels[file.label]!)
            } catch let error as ImageFileError {
                if options.badImages == .error {
                    throw DataError.corruptFile(path: file.path, problem: "\(error.reason); fix or remove the file, or say bad_images: skip")
                }
                skipped.append("\(file.path): \(error.reason)")
            }
        }
        return ImageDataset(name: "\(source.name) \(part)", height: side, width: side, channels: options.channels,
                            classNames: classNames, pixels: pixels, labels: kept)
    }
    return DatasetSplits(training: try dataset(training, "train"), test: try dataset(test, "test"),
                         validation: try validation.map { try dataset($0, "val") }, skippedImages: skipped)
}

/// One image file decoded, converted to `channels` and fitted to `height` × `width` (bytes [height, width, channels]).
/// - Throws: `ImageFileError` when the file cannot be read or decoded.
public func readFittedImage(_ path: String, height: Int, width: Int, channels: Int) throws -> [UInt8] {
    fittedPixels(try readImageFile(path, channels: channels), height: height, width: width)
}

/// The image files of a split folder, one subfolder per class; nil when there is no such folder.
private func folderListing(_ folder: String, budget: inout Int) throws -> [LabeledFile]? {
    guard isFolder(folder) else { return nil }
    var files = [LabeledFile]()
    for className in try folderEntries(folder) where isFolder(folder + "/" + className) {
        try collectImageFiles(in: folder + "/" + className, label: className, depth: 0, into: &files, budget: &budget)
    }
    return files
}

private func collectImageFiles(in folder: String, label: String, depth: Int, into files: inout [LabeledFile], budget: inout Int) throws {
    var subfolders = [String]()
    for entry in try folderEntries(folder) {
        let path = folder + "/" + entry
        if isFolder(path) {
            subfolders.append(path)
        } else if let dot = entry.lastIndex(of: "."), imageFileExtensions.contains(entry[entry.index(after: dot)...].lowercased()) {
            budget -= 1
            guard budget >= 0 else {
                throw DataError.invalidRequest("\(folder): more than \(ImageFileLimits.files) image files in the dataset")
            }
            files.append(LabeledFile(path: path, label: label))
        }
    }
    guard depth < maximumFolderDepth else { return }
    for subfolder in subfolders {
        try collectImageFiles(in: subfolder, label: label, depth: depth + 1, into: &files, budget: &budget)
    }
}

/// A folder's entries in sorted order, without hidden ones (`.ipynb_checkpoints`, macOS's `._name.jpg`),
/// which are never classes or images.
private func folderEntries(_ folder: String) throws -> [String] {
    do {
        return try FileManager.default.contentsOfDirectory(atPath: folder).filter { !$0.hasPrefix(".") }.sorted(by: codePointOrder)
    } catch {
        throw DataError.corruptFile(path: folder, problem: "cannot list the folder (\(error.localizedDescription))")
    }
}

/// The `path,label` lines of a CSV list, paths made relative to its folder; nil when there is no such file.
private func csvListing(_ path: String, budget: inout Int) throws -> [LabeledFile]? {
    guard let text = try readSmallTextFile(path, maximumBytes: maximumListBytes) else { return nil }
    let folder = (path as NSString).deletingLastPathComponent
    var files = [LabeledFile]()
    // "\r\n" is one Character in Swift, so both line ends are separators.
    for (number, content) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
        if content.allSatisfy(\.isWhitespace) { continue }
        guard let fields = csvFields(content), fields.count == 2, !fields[0].isEmpty, !fields[1].isEmpty else {
            throw DataError.corruptFile(path: path, problem: "line \(number + 1): expected `path,label` (quote a field holding a comma), got '\(shortened(String(content)))'")
        }
        if number == 0 && fields == ["path", "label"] { continue }
        budget -= 1
        guard budget >= 0 else { throw DataError.invalidRequest("\(path): more than \(ImageFileLimits.files) image files in the dataset") }
        files.append(LabeledFile(path: fields[0].hasPrefix("/") ? fields[0] : folder + "/" + fields[0], label: fields[1]))
    }
    return files
}

/// The fields of one CSV line (RFC 4180: a field may be quoted, `""` inside quotes is a quote);
/// nil for an unterminated quote.
public func csvFields<Line: StringProtocol>(_ line: Line) -> [String]? {
    var fields = [String](), field = "", quoted = false, wasQuoted = false
    var characters = line.makeIterator()
    var pending: Character?
    while let character = pending ?? characters.next() {
        pending = nil
        if quoted {
            if character == "\"" {
                if let next = characters.next() {
                    if next == "\"" { field.append("\"") } else { quoted = false; pending = next }
                } else {
                    quoted = false
                }
            } else {
                field.append(character)
            }
        } else if character == "\"" && field.isEmpty && !wasQuoted {
            quoted = true
            wasQuoted = true
        } else if character == "," {
            fields.append(wasQuoted ? field : field.trimmingCharacters(in: .whitespaces))
            field = ""
            wasQuoted = false
        } else {
            field.append(character)
        }
    }
    if quoted { return nil }
    fields.append(wasQuoted ? field : field.trimmingCharacters(in: .whitespaces))
    return fields
}

/// One CSV field, quoted when it holds a comma, a quote or a line break.
public func csvField(_ text: String) -> String {
    guard text.contains(where: { $0 == "," || $0 == "\"" || $0.isNewline }) else { return text }
    return "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

/// Class names in index order: numerically when every name is a whole number, else by code point.
func sortedClassNames(_ names: Set<String>) -> [String] {
    if names.allSatisfy({ !$0.isEmpty && $0.count <= 18 && $0.allSatisfy(\.isASCII) && Int($0) != nil }) {
        // Ties ("7", "07") by code point: a set's order differs from run to run.
        return names.sorted { Int($0)! != Int($1)! ? Int($0)! < Int($1)! : codePointOrder($0, $1) }
    }
    return names.sorted(by: codePointOrder)
}

/// Python's string order (by Unicode code point), which torchvision's class indices follow.
func codePointOrder(_ first: String, _ second: String) -> Bool {
    first.unicodeScalars.lexicographicallyPrecedes(second.unicodeScalars)
}

func isFolder(_ path: String) -> Bool {
    var folder: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &folder) && folder.boolValue
}

private func shortened(_ text: String) -> String { text.count > 80 ? String(text.prefix(77)) + "…" : text }

/// The image files one command-line argument names: every PNG and JPEG under a folder (sorted, as a
/// class folder is read), the files of a CSV list (`path,label` lines, as `format: csv` reads them), or
/// the file itself.
/// - Parameter budget: how many more files may be listed; lowered by the count returned.
public func imageFiles(named argument: String, budget: inout Int) throws -> [String] {
    if isFolder(argument) {
        var files = [LabeledFile]()
        try collectImageFiles(in: argument, label: "", depth: 0, into: &files, budget: &budget)
        return files.map(\.path)
    }
    if argument.lowercased().hasSuffix(".csv") {
        guard let listed = try csvListing(argument, budget: &budget) else {
            throw DataError.missingFile(path: argument, hint: "Give image files, folders of them, or CSV lists of `path,label` lines.")
        }
        return listed.map(\.path)
    }
    budget -= 1
    guard budget >= 0 else { throw DataError.invalidRequest("\(argument): more than \(ImageFileLimits.files) image files") }
    return [argument]
}
