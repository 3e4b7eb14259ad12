import EpicycleData
import EpicycleTraining
import Foundation
import Testing
@testable import EpicycleExperiments

/// A folder of experiments, recipes, a teacher checkpoint, data and results moves as a whole: the runs
/// stay finished, an interrupted one resumes, and the checkpoints still find their data.
@Suite(.serialized) struct MovedFolderTests {
    @Test func aMovedExperimentFolderFindsItsRunsFinished() throws {
        let root = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let project = root.appendingPathComponent("project"), manager = FileManager.default
        try manager.createDirectory(at: project.appendingPathComponent("Experiments/base"), withIntermediateDirectories: true)
        // The data as a folder of the project (a link to the catalogue's IDX files).
        try manager.createSymbolicLink(atPath: project.appendingPathComponent("fmnist").path, withDestinationPath: try DatasetSource.named().folder)
        _ = try pretrain(recipe: RecipeSource(text: """
            model: {architecture: plain-cnn}
            knobs: {batch_size: 50, learning_rate: 0.05}
            pretrain: {data: {first: 100, validation: 100}, epochs: 1}
            """, origin: "teacher"), options: RunOptions(output: project.appendingPathComponent("Checkpoints/teacher").path, quiet: true))
        try """
            model: {architecture: plain-cnn}
            knobs: {batch_size: 50, learning_rate: 0.05}
            pretrain: {data: {folder: ../../fmnist, first: 100, validation: 100}, epochs: 1}
            distill:
              teacher: ../../Checkpoints/teacher/last.h5
              losses: [{kind: labels, weight: 1}, {kind: logits, weight: 1, temperature: 4}]
            """.write(to: project.appendingPathComponent("Experiments/base/student.yaml"), atomically: true, encoding: .utf8)
        // The variant names the same teacher, relative to the experiment file.
        try """
            program: distill
            recipe: base/student.yaml
            seeds: [0]
            baseline: kd
            variants:
              kd: {}
              kd-again: {distill.teacher: ../Checkpoints/teacher/last.h5}
            """.write(to: project.appendingPathComponent("Experiments/moving.yaml"), atomically: true, encoding: .utf8)

        let experiment = try Experiment(contentsOf: project.appendingPathComponent("Experiments/moving.yaml").path)
        let first = try runComparison(experiment: experiment)
        #expect(first.executed == ["kd/seed-0", "kd-again/seed-0"] && first.failed.isEmpty)
        // Run folders Experiments/results/moving/runs/<variant>/seed-0 name both files from six levels down.
        let kept = try String(contentsOfFile: experiment.runFolder(variant: "kd", seed: 0) + "/recipe.yaml", encoding: .utf8)
        #expect(kept.contains("teacher: ../../../../../../Checkpoints/teacher/last.h5"), "\(kept)")
        #expect(kept.contains("folder: ../../../../../../fmnist") && !kept.contains(project.path), "\(kept)")
        #expect(try String(contentsOfFile: experiment.runFolder(variant: "kd-again", seed: 0) + "/recipe.yaml", encoding: .utf8) == kept)

        let moved = root.appendingPathComponent("moved/project")
        try manager.createDirectory(at: moved.deletingLastPathComponent(), withIntermediateDirectories: true)
        try manager.moveItem(at: project, to: moved)
        let movedExperiment = try Experiment(contentsOf: moved.appendingPathComponent("Experiments/moving.yaml").path)
        let second = try runComparison(experiment: movedExperiment)
        #expect(second.executed.isEmpty && second.skipped == ["kd/seed-0", "kd-again/seed-0"])
        #expect(second.report.runs.map(\.testTop1) == first.report.runs.map(\.testTop1))

        // A run killed before the move continues from its last.h5 in the new place (the recipe its
        // checkpoint stores is the one the experiment generates there).
        let runFolder = movedExperiment.runFolder(variant: "kd", seed: 0)
        var record = try #require(second.report.runs.first { $0.label == "kd/seed-0" })
        record.status = .running
        try record.write(folder: runFolder)
        let third = try runComparison(experiment: movedExperiment)
        #expect(third.executed == ["kd/seed-0"] && third.failed.isEmpty)
        #expect(third.report.runs.first { $0.label == "kd/seed-0" }?.resumed == true)

        // The checkpoint's stored recipe finds the data where the folder now is.
        let score = try evaluate(checkpoint: runFolder + "/last.h5", split: .validation)
        #expect(score.score.images == 100)
    }
}
