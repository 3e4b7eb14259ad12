import EpicycleCheckpoint
import EpicycleExport
import EpicycleRuntime
import Foundation

/// What `exportONNX` wrote.
public struct ONNXExportSummary: Sendable {
    public var file: String
    public var bytes: Int
    public var architecture: String
    /// [channels, height, width] of one image; the batch dimension is dynamic.
    public var imageShape: [Int]
    public var classes: Int

    public var description: String {
        "wrote \(file) (\(bytes) bytes): \(architecture), ONNX opset \(ONNXExport.opset), input 'images' float32 "
            + "[batch, \(imageShape.map(String.init).joined(separator: ", "))] with pixel values in [0, 1] (normalised in the graph), "
            + "output 'logits' float32 [batch, \(classes)]"
    }
}

/// `epicycle export CKPT --onnx FILE`: the checkpoint's model as an ONNX inference graph (`ONNXExport`),
/// its input shaped and normalised as the checkpoint's `/data` says. Written to `<file>.tmp`, then
/// renamed, so a failed export leaves no partial file under the name.
public func exportONNX(checkpoint path: String, to file: String) throws -> ONNXExportSummary {
    let checkpoint = try Checkpoint.read(from: path)
    guard let input = checkpoint.input else {
        throw RecipeError(path: "", problem: "\(path) has no /data input pipeline (image size, channels, normalisation), "
            + "which the ONNX input needs; it was written by an older version")
    }
    let model = try loadedModel(checkpoint)
    let export: ONNXExport
    do {
        export = try ONNXExport(model: model, input: input)
    } catch let error as RuntimeError {
        throw RecipeError(path: "", problem: "\(path): cannot export to ONNX: \(error)")
    }
    let temporary = file + ".tmp"
    do {
        try Data(export.bytes).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, file) == 0 else { throw POSIXError(errno) }
    } catch {
        try? FileManager.default.removeItem(atPath: temporary)
        throw RecipeError(path: "", problem: "cannot write \(file): \(fileSystemReason(error))")
    }
    return ONNXExportSummary(file: file, bytes: export.bytes.count, architecture: model.spec.architecture,
                             imageShape: [input.channels, input.height, input.width], classes: model.spec.numClasses)
}
