import CJPEG
import CPNG
import Foundation

// PNG files are decoded with libpng's simplified API (`png_image`, which catches libpng's errors
// itself), JPEG files with libjpeg-turbo through the C shim of CJPEG (libjpeg's errors longjmp). Both
// are read at 8 bits per channel in the file's own colour layout and converted here, so that a file
// converts the same whichever format holds it: alpha is dropped and RGB becomes grey by ITU-R BT.601
// luma, as PIL's `convert("RGB")` / `convert("L")` do for torchvision's ImageFolder.

/// Bounds on image files, checked before anything is sized from what a file or a listing states.
public enum ImageFileLimits {
    /// Bytes of one image file (256 MiB).
    public static let fileBytes = 1 << 28
    /// Width or height of a stored image (libjpeg's own limit is 65,500).
    public static let side = 1...65_500
    /// Pixels of one stored image (2²⁸: a 16k × 16k photograph).
    public static let pixels = 1 << 28
    /// The side images are fitted to (a recipe's `image_size`).
    public static let outputSide = 1...1024
    /// Image files in one dataset, all splits together.
    public static let files = 10_000_000
    /// Classes of one dataset (class folders or CSV labels).
    public static let classes = 100_000
}

/// An image as decoded from a file: 8-bit greyscale (1 channel) or RGB (3), rows top down.
public struct DecodedImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let channels: Int
    public let pixels: [UInt8]  // [height, width, channels]
}

/// Why a file is not a usable image (without the file's name, which the caller adds).
public struct ImageFileError: Error, Equatable, CustomStringConvertible {
    public let reason: String
    public var description: String { reason }
}

/// Decodes a PNG or a JPEG file's bytes (told apart by their signature, not the file name) into
/// `channels` 1 (grey) or 3 (RGB).
/// - Throws: `ImageFileError` for any other content, a damaged or truncated file, or a stated size
///   outside `ImageFileLimits`.
public func decodeImage(_ bytes: [UInt8], channels: Int) throws -> DecodedImage {
    precondition(channels == 1 || channels == 3, "decodeImage: 1 (grey) or 3 (RGB) channels, got \(channels)")
    if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return try decodePNG(bytes, channels: channels) }
    if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return try decodeJPEG(bytes, channels: channels) }
    let start = bytes.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
    throw ImageFileError(reason: "neither a PNG nor a JPEG file (it starts with \(bytes.isEmpty ? "nothing: it is empty" : start))")
}

/// Encodes 8-bit grey (1 channel) or RGB (3) pixels, laid out [height, width, channels], as a baseline
/// JPEG of `quality` 1…100.
public func encodeJPEG(pixels: [UInt8], width: Int, height: Int, channels: Int, quality: Int = 90) throws -> [UInt8] {
    precondition(channels == 1 || channels == 3, "encodeJPEG: 1 (grey) or 3 (RGB) channels, got \(channels)")
    precondition(width > 0 && height > 0 && pixels.count == width * height * channels,
                 "encodeJPEG: \(pixels.count) bytes are not a \(width)×\(height)×\(channels) image")
    var message = [CChar](repeating: 0, count: Int(epicycle_jpeg_message_length))
    var output: UnsafeMutablePointer<UInt8>?
    var size: UInt = 0
    let status = epicycle_jpeg_encode(pixels, UInt32(width), UInt32(height), Int32(channels), Int32(min(max(quality, 1), 100)),
                                      &output, &size, &message)
    defer { free(output) }
    guard status == 0, let output else { throw ImageFileError(reason: "libjpeg: " + text(message)) }
    return Array(UnsafeBufferPointer(start: output, count: Int(size)))
}

/// Writes pixels laid out [height, width, channels] (1 or 3 channels) to a JPEG file.
public func writeJPEG(pixels: [UInt8], width: Int, height: Int, channels: Int, quality: Int = 90, to path: String) throws {
    try writeFileContents(try encodeJPEG(pixels: pixels, width: width, height: height, channels: channels, quality: quality), to: path)
}

/// Reads and decodes one image file.
/// - Throws: `ImageFileError` when the file is missing, not a regular file, larger than
///   `ImageFileLimits.fileBytes`, or not a decodable PNG or JPEG.
public func readImageFile(_ path: String, channels: Int) throws -> DecodedImage {
    var status = stat()
    guard stat(path, &status) == 0 else {
        throw ImageFileError(reason: "cannot read the file (\(String(cString: strerror(errno))))")
    }
    guard status.st_mode & S_IFMT == S_IFREG else { throw ImageFileError(reason: "not a regular file") }
    guard Int(status.st_size) <= ImageFileLimits.fileBytes else {
        throw ImageFileError(reason: "\(status.st_size) bytes, more than the \(ImageFileLimits.fileBytes >> 20) MiB an image file may have")
    }
    guard let handle = FileHandle(forReadingAtPath: path) else { throw ImageFileError(reason: "cannot open the file") }
    defer { try? handle.close() }
    let data: Data
    do {
        data = try handle.read(upToCount: ImageFileLimits.fileBytes + 1) ?? Data()
    } catch {
        throw ImageFileError(reason: "cannot read the file (\(error.localizedDescription))")
    }
    guard data.count <= ImageFileLimits.fileBytes else { throw ImageFileError(reason: "grew beyond \(ImageFileLimits.fileBytes >> 20) MiB while read") }
    return try decodeImage([UInt8](data), channels: channels)
}

