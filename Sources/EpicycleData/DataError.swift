/// Errors of dataset reading, views, augmentation policies and the loader. Each description names the
/// file or the request, says what is wrong and, where there is one, how to fix it.
public enum DataError: Error, Equatable, CustomStringConvertible {
    /// A dataset file or folder that is not there.
    case missingFile(path: String, hint: String)
    /// A file that exists but cannot be used: bad magic number, truncated, trailing bytes, a partial
    /// record, a label out of range, a damaged gzip stream. `problem` says which.
    case corruptFile(path: String, problem: String)
    /// An image file and its label file that disagree on the number of samples.
    case countMismatch(imagesPath: String, imageCount: Int, labelsPath: String, labelCount: Int)
    /// A dataset name that is not in the catalog.
    case unknownDataset(name: String, known: [String])
    /// A view, policy or loader request that cannot be satisfied (e.g. more samples than exist).
    case invalidRequest(String)
    /// A file that could not be written.
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .missingFile(path, hint):
            return "\(path): no such file or folder. \(hint)"
        case let .corruptFile(path, problem):
            return "\(path): \(problem)"
        case let .countMismatch(imagesPath, imageCount, labelsPath, labelCount):
            return """
                \(imagesPath) holds \(imageCount) images but \(labelsPath) holds \(labelCount) labels; \
                the two files must come from the same dataset split (check that neither is truncated or \
                swapped with another split's file)
                """
        case let .unknownDataset(name, known):
            return """
                unknown dataset '\(name)'; known names: \(known.joined(separator: ", ")). \
                Any dataset can also be given as a folder with its format (idx, cifar10, cifar100, folder, csv).
                """
        case let .invalidRequest(message):
            return message
        case let .writeFailed(path, reason):
            return "\(path): cannot write (\(reason))"
        }
    }
}
