import EpicycleCheckpoint
import EpicycleData
import EpicycleRuntime
import Foundation

/// A phase's data made ready, as the recipe's `data:` section asks: the training images, the
/// validation images that select the best epoch, the test images scored once at the end, and the
/// input pipeline (normalisation computed from the training images unless a checkpoint fixes it).
public struct PreparedData: Sendable {
    public let training: ImageDataset
    public let validation: ImageDataset
    public let test: ImageDataset
    /// True when the recipe said `validation: test`: selection then sees the test images.
    public let validatesOnTest: Bool
    public private(set) var normalization: ChannelStatistics
    public let policy: AugmentationPolicy
    /// Where the images came from, for messages.
    public let source: String
    /// The dataset as the checkpoint names it: the catalogue name or the folder.
    public let datasetName: String
    /// Output index i is the dataset's original label `classes[i]`.
    public let classes: [Int]
    /// The phase's unlabeled images (its `unlabeled:` section), or nil for labeled training only.
    public let unlabeled: UnlabeledPool?

    public var classCount: Int { training.classCount }
    public var channels: Int { training.channels }

    /// The seed of every held-out validation split. It does not follow the run's seed: comparisons
    /// over seeds then validate on the same images, a teacher and its students share one split, and
    /// `eval` sees exactly the images training validated on.
    static let validationSplitSeed: UInt64 = 0

    /// - Parameters:
    ///   - normalization: the input pipeline's statistics when they are fixed already (a fine-tune or a
    ///     student adopts its checkpoint's); nil computes them from the training images.
    ///   - unlabeled: the phase's `unlabeled:` section, found at `unlabeledPath`.
    public init(_ recipe: DataRecipe, path: String, normalization fixed: ChannelStatistics? = nil,
                unlabeled unlabeledRecipe: UnlabeledRecipe? = nil, unlabeledPath: String = "unlabeled") throws {
        do {
            let source = try Self.source(recipe, path: path)
            var splits = try loadDataset(source)
            Self.report(skippedImages: splits.skippedImages, of: source)
            let originalClassCount = splits.training.classCount
            if let classes = recipe.classes {
                splits.training = try splits.training.classes(classes)
                splits.test = try splits.test.classes(classes)
                splits.validation = try splits.validation?.classes(classes)
            }
            // Validation is held out of the whole training split first, so `first` and `per_class`
            // pick from the same remaining images whatever their size, and never from validation.
            var training = splits.training, validation = splits.test
            if recipe.validation != .test, let own = splits.validation {
                guard !recipe.validationIsStated else {
                    throw RecipeError(path: path + ".validation", problem: "\(source.folder) has its own validation images (val/); leave out validation, or say validation: test")
                }
                validation = own
            } else if let heldOut = recipe.validation.heldOutCount(of: training.count) {
                (training, validation) = try training.validationSplit(count: heldOut, seed: Self.validationSplitSeed)
            }
            let beforeSubsetting = training
            if let first = recipe.first { training = try training.first(first) }
            if let perClass = recipe.perClass { training = try training.firstPerClass(perClass) }
            self.training = training
            unlabeled = try unlabeledRecipe.map { unlabeledRecipe in
                try UnlabeledPool(unlabeledRecipe, path: unlabeledPath, phase: recipe, phasePath: path, labeled: training,
                                  beforeSubsetting: beforeSubsetting)
            }
            self.validation = validation
            test = splits.test
            validatesOnTest = recipe.validation == .test
            if let fixed, fixed.mean.count != training.channels {
                throw DataError.invalidRequest("\(source.name) has \(training.channels)-channel images; the checkpoint's input pipeline has \(fixed.mean.count) channels")
            }
            normalization = fixed ?? training.channelStatistics()
            policy = try AugmentationPolicy(parsing: recipe.augmentation)
            self.source = source.description
            datasetName = recipe.folder ?? recipe.dataset
            classes = recipe.classes ?? Array(0..<originalClassCount)
        } catch let error as DataError {
            throw RecipeError(path: path, problem: error.description)
        }
        try checkNotEmpty(recipe, path: path)
    }

