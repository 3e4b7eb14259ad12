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

private func checkSize(_ bytes: [UInt8], header: Int, payload: Int, what: String, path: String) throws {
    let actual = bytes.count - header
    if actual < payload {
        throw DataError.corruptFile(path: path, problem: """
            truncated: the header promises \(what) (\(payload) bytes after the \(header)-byte header) \
            but the file has \(max(actual, 0)); download or reinstall the file
            """)
    }
    if actual > payload {
        throw DataError.corruptFile(path: path, problem: """
            \(actual - payload) unexpected bytes after the \(what) the header promises; \
            the header's count does not match the data
            """)
    }
}

/// Reads one IDX split: an image file and its label file, each gzip-compressed or not.
func readIDXSplit(imagesPath: String, labelsPath: String, hint: String) throws -> IDXSplit {
    let imageBytes = try readFileContents(imagesPath, hint: hint)
    guard imageBytes.count >= 16 else {
        if imageBytes.count >= 4 { try checkMagic(bigEndianWord(imageBytes, at: 0), expected: idxImagesMagic, path: imagesPath) }
        throw DataError.corruptFile(path: imagesPath, problem: "truncated: \(imageBytes.count) bytes, shorter than the 16-byte IDX image header")
    }
    try checkMagic(bigEndianWord(imageBytes, at: 0), expected: idxImagesMagic, path: imagesPath)
    let count = Int(bigEndianWord(imageBytes, at: 4))
    let height = Int(bigEndianWord(imageBytes, at: 8)), width = Int(bigEndianWord(imageBytes, at: 12))
    guard height > 0, width > 0 else {
        throw DataError.corruptFile(path: imagesPath, problem: "the header gives an empty image size \(height)×\(width)")
    }
    let (imageSize, sizeOverflow) = height.multipliedReportingOverflow(by: width)
    let (payload, payloadOverflow) = count.multipliedReportingOverflow(by: imageSize)
    guard !sizeOverflow && !payloadOverflow else {
        throw DataError.corruptFile(path: imagesPath, problem: "the header promises \(count) images of \(height)×\(width), more than any file can hold")
    }
    try checkSize(imageBytes, header: 16, payload: payload, what: "\(count) images of \(height)×\(width)", path: imagesPath)

    let labelBytes = try readFileContents(labelsPath, hint: hint)
    guard labelBytes.count >= 8 else {
        if labelBytes.count >= 4 { try checkMagic(bigEndianWord(labelBytes, at: 0), expected: idxLabelsMagic, path: labelsPath) }
        throw DataError.corruptFile(path: labelsPath, problem: "truncated: \(labelBytes.count) bytes, shorter than the 8-byte IDX label header")
    }
    try checkMagic(bigEndianWord(labelBytes, at: 0), expected: idxLabelsMagic, path: labelsPath)
    let labelCount = Int(bigEndianWord(labelBytes, at: 4))
    guard labelCount == count else {
        throw DataError.countMismatch(imagesPath: imagesPath, imageCount: count, labelsPath: labelsPath, labelCount: labelCount)
    }
    try checkSize(labelBytes, header: 8, payload: labelCount, what: "\(labelCount) labels", path: labelsPath)

    return IDXSplit(height: height, width: width, pixels: Array(imageBytes[16...]), labels: labelBytes[8...].map { Int32($0) })
}
