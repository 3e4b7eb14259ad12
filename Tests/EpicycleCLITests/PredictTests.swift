import EpicycleData
import Foundation
import Testing
import TestSupport

/// `epicycle predict` against `epicycle eval` on a model trained from a generated image folder.
@Suite(.serialized) struct PredictTests {
    /// One parsed CSV file: the header and the rows.
    struct Table {
        var header: [String]
        var rows: [[String]]

        init(_ text: String) throws {
            let lines = try text.split(separator: "\n").map { try #require(csvFields($0)) }
            header = try #require(lines.first)
            rows = Array(lines.dropFirst())
        }

        func column(_ name: String) throws -> Int { try #require(header.firstIndex(of: name), "no column \(name)") }
    }

    static let recipe = """
        seed: 2
        model: {architecture: resnet8}
        knobs: {learning_rate: 0.05, batch_size: 12}
        pretrain:
          data: {format: folder, folder: data, image_size: \(ImageFolderFixture.side), bad_images: skip, validation: 6}
          epochs: 2
        """

    @Test func predictionsAgreeWithEvalAndAreTheSoftmaxOfTheLogits() throws {
        let folder = CLITests.folder("predict")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let fixture = try ImageFolderFixture(writingTo: folder + "/data")
        try Self.recipe.write(toFile: folder + "/images.yaml", atomically: true, encoding: .utf8)
        let training = try CLITests.run(["pretrain", "--recipe", "images.yaml", "--output", "run", "--quiet"], in: folder)
        #expect(training.status == 0, "\(training.errors)")
        #expect(training.errors.contains("skipped 2 image files that cannot be decoded (bad_images: skip)"))

        let evaluation = try CLITests.run(["eval", "run/last.h5"], in: folder)
        #expect(evaluation.status == 0, "\(evaluation.errors)")
        let top1 = try #require(evaluation.output.firstMatch(of: /top-1 ([0-9.]+) %/)?.1)

        let predicted = try CLITests.run(["predict", "run/last.h5", "data/test", "--logits", "--top-k", "2", "--output", "p.csv"], in: folder)
        #expect(predicted.status == 0, "\(predicted.errors)")
        #expect(predicted.errors.contains("predicted 18 images into p.csv"))
        let table = try Table(String(contentsOfFile: folder + "/p.csv", encoding: .utf8))
        #expect(table.header == ["path", "top1_class", "top1_prob", "top2_class", "top2_prob", "logit_blue", "logit_green", "logit_red"])
        #expect(table.rows.count == 3 * ImageFolderFixture.testPerClass)
        let path = try table.column("path"), top1Class = try table.column("top1_class")
        let correct = table.rows.filter { row in row[top1Class] == URL(fileURLWithPath: row[path]).deletingLastPathComponent().lastPathComponent }
        #expect(String(format: "%.2f", 100 * Double(correct.count) / Double(table.rows.count)) == String(top1))
        for row in table.rows {
            let logits = try ImageFolderFixture.classNames.map { try #require(Double(row[try table.column("logit_" + $0)])) }
            let largest = logits.max()!
            let probabilities = logits.map { exp($0 - largest) / logits.map { exp($0 - largest) }.reduce(0, +) }
            let ranked = probabilities.indices.sorted { probabilities[$0] > probabilities[$1] }
            for rank in 0..<2 {
                #expect(row[try table.column("top\(rank + 1)_class")] == ImageFolderFixture.classNames[ranked[rank]])
                let probability = try #require(Double(row[try table.column("top\(rank + 1)_prob")]))
                #expect(abs(probability - probabilities[ranked[rank]]) < 1e-6)
            }
        }

        // A CSV list of the same files gives the same rows to standard output, top 3 by default here.
        try fixture.csvLines(split: "test").joined(separator: "\n").write(toFile: folder + "/data/test.csv", atomically: true, encoding: .utf8)
        let listed = try CLITests.run(["predict", "run/last.h5", "data/test.csv"], in: folder)
        #expect(listed.status == 0, "\(listed.errors)")
        let listedTable = try Table(listed.output)
        #expect(listedTable.header.count == 1 + 2 * 3)
        #expect(listedTable.rows.map { Array($0[1...4]) } == table.rows.map { Array($0[1...4]) })
    }

    @Test func badInputsAreOneLineErrors() throws {
        let folder = CLITests.folder("predict-errors")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let fixture = try ImageFolderFixture(writingTo: folder + "/data")
        try Self.recipe.replacingOccurrences(of: "epochs: 2", with: "epochs: 1").write(toFile: folder + "/images.yaml", atomically: true, encoding: .utf8)
        #expect(try CLITests.run(["pretrain", "--recipe", "images.yaml", "--output", "run", "--quiet"], in: folder).status == 0)

        let damaged = try CLITests.run(["predict", "run/last.h5", "data/train/blue"], in: folder)
        #expect(damaged.status == 1)
        #expect(damaged.errors.hasPrefix("error: data/train/blue/damaged.png: not a readable PNG file (libpng: "))
        #expect(damaged.errors.contains("; fix or remove the file, or pass --bad-images skip\n"))
        let skipping = try CLITests.run(["predict", "run/last.h5", "data/train", "--bad-images", "skip"], in: folder)
        #expect(skipping.status == 0, "\(skipping.errors)")
        #expect(skipping.errors.contains("predicted 36 images; skipped 2 that cannot be decoded:\n  data/train/blue/damaged.png: "))
        #expect(try Table(skipping.output).rows.count == 36)

        let tooMany = try CLITests.run(["predict", "run/last.h5", fixture.firstTrainingFile, "--top-k", "4"], in: folder)
        #expect(tooMany.status == 1 && tooMany.errors == "error: --top-k: must be from 1 to the checkpoint's 3 classes, got 4\n")
        let nothing = try CLITests.run(["predict", "run/last.h5", "images.yaml"], in: folder)
        #expect(nothing.status == 1 && nothing.errors.hasPrefix("error: images.yaml: neither a PNG nor a JPEG file"))
    }
}
