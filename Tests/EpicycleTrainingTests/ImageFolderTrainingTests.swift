import EpicycleCheckpoint
import EpicycleData
@testable import EpicycleTraining
import Foundation
import Testing
import TestSupport

/// Training, evaluation and prediction on a generated folder of PNG and JPEG files (TestSupport's
/// `ImageFolderFixture`: three colour classes, a greyscale PNG among RGB ones, two undecodable files).
@Suite(.serialized) struct ImageFolderTrainingTests {
    static func folder(_ name: String) -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("epicycle-image-folder-tests/\(name)-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func recipe(root: String, data: String = "") -> String {
        """
        seed: 1
        model: {architecture: resnet8}
        knobs: {learning_rate: 0.05, batch_size: 12}
        pretrain:
          data: {format: folder, folder: "\(root)", image_size: \(ImageFolderFixture.side), bad_images: skip, validation: 6\(data)}
          epochs: 3
        """
    }

    func problem(_ text: String) -> String? {
        do {
            _ = try RecipeSource(text: text, origin: "test.yaml").decode(Recipe.self)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func imageFileKeysAreCheckedByKeyPath() throws {
        let phase = { (data: String) in "model: {architecture: resnet8}\npretrain:\n  data: \(data)\n  epochs: 1\n" }
        #expect(problem(phase("{format: folder, channels: 2}"))?.hasPrefix("pretrain.data.channels: must be 1 (grey) or 3 (RGB), got 2") == true)
        #expect(problem(phase("{format: folder, image_size: 0}"))?.hasPrefix("pretrain.data.image_size: must be a whole number from 1 to 1024, got 0") == true)
        #expect(problem(phase("{format: csv, bad_images: ignore}"))?.hasPrefix("pretrain.data.bad_images: expected skip or error, got 'ignore'") == true)
        #expect(problem(phase("{format: png}"))?.hasPrefix("pretrain.data.format: expected one of idx, cifar10, cifar100, folder, csv, got 'png'") == true)
        let recipe = try RecipeSource(text: phase("{image_size: 64}"), origin: "test.yaml").decode(Recipe.self)
        let data = try #require(recipe.pretrain?.data)
        #expect(throws: RecipeError(path: "pretrain.data.image_size", problem: "applies to image files (format: folder or csv); fashion-mnist is idx")) {
            try PreparedData(data, path: "pretrain.data")
        }
    }

    /// The acceptance test of issue 17: a few epochs on the folder, then `eval` agrees with the run's
    /// own test score, the checkpoint's `/data` names the folder's classes and its image shape, and a
    /// colour task this easy is learnt.
    @Test func trainsOnAFolderOfPNGAndJPEGFilesAndEvaluates() throws {
        let root = Self.folder("data"), output = Self.folder("run")
        defer { try? FileManager.default.removeItem(atPath: root); try? FileManager.default.removeItem(atPath: output) }
        _ = try ImageFolderFixture(writingTo: root)
        let result = try pretrain(recipe: RecipeSource(text: Self.recipe(root: root), origin: "folder.yaml"),
                                  options: RunOptions(output: output, quiet: true))
        let test = try #require(result.phases[0].test)
        #expect(test.last.images == 3 * ImageFolderFixture.testPerClass)
        let checkpoint = try Checkpoint.read(from: result.checkpoint)
        let input = try #require(checkpoint.input)
        #expect(input.classNames == ImageFolderFixture.classNames)
        #expect([input.height, input.width, input.channels] as [Int] == [ImageFolderFixture.side, ImageFolderFixture.side, 3])
        #expect(input.dataset == root)
        let evaluation = try evaluate(checkpoint: result.checkpoint)
        #expect(evaluation.score.images == test.last.images && evaluation.score.top1 == test.last.top1)
        #expect(evaluation.classNames == ImageFolderFixture.classNames)
        #expect(test.last.top1 > 60, "a colour task should be learnt in 3 epochs: \(test.last.top1) %")
        // 36 decodable training images less the 6 held out for validation.
        let validation = try evaluate(checkpoint: result.checkpoint, split: .validation)
        let training = try evaluate(checkpoint: result.checkpoint, split: .train)
        #expect(validation.score.images == 6 && training.score.images == 30)
    }

    @Test func aValidationFolderReplacesTheHeldOutShare() throws {
        let root = Self.folder("val")
        defer { try? FileManager.default.removeItem(atPath: root) }
        _ = try ImageFolderFixture(writingTo: root, withValidationFolder: true)
        let recipe = try RecipeSource(text: Self.recipe(root: root).replacingOccurrences(of: ", validation: 6", with: ""),
                                      origin: "val.yaml").decode(Recipe.self)
        let data = try PreparedData(try #require(recipe.pretrain?.data), path: "pretrain.data")
        #expect(data.validation.count == 3 * ImageFolderFixture.validationPerClass)
        #expect(data.training.count == 3 * ImageFolderFixture.trainingPerClass)
        let stated = try RecipeSource(text: Self.recipe(root: root), origin: "val.yaml").decode(Recipe.self)
        #expect(throws: RecipeError(path: "pretrain.data.validation",
                                    problem: "\(root) has its own validation images (val/); leave out validation, or say validation: test")) {
            try PreparedData(try #require(stated.pretrain?.data), path: "pretrain.data")
        }
    }
}
