import EpicycleCheckpoint
import EpicycleRuntime
import Foundation
import Testing

/// `precision: bf16` end to end: it trains in bf16 where the CPU has AVX512-BF16, and where it has not
/// (simulated with the test-only `EPICYCLE_FAULT_NO_AVX512_BF16=1`) it says so and trains exactly as
/// fp32 does; `eval --precision` likewise.
@Suite(.serialized) struct PrecisionTests {
    static let recipe = """
        name: mixed
        seed: 3
        precision: bf16
        model: {architecture: resnet8}
        knobs: {learning_rate: 0.05, batch_size: 32}
        pretrain:
          data: {validation: 64, first: 256}
          epochs: 1
        """

    static func weights(_ path: String) throws -> [[UInt32]] {
        try Checkpoint.read(from: path).model.parameters.map { $0.tensor.scalars.map(\.bitPattern) }
    }

    @Test func bf16TrainsInBF16OrSaysItRunsFP32() throws {
        let folder = CLITests.folder("precision")
        try Self.recipe.write(toFile: folder + "/bf16.yaml", atomically: true, encoding: .utf8)
        let withoutBF16 = ["EPICYCLE_FAULT_NO_AVX512_BF16": "1"]

        try Self.recipe.replacingOccurrences(of: "precision: bf16\n", with: "")
            .write(toFile: folder + "/fp32.yaml", atomically: true, encoding: .utf8)
        let fp32 = try CLITests.run(["pretrain", "--recipe", "fp32.yaml", "--output", "fp32", "--quiet"], in: folder)
        #expect(fp32.status == 0, "\(fp32.errors)")
        #expect(!fp32.errors.contains("AVX512-BF16"))
        let fallback = try CLITests.run(["pretrain", "--recipe", "bf16.yaml", "--output", "fallback", "--quiet"], in: folder,
                                        environment: withoutBF16)
        #expect(fallback.status == 0, "\(fallback.errors)")
        #expect(fallback.errors.contains("precision bf16 needs a CPU with AVX512-BF16 (VDPBF16PS), which this one lacks: running in fp32"),
                "\(fallback.errors)")
        #expect(try Self.weights(folder + "/fallback/last.h5") == Self.weights(folder + "/fp32/last.h5"),
                "the fp32 fallback trains exactly as precision: fp32")
        // The run folder keeps what the recipe asked for; an fp32 recipe does not mention precision.
        #expect(try String(contentsOfFile: folder + "/fallback/recipe.yaml", encoding: .utf8).contains("precision: bf16"))
        #expect(try !String(contentsOfFile: folder + "/fp32/recipe.yaml", encoding: .utf8).contains("precision"))

        let evaluated = try CLITests.run(["eval", "fp32/last.h5", "--precision", "bf16"], in: folder, environment: withoutBF16)
        #expect(evaluated.status == 0 && evaluated.output.contains("top-1"), "\(evaluated.output)\(evaluated.errors)")
        #expect(evaluated.errors.contains("running in fp32"), "\(evaluated.errors)")

        guard Precision.bf16Available else { return }
        let bf16 = try CLITests.run(["pretrain", "--recipe", "bf16.yaml", "--output", "bf16", "--quiet"], in: folder)
        #expect(bf16.status == 0 && !bf16.errors.contains("AVX512-BF16"), "\(bf16.errors)")
        let trained = try Self.weights(folder + "/bf16/last.h5"), reference = try Self.weights(folder + "/fp32/last.h5")
        #expect(trained != reference, "bf16 products must change the trained weights")
        // Same recipe, same seed: the same bf16 numbers.
        let again = try CLITests.run(["pretrain", "--recipe", "bf16.yaml", "--output", "bf16-again", "--quiet"], in: folder)
        #expect(again.status == 0)
        #expect(try Self.weights(folder + "/bf16-again/last.h5") == trained)
        let bf16Eval = try CLITests.run(["eval", "bf16/last.h5", "--precision", "bf16"], in: folder)
        #expect(bf16Eval.status == 0 && bf16Eval.output.contains("top-1") && !bf16Eval.errors.contains("running in fp32"),
                "\(bf16Eval.output)\(bf16Eval.errors)")
    }

    @Test func anUnknownPrecisionNamesTheKey() throws {
        let folder = CLITests.folder("precision-bad")
        try Self.recipe.replacingOccurrences(of: "precision: bf16", with: "precision: fp16")
            .write(toFile: folder + "/bad.yaml", atomically: true, encoding: .utf8)
        let run = try CLITests.run(["pretrain", "--recipe", "bad.yaml"], in: folder)
        #expect(run.status != 0 && !run.signalled)
        #expect(run.errors.contains("precision: must be fp32 or bf16, got 'fp16'"), "\(run.errors)")
        let eval = try CLITests.run(["eval", "missing.h5", "--precision", "fp16"], in: folder)
        #expect(eval.status != 0 && !eval.signalled && eval.errors.contains("fp16"), "\(eval.errors)")
    }
}