/// A C library's NUL-terminated message.
private func text(_ message: [CChar]) -> String {
    String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

private func checkStoredSize(width: Int, height: Int) throws {
    guard ImageFileLimits.side.contains(width), ImageFileLimits.side.contains(height), width * height <= ImageFileLimits.pixels else {
        throw ImageFileError(reason: """
            states a size of \(width)×\(height) pixels; images may have 1 to \(ImageFileLimits.side.upperBound) pixels a side \
            and \(ImageFileLimits.pixels) in all
            """)
    }
}

private func decodePNG(_ bytes: [UInt8], channels: Int) throws -> DecodedImage {
    var image = png_image()
    image.version = UInt32(PNG_IMAGE_VERSION)
    defer { png_image_free(&image) }
    func failure(_ image: png_image) -> ImageFileError {
        let message = withUnsafeBytes(of: image.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return ImageFileError(reason: "not a readable PNG file (libpng: \(message))")
    }
    guard bytes.withUnsafeBytes({ png_image_begin_read_from_memory(&image, $0.baseAddress, $0.count) }) != 0 else {
        throw failure(image)
    }
    let width = Int(image.width), height = Int(image.height)
    try checkStoredSize(width: width, height: height)
    // 16-bit files without gamma information are taken as sRGB, as PIL reads them, not as linear light.
    image.flags |= UInt32(PNG_IMAGE_FLAG_16BIT_sRGB)
    // The file's own grey or colour and alpha channels at 8 bits: palettes expand, 16 bits narrow.
    image.format &= UInt32(PNG_FORMAT_FLAG_COLOR) | UInt32(PNG_FORMAT_FLAG_ALPHA)
    let stored = (image.format & UInt32(PNG_FORMAT_FLAG_COLOR) != 0 ? 3 : 1) + (image.format & UInt32(PNG_FORMAT_FLAG_ALPHA) != 0 ? 1 : 0)
    var pixels = [UInt8](repeating: 0, count: width * height * stored)
    let finished = pixels.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, Int32(width * stored), nil) }
    guard finished != 0 else { throw failure(image) }
    return DecodedImage(width: width, height: height, channels: channels,
                        pixels: convertedChannels(pixels, from: stored, to: channels))
}

private func decodeJPEG(_ bytes: [UInt8], channels: Int) throws -> DecodedImage {
    var message = [CChar](repeating: 0, count: Int(epicycle_jpeg_message_length))
    func failure() -> ImageFileError { ImageFileError(reason: "not a readable JPEG file (libjpeg: \(text(message)))") }
    var width: UInt32 = 0, height: UInt32 = 0
    guard epicycle_jpeg_read(bytes, bytes.count, Int32(channels), nil, &width, &height, &message) == 0 else { throw failure() }
    try checkStoredSize(width: Int(width), height: Int(height))
    // libjpeg converts to grey (the luma) or RGB itself, from greyscale or YCbCr files alike.
    var pixels = [UInt8](repeating: 0, count: Int(width) * Int(height) * channels)
    let status = pixels.withUnsafeMutableBufferPointer { output in
        epicycle_jpeg_read(bytes, bytes.count, Int32(channels), output.baseAddress, &width, &height, &message)
    }
    guard status == 0 else { throw failure() }
    return DecodedImage(width: Int(width), height: Int(height), channels: channels, pixels: pixels)
}

/// Pixels of `stored` channels (1 grey, 2 grey + alpha, 3 RGB, 4 RGBA) as `channels` 1 or 3: alpha is
/// dropped, grey is repeated, and RGB becomes grey by BT.601 luma in libjpeg's 16-bit fixed point
/// (0.299 R + 0.587 G + 0.114 B, rounded; PIL's `convert("L")` computes the same).
func convertedChannels(_ pixels: [UInt8], from stored: Int, to channels: Int) -> [UInt8] {
    if stored == channels { return pixels }
    let count = pixels.count / stored
    var output = [UInt8](repeating: 0, count: count * channels)
    let hasColour = stored >= 3
    for index in 0..<count {
        let source = index * stored
        if channels == 3 {
            for channel in 0..<3 { output[index * 3 + channel] = pixels[source + (hasColour ? channel : 0)] }
        } else if hasColour {
            let luma = 19595 * UInt32(pixels[source]) + 38470 * UInt32(pixels[source + 1]) + 7471 * UInt32(pixels[source + 2])
            output[index] = UInt8((luma + 32768) >> 16)
        } else {
            output[index] = pixels[source]
        }
    }
    return output
}
