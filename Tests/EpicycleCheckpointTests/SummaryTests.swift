import EpicycleCheckpoint
import EpicycleRuntime
import Foundation
import Testing
import TestSupport

extension CheckpointTests {
    @Suite struct Summary {
        @Test func everySectionOfASmallCheckpoint() {
            let expected = """
                (unsaved checkpoint)  (epicycle-checkpoint v1, written 2026-05-14T09:30:12Z, Epicycle 0.1.0)
                architecture:
                  model: resnet20
                  num_classes: 2
                  width: 1.0
                classes: 2
                data: cifar10, 32×32×3, mean [0.4914, 0.4822, 0.4465], std [0.247, 0.2435, 0.2616]
                  output index ← dataset label:
                    0 ← 3 cat
                    1 ← 5
                parameters: 123 in 6 tensors
                  conv.weight   [4, 3, 3, 3]  float32
                  conv.bias     [4]           float32
                  fc.weight     [2, 4]        float32
                  fc.bias       [2]           float32
                  scale         []            float32
                  empty.weight  [0, 3]        float32
                buffers: 3 tensors
                  bn.running_mean         [4]  float32
                  bn.running_var          [4]  float32
                  bn.num_batches_tracked  []   int64
                optimizer: sgd, lr 0.1, momentum 0.9, weight_decay 0.0005, step 4680; 6 state tensors
                  conv.weight.momentum_buffer   [4, 3, 3, 3]  float32
                  conv.bias.momentum_buffer     [4]           float32
                  fc.weight.momentum_buffer     [2, 4]        float32
                  fc.bias.momentum_buffer       [2]           float32
                  scale.momentum_buffer         []            float32
                  empty.weight.momentum_buffer  [0, 3]        float32
                adapters: 32 parameters in 1 tensor, 2 buffers
                  regressors.0.conv.weight             [8, 4, 1, 1]  float32
                  regressors.0.bn.running_mean         [8]           float32
                  regressors.0.bn.num_batches_tracked  []            int64
                training: program pretrain, epoch 2, step 4680, cycle position 1.714, seed 18446744073709551615, best top-1 91.20 %
                metrics: 2 rows of epoch, train_loss, val_top1, lr
                  last: epoch 2, train_loss 0.3333, val_top1 45.25, lr -0
                test: 10000 images, final top-1 88.12 %, best.h5 (epoch 1) 88.50 %
                recipe:
                  program: pretrain
                  temperature: {cyclical: {easy: 0.5, hard: 2.0, factor: 1}}
                  note: "τ — ünïcode"
                """
            var checkpoint = makeFullCheckpoint()
            checkpoint.training?.test = TestScores(last: SplitScore(images: 10_000, loss: 0.4, top1: 88.12, top5: 99.1),
                                                   best: SplitScore(images: 10_000, loss: 0.39, top1: 88.5, top5: 99.2),
                                                   bestEpoch: 1)
            #expect(checkpoint.summary() == expected)
            // The same when every tensor is listed: no list here is long enough to fold.
            #expect(checkpoint.summary(listingEveryTensor: true) == expected)
        }

        @Test func longListsFoldUnlessAllAreAsked() throws {
            let folder = try makeTemporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let path = folder + "/resnet20.h5"
            try Checkpoint(model: makeResNet20State(seed: 1), architecture: "model: resnet20", numClasses: 10,
                           created: "2026-05-14T09:30:12Z").write(to: path)
            let checkpoint = try Checkpoint.read(from: path)
            let folded = checkpoint.summary().split(separator: "\n").map(String.init)
            #expect(folded.prefix(5) == [
                "\(path)  (epicycle-checkpoint v1, written 2026-05-14T09:30:12Z, Epicycle 0.1.0)",
                "architecture: model: resnet20",
                "classes: 10",
                "parameters: 0.27 M in 59 tensors",
                "  conv1.weight           [16, 3, 3, 3]   float32",
            ])
            #expect(folded.contains("  … 48 more (--all lists every tensor)"))
            #expect(folded.contains("  … 46 more (--all lists every tensor)"))
            #expect(folded.contains("  fc.weight              [10, 64]        float32"))
            #expect(!folded.contains { $0.contains("layer2.0.conv1.weight") })
            #expect(!folded.contains { $0.hasPrefix("training:") || $0.hasPrefix("optimizer:") })

            let full = checkpoint.summary(listingEveryTensor: true).split(separator: "\n").map(String.init)
            #expect(!full.contains { $0.contains("more (--all") })
            // Header, architecture, classes, two section lines and one line per tensor.
            #expect(full.count == 5 + 59 + 57)
            #expect(full.contains("  layer2.0.conv1.weight  [32, 16, 3, 3]  float32"))
        }
    }
}
