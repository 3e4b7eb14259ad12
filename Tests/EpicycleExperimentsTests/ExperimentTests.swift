import EpicycleTraining
import Foundation
import Testing
@testable import EpicycleExperiments

/// A tiny valid recipe, inline.
let tinyBase = """
    base:
      model: {architecture: plain-cnn}
      knobs: {batch_size: 50, learning_rate: 0.05}
      pretrain:
        epochs: 2
        data: {first: 100, validation: 100}
    """

@Suite struct ExperimentTests {
    @Test func readsVariantsInFileOrderAsOneLineOverrides() throws {
        let experiment = try Experiment(text: """
            name: wd
            program: pretrain
            \(tinyBase)
            seeds: [2, 0, 1]
            baseline: constant
            variants:
              zeta:
                knobs.weight_decay:
                  cyclical: {easy: 1e-5, hard: 8e-5, factor: 2}
                pretrain.epochs: 3
              constant: {}
              alpha: {knobs.temperature: 0.5}
            """, origin: "/work/experiments/wd.yaml")
        #expect(experiment.name == "wd")
        #expect(experiment.program == .pretrain)
        #expect(experiment.seeds == [2, 0, 1])
        #expect(experiment.variants.map(\.name) == ["zeta", "constant", "alpha"])
        #expect(experiment.variants[0].overrides == ["knobs.weight_decay={cyclical: {easy: 1e-5, hard: 8e-5, factor: 2}}", "pretrain.epochs=3"])
        #expect(experiment.variants[1].overrides == [])
        #expect(experiment.results == "/work/experiments/results/wd")
        #expect(experiment.runFolder(variant: "alpha", seed: 1) == "/work/experiments/results/wd/runs/alpha/seed-1")

        let recipe = try experiment.runRecipe(variant: experiment.variants[0], seed: 1).decode(Recipe.self)
        #expect(recipe.seed == 1)
        #expect(recipe.pretrain?.epochs == 3)
        #expect(recipe.knobs.schedules[.weightDecay] != nil)
        #expect(recipe.knobs.schedules[.batchSize] != nil, "the base recipe's other knobs stay")
    }

    @Test func baselineDefaultsToTheFirstVariantAndPathsAreRelativeToTheFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("epicycle-experiment-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try "model: {architecture: plain-cnn}\npretrain: {epochs: 1}\n"
            .write(to: folder.appendingPathComponent("base.yaml"), atomically: true, encoding: .utf8)
        let path = folder.appendingPathComponent("exp.yaml").path
        try "program: cycle\nrecipe: base.yaml\nseeds: [0]\nvariants: {b: {}, a: {}}\nresults: out\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        #expect { try Experiment(contentsOf: path) } throws: { error in
            "\(error)" == "variants.b: a cycle recipe needs both a 'pretrain' and a 'finetune' phase"
        }
        try "program: pretrain\nrecipe: base.yaml\nseeds: [0]\nvariants: {b: {}, a: {}}\nresults: out\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        let experiment = try Experiment(contentsOf: path)
        #expect(experiment.name == "exp")
        #expect(experiment.baseline == "b")
        #expect(experiment.results == folder.appendingPathComponent("out").standardizedFileURL.path)
        #expect(experiment.recipe.origin == folder.appendingPathComponent("base.yaml").standardizedFileURL.path)
    }

    @Test(arguments: [
        ("program: pretrain\n\(tinyBase)\nseeds: [0]\nvariants: {a: {}}\ncolour: red", "colour: unknown key; expected one of name, program, recipe, base, seeds, baseline, variants, results"),
        ("program: distil\n\(tinyBase)\nseeds: [0]\nvariants: {a: {}}", "program: expected one of pretrain, cycle, distill, got 'distil'"),
        ("program: pretrain\n\(tinyBase)\nseeds: [0, -1]\nvariants: {a: {}}", "seeds[1]: expected a whole number ≥ 0, got '-1'"),
        ("program: pretrain\n\(tinyBase)\nseeds: [0, 0]\nvariants: {a: {}}", "seeds: lists seed 0 twice"),
        ("program: pretrain\n\(tinyBase)\nseeds: [0]\nbaseline: b\nvariants: {a: {}}", "baseline: 'b' is not a variant; expected one of a"),
        ("program: pretrain\n\(tinyBase)\nseeds: [0]\nvariants: {a: {seed: 3}}", "variants.a.seed: is set by the experiment runner (seeds, run folders, threads); remove it from the variant"),
        ("program: pretrain\n\(tinyBase)\nseeds: [0]\nvariants: {a: {knobs.weight_decy: 1}}", "variants.a: knobs.weight_decy: unknown key; expected one of learning_rate, weight_decay, momentum, batch_size, temperature, clip_value, clip_norm, augmentation_strength, focal_mix, sample_loss_threshold, keep_fraction, sample_loss_clip"),
        ("program: pretrain\n\(tinyBase)\nseeds: [0]\nvariants: {a/b: {}}", "variants.a/b: a variant name becomes a folder name: use letters, digits, '-', '_' and '.'"),
        ("program: pretrain\nseeds: [0]\nvariants: {a: {}}", "an experiment needs 'recipe: <file>' or an inline 'base:' recipe"),
        ("program: pretrain\n\(tinyBase)\nvariants: {a: {}}", "seeds: is required, e.g. [0, 1, 2]"),
        ("program: pretrain\n\(tinyBase)\nseeds: [0]\nvariants: {a: [1]}", "variants.a: expected a mapping of key.path: value (or {} for the base recipe)"),
    ])
    func errorsNameTheKeyPath(text: String, message: String) {
        #expect { try Experiment(text: text, origin: "/tmp/e.yaml") } throws: { error in
            "\(error)" == message
        }
    }
}
