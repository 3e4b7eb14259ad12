import ArgumentParser
import EpicycleData
import EpicycleRuntime
import EpicycleTraining
import Foundation

extension BadImagePolicy: ExpressibleByArgument {}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Per-image predictions of a checkpoint as CSV: the top classes with their probabilities, optionally the logits.",
        discussion: """
            Images are fed as the checkpoint's input pipeline says (its /data: image size, channels, \
            normalisation and class names), resized on the shorter side and centre-cropped as image-folder \
            training reads them. Inputs are PNG or JPEG files, folders (every such file under them) and CSV \
            lists of `path,label` lines (paths relative to the list). Columns: path, then top1_class, \
            top1_prob … for the top k, then logit_<class> per class with --logits.
            Example: epicycle predict Checkpoints/quickstart/finetune/best.h5 my-images/ --top-k 3 --output predictions.csv
            """)

    @Argument(help: "The checkpoint file (.h5).")
    var checkpoint: String

    @Argument(help: ArgumentHelp("Image files, folders of them, or CSV lists.", valueName: "images"))
    var inputs: [String]

    @Option(help: "Classes per image, most probable first (default: 5, or every class when there are fewer).")
    var topK: Int?

    @Flag(help: "Also write each class's raw logit.")
    var logits = false

    @Option(help: "Write the CSV here instead of to standard output.")
    var output: String?

    @Option(help: "Images decoded and scored at a time.")
    var batchSize = Trainer.evaluationBatchSize

    @Option(help: "What a file that cannot be decoded does: error (stop, naming it) or skip (leave it out and report it).")
    var badImages: BadImagePolicy = .error

    @Option(help: "fp32, or bf16 for the convolutions' products (needs AVX512-BF16; else fp32, with a warning).")
    var precision: Precision = .fp32

    func validate() throws {
        guard !inputs.isEmpty else { throw ValidationError("Give the images to predict: files, folders or CSV lists.") }
        guard RecipeLimits.batchSize.contains(batchSize) else {
            throw ValidationError("--batch-size must be from 1 to \(RecipeLimits.batchSize.upperBound), got \(batchSize).")
        }
        if let topK, topK < 1 { throw ValidationError("--top-k must be at least 1, got \(topK).") }
    }

    func run() throws {
        let options = PredictionOptions(topK: topK, logits: logits, batchSize: batchSize, badImages: badImages,
                                        precision: precision)
        let summary = try reporting {
            guard let output else {
                return try predict(checkpoint: checkpoint, inputs: inputs, options: options) { text in
                    FileHandle.standardOutput.write(Data(text.utf8))
                }
            }
            // Written beside the destination and renamed when complete: a failure leaves no half file.
            let partial = output + ".tmp"
            guard FileManager.default.createFile(atPath: partial, contents: nil), let file = FileHandle(forWritingAtPath: partial) else {
                throw DataError.writeFailed(path: output, reason: "cannot create \(partial)")
            }
            do {
                let summary = try predict(checkpoint: checkpoint, inputs: inputs, options: options) { try file.write(contentsOf: Data($0.utf8)) }
                try file.close()
                guard rename(partial, output) == 0 else {
                    throw DataError.writeFailed(path: output, reason: String(cString: strerror(errno)))
                }
                return summary
            } catch {
                try? file.close()
                try? FileManager.default.removeItem(atPath: partial)
                throw error
            }
        }
        var note = "predicted \(summary.images) image\(summary.images == 1 ? "" : "s")" + (output.map { " into \($0)" } ?? "")
        if !summary.skipped.isEmpty {
            note += "; skipped \(summary.skipped.count) that cannot be decoded:\n" + summary.skipped.prefix(5).map { "  " + $0 }.joined(separator: "\n")
            if summary.skipped.count > 5 { note += "\n  … and \(summary.skipped.count - 5) more" }
        }
        FileHandle.standardError.write(Data((note + "\n").utf8))
    }
}
