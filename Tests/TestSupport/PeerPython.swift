import Foundation
import Testing

/// The Python peer named by `EPICYCLE_PYTHON` (scripts/setup-python); tests that need it run only when it is set.
public let peerPython = ProcessInfo.processInfo.environment["EPICYCLE_PYTHON"]

/// Runs `script` (Python source) with `arguments` in the peer and decodes the JSON it prints.
/// - Throws: when the peer is not set, exits with a failure (its error output is in the message) or
///   prints no JSON.
public func runPeerScript(_ script: String, _ arguments: [String]) throws -> Any {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try #require(peerPython))
    process.arguments = ["-c", script] + arguments
    let output = Pipe(), errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    try #require(process.terminationStatus == 0, "the Python peer failed: \(errorText)")
    return try JSONSerialization.jsonObject(with: data)
}
