import EpicycleCheckpoint
import EpicycleDistillation
import EpicycleTraining
import Foundation
import Testing

/// Two tiny runs whose per-epoch training losses were measured with the build before the training
/// loop took its objective from `TrainingObjective` (commit 2e97faa, `epicycle pretrain` / `distill` on
/// the same recipes): the loop, `LabelObjective`, `KnobValues` and distillation's objective must keep
/// every number to the bit. Between them they bind every kind of knob (a per-step clipping threshold,
/// scheduled momentum, AdamW without momentum, clipping by norm) and every distillation term, with
/// hint regressors under `/adapters`. The kernels reduce in a fixed order for any thread count up to
/// the cores; a machine whose OpenBLAS picks other kernels may round differently. The values are the
/// default kernels' (`auto`, Winograd on the 32- and 64-channel layers), re-measured when it became the
/// default; `EPICYCLE_CONV_ALGORITHM=direct` still gives 2e97faa's: teacher [0x1.34711f5555555p+1,
/// 0x1.9a47840000000p-1], student [0x1.431cdaaaaaaabp+2, 0x1.0f7fb60000000p+2].
@Suite(.serialized) struct PinnedRunTests {
    static let pretrainRecipe = """
        seed: 5
        model: {architecture: resnet8}
        loss: {kind: cyclical_focal, label_smoothing: 0.05}
        knobs:
          learning_rate: {cosine: {peak: 0.05, final: 0.005}}
          momentum: {cyclical: {easy: 0.8, hard: 0.95}}
          temperature: {cyclical: {easy: 0.5, hard: 2, factor: 2}}
          clip_value: {cyclical: {easy: 1, hard: 4, per: step}}
          augmentation_strength: {cyclical: {easy: 0, hard: 1}}
          batch_size: 32
        pretrain:
          data: {classes: [0, 1, 2], validation: 32, first: 96, augmentation: "crop,flip"}
          epochs: 2
        """

    static let distillRecipe = """
        seed: 6
        model: {architecture: resnet8}
        optimizer: {kind: adamw}
        knobs: {learning_rate: 0.002, clip_norm: 5, batch_size: 32}
        pretrain:
          data: {classes: [0, 1, 2], validation: 32, first: 96, augmentation: "crop,flip"}
          epochs: 2
        distill:
          losses:
            - {kind: labels, weight: 1}
            - {kind: logits, weight: 1, temperature: {cyclical: {easy: 1, hard: 4}}}
            - {kind: hint, student: layer2, teacher: layer2, weight: 1}
            - {kind: attention, student: layer3, teacher: layer3, weight: 100}
            - {kind: spatial_softmax, student: layer3, teacher: layer3, weight: 1, temperature: 2}
        """

    @Test func pretrainAndDistillLossesAreUnchanged() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let teacher = try pretrain(recipe: RecipeSource(text: Self.pretrainRecipe, origin: "pinned-pretrain.yaml"),
                                   options: RunOptions(output: folder + "/pretrain", quiet: true))
        #expect(teacher.phases[0].history.map(\.trainLoss) == [0x1.34711f5555555p+1, 0x1.9a47885555555p-1])
        let student = try distill(teacher: teacher.checkpoint,
                                  recipe: RecipeSource(text: Self.distillRecipe, origin: "pinned-distill.yaml"),
                                  options: RunOptions(output: folder + "/distill", quiet: true))
        #expect(student.phases[0].history.map(\.trainLoss) == [0x1.431c335555555p+2, 0x1.0f828d5555555p+2])
        let checkpoint = try Checkpoint.read(from: student.checkpoint)
        #expect(checkpoint.adapters?.parameters.map(\.name).contains("hint.0.conv.weight") == true)
    }
}
