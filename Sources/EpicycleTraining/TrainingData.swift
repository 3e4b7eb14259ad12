import EpicycleData
import EpicycleRuntime

/// A phase's data made ready: the training and validation images with the normalisation computed
/// from the training images, as the recipe's `data:` section asks.
public struct PreparedData: Sendable {
    public let training: ImageDataset
    public let validation: ImageDataset
    public let normalization: ChannelStatistics
    public let policy: AugmentationPolicy
    /// Where the images came from, for messages and the checkpoint.
    public let source: String

    public var classCount: Int { training.classCount }
    public var channels: Int { training.channels }

    /// The seed of every held-out validation split. It does not follow the run's seed: comparisons
    /// over seeds then validate on the same images, a teacher and its students share one split, and
    /// `eval` sees exactly the images training validated on.
    static let validationSplitSeed: UInt64 = 0

    public init(_ recipe: DataRecipe, path: String) throws {
        do {
            let format = recipe.format.flatMap(DatasetFormat.init(rawValue:))
            let source = try DatasetSource.resolve(name: recipe.folder == nil ? recipe.dataset : nil, folder: recipe.folder,
                                                   format: format)
            var splits = try loadDataset(source)
            if let classes = recipe.classes {
                splits.training = try splits.training.classes(classes)
                splits.test = try splits.test.classes(classes)
            }
            var training = splits.training, validation = splits.test
            if recipe.validation > 0 {
                (training, validation) = try training.validationSplit(count: recipe.validation, seed: Self.validationSplitSeed)
            }
            if let first = recipe.first { training = try training.first(first) }
            if let perClass = recipe.perClass { training = try training.firstPerClass(perClass) }
            self.training = training
            self.validation = validation
            normalization = training.channelStatistics()
            policy = try AugmentationPolicy(parsing: recipe.augmentation)
            self.source = source.description
        } catch let error as DataError {
            throw RecipeError(path: path, problem: error.description)
        }
        try checkNotEmpty(recipe, path: path)
    }

    /// An empty split would report nonsense as a result (an epoch over no images, a top-1 over none),
    /// so it is an error before any training.
    private func checkNotEmpty(_ recipe: DataRecipe, path: String) throws {
        let selection = [recipe.classes.map { "classes \($0)" }, recipe.validation > 0 ? "validation: \(recipe.validation)" : nil,
                         recipe.first.map { "first: \($0)" }, recipe.perClass.map { "per_class: \($0)" }].compactMap { $0 }
        let after = selection.isEmpty ? "" : " after " + selection.joined(separator: ", ")
        if training.count == 0 {
            throw RecipeError(path: path, problem: "has no training images\(after) (\(source))")
        }
        if validation.count == 0 {
            let split = recipe.validation > 0 ? "held-out validation" : "test (validation: 0 validates on it)"
            throw RecipeError(path: path, problem: "has no \(split) images\(after) (\(source))")
        }
    }

    public func trainingLoader(seed: UInt64) -> DataLoader {
        DataLoader(dataset: training, normalization: normalization, policy: policy, seed: seed)
    }

    public func validationLoader() -> DataLoader {
        DataLoader(dataset: validation, normalization: normalization, seed: 0, shuffle: false)
    }
}
