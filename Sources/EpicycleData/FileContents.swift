import CZlib
import Foundation

/// Reads a whole file into memory, decompressing it when it is gzip-compressed: zlib's `gzread`
/// inflates gzip streams and passes any other file through unchanged, so callers need not care which
/// one they were given.
/// - Throws: `DataError.missingFile` when the path does not exist, `DataError.corruptFile` when zlib
///   reports a damaged or truncated gzip stream.
func readFileContents(_ path: String, hint: String) throws -> [UInt8] {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue else {
        throw DataError.missingFile(path: path, hint: hint)
    }
    guard let file = gzopen(path, "rb") else {
        throw DataError.corruptFile(path: path, problem: "cannot open the file (\(String(cString: strerror(errno))))")
    }
    defer { gzclose(file) }
    gzbuffer(file, 1 << 18)

    // Grow by doubling; the plain file size is a good first guess, gzip content is usually larger.
    let fileSize = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    var bytes = [UInt8](repeating: 0, count: max(fileSize * 2, 1 << 16))
    var filled = 0
    while true {
        if filled == bytes.count { bytes.append(contentsOf: repeatElement(0, count: bytes.count)) }
        let request = UInt32(min(bytes.count - filled, Int(Int32.max)))
        let got = bytes.withUnsafeMutableBytes { gzread(file, $0.baseAddress! + filled, request) }
        if got <= 0 { break }
        filled += Int(got)
    }
    var status: Int32 = Z_OK
    let message = String(cString: gzerror(file, &status))
    guard status == Z_OK else {
        let what = status == Z_BUF_ERROR ? "truncated gzip stream" : "damaged gzip stream"
        throw DataError.corruptFile(path: path, problem: "\(what) (zlib: \(message)); download or reinstall the file")
    }
    bytes.removeLast(bytes.count - filled)
    return bytes
}

/// Writes bytes to a file atomically (a temporary file, then a rename).
func writeFileContents(_ bytes: [UInt8], to path: String) throws {
    do {
        try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
    } catch {
        throw DataError.writeFailed(path: path, reason: error.localizedDescription)
    }
}
