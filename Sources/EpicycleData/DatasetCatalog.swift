import Foundation

/// The on-disk layout of a dataset.
public enum DatasetFormat: String, Sendable, CaseIterable {
    /// IDX files, gzip-compressed or not: MNIST, Fashion-MNIST, Kuzushiji-MNIST
    /// (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, `t10k-…`).
    case idx
    /// CIFAR-10 binary: `data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`.
    case cifar10
    /// CIFAR-100 binary: `train.bin`, `test.bin`.
    case cifar100
    /// PNG and JPEG files in class folders, torchvision's ImageFolder: `train/<class>/…`,
    /// `test/<class>/…`, optionally `val/<class>/…` (see ImageFolderReader.swift).
    case folder
    /// PNG and JPEG files listed in `train.csv`, `test.csv` and optionally `val.csv` (`path,label` lines).
    case csv
}

/// The training and test splits of a dataset, and its own validation split when it has one.
public struct DatasetSplits: Sendable, Equatable {
    public var training: ImageDataset
    public var test: ImageDataset
    /// Validation images chosen by the dataset itself (an image folder's `val/`); nil: hold some out.
    public var validation: ImageDataset?
    /// "path: reason" of each image file left out under `bad_images: skip`.
    public var skippedImages: [String]

    public init(training: ImageDataset, test: ImageDataset, validation: ImageDataset? = nil, skippedImages: [String] = []) {
        self.training = training
        self.test = test
        self.validation = validation
        self.skippedImages = skippedImages
    }
}

/// Where a dataset lives and how to read it: a catalog name (`fashion-mnist`, the default, found without
/// any path) or any folder with its format.
public struct DatasetSource: Sendable, Equatable, CustomStringConvertible {
    /// A short name used in dataset and report names.
    public var name: String
    public var folder: String
    public var format: DatasetFormat
    /// Which CIFAR-100 labels to read (ignored by the other formats).
    public var cifar100Labels: CIFAR100Labels
    /// How image files are fitted and converted (the `folder` and `csv` formats only).
    public var imageFiles: ImageFileOptions

    /// The default real dataset: Fashion-MNIST from Debian's `dataset-fashion-mnist` package.
    public static let defaultName = "fashion-mnist"
    /// Where Debian's dataset packages install (`/usr/share/datasets/<name>`).
    public static let systemFolder = "/usr/share/datasets"
    /// The environment variable naming a folder that holds datasets by name (`$EPICYCLE_DATA/<name>`),
    /// searched before `systemFolder`.
    public static let environmentVariable = "EPICYCLE_DATA"

    /// The class-names file of an IDX folder outside the catalog: one name per line, line i naming
    /// label i. Without it the classes are 0 … the largest training label, and each must occur.
    public static let classNamesFile = "classes.txt"

