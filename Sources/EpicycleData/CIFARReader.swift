// CIFAR binary format (Krizhevsky 2009): fixed-size records, each a label byte (CIFAR-100: the coarse
// label byte, then the fine label byte) followed by 3,072 bytes: the 32×32 red, green and blue planes in
// turn, each row-major. Records are converted to the loader's interleaved [height, width, channel] order.

/// Which CIFAR-100 label a dataset uses.
public enum CIFAR100Labels: String, Sendable, CaseIterable {
    /// The 100 classes.
    case fine
    /// The 20 superclasses.
    case coarse
}

/// The record layout of one CIFAR variant.
struct CIFARLayout {
    var variantName: String
    var labelBytes: Int  // bytes before the pixels
    var labelOffset: Int  // which of them is the label used
    var classCount: Int

    static let cifar10 = CIFARLayout(variantName: "CIFAR-10", labelBytes: 1, labelOffset: 0, classCount: 10)
    static func cifar100(_ labels: CIFAR100Labels) -> CIFARLayout {
        CIFARLayout(variantName: "CIFAR-100", labelBytes: 2, labelOffset: labels == .coarse ? 0 : 1,
                    classCount: labels == .coarse ? 20 : 100)
    }

    static let side = 32
    static let planeSize = side * side
    var recordSize: Int { labelBytes + 3 * Self.planeSize }
}

/// Reads and concatenates CIFAR binary files (gzip-compressed or not) in the given order.
func readCIFARFiles(_ paths: [String], layout: CIFARLayout, hint: String) throws -> (pixels: [UInt8], labels: [Int32]) {
    var pixels = [UInt8](), labels = [Int32]()
    let planeSize = CIFARLayout.planeSize
    for path in paths {
        var file = try DatasetFile(path, hint: hint)
        defer { file.close() }
        // No header: the records run to the end, bounded by what the file can hold.
        let bytes = try file.read(upTo: file.maximumContentBytes)
        try file.expectEnd(what: "\(file.maximumContentBytes) bytes Epicycle reads from one file")
        guard !bytes.isEmpty, bytes.count % layout.recordSize == 0 else {
            throw DataError.corruptFile(path: path, problem: """
                size \(bytes.count) bytes is not a whole number of \(layout.recordSize)-byte \(layout.variantName) \
                records (\(layout.labelBytes) label byte\(layout.labelBytes > 1 ? "s" : "") + 3,072 pixel bytes); \
                the file is truncated or not a \(layout.variantName) binary file
                """)
        }
        let recordCount = bytes.count / layout.recordSize
        let start = pixels.count
        pixels.append(contentsOf: repeatElement(0, count: recordCount * 3 * planeSize))
        labels.reserveCapacity(labels.count + recordCount)
        try bytes.withUnsafeBufferPointer { source in
            try pixels.withUnsafeMutableBufferPointer { destination in
                for record in 0..<recordCount {
                    let recordStart = record * layout.recordSize
                    let label = source[recordStart + layout.labelOffset]
                    guard Int(label) < layout.classCount else {
                        throw DataError.corruptFile(path: path, problem: """
                            record \(record) has label \(label), outside the \(layout.classCount) classes; \
                            is this a \(layout.variantName) file?
                            """)
                    }
                    labels.append(Int32(label))
                    let planes = source.baseAddress! + recordStart + layout.labelBytes
                    let image = destination.baseAddress! + start + record * 3 * planeSize
                    for position in 0..<planeSize {
                        image[3 * position] = planes[position]
                        image[3 * position + 1] = planes[planeSize + position]
                        image[3 * position + 2] = planes[2 * planeSize + position]
                    }
                }
            }
        }
    }
    return (pixels, labels)
}
