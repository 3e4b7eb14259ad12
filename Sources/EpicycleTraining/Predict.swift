import EpicycleCheckpoint
import EpicycleData
import EpicycleRuntime
import Foundation

/// What `epicycle predict` computes and writes for each image.
public struct PredictionOptions: Sendable {
    /// Classes per row, most probable first; nil: 5, or every class when there are fewer.
    public var topK: Int?
    /// Also write each class's raw logit.
    public var logits: Bool
    /// Images decoded and scored at a time.
    public var batchSize: Int
    /// An image file that cannot be decoded stops the command (`error`) or is left out and reported (`skip`).
    public var badImages: BadImagePolicy
    /// The number format of the convolutions' products (see `Precision`).
    public var precision: Precision

    public init(topK: Int? = nil, logits: Bool = false, batchSize: Int = Trainer.evaluationBatchSize,
                badImages: BadImagePolicy = .error, precision: Precision = .fp32) {
        self.topK = topK
        self.logits = logits
        self.batchSize = batchSize
        self.badImages = badImages
        self.precision = precision
    }
}

/// What a prediction run scored.
public struct PredictionSummary: Sendable, Equatable {
    public var images: Int
    /// "path: reason" of each file left out under `badImages: .skip`.
    public var skipped: [String]
}

/// `epicycle predict`: the model of `checkpointPath` on image files, fed through the checkpoint's own
/// input pipeline (`/data`: image size, channels, mean and standard deviation, class names), exactly as
/// `format: folder` data is read for training and `eval`. The output is CSV: a header, then one row per
/// image, `path,top1_class,top1_prob,…,topk_class,topk_prob` (softmax probabilities, most probable
/// first, ties to the lower class index) and, with `options.logits`, one `logit_<class>` column per class.
/// - Parameters:
///   - inputs: image files, folders (every PNG and JPEG under them) and CSV lists (`path,label` lines).
///   - write: receives the CSV text, the header first, then a batch of rows at a time.
public func predict(checkpoint checkpointPath: String, inputs: [String], options: PredictionOptions = PredictionOptions(),
                    write: (String) throws -> Void) throws -> PredictionSummary {
    let checkpoint = try Checkpoint.read(from: checkpointPath)
    guard let input = checkpoint.input else {
        throw RecipeError(path: "", problem: "\(checkpointPath) has no /data input pipeline (image size, normalisation, class names), which predict feeds images through")
    }
    let model = try loadedModel(checkpoint, precision: options.precision)
    let classes = model.spec.numClasses
    guard input.channels == 1 || input.channels == 3, input.classNames.count == classes,
          ImageFileLimits.outputSide.contains(input.height), ImageFileLimits.outputSide.contains(input.width) else {
        throw RecipeError(path: "", problem: """
            \(checkpointPath): /data describes \(input.height)×\(input.width)×\(input.channels) images in \(input.classNames.count) \
            classes; predict reads 1- or 3-channel images of at most \(ImageFileLimits.outputSide.upperBound) pixels a side for \
            the model's \(classes) classes
            """)
    }
    let k = options.topK ?? min(5, classes)
    guard (1...classes).contains(k) else {
        throw RecipeError(path: "--top-k", problem: "must be from 1 to the checkpoint's \(classes) classes, got \(k)")
    }
    var budget = ImageFileLimits.files
    let files = try inputs.flatMap { try imageFiles(named: $0, budget: &budget) }
    guard !files.isEmpty else {
        throw RecipeError(path: "", problem: "no image files (.png, .jpg, .jpeg) in \(inputs.joined(separator: ", "))")
    }

    var header = ["path"] + (1...k).flatMap { ["top\($0)_class", "top\($0)_prob"] }
    if options.logits { header += input.classNames.map { "logit_" + $0 } }
    try write(header.map(csvField).joined(separator: ",") + "\n")
    var summary = PredictionSummary(images: 0, skipped: [])
    for start in stride(from: 0, to: files.count, by: options.batchSize) {
        var pixels = [UInt8](), scored = [String]()
        for file in files[start..<min(start + options.batchSize, files.count)] {
            do {
                pixels += try readFittedImage(file, height: input.height, width: input.width, channels: input.channels)
                scored.append(file)
            } catch let error as ImageFileError {
                if options.badImages == .error {
                    throw DataError.corruptFile(path: file, problem: "\(error.reason); fix or remove the file, or pass --bad-images skip")
                }
                summary.skipped.append("\(file): \(error.reason)")
            }
        }
        if scored.isEmpty { continue }
        let images = ImageDataset(name: "predict", height: input.height, width: input.width, channels: input.channels,
                                  classNames: input.classNames, pixels: pixels,
                                  labels: [Int32](repeating: ImageDataset.hiddenLabel, count: scored.count))
        let loader = DataLoader(dataset: images, normalization: input.normalization, seed: 0, shuffle: false)
        var rows = ""
        for batch in loader.epoch(0, batchSize: scored.count) {
            let logits = try model.forward(batch.images, mode: .inference).logits.scalars  // [N, classes]
            guard logits.allSatisfy(\.isFinite) else { throw TrainingError.nonFiniteOutputs(split: "the given images", folder: checkpointPath) }
            for (row, file) in scored.enumerated() {
                rows += predictionRow(path: file, logits: Array(logits[(row * classes)..<((row + 1) * classes)]),
                                      classNames: input.classNames, topK: k, withLogits: options.logits)
            }
        }
        try write(rows)
        summary.images += scored.count
    }
    return summary
}

/// One CSV row: the path, the `topK` most probable classes with their softmax probabilities, and the
/// logits when asked for.
private func predictionRow(path: String, logits: [Float], classNames: [String], topK: Int, withLogits: Bool) -> String {
    // Softmax in Double, shifted by the largest logit so that no exponential overflows.
    let largest = Double(logits.max()!)
    let exponentials = logits.map { exp(Double($0) - largest) }
    let total = exponentials.reduce(0, +)
    let ranked = logits.indices.sorted { logits[$0] != logits[$1] ? logits[$0] > logits[$1] : $0 < $1 }.prefix(topK)
    var fields = [csvField(path)]
    for index in ranked { fields += [csvField(classNames[index]), String(format: "%.9g", exponentials[index] / total)] }
    if withLogits { fields += logits.map { String(format: "%.9g", Double($0)) } }
    return fields.joined(separator: ",") + "\n"
}