    /// The datasets known by name, their formats and class names.
    public static let catalog: [(name: String, format: DatasetFormat, classNames: [String]?)] = [
        ("fashion-mnist", .idx, ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]),
        ("mnist", .idx, (0...9).map(String.init)),
        ("kmnist", .idx, ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]),
        ("cifar10", .cifar10, cifar10ClassNames),
        ("cifar100", .cifar100, nil),
    ]

    /// A dataset in `folder`. Without a format, it is recognised from the files: `data_batch_1.bin`
    /// means CIFAR-10, `train.bin` CIFAR-100, a `train/` folder image folders, `train.csv` a CSV list,
    /// anything else IDX.
    public init(folder: String, format: DatasetFormat? = nil, cifar100Labels: CIFAR100Labels = .fine, name: String? = nil,
                imageFiles: ImageFileOptions = ImageFileOptions()) {
        self.folder = folder
        self.format = format ?? Self.recognisedFormat(folder)
        self.cifar100Labels = cifar100Labels
        self.imageFiles = imageFiles
        self.name = name ?? URL(fileURLWithPath: folder).lastPathComponent
    }

    /// A catalog dataset by name, found in `$EPICYCLE_DATA/<name>` or else `<systemFolder>/<name>`.
    /// - Throws: `DataError.unknownDataset` for a name outside the catalog, `DataError.missingFile`
    ///   (with how to install it) when no folder holds it.
    public static func named(_ name: String = defaultName, cifar100Labels: CIFAR100Labels = .fine,
                             environment: [String: String] = ProcessInfo.processInfo.environment,
                             systemFolder: String = systemFolder) throws -> DatasetSource {
        guard let entry = catalog.first(where: { $0.name == name }) else {
            throw DataError.unknownDataset(name: name, known: catalog.map(\.name))
        }
        var candidates = [String]()
        if let root = environment[environmentVariable], !root.isEmpty { candidates.append(root + "/" + name) }
        candidates.append(systemFolder + "/" + name)
        guard let folder = candidates.first(where: isFolder) else {
            throw DataError.missingFile(path: candidates.joined(separator: " or "), hint: installHint(name))
        }
        return DatasetSource(folder: folder, format: entry.format, cifar100Labels: cifar100Labels, name: name)
    }

    public var description: String {
        let detail = switch format {
        case .cifar100: ", \(cifar100Labels.rawValue) labels"
        case .folder, .csv: ", fitted to \(imageFiles.size)×\(imageFiles.size)×\(imageFiles.channels)"
        case .idx, .cifar10: ""
        }
        return "\(name) (\(format.rawValue)\(detail) in \(folder))"
    }

    static func installHint(_ name: String) -> String {
        if name == defaultName {
            return "Run scripts/setup (or `sudo apt-get install dataset-fashion-mnist`) to install it, or give its folder \(folderHint)."
        }
        return "Put the \(name) files in $\(environmentVariable)/\(name), or give their folder \(folderHint)."
    }

    /// The one way every command names a dataset's folder: a recipe's `folder:` (which `--set` reaches)
    /// and the `--folder` option of `eval` and `data`.
    static let folderHint = "(a recipe's `data: {folder: <folder>}`, e.g. `--set pretrain.data.folder=<folder>`; `--folder <folder>` for eval and data)"

    /// What to do about a missing file of this dataset.
    var missingFileHint: String {
        if Self.catalog.contains(where: { $0.name == name }) { return Self.installHint(name) }
        let expected = switch format {
        case .idx: "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]"
        case .cifar10: "data_batch_1.bin … data_batch_5.bin and test_batch.bin"
        case .cifar100: "train.bin and test.bin"
        case .folder: "train/<class name>/ and test/<class name>/ folders of .png and .jpg files (and optionally val/<class name>/)"
        case .csv: "train.csv and test.csv (and optionally val.csv) of `path,label` lines"
        }
        return "A folder in \(format.rawValue) format holds \(expected); check the folder and its format."
    }

    private static func recognisedFormat(_ folder: String) -> DatasetFormat {
        let manager = FileManager.default
        for (format, file, subfolder) in [(DatasetFormat.cifar10, "data_batch_1.bin", "cifar-10-batches-bin"),
                                          (.cifar100, "train.bin", "cifar-100-binary")]
        where manager.fileExists(atPath: folder + "/" + file) || manager.fileExists(atPath: folder + "/" + subfolder + "/" + file) {
            return format
        }
        if isFolder(folder + "/train") { return .folder }
        if manager.fileExists(atPath: folder + "/train.csv") { return .csv }
        return .idx
    }
}

let cifar10ClassNames = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

/// Reads both splits of a dataset.
/// - Throws: `DataError` naming the file and the problem when a file is missing, truncated, has a bad
///   magic number, or disagrees with its partner file.
public func loadDataset(_ source: DatasetSource) throws -> DatasetSplits {
    switch source.format {
    case .idx: return try loadIDX(source)
    case .cifar10, .cifar100: return try loadCIFAR(source)
    case .folder, .csv: return try loadImageFiles(source)
    }
}

/// The first of `name.gz` and `name` that exists in `folder` (the `.gz` path when neither does, for the error).
private func compressedOrPlain(_ folder: String, _ name: String) -> String {
    let plain = folder + "/" + name
    return FileManager.default.fileExists(atPath: plain) && !FileManager.default.fileExists(atPath: plain + ".gz") ? plain : plain + ".gz"
}

