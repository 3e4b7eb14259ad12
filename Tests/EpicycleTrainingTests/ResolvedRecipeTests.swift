@testable import EpicycleTraining
import Foundation
import Testing

/// The resolved recipe a run folder keeps: every default written out, and it reads back as the same recipe.
@Suite struct ResolvedRecipeTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Recipes that between them set every section and form: AdamW with Lookahead, a focal loss, a
    /// step schedule, validation by count, share and test split, precise BN as a flag, unlabeled data,
    /// frozen prefixes, clipping, threads and an output folder.
    static let variety = [
        """
        model: {architecture: resnet8}
        optimizer: {kind: adamw, lookahead: {k: 4}}
        loss: {kind: cyclical_focal, label_smoothing: 0.1}
        knobs: {learning_rate: {step: {initial: 0.1, milestones: [2], gamma: 0.1}}, clip_norm: 5}
        pretrain: {data: {first: 500, validation: 100, augmentation: "crop,flip"}, epochs: 3}
        finetune:
          data: {classes: [5, 6], validation: test}
          epochs: 2
          freeze: [conv1, layer1]
          knobs: {weight_decay: {cyclical: {easy: 1e-5, hard: 1e-3, factor: 2}}}
        precise_bn: false
        threads: 2
        output: runs/x
        """,
        """
        name: semi
        seed: 3
        model: {architecture: wrn-16-2, dropout: 0.3}
        knobs: {unlabeled_weight: {rampup: {value: 1, epochs: 2}}, augmentation_strength: {cyclical: {easy: 0, hard: 1}}}
        pretrain:
          data: {per_class: 10, validation: 0.2}
          unlabeled: {first: 400, ratio: 2}
          epochs: 4
        checkpoint_every: 2
        """,
    ]

    static func resolved(_ text: String) throws -> (recipe: Recipe, text: String) {
        let source = try RecipeSource(text: text, origin: "r.yaml")
        let recipe = try source.decodeRecipe()
        return (recipe, try resolvedRecipeText(recipe, source: source))
    }

    static func sources() throws -> [String] {
        let folder = repository.appendingPathComponent("Experiments").path
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".yaml") }.sorted()
        // Experiments (program:) and distillation recipes (another module's section) are not plain recipes.
        let recipes = try files.map { try String(contentsOfFile: folder + "/" + $0, encoding: .utf8) }
            .filter { !$0.contains("\nprogram:") && !$0.contains("\ndistill:") }
        return recipes + variety
    }

    @Test func readsBackAsTheSameRecipe() throws {
        let texts = try Self.sources()
        #expect(texts.count >= 8)
        for text in texts {
            let (original, once) = try Self.resolved(text)
            let (reread, twice) = try Self.resolved(once)
            #expect(once == twice, "resolving the resolved recipe changes nothing:\n\(once)\n---\n\(twice)")
            #expect(reread.name == original.name && reread.seed == original.seed && reread.output == original.output)
            #expect(reread.model == original.model && reread.optimizer == original.optimizer && reread.loss == original.loss)
            #expect(reread.preciseBN == original.preciseBN && reread.threads == original.threads
                    && reread.checkpointEvery == original.checkpointEvery)
            for (phase, before, after) in [(Phase.pretrain, original.pretrain, reread.pretrain), (.finetune, original.finetune, reread.finetune)] {
                #expect((before == nil) == (after == nil))
                guard let before, let after else { continue }
                #expect(after.data == before.data && after.epochs == before.epochs && after.freeze == before.freeze
                        && after.unlabeled == before.unlabeled)
                #expect(reread.knobs(for: phase) == original.knobs(for: phase), "the knobs in force in \(phase)")
            }
        }
    }

    @Test func everyDefaultIsWrittenOut() throws {
        let (_, text) = try Self.resolved("""
            model: {architecture: resnet8}
            knobs: {learning_rate: {cosine: {peak: 0.1, final: 0}}}
            pretrain: {data: {first: 100}, epochs: 2}
            """)
        for line in ["seed: 0", "shortcut: A", "dropout: 0", "kind: sgd", "nesterov: false", "no_decay_on_norm_and_bias: true",
                     "kind: cross_entropy", "weight_decay: 0.0005", "momentum: 0.9", "batch_size: 128", "temperature: 1",
                     "warmup_epochs: 0", "dataset: fashion-mnist", "validation: 0.1", "augmentation: none",
                     "checkpoint_every: 0", "when: auto", "images: 2048"] {
            #expect(text.contains(line + "\n"), "\(line) in:\n\(text)")
        }
        // Nothing the decoder would refuse for this recipe: no AdamW betas, no augmentation strength without a policy.
        #expect(!text.contains("beta1") && !text.contains("augmentation_strength"))
    }

    @Test func aKeyTheEncoderDoesNotKnowIsKept() throws {
        let source = try RecipeSource(text: "model: {architecture: resnet8}\npretrain: {data: {first: 100}, epochs: 1}\n", origin: "r.yaml")
        let text = try resolvedRecipeText(source.decodeRecipe(), source: RecipeSource(text: source.text + "future_key: {a: 1}\n", origin: "r.yaml"))
        #expect(text.contains("future_key:\n  a: 1\n"), "\(text)")
    }
}
