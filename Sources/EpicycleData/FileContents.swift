import CZlib
import Foundation

/// The most bytes one dataset file may hold once decompressed (4 GiB: ImageNet at 32×32 is 3.7 GB),
/// so that no header or stream can make a reader allocate without bound.
let maximumDatasetFileBytes = 1 << 32

/// The most a deflate stream inflates: 1032 output bytes per input byte (zlib's technical details,
/// "maximum compression factor"), so a header promising more than that is refused before reading.
private let maximumDeflateRatio = 1032

/// A dataset file opened for reading in order, gzip-compressed or not (zlib's `gzread` passes other
/// files through unchanged). Only regular files are opened: a FIFO would block and `/dev/zero` never
/// ends. Payloads are read only as far as a checked header promises, in slices, so memory follows
/// the bytes actually present, not the numbers a header claims.
struct DatasetFile {
    let path: String
    /// The size on disk.
    let size: Int
    let isCompressed: Bool
    private let file: gzFile
    /// Bytes read so far (decompressed).
    private(set) var offset = 0

    /// - Throws: `DataError.missingFile` when nothing is at `path`, `DataError.corruptFile` for a
    ///   folder, device, pipe or unreadable file.
    init(_ path: String, hint: String) throws {
        var status = stat()
        guard stat(path, &status) == 0 else {
            if errno == ENOENT { throw DataError.missingFile(path: path, hint: hint) }
            throw DataError.corruptFile(path: path, problem: "cannot read the file (\(String(cString: strerror(errno))))")
        }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw DataError.corruptFile(path: path, problem: "not a regular file (a folder, a device or a pipe); give the dataset's files")
        }
        guard let file = gzopen(path, "rb") else {
            throw DataError.corruptFile(path: path, problem: "cannot open the file (\(String(cString: strerror(errno))))")
        }
        gzbuffer(file, 1 << 18)
        self.path = path
        self.file = file
        size = Int(status.st_size)
        isCompressed = gzdirect(file) == 0
    }

    func close() { gzclose(file) }

    /// The most decompressed bytes this file can hold: its size, or for gzip what deflate can
    /// inflate its size to, and never more than `maximumDatasetFileBytes`.
    var maximumContentBytes: Int {
        min(isCompressed ? size.multipliedReportingOverflow(by: maximumDeflateRatio).partialValue : size, maximumDatasetFileBytes)
    }

    /// Reads up to `count` bytes, fewer only at the end of the content.
    mutating func read(upTo count: Int) throws -> [UInt8] {
        var bytes = [UInt8]()
        while bytes.count < count {
            // Slices of at most 64 MiB: a stream shorter than promised costs only what it holds.
            let slice = min(count - bytes.count, 1 << 26)
            let start = bytes.count
            bytes.append(contentsOf: repeatElement(0, count: slice))
            let got = bytes.withUnsafeMutableBytes { gzread(file, $0.baseAddress! + start, UInt32(slice)) }
            guard got >= 0 else { throw streamError() }
            bytes.removeLast(slice - Int(got))
            offset += Int(got)
            if Int(got) < slice { break }
        }
        var status: Int32 = Z_OK
        _ = gzerror(file, &status)
        if status != Z_OK { throw streamError() }
        return bytes
    }

    /// Reads exactly the `count` bytes of `what` that a header promised after `offset`.
    mutating func read(exactly count: Int, what: String) throws -> [UInt8] {
        let header = offset
        let bytes = try read(upTo: count)
        guard bytes.count == count else {
            throw DataError.corruptFile(path: path, problem: """
                truncated: the header promises \(what) (\(count) bytes after the \(header)-byte header) \
                but the file has \(bytes.count); download or reinstall the file
                """)
        }
        return bytes
    }

    /// Checks that nothing follows what the header promised.
    mutating func expectEnd(what: String) throws {
        let extra = try read(upTo: 1 << 16).count
        guard extra == 0 else {
            throw DataError.corruptFile(path: path, problem: """
                unexpected bytes after the \(what) the header promises (at least \(extra)); \
                the header's count does not match the data
                """)
        }
    }

    private func streamError() -> DataError {
        var status: Int32 = Z_OK
        let message = String(cString: gzerror(file, &status))
        let what = status == Z_BUF_ERROR ? "truncated gzip stream" : "damaged gzip stream"
        return DataError.corruptFile(path: path, problem: "\(what) (zlib: \(message)); download or reinstall the file")
    }
}

/// Reads a small text file such as a list of class names: regular files of at most `maximumBytes`
/// only; nil when there is none.
func readSmallTextFile(_ path: String, maximumBytes: Int = 1 << 20) throws -> String? {
    var status = stat()
    guard stat(path, &status) == 0 else { return nil }
    guard status.st_mode & S_IFMT == S_IFREG, Int(status.st_size) <= maximumBytes else {
        throw DataError.corruptFile(path: path, problem: "expected a text file of at most \(maximumBytes) bytes")
    }
    var file = try DatasetFile(path, hint: "")
    defer { file.close() }
    let bytes = try file.read(upTo: maximumBytes + 1)
    guard bytes.count <= maximumBytes, let text = String(validating: bytes, as: UTF8.self) else {
        throw DataError.corruptFile(path: path, problem: "expected UTF-8 text of at most \(maximumBytes) bytes")
    }
    return text
}

/// Writes bytes to a file atomically (a temporary file, then a rename).
func writeFileContents(_ bytes: [UInt8], to path: String) throws {
    do {
        try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
    } catch {
        throw DataError.writeFailed(path: path, reason: error.localizedDescription)
    }
}
