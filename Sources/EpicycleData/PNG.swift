import CZlib

// PNG (ISO/IEC 15948, W3C PNG 2nd edition): the 8-byte signature, then chunks, each a big-endian
// length, a 4-letter type, the data and a CRC-32 of type and data. A minimal image is IHDR (size, bit
// depth, colour type), one IDAT (the zlib stream of all scanlines, each prefixed by its filter byte)
// and IEND.

/// Encodes 8-bit greyscale (1 channel) or RGB (3 channels) pixels, laid out [height, width, channels],
/// as a PNG file.
public func encodePNG(pixels: [UInt8], width: Int, height: Int, channels: Int) -> [UInt8] {
    precondition(channels == 1 || channels == 3, "encodePNG: 1 (grey) or 3 (RGB) channels, got \(channels)")
    precondition(width > 0 && height > 0 && pixels.count == width * height * channels,
                 "encodePNG: \(pixels.count) bytes are not a \(width)×\(height)×\(channels) image")
    // Filter type 0 (None) on every scanline; zlib's deflate does the compression.
    let rowLength = width * channels
    var scanlines = [UInt8](repeating: 0, count: height * (rowLength + 1))
    for y in 0..<height {
        scanlines.replaceSubrange((y * (rowLength + 1) + 1)...(y * (rowLength + 1) + rowLength),
                                  with: pixels[(y * rowLength)..<((y + 1) * rowLength)])
    }
    var compressedLength = compressBound(uLong(scanlines.count))
    var compressed = [UInt8](repeating: 0, count: Int(compressedLength))
    let status = compress2(&compressed, &compressedLength, scanlines, uLong(scanlines.count), Z_BEST_COMPRESSION)
    precondition(status == Z_OK, "encodePNG: zlib compress2 failed with status \(status)")
    compressed.removeLast(compressed.count - Int(compressedLength))

    var file: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    func bigEndian(_ value: Int) -> [UInt8] { [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: value >> $0) } }
    func appendChunk(_ type: String, _ data: [UInt8]) {
        let typeAndData = Array(type.utf8) + data
        file += bigEndian(data.count) + typeAndData
        file += bigEndian(Int(crc32(0, typeAndData, uInt(typeAndData.count))))
    }
    // IHDR: width, height, bit depth 8, colour type 0 (grey) or 2 (RGB), deflate, adaptive filters, no interlace.
    appendChunk("IHDR", bigEndian(width) + bigEndian(height) + [8, channels == 1 ? 0 : 2, 0, 0, 0])
    appendChunk("IDAT", compressed)
    appendChunk("IEND", [])
    return file
}

/// Writes pixels laid out [height, width, channels] (1 or 3 channels) to a PNG file.
public func writePNG(pixels: [UInt8], width: Int, height: Int, channels: Int, to path: String) throws {
    try writeFileContents(encodePNG(pixels: pixels, width: width, height: height, channels: channels), to: path)
}
