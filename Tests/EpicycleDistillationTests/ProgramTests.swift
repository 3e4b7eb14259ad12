import EpicycleCheckpoint
import EpicycleDistillation
import EpicycleRuntime
import EpicycleTraining
import Foundation
import Testing

func temporaryFolder() throws -> String {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("epicycle-distill-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url.path
}

/// The small task: Fashion-MNIST with 1,000 training images held out for validation (the same ones for
/// every run: one seed). The teacher sees 3,000 images; the students only 10 per class, for 40 epochs
/// without augmentation, so that on labels alone the student overfits — the regime where the
/// teacher's soft targets carry what the labels do not.
let teacherRecipe = """
    seed: 3
    model: {architecture: resnet8}
    knobs: {learning_rate: {cosine: {peak: 0.1, final: 0}}, batch_size: 64}
    pretrain: {data: {validation: 1000, first: 3000}, epochs: 4}
    """

func studentRecipe(distill: String) -> String {
    """
    seed: 3
    model: {architecture: resnet8}
    knobs: {learning_rate: {cosine: {peak: 0.05, final: 0}}, batch_size: 20}
    pretrain: {data: {validation: 1000, per_class: 10}, epochs: 40}
    \(distill)
    """
}

/// A freshly initialised ResNet-8 for one-channel images and 10 classes, saved as `<folder>/teacher.h5`.
func untrainedTeacher(in folder: String) throws -> String {
    let teacher = try Model(ModelSpec(architecture: "resnet8", inputChannels: 1, numClasses: 10), seed: 0)
    let path = folder + "/teacher.h5"
    try Checkpoint(model: teacher.state, architecture: try teacher.spec.yaml, numClasses: 10).write(to: path)
    return path
}

@Suite(.serialized) struct DistillProgramTests {
    /// Distillation should transfer what the teacher learnt from 30× more images. Everything is seeded
    /// and single-order, so the outcome is fixed; the margin guards against that outcome being luck.
    /// On 1,000 validation images the standard error of one accuracy near 70 % is √(0.7·0.3/1000) ≈ 1.4
    /// points, and of a difference of two (paired on the same images, so at most √2·1.4) ≈ 2 points: a
    /// 3-point margin is 1.5 standard errors beyond a tie. When this test was written the teacher
    /// reached 77.6 %, the student 66.6 % on labels alone and 73.7 % distilled (+7.1 points), so a
    /// harmless numerical change cannot flip it, while a broken distillation term (no gain) fails it.
    /// About a minute in release (40 validations of 1,000 images per student dominate).
    @Test func distilledStudentBeatsLabelsAlone() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let teacher = try pretrain(recipe: RecipeSource(text: teacherRecipe, origin: "teacher"),
                                   options: RunOptions(output: folder + "/teacher", quiet: true))
        let labelsOnly = try pretrain(recipe: RecipeSource(text: studentRecipe(distill: ""), origin: "labels"),
                                      options: RunOptions(output: folder + "/labels", quiet: true))
        let distilled = try distill(
            teacher: teacher.checkpoint,
            recipe: RecipeSource(text: studentRecipe(distill: """
                distill:
                  losses:
                    - {kind: labels, weight: 1}
                    - {kind: logits, weight: 1, temperature: 4}
                """), origin: "kd"),
            options: RunOptions(output: folder + "/kd", quiet: true))
        let teacherTop1 = teacher.phases[0].finalTop1
        let labelsTop1 = labelsOnly.phases[0].finalTop1, distilledTop1 = distilled.phases[0].finalTop1
        print("teacher \(teacherTop1) %, labels only \(labelsTop1) %, distilled \(distilledTop1) %")
        #expect(teacherTop1 > labelsTop1 + 3, "the teacher must know more than the student can learn alone")
        #expect(distilledTop1 > labelsTop1 + 3, "distilled \(distilledTop1) % vs labels only \(labelsTop1) %")

        // The student's checkpoint: program distill, an ordinary model that eval and a new teacher accept.
        let checkpoint = try Checkpoint.read(from: distilled.checkpoint)
        #expect(checkpoint.training?.program == .distill)
        #expect(checkpoint.adapters == nil)
        let reloaded = try loadTeacher(from: distilled.checkpoint)
        #expect(reloaded.spec.architecture == "resnet8")
    }

    /// Every term's weight and temperature is logged per epoch at the schedule's value: with 3 epochs and
    /// factor 2, t = e/(E − 1) = 0, ½, 1 gives hardness 0, 1, 0 (Smith 2022), so easy, hard, easy.
    @Test func metricsLogEveryTermsScheduledWeightAndTemperature() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let teacherPath = try untrainedTeacher(in: folder)
        let recipe = """
            seed: 0
            model: {architecture: resnet8}
            knobs: {batch_size: 50, learning_rate: 0.05}
            pretrain: {data: {first: 100, validation: 100}, epochs: 3}
            distill:
              losses:
                - {kind: labels, weight: 1}
                - {kind: logits, weight: {cyclical: {easy: 0.5, hard: 2, factor: 2}}, temperature: {cyclical: {easy: 1, hard: 4, factor: 2}}}
                - {kind: hint, student: layer2, teacher: layer2, weight: 0.25}
                - {kind: attention, student: layer2, teacher: layer3, weight: 100}
            """
        let result = try distill(teacher: teacherPath, recipe: RecipeSource(text: recipe, origin: "r"),
                                 options: RunOptions(output: folder + "/student", quiet: true))
        let expected: [String: [Double]] = [
            "labels.weight": [1, 1, 1], "logits.weight": [0.5, 2, 0.5], "logits.temperature": [1, 4, 1],
            "hint.layer2.weight": [0.25, 0.25, 0.25], "attention.layer2-layer3.weight": [100, 100, 100],
        ]
        let history = result.phases[0].history
        for (name, values) in expected { #expect(history.map { $0.knobs[name] } == values, "\(name) in the epoch records") }

        let csv = try String(contentsOfFile: folder + "/student/metrics.csv", encoding: .utf8).split(separator: "\n")
        let header = csv[0].split(separator: ",").map(String.init)
        #expect(csv.count == 1 + 3)
        for (name, values) in expected {
            let column = try #require(header.firstIndex(of: name), "metrics.csv has a \(name) column: \(header)")
            #expect(csv.dropFirst().map { Double($0.split(separator: ",")[column]) } == values, "\(name) in metrics.csv")
        }
        #expect(!header.contains("labels.temperature"), "the labels term's temperature is knobs.temperature")
        let jsonl = try String(contentsOfFile: folder + "/student/metrics.jsonl", encoding: .utf8)
        #expect(jsonl.split(separator: "\n").count == 3 && jsonl.contains("\"logits.temperature\":4"))

        // Every step's row holds each term's loss and weight, and the step's loss is their weighted sum.
        let steps = try String(contentsOfFile: folder + "/student/steps.jsonl", encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
        #expect(steps.count == 3 * (try #require(history.first?.step)))
        for row in steps {
            var sum = 0.0
            for term in ["labels", "logits", "hint.layer2", "attention.layer2-layer3"] {
                let loss = try #require(row[term + ".loss"] as? Double, "\(term).loss in \(row)")
                sum += try #require(row[term + ".weight"] as? Double) * loss
            }
            let loss = try #require(row["loss"] as? Double)
            #expect(abs(sum - loss) <= 1e-5 * max(1, abs(loss)), "step \(row["step"] ?? "?"): \(sum) vs \(loss)")
        }
    }

    @Test func teacherThatIsNotAModelIsNamed() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let notAModel = folder + "/notes.h5"
        try "not a checkpoint".write(toFile: notAModel, atomically: true, encoding: .utf8)
        #expect {
            try loadTeacher(from: notAModel)
        } throws: { error in
            guard case let .teacherNotAModel(file, reason) = error as? DistillationError else { return false }
            return file == notAModel && reason.contains("not an HDF5 file")
        }
    }

    @Test func classCountsMustAgreeForLogitDistillation() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = try untrainedTeacher(in: folder)
        let recipe = """
            model: {architecture: resnet8}
            pretrain: {data: {classes: [0, 1, 2], first: 30}, epochs: 1}
            distill: {losses: [{kind: logits, weight: 1}]}
            """
        #expect(throws: DistillationError.classCountMismatch(teacher: path, teacherClasses: 10, studentClasses: 3)) {
            try distill(teacher: path, recipe: RecipeSource(text: recipe, origin: "r"), options: RunOptions(output: folder + "/s", quiet: true))
        }
    }

    /// The student's loss has no unlabeled term, so an `unlabeled:` section would be silently ignored.
    @Test func unlabeledDataIsRefused() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = try untrainedTeacher(in: folder)
        let recipe = """
            model: {architecture: resnet8}
            pretrain: {data: {first: 30}, unlabeled: {first: 20, ratio: 1}, epochs: 1}
            distill: {losses: [{kind: logits, weight: 1}]}
            """
        #expect(throws: RecipeError(path: "pretrain.unlabeled",
                                    problem: "distill trains the student on labeled images only; remove the unlabeled section")) {
            try distill(teacher: path, recipe: RecipeSource(text: recipe, origin: "r"), options: RunOptions(output: folder + "/s", quiet: true))
        }
    }

    @Test func recipeErrorsNameTheKey() throws {
        func problem(_ distill: String) -> RecipeError? {
            let text = "model: {architecture: resnet8}\npretrain: {epochs: 1}\n" + distill
            do {
                _ = try RecipeSource(text: text, origin: "r").decodeRecipe(sections: [DistillRecipe.self])
                return nil
            } catch {
                return error as? RecipeError
            }
        }
        #expect(problem("distill: {losses: [{kind: hints, weight: 1}]}")?.path == "distill.losses[0].kind")
        #expect(problem("distill: {losses: [{kind: hint, student: layer2}]}")?.path == "distill.losses[0].teacher")
        #expect(problem("distill: {losses: [{kind: labels, temperature: 2}]}")?.path == "distill.losses[0].temperature")
        #expect(problem("distill: {losses: [{kind: logits, weight: {cyclical: {easy: 1}}}]}")?.path.hasPrefix("distill.losses[0].weight") == true)
        #expect(problem("distill: {losses: [{kind: logits}], teachr: x}")?.path == "distill.teachr")
        #expect(problem("distill: {losses: []}")?.path == "distill.losses")
        #expect(problem("distill: {losses: [{kind: logits, weight: 1}]}") == nil)
    }
}