    /// The dataset a data section names, its image-file keys checked against its format.
    static func source(_ recipe: DataRecipe, path: String) throws -> DatasetSource {
        let source = try DatasetSource.resolve(name: recipe.folder == nil ? recipe.dataset : nil, folder: recipe.folder,
                                               format: recipe.format.flatMap(DatasetFormat.init(rawValue:)),
                                               imageFiles: recipe.imageFiles)
        if source.format != .folder && source.format != .csv, let key = recipe.imageFileKeys.first {
            throw RecipeError(path: path + "." + key, problem: "applies to image files (format: folder or csv); \(source.name) is \(source.format.rawValue)")
        }
        return source
    }

    /// Says on standard error which image files `bad_images: skip` left out: a count, and the first few.
    static func report(skippedImages: [String], of source: DatasetSource) {
        guard !skippedImages.isEmpty else { return }
        let shown = skippedImages.prefix(5).map { "  " + $0 }.joined(separator: "\n")
        let more = skippedImages.count > 5 ? "\n  … and \(skippedImages.count - 5) more" : ""
        FileHandle.standardError.write(Data("""
            warning: \(source.name): skipped \(skippedImages.count) image file\(skippedImages.count == 1 ? "" : "s") that cannot be decoded (bad_images: skip):
            \(shown)\(more)

            """.utf8))
    }

    /// An empty split would report nonsense as a result (an epoch over no images, a top-1 over none),
    /// so it is an error before any training.
    private func checkNotEmpty(_ recipe: DataRecipe, path: String) throws {
        let selection = [recipe.classes.map { "classes \($0)" }, recipe.validation == .test ? nil : "validation: \(recipe.validation)",
                         recipe.first.map { "first: \($0)" }, recipe.perClass.map { "per_class: \($0)" }].compactMap { $0 }
        let after = selection.isEmpty ? "" : " after " + selection.joined(separator: ", ")
        if training.count == 0 {
            throw RecipeError(path: path, problem: "has no training images\(after) (\(source))")
        }
        if test.count == 0 {
            throw RecipeError(path: path, problem: "has no test images\(recipe.classes.map { " in classes \($0)" } ?? "") (\(source))")
        }
        if validation.count == 0 {
            let split = recipe.validation == .test ? "test (validation: test validates on it)" : "held-out validation"
            throw RecipeError(path: path, problem: "has no \(split) images\(after) (\(source))")
        }
    }

    public func trainingLoader(seed: UInt64) -> DataLoader {
        DataLoader(dataset: training, normalization: normalization, policy: policy, seed: seed)
    }

    public func validationLoader() -> DataLoader { loader(for: validation) }

    public func testLoader() -> DataLoader { loader(for: test) }

    /// Un-augmented images in a fixed order, normalised as the model sees them.
    public func loader(for images: ImageDataset) -> DataLoader {
        DataLoader(dataset: images, normalization: normalization, seed: 0, shuffle: false)
    }

    /// The same images normalised as a checkpoint's model expects them (a fine-tune, a student of a
    /// teacher). - Throws: when the images do not have the checkpoint's shape.
    public func adopting(_ input: InputPipeline, from file: String, path: String) throws -> PreparedData {
        let shape = [input.height, input.width, input.channels]
        guard training.imageShape == shape else {
            throw RecipeError(path: path, problem: "has \(training.imageShape.map(String.init).joined(separator: "×")) images; "
                              + "\(file) was trained on \(shape.map(String.init).joined(separator: "×")) images (its /data input pipeline)")
        }
        var adopted = self
        adopted.normalization = input.normalization
        return adopted
    }

    /// What a checkpoint stores so that its model can be fed without Epicycle.
    public var inputPipeline: InputPipeline {
        InputPipeline(dataset: datasetName, height: training.height, width: training.width, channels: training.channels,
                      mean: normalization.mean, standardDeviation: normalization.standardDeviation,
                      classes: classes, classNames: training.classNames)
    }
}

