import Foundation
import Testing

extension CLITests {
    /// `epicycle export` writes an ONNX file from a trained run's checkpoint and says what it holds;
    /// the run folder has its step log and TensorBoard event file; bad paths are one-line errors.
    @Test func exportWritesAnONNXFileAndRunsLogEachStep() throws {
        let folder = Self.folder("export")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try Self.recipe.write(toFile: folder + "/small.yaml", atomically: true, encoding: .utf8)
        let trained = try Self.run(["pretrain", "--recipe", "small.yaml", "--set", "pretrain.epochs=1", "--output", "run"], in: folder)
        #expect(trained.status == 0, "\(trained.errors)")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder + "/run")
        #expect(files.contains("steps.jsonl") && files.contains { $0.hasPrefix("events.out.tfevents.") }, "\(files)")
        // 640 training images (validation is held out before `first` picks them) at batch 32: 20 steps.
        let rows = try String(contentsOfFile: folder + "/run/steps.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(rows.count == 20)

        let exported = try Self.run(["export", "run/best.h5", "--onnx", "model.onnx"], in: folder)
        #expect(exported.status == 0, "\(exported.errors)")
        #expect(exported.output.contains("model.onnx") && exported.output.contains("opset 17")
                && exported.output.contains("[batch, 1, 28, 28]") && exported.output.contains("[batch, 5]"), "\(exported.output)")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: folder + "/model.onnx"))
        #expect(bytes.prefix(2) == Data([0x08, 0x08]), "ModelProto starts with ir_version = 8")

        let notACheckpoint = try Self.run(["export", "small.yaml", "--onnx", "x.onnx"], in: folder)
        #expect(notACheckpoint.status == 1 && notACheckpoint.errors.hasPrefix("error: ") && notACheckpoint.errors.contains("small.yaml"),
                "\(notACheckpoint.errors)")
        let unwritable = try Self.run(["export", "run/best.h5", "--onnx", "small.yaml/x.onnx"], in: folder)
        #expect(unwritable.status == 1 && unwritable.errors.split(separator: "\n").count == 1
                && unwritable.errors.contains("cannot write small.yaml/x.onnx"), "\(unwritable.errors)")
        #expect(!FileManager.default.fileExists(atPath: folder + "/x.onnx"))
    }
}
