import ArgumentParser
import EpicycleData
import EpicycleSchedules

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Inspect datasets and the augmentation policy; measure the loader.",
        discussion: "Example: epicycle data show --policy full --output grid.png",
        subcommands: [Show.self, Bench.self])
}

extension DatasetFormat: ExpressibleByArgument {}
extension CIFAR100Labels: ExpressibleByArgument {}

/// Which dataset a data command reads.
struct DatasetOptions: ParsableArguments {
    @Option(help: "Dataset name: fashion-mnist (default), mnist, kmnist, cifar10, cifar100; found in $EPICYCLE_DATA/<name> or /usr/share/datasets/<name>.")
    var dataset: String?

    @Option(help: ArgumentHelp("A folder holding the dataset's files (overrides the name's location), as a recipe's data.folder.",
                               valueName: "folder"))
    var folder: String?

    @Option(help: "The folder's format: idx, cifar10, cifar100, folder or csv (recognised from the files when omitted; image files are read at 32×32 RGB).")
    var format: DatasetFormat?

    @Option(help: "CIFAR-100 labels: fine (100 classes) or coarse (20).")
    var labels: CIFAR100Labels = .fine

    func source() throws -> DatasetSource {
        try DatasetSource.resolve(name: dataset, folder: folder, format: format, cifar100Labels: labels)
    }
}

extension DataCommand {
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a dataset's statistics and write sample images at augmentation strengths 0, 0.5 and 1.",
            discussion: "Example: epicycle data show --policy crop,flip,cutout --output samples.png")

        @OptionGroup var dataset: DatasetOptions

        @Option(help: "Augmentation policy: full, none, or names from crop, flip, translate, affine, cutout, jitter, noise, mixup, cutmix.")
        var policy = "full"

        @Option(help: "Where to write the PNG grid.")
        var output = "samples.png"

        @Option(help: "Rows and columns of images per strength.")
        var grid = 6

        @Option(help: "Seed choosing the images and their augmentations.")
        var seed: UInt64 = 0

        func validate() throws {
            guard (1...64).contains(grid) else { throw ValidationError("--grid must be from 1 to 64, got \(grid)") }
        }

        func run() throws {
            print(try reporting {
                try showDataset(dataset.source(), policy: AugmentationPolicy(parsing: policy), pictureAt: output,
                                rows: grid, columns: grid, seed: seed)
            })
        }
    }

    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure loader + augmentation throughput (median img/s over repeats).",
            discussion: "Example: epicycle data bench --strength 1 && epicycle data bench --synthetic 32x32x3")

        @OptionGroup var dataset: DatasetOptions

        @Option(help: ArgumentHelp("Use random images of this shape instead of a dataset, e.g. 32x32x3.", valueName: "HxWxC"))
        var synthetic: String?

        @Option(help: "Augmentation policy (as for `data show`).")
        var policy = "full"

        @Option(help: "Augmentation strength in [0, 1].")
        var strength: Float = 1

        @Option(name: .customLong("batch-size"), help: "Images per batch.")
        var batchSize = 128

        @Option(help: "Batches timed per repeat.")
        var batches = 100

        @Option(help: "Timed repeats; the median is reported.")
        var repeats = 5

        @Option(help: "Loader worker threads.")
        var workers = 1

        func validate() throws {
            guard (0...1).contains(strength) else { throw ValidationError("--strength must lie in [0, 1], got \(strength)") }
            guard batchSize > 0, batches > 0, repeats > 0, workers > 0 else {
                throw ValidationError("--batch-size, --batches, --repeats and --workers must be positive")
            }
            guard batchSize <= 65_536, batches <= 1_000_000, repeats <= 1000, workers <= 1024 else {
                throw ValidationError("--batch-size is at most 65536, --batches 1000000, --repeats 1000 and --workers 1024")
            }
        }

        func run() throws {
            let images = try synthetic.map(syntheticDataset) ?? reporting { try loadDataset(dataset.source()).training }
            let augmentation = try reporting { try AugmentationPolicy(parsing: policy) }
            print(benchmarkLoader(dataset: images, policy: augmentation, strength: strength,
                                  batchSize: batchSize, batchesPerRepeat: batches, repeats: repeats, workerCount: workers))
        }

        private func syntheticDataset(_ shape: String) throws -> ImageDataset {
            let sides = shape.split(separator: "x").compactMap { Int($0) }
            // 10,000 images are made: at most 256×256×4 bytes each keeps that under 3 GB.
            guard sides.count == 3, sides.allSatisfy({ $0 > 0 }), sides[0] <= 256, sides[1] <= 256, sides[2] <= 4 else {
                throw ValidationError("--synthetic takes a shape HxWxC such as 32x32x3, at most 256x256x4, got '\(shortenedForMessage(shape))'")
            }
            return ImageDataset.synthetic(count: 10_000, height: sides[0], width: sides[1], channels: sides[2])
        }
    }
}
