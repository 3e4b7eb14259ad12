import Foundation
import Testing
@testable import EpicycleTraining

/// Relative paths in a recipe point from the folder of the file that holds it (`RecipePaths`).
@Suite struct RecipePathTests {
    @Test func relativePathsBetweenFolders() {
        #expect(RecipePaths.relativePath(from: "/a/b/c", to: "/a/x/y.h5") == "../../x/y.h5")
        #expect(RecipePaths.relativePath(from: "/a/b", to: "/a/b/c/d") == "c/d")
        #expect(RecipePaths.relativePath(from: "/a/b", to: "/a/b") == ".")
        #expect(RecipePaths.relativePath(from: "/a/b/", to: "/a/./b/../c") == "../c")
        // Sharing only the root: the file does not move with the folder, so it stays absolute.
        #expect(RecipePaths.relativePath(from: "/home/me/runs", to: "/data/t.h5") == "/data/t.h5")
        #expect(RecipePaths.absolutePath(of: "../t.h5", in: "/a/b") == "/a/t.h5")
        #expect(RecipePaths.absolutePath(of: "/x/../y", in: "/a/b") == "/y")
    }

    /// Every key `RecipePaths` rewrites is a key some decoder reads as a path, and decoding makes it absolute.
    @Test func decodedPathsAreAbsoluteAgainstTheRecipesFolder() throws {
        let text = """
            model: {architecture: plain-cnn}
            pretrain:
              data: {folder: images, format: folder}
              epochs: 1
              unlabeled: {folder: ../pool, format: folder, teacher: t.h5}
            finetune:
              data: {folder: /abs/data, format: folder}
              epochs: 1
              unlabeled: {teacher: ./x/t2.h5}
            """
        let recipe = try RecipeSource(text: text, origin: "r.yaml", folder: "/work/exp").decodeRecipe()
        #expect(recipe.pretrain?.data.folder == "/work/exp/images")
        #expect(recipe.pretrain?.unlabeled?.folder == "/work/pool")
        #expect(recipe.pretrain?.unlabeled?.teacher == "/work/exp/t.h5")
        #expect(recipe.finetune?.data.folder == "/abs/data")
        #expect(recipe.finetune?.unlabeled?.teacher == "/work/exp/x/t2.h5")
        // A recipe file's folder is its own, whatever the working folder.
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("epicycle-paths-\(UUID())/recipes")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder.deletingLastPathComponent()) }
        try text.write(to: folder.appendingPathComponent("r.yaml"), atomically: true, encoding: .utf8)
        let fromFile = try RecipeSource(contentsOf: folder.appendingPathComponent("r.yaml").path)
        #expect(fromFile.folder == folder.standardizedFileURL.path)
        #expect(try fromFile.decodeRecipe().pretrain?.data.folder == folder.appendingPathComponent("images").standardizedFileURL.path)
    }

    @Test func overridesAreRelativeToTheirOwnFolder() throws {
        let text = "model: {architecture: plain-cnn}\npretrain: {data: {folder: images}, epochs: 1}\n"
        // --set from the working folder /home/me, recipe in /home/me/recipes: the value is rewritten to point
        // where it pointed from /home/me, relative to the recipe's folder.
        let source = try RecipeSource(text: text, origin: "r.yaml", folder: "/home/me/recipes",
                                      overrides: ["pretrain.data.folder=data/photos", "pretrain.unlabeled={folder: pool, teacher: /t.h5}"],
                                      overridesFolder: "/home/me")
        #expect(source.text.contains("folder: ../data/photos"), "\(source.text)")
        #expect(source.text.contains("folder: ../pool") && source.text.contains("teacher: /t.h5"), "\(source.text)")
        let recipe = try source.decodeRecipe()
        #expect(recipe.pretrain?.data.folder == "/home/me/data/photos")
        #expect(recipe.pretrain?.unlabeled?.folder == "/home/me/pool")
        // A key that is not a path is left alone, and so is a path-named key elsewhere.
        let other = try RecipeSource(text: text, origin: "r.yaml", folder: "/home/me/recipes",
                                     overrides: ["name=images", "output=runs/x"], overridesFolder: "/home/me")
        #expect(other.text.contains("name: images") && other.text.contains("output: runs/x"), "\(other.text)")
    }

    @Test func aRecipeMovedToAnotherFolderPointsAtTheSameFiles() throws {
        let source = try RecipeSource(text: "model: {architecture: plain-cnn}\npretrain: {data: {folder: images}, epochs: 1}\n",
                                      origin: "r.yaml", folder: "/p/experiments")
        let moved = try source.relocated(to: "/p/experiments/results/runs/a/seed-0")
        #expect(moved.text.contains("folder: ../../../../images"), "\(moved.text)")
        #expect(try moved.decodeRecipe().pretrain?.data.folder == "/p/experiments/images")
        #expect(try moved.relocated(to: "/p/experiments").text.contains("folder: images"))
        // Nothing to rewrite: the text is kept as written, comments included.
        let plain = try RecipeSource(text: "# mine\nmodel: {architecture: plain-cnn}\npretrain: {epochs: 1}\n", origin: "r", folder: "/p")
        #expect(try plain.relocated(to: "/q").text == plain.text)
    }

    /// The resolved recipe gives relative paths as the text does (relative to its own folder); it
    /// decodes back to the same recipe from there.
    @Test func theResolvedRecipeKeepsPathsRelative() throws {
        let source = try RecipeSource(text: "model: {architecture: plain-cnn}\npretrain: {data: {folder: ../images, format: folder}, epochs: 1}\n",
                                      origin: "r.yaml", folder: "/p/experiments")
        let resolved = try resolvedRecipeText(source.decodeRecipe(), source: source)
        #expect(resolved.contains("folder: ../images") && !resolved.contains("/p/images"), "\(resolved)")
        let reread = try RecipeSource(text: resolved, origin: "recipe.yaml", folder: "/p/experiments").decodeRecipe()
        #expect(reread.pretrain?.data == (try source.decodeRecipe()).pretrain?.data)
    }
}
