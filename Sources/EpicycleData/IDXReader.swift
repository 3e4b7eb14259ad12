// IDX format (LeCun et al., the MNIST files): big-endian 32-bit header words. Images: magic 0x00000803
// (unsigned bytes, 3 dimensions), count, rows, columns, then count × rows × columns bytes, row-major.
// Labels: magic 0x00000801, count, then one byte per image.

/// The image and label files of one IDX split, plus what the header said.
struct IDXSplit {
    var height: Int
    var width: Int
    var pixels: [UInt8]  // [count, height, width]
    var labels: [Int32]  // [count]
}

private let idxImagesMagic: UInt32 = 0x0000_0803
private let idxLabelsMagic: UInt32 = 0x0000_0801

private func bigEndianWord(_ bytes: [UInt8], at offset: Int) -> UInt32 {
    bytes[offset ..< offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
}

private func hex(_ word: UInt32) -> String {
    let digits = String(word, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}

private func checkMagic(_ found: UInt32, expected: UInt32, path: String) throws {
    guard found != expected else { return }
    let kind = expected == idxImagesMagic ? "image" : "label"
    var problem = "bad magic number \(hex(found)), expected \(hex(expected)) for an IDX \(kind) file"
    if found == idxImagesMagic { problem += "; this looks like an image file given where the labels belong" }
    else if found == idxLabelsMagic { problem += "; this looks like a label file given where the images belong" }
    else { problem += "; is this an IDX file (e.g. train-images-idx3-ubyte[.gz])?" }
    throw DataError.corruptFile(path: path, problem: problem)
}

/// The payload size a header promises, checked before anything is read: no overflow, and no more
/// than the file can hold (its size plain, what deflate can inflate it to when compressed).
private func checkedPayload(_ factors: [Int], what: String, file: DatasetFile, header: Int) throws -> Int {
    var payload = 1
    for factor in factors {
        let (product, overflow) = payload.multipliedReportingOverflow(by: factor)
        guard !overflow else {
            throw DataError.corruptFile(path: file.path, problem: "the header promises \(what), more than any file can hold")
        }
        payload = product
    }
    if !file.isCompressed && payload > file.size - header {
        throw DataError.corruptFile(path: file.path, problem: """
            truncated: the header promises \(what) (\(payload) bytes after the \(header)-byte header) \
            but the file has \(file.size - header); download or reinstall the file
            """)
    }
    guard payload <= file.maximumContentBytes - header else {
        throw DataError.corruptFile(path: file.path, problem: """
            the header promises \(what) (\(payload) bytes), more than this \(file.size)-byte \
            \(file.isCompressed ? "gzip " : "")file can hold (at most \(file.maximumContentBytes)); the header is damaged
            """)
    }
    return payload
}

/// Reads an IDX header of `words` big-endian words with the expected magic.
private func readHeader(_ file: inout DatasetFile, words: Int, magic: UInt32, kind: String) throws -> [UInt32] {
    let bytes = try file.read(upTo: 4 * words)
    if bytes.count >= 4 { try checkMagic(bigEndianWord(bytes, at: 0), expected: magic, path: file.path) }
    guard bytes.count == 4 * words else {
        throw DataError.corruptFile(path: file.path, problem: "truncated: \(bytes.count) bytes, shorter than the \(4 * words)-byte IDX \(kind) header")
    }
    return (0..<words).map { bigEndianWord(bytes, at: 4 * $0) }
}

/// Reads one IDX split: an image file and its label file, each gzip-compressed or not. Headers are
/// checked before any payload is read, and each payload is read exactly as far as its header says.
func readIDXSplit(imagesPath: String, labelsPath: String, hint: String) throws -> IDXSplit {
    var images = try DatasetFile(imagesPath, hint: hint)
    defer { images.close() }
    let imageHeader = try readHeader(&images, words: 4, magic: idxImagesMagic, kind: "image")
    let count = Int(imageHeader[1]), height = Int(imageHeader[2]), width = Int(imageHeader[3])
    guard height > 0, width > 0 else {
        throw DataError.corruptFile(path: imagesPath, problem: "the header gives an empty image size \(height)×\(width)")
    }
    let what = "\(count) images of \(height)×\(width)"
    let payload = try checkedPayload([count, height, width], what: what, file: images, header: 16)

    var labels = try DatasetFile(labelsPath, hint: hint)
    defer { labels.close() }
    let labelHeader = try readHeader(&labels, words: 2, magic: idxLabelsMagic, kind: "label")
    let labelCount = Int(labelHeader[1])
    guard labelCount == count else {
        throw DataError.countMismatch(imagesPath: imagesPath, imageCount: count, labelsPath: labelsPath, labelCount: labelCount)
    }
    _ = try checkedPayload([labelCount], what: "\(labelCount) labels", file: labels, header: 8)

    let pixels = try images.read(exactly: payload, what: what)
    try images.expectEnd(what: what)
    let labelBytes = try labels.read(exactly: labelCount, what: "\(labelCount) labels")
    try labels.expectEnd(what: "\(labelCount) labels")
    return IDXSplit(height: height, width: width, pixels: pixels, labels: labelBytes.map { Int32($0) })
}
