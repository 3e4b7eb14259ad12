import Foundation
import Testing

let peerReason: Comment = "set EPICYCLE_PYTHON to the peer Python with onnx, onnxruntime and tensorboard (scripts/setup-python)"

func temporaryFolder(_ name: String) throws -> String {
    let path = NSTemporaryDirectory() + "epicycle-export-tests-\(name)-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