private func loadIDX(_ source: DatasetSource) throws -> DatasetSplits {
    let hint = source.missingFileHint
    let trainingLabels = compressedOrPlain(source.folder, "train-labels-idx1-ubyte")
    let testLabels = compressedOrPlain(source.folder, "t10k-labels-idx1-ubyte")
    let training = try readIDXSplit(imagesPath: compressedOrPlain(source.folder, "train-images-idx3-ubyte"),
                                    labelsPath: trainingLabels, hint: hint)
    let test = try readIDXSplit(imagesPath: compressedOrPlain(source.folder, "t10k-images-idx3-ubyte"),
                                labelsPath: testLabels, hint: hint)
    guard training.height == test.height, training.width == test.width else {
        throw DataError.corruptFile(path: testLabels, problem: """
            test images are \(test.height)×\(test.width) but training images are \
            \(training.height)×\(training.width); the folder mixes two datasets
            """)
    }
    let known = DatasetSource.catalog.first { $0.name == source.name }?.classNames
    let namesFile = source.folder + "/" + DatasetSource.classNamesFile
    let listed = try readSmallTextFile(namesFile).map { text in
        text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }
    if let listed, listed.isEmpty { throw DataError.corruptFile(path: namesFile, problem: "lists no class names") }
    let classNames = try known ?? listed ?? inferredClassNames(training.labels, path: trainingLabels, folder: source.folder)
    for (labels, path) in [(training.labels, trainingLabels), (test.labels, testLabels)] {
        if let sample = labels.firstIndex(where: { Int($0) >= classNames.count }) {
            throw DataError.corruptFile(path: path, problem: """
                sample \(sample) has label \(labels[sample]), outside the \(classNames.count) classes of \
                \(source.name); is the folder holding another dataset?
                """)
        }
    }
    func dataset(_ split: IDXSplit, _ part: String) -> ImageDataset {
        ImageDataset(name: "\(source.name) \(part)", height: split.height, width: split.width, channels: 1,
                     classNames: classNames, pixels: split.pixels, labels: split.labels)
    }
    return DatasetSplits(training: dataset(training, "train"), test: dataset(test, "test"))
}

/// The classes of an IDX folder outside the catalog without a class-names file: 0 … the largest
/// training label, each of which must occur, so a stray label (255 in a 10-class folder) is an error
/// naming its sample rather than 246 silent empty classes.
private func inferredClassNames(_ labels: [Int32], path: String, folder: String) throws -> [String] {
    let present = Set(labels)
    let largest = Int(labels.max() ?? 0)
    if let missing = (0...largest).first(where: { !present.contains(Int32($0)) }),
       let sample = labels.firstIndex(where: { Int($0) > missing }) {
        throw DataError.corruptFile(path: path, problem: """
            sample \(sample) has label \(labels[sample]), but label \(missing) never occurs: the classes of a folder \
            are 0 … its largest label, each present; if the gap is intended, list the class names in \
            \(folder)/\(DatasetSource.classNamesFile), one per line
            """)
    }
    return (0...largest).map(String.init)
}

private func loadCIFAR(_ source: DatasetSource) throws -> DatasetSplits {
    let isTen = source.format == .cifar10
    let subfolder = source.folder + (isTen ? "/cifar-10-batches-bin" : "/cifar-100-binary")
    let folder = FileManager.default.fileExists(atPath: subfolder) ? subfolder : source.folder
    let layout = isTen ? CIFARLayout.cifar10 : .cifar100(source.cifar100Labels)
    let trainingFiles = isTen ? (1...5).map { "\(folder)/data_batch_\($0).bin" } : ["\(folder)/train.bin"]
    let testFiles = [isTen ? "\(folder)/test_batch.bin" : "\(folder)/test.bin"]
    let hint = source.missingFileHint

    let namesFile = folder + "/" + (isTen ? "batches.meta.txt" : "\(source.cifar100Labels.rawValue)_label_names.txt")
    var classNames = isTen ? cifar10ClassNames : (0..<layout.classCount).map { "class \($0)" }
    if let text = try readSmallTextFile(namesFile) {
        let names = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard names.count == layout.classCount else {
            throw DataError.corruptFile(path: namesFile, problem: "lists \(names.count) class names, expected \(layout.classCount)")
        }
        classNames = names
    }
    let training = try readCIFARFiles(trainingFiles, layout: layout, hint: hint)
    let test = try readCIFARFiles(testFiles, layout: layout, hint: hint)
    func dataset(_ split: (pixels: [UInt8], labels: [Int32]), _ part: String) -> ImageDataset {
        ImageDataset(name: "\(source.name) \(part)", height: CIFARLayout.side, width: CIFARLayout.side, channels: 3,
                     classNames: classNames, pixels: split.pixels, labels: split.labels)
    }
    return DatasetSplits(training: dataset(training, "train"), test: dataset(test, "test"))
}