/// A phase's unlabeled images (`UnlabeledRecipe`), and their labels held back for the log.
public struct UnlabeledPool: Sendable {
    /// The images with every label hidden: all that training reads.
    public let images: ImageDataset
    /// The labels the pool's images had, in pool order, read only for the logged pseudo-label accuracy;
    /// nil when a separate source's classes are not the phase's.
    public let heldBackLabels: [Int32]?
    public let weakPolicy: AugmentationPolicy
    public let strongPolicy: AugmentationPolicy
    /// μ: unlabeled images per labeled image in a step.
    public let ratio: Int

    /// - Parameters:
    ///   - phase: the phase's `data:` (at `phasePath`), which chose `labeled` out of `beforeSubsetting`,
    ///     its training images after validation was held out.
    init(_ recipe: UnlabeledRecipe, path: String, phase: DataRecipe, phasePath: String, labeled: ImageDataset,
         beforeSubsetting: ImageDataset) throws {
        var pool: ImageDataset
        do {
            pool = try Self.images(recipe, path: path, phase: phase, phasePath: phasePath, labeled: labeled,
                                   beforeSubsetting: beforeSubsetting)
        } catch let error as DataError {
            throw RecipeError(path: path, problem: error.description)
        }
        if let first = recipe.first, first < pool.count { pool = pool.samples(at: Array(0..<first), name: "\(pool.name), first \(first)") }
        guard pool.count > 0 else { throw RecipeError(path: path, problem: "has no images (\(pool.name))") }
        heldBackLabels = pool.classNames == labeled.classNames ? pool.labels : nil
        images = pool.withoutLabels()
        weakPolicy = try UnlabeledRecipe.policy(recipe.weak, path: path + ".weak")
        strongPolicy = try UnlabeledRecipe.policy(recipe.strong, path: path + ".strong")
        ratio = recipe.ratio
    }

    /// The pool's images, labels still on: a separate source's training split, or the phase's
    /// training images its `per_class` or `first` left out.
    private static func images(_ recipe: UnlabeledRecipe, path: String, phase: DataRecipe, phasePath: String,
                               labeled: ImageDataset, beforeSubsetting: ImageDataset) throws -> ImageDataset {
        if recipe.dataset != nil || recipe.folder != nil {
            // Image files of the pool are fitted as the phase's are: the two must have one image shape.
            let source = try DatasetSource.resolve(name: recipe.folder == nil ? recipe.dataset : nil, folder: recipe.folder,
                                                   format: recipe.format.flatMap(DatasetFormat.init(rawValue:)),
                                                   imageFiles: phase.imageFiles)
            let phaseSource = try PreparedData.source(phase, path: phasePath)
            guard URL(fileURLWithPath: source.folder).standardizedFileURL != URL(fileURLWithPath: phaseSource.folder).standardizedFileURL else {
                throw RecipeError(path: path, problem: "names the phase's own dataset (\(source.name)), whose training split holds its validation images; leave out dataset and folder to use its images not chosen as labeled")
            }
            let splits = try loadDataset(source)
            PreparedData.report(skippedImages: splits.skippedImages, of: source)
            var pool = splits.training
            if let classes = recipe.classes { pool = try pool.classes(classes) }
            guard pool.imageShape == labeled.imageShape else {
                throw RecipeError(path: path, problem: "\(source.name) has \(pool.imageShape.map(String.init).joined(separator: "×")) images, the phase's \(labeled.imageShape.map(String.init).joined(separator: "×"))")
            }
            return pool
        }
        if let perClass = phase.perClass { return try beforeSubsetting.split(firstPerClass: perClass).rest }
        if let first = phase.first {
            return beforeSubsetting.samples(at: Array(first..<beforeSubsetting.count), name: "\(beforeSubsetting.name), after the first \(first)")
        }
        throw RecipeError(path: path, problem: "the phase labels all its training images; choose the labeled ones with \(phasePath).per_class or \(phasePath).first, or give a separate dataset or folder")
    }
}

extension InputPipeline {
    /// The normalisation as the loader applies it.
    public var normalization: ChannelStatistics {
        ChannelStatistics(mean: mean, standardDeviation: standardDeviation)
    }
}
