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
    }

    public func trainingLoader(seed: UInt64) -> DataLoader {
        DataLoader(dataset: training, normalization: normalization, policy: policy, seed: seed)
    }

    public func validationLoader() -> DataLoader {
        DataLoader(dataset: validation, normalization: normalization, seed: 0, shuffle: false)
    }
}
