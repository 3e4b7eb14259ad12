@testable import EpicycleTraining
import EpicycleSchedules
import Testing

/// Every kind of recipe mistake is caught before any work starts, with the key path and the problem.
@Suite struct RecipeTests {
    static let valid = """
        model: {architecture: resnet8}
        knobs:
          learning_rate: 0.05
          temperature: {cyclical: {easy: 0.5, hard: 2, factor: 1}}
        pretrain:
          data: {classes: [0, 1, 2], first: 300}
          epochs: 4
        """

    func problem(_ text: String, overrides: [String] = []) -> String? {
        do {
            _ = try RecipeSource(text: text, origin: "test.yaml", overrides: overrides).decode(Recipe.self)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func aValidRecipeDecodes() throws {
        let recipe = try RecipeSource(text: Self.valid, origin: "test.yaml").decode(Recipe.self)
        #expect(recipe.model.architecture == "resnet8")
        #expect(recipe.pretrain?.epochs == 4)
        #expect(recipe.knobs.schedules[.temperature] == .cyclical(easy: 0.5, hard: 2, factor: 1))
        // Defaults fill the knobs a recipe leaves out.
        let knobs = recipe.knobs(for: .pretrain).schedules
        #expect(knobs[.weightDecay] == .constant(5e-4))
        #expect(knobs[.batchSize] == .constant(128))
        #expect(knobs[.clipValue] == nil && knobs[.focalMix] == nil)
    }

    @Test(arguments: [
        // (change, expected message)
        ("knobs:\n  temprature: 1\n", "knobs.temprature: unknown key; expected one of learning_rate, weight_decay"),
        ("knobs:\n  temperature: {cyclical: {easy: 0.5, hard: 2, factor: 0.5}}\n", "knobs.temperature.cyclical.factor: must be ≥ 1, got 0.5"),
        ("knobs:\n  learning_rate: fast\n", "knobs.learning_rate"),
        ("optimiser: {kind: sgd}\n", "optimiser: unknown key"),
        ("distill: {teacher: teacher.h5}\n", "distill: is read only by `epicycle distill`"),
        ("optimizer: {kind: lamb}\n", "optimizer.kind: expected sgd or adamw, got 'lamb'"),
        ("seed: -3\n", "seed: expected a whole number"),
        ("loss: {kind: cross_entropy, label_smoothing: 1.5}\n", "loss.label_smoothing: must be in [0, 1), got 1.5"),
        ("checkpoint_every: -1\n", "checkpoint_every: must be a whole number from 0 to 100000, got -1"),
        ("knobs:\n  clip_value: 4\n  clip_norm: 5\n", "knobs: set clip_value or clip_norm, not both"),
        ("knobs:\n  focal_mix: 0.3\n", "knobs.focal_mix: only applies with loss.kind: cyclical_focal"),
        // Settings the configuration would ignore.
        ("optimizer: {kind: adamw}\nknobs:\n  momentum: 0.8\n",
         "knobs.momentum: applies only to optimizer.kind: sgd; AdamW's β1 is optimizer.beta1"),
        ("knobs:\n  augmentation_strength: {cyclical: {easy: 0, hard: 1}}\n",
         "knobs.augmentation_strength: has nothing to scale: no phase's data sets an augmentation policy"),
        ("optimizer: {kind: adamw, nesterov: true}\n", "optimizer.nesterov: applies only to kind: sgd"),
        ("optimizer: {kind: sgd, beta2: 0.99}\n", "optimizer.beta2: applies only to kind: adamw"),
        ("optimizer: {kind: sgd, lookahead: {k: 0}}\n", "optimizer.lookahead.k: must be a whole number from 1 to 1000000, got 0"),
        ("optimizer: {kind: adamw, lookahead: {alpha: 1.5}}\n", "optimizer.lookahead.alpha: must be in (0, 1], got 1.5"),
        ("optimizer: {kind: sgd, lookahead: {steps: 5}}\n", "optimizer.lookahead.steps: unknown key; expected one of k, alpha"),
        ("knobs:\n  batch_size: 100.5\n", "knobs.batch_size: must be a whole number, got 100.5"),
        ("knobs:\n  batch_size: {one_cycle: {peak: 256}}\n", "knobs.batch_size: changes once per epoch"),
    ])
    func mistakesNameTheirKeyPath(change: String, expected: String) throws {
        let base = "model: {architecture: resnet8}\npretrain: {epochs: 2, data: {first: 100}}\n"
        let message = try #require(problem(base + change), "recipe with \(change) should be rejected")
        #expect(message.hasPrefix(expected), "got: \(message)")
    }

    @Test func phaseKnobsAConfigurationIgnoresAreRefused() {
        let recipe = { (top: String, phaseKnobs: String) in
            "model: {architecture: resnet8}\n\(top)pretrain: {epochs: 2, data: {first: 100}, knobs: \(phaseKnobs)}\n"
        }
        #expect(problem(recipe("loss: {kind: focal}\n", "{focal_mix: 0.3}"))?
            .hasPrefix("pretrain.knobs.focal_mix: only applies with loss.kind: cyclical_focal") == true)
        #expect(problem(recipe("optimizer: {kind: adamw}\n", "{momentum: 0.5}"))?
            .hasPrefix("pretrain.knobs.momentum: applies only to optimizer.kind: sgd") == true)
        #expect(problem(recipe("knobs: {clip_value: 4}\n", "{clip_norm: 5}"))?
            .hasPrefix("pretrain.knobs.clip_norm: knobs.clip_value is set too") == true)
        #expect(problem(recipe("", "{augmentation_strength: 0.5}"))?
            .hasPrefix("pretrain.knobs.augmentation_strength: has nothing to scale: pretrain.data sets no augmentation policy") == true)
        // A shared strength is used by any phase with a policy; one without it is fine beside it.
        let oneAugmented = "model: {architecture: resnet8}\nknobs: {augmentation_strength: 0.5}\n"
            + "pretrain: {epochs: 2, data: {first: 100, augmentation: flip}}\nfinetune: {epochs: 1, data: {first: 50}}\n"
        #expect(problem(oneAugmented) == nil)
    }

    /// AdamW has no momentum knob, so none is applied or logged; SGD keeps its default 0.9.
    @Test func momentumIsAKnobOfSGDOnly() throws {
        let adamw = try RecipeSource(text: Self.valid + "\noptimizer: {kind: adamw}\n", origin: "a.yaml").decode(Recipe.self)
        #expect(adamw.knobs(for: .pretrain).schedules[.momentum] == nil)
        let sgd = try RecipeSource(text: Self.valid, origin: "s.yaml").decode(Recipe.self)
        #expect(sgd.knobs(for: .pretrain).schedules[.momentum] == .constant(0.9))
    }

    /// ξ follows the cycle unless scheduled: 1 (confident samples, the easy end) falling to 0 over a run
    /// on its own, as the reference code's factor-1 variant.
    @Test func focalMixFollowsTheCycleByDefault() throws {
        let text = Self.valid + "\nloss: {kind: cyclical_focal}\n"
        let table = try scheduleTable(recipe: RecipeSource(text: text, origin: "cfl.yaml"))
        let xi = try #require(table.values.first { $0.knob == .focalMix }).values
        #expect(zip(xi, [1, 2.0 / 3, 1.0 / 3, 0]).allSatisfy { abs($0 - $1) < 1e-12 }, "ξ per epoch: \(xi)")
        let set = try RecipeSource(text: text, origin: "cfl.yaml", overrides: ["knobs.focal_mix=0.5"]).decode(Recipe.self)
        #expect(set.knobs(for: .pretrain).schedules[.focalMix] == .constant(0.5))
    }

    @Test func phaseAndDataMistakesNameTheirKeyPath() {
        let phase = { (data: String, epochs: String) in "model: {architecture: resnet8}\npretrain:\n  data: \(data)\n  epochs: \(epochs)\n" }
        #expect(problem(phase("{classes: []}", "2"))?.hasPrefix("pretrain.data.classes: must not be empty") == true)
        #expect(problem(phase("{first: 0}", "2"))?.hasPrefix("pretrain.data.first: must be ≥ 1 (an empty subset), got 0") == true)
        #expect(problem(phase("{first: 10, per_class: 2}", "2"))?.hasPrefix("pretrain.data: set first or per_class, not both") == true)
        #expect(problem(phase("{augmentation: \"crop,spin\"}", "2"))?.hasPrefix("pretrain.data.augmentation:") == true)
        #expect(problem(phase("{}", "0"))?.hasPrefix("pretrain.epochs: must be a whole number from 1 to 100000, got 0") == true)
        #expect(problem("model: {architecture: resnet21}\npretrain: {epochs: 1}\n")?.hasPrefix("model: 'resnet21': ResNet depth must be 6n+2") == true)
        #expect(problem("model: {architecture: resnet8}\n")?.hasPrefix("a recipe needs a 'pretrain' or a 'finetune' phase") == true)
        #expect(problem("model: {architecture: resnet8}\npretrain: {epochs: 1, data: {classes: [0, 1}\n")?.contains("is not valid YAML") == true)
    }

    @Test func overridesApplyBeforeValidation() throws {
        let recipe = try RecipeSource(text: Self.valid, origin: "test.yaml",
                                      overrides: ["knobs.weight_decay=1e-4", "pretrain.epochs=7",
                                                  "knobs.learning_rate={cosine: {peak: 0.1}}", "seed=9"]).decode(Recipe.self)
        #expect(recipe.knobs.schedules[.weightDecay] == .constant(1e-4))
        #expect(recipe.knobs.schedules[.learningRate] == .cosine(peak: 0.1))
        #expect(recipe.pretrain?.epochs == 7)
        #expect(recipe.seed == 9)
        #expect(problem(Self.valid, overrides: ["knobs.temperature.cyclical.factor=0.5"])?
            .hasPrefix("knobs.temperature.cyclical.factor: must be ≥ 1, got 0.5") == true)
        #expect(problem(Self.valid, overrides: ["knobs.learning_rate.x=1"])?.contains("not a mapping") == true)
        #expect(problem(Self.valid, overrides: ["nonsense"])?.contains("expected key.path=value") == true)
        // List elements by index, as distillation loss terms need.
        let listed = try RecipeSource(text: Self.valid, origin: "test.yaml", overrides: ["pretrain.data.classes[1]=7"])
            .decode(Recipe.self)
        #expect(listed.pretrain?.data.classes == [0, 7, 2])
        #expect(problem(Self.valid, overrides: ["pretrain.data.classes[5]=1"])?.hasPrefix("pretrain.data.classes[5]: --set: 'pretrain.data.classes' has no element 5") == true)
    }

    /// Values that leave a knob's range anywhere in the cycle are caught before training: a cyclical
    /// learning rate whose hard end is negative only shows at the peak.
    @Test func knobRangesAreCheckedOverTheWholeCycle() throws {
        let recipe = try RecipeSource(text: Self.valid, origin: "test.yaml").decode(Recipe.self)
        let cycle = JointCycle(pretrainingEpochs: 4, finetuningEpochs: 0)
        try recipe.knobs(for: .pretrain).validate(over: cycle, pathPrefix: "knobs.")
        let bad = KnobSchedules([.learningRate: .cyclical(easy: 0.1, hard: -0.1, factor: 2)])
        #expect(throws: RecipeError.self) { try bad.validate(over: cycle, pathPrefix: "knobs.") }
        do {
            try KnobSchedules([.augmentationStrength: .cyclical(easy: 0, hard: 1.5)]).validate(over: cycle, pathPrefix: "knobs.")
            Issue.record("strength above 1 must be rejected")
        } catch let error as RecipeError {
            #expect(error.path == "knobs.augmentation_strength")
            #expect(error.problem.hasPrefix("must be in [0, 1], got 1.5"))
        }
        // A scheduled batch size is rounded where it is used; below 1 it is out of range.
        try KnobSchedules([.batchSize: .cyclical(easy: 256, hard: 100.5)]).validate(over: cycle, pathPrefix: "knobs.")
        #expect(throws: RecipeError.self) {
            try KnobSchedules([.batchSize: .cyclical(easy: 256, hard: 0.5)]).validate(over: cycle, pathPrefix: "knobs.")
        }
    }
}
