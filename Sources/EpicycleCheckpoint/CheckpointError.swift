import EpicycleRuntime

/// A checkpoint that cannot be written, read or loaded. Each case names the file and the object at
/// fault, and the description says what to do about it.
public enum CheckpointError: Error, Equatable, CustomStringConvertible {
    case fileNotFound(file: String)
    /// A folder, or a file this process may not read.
    case notReadable(file: String)
    /// The file lacks the HDF5 signature: a text file, a PyTorch `.pt`, an empty file.
    case notHDF5(file: String)
    /// The file is shorter than HDF5 recorded when writing it (an interrupted copy or download).
    case truncated(file: String, detail: String)
    /// HDF5 failed while reading: a checksum failure or corrupt metadata. `action` says what was being
    /// read, e.g. "reading '/model/parameters/conv1.weight'".
    case damaged(file: String, action: String, detail: String)
    /// An HDF5 file, but not an Epicycle checkpoint: `found` is its `format` attribute, if any.
    case wrongFormat(file: String, found: String?)
    case unsupportedVersion(file: String, found: Int, supported: Int)
    /// A group or attribute the layout requires is absent, e.g. "/model/parameters".
    case missingEntry(file: String, object: String)
    /// A stored value has another element type than the layout or the model needs.
    /// `object` is e.g. "tensor 'conv1.weight'" or "attribute 'epoch' of '/training'".
    case dtypeMismatch(file: String, object: String, found: String, expected: String)
    /// A stored value is well typed but unusable, e.g. an unknown program name.
    case invalidValue(file: String, object: String, reason: String)
    /// The model has a tensor that the file lacks.
    case missingTensor(file: String, name: String)
    /// The file has a tensor that the model lacks.
    case unexpectedTensor(file: String, name: String)
    case shapeMismatch(file: String, name: String, found: [Int], expected: [Int])
    /// A tensor to be loaded holds NaN or infinite values: `tensor` is its path, e.g.
    /// "model/parameters/conv1.weight", and `value` says which ("NaN", "infinite").
    case nonFinite(file: String, tensor: String, value: String)
    /// A load filter pattern that matches no tensor of the model or the file (probably a typo).
    case filterMatchesNothing(file: String, pattern: String)
    /// The checkpoint value cannot be written as it is (an invalid or duplicate name, a ragged table).
    case invalidRecord(file: String, reason: String)
    /// Writing failed; the previous file at `file`, if any, is untouched.
    case writeFailed(file: String, action: String, detail: String)

    public var description: String {
        switch self {
        case let .fileNotFound(file):
            return "\(file): no such file"
        case let .notHDF5(file):
            return "\(file): not an HDF5 file (it lacks the HDF5 signature); Epicycle checkpoints are HDF5 "
                + "files written by `epicycle`"
        case let .truncated(file, detail):
            return "\(file): the file is truncated (HDF5: \(detail)); it was probably cut short while being "
                + "written or copied — use another checkpoint or copy it again"
        case let .notReadable(file):
            return "\(file): not a readable file (a folder, a device or pipe, or no permission to read it)"
        case let .damaged(file, action, detail):
            return "\(file): the file is damaged: \(action) failed (HDF5: \(detail)); use another checkpoint"
        case let .wrongFormat(file, found):
            let what = found.map { "its format attribute is '\($0)'" } ?? "it has no format attribute"
            return "\(file): not an Epicycle checkpoint: \(what), expected '\(Checkpoint.formatName)'"
        case let .unsupportedVersion(file, found, supported):
            return "\(file): checkpoint format version \(found) is not supported; this Epicycle reads version "
                + "\(supported)" + (found > supported ? " — use a newer Epicycle" : "")
        case let .missingEntry(file, object):
            return "\(file): the checkpoint has no \(object); it is incomplete or was not written by Epicycle"
        case let .dtypeMismatch(file, object, found, expected):
            return "\(file): \(object) has dtype \(found) in the file, expected \(expected)"
        case let .invalidValue(file, object, reason):
            return "\(file): \(object) \(reason)"
        case let .missingTensor(file, name):
            return "\(file): tensor '\(name)' is missing from the file but the model has it; if the model "
                + "changed on purpose, load with a filter that skips it"
        case let .unexpectedTensor(file, name):
            return "\(file): tensor '\(name)' is in the file but not in the model; if that is expected, load "
                + "with a filter that skips it"
        case let .shapeMismatch(file, name, found, expected):
            return "\(file): tensor '\(name)' has shape \(describeShape(found)) in the file, the model expects "
                + "\(describeShape(expected))"
        case let .nonFinite(file, tensor, value):
            return "\(file): tensor \(tensor) has \(value) values; the file is damaged or was saved from a run that "
                + "diverged — use another checkpoint"
        case let .filterMatchesNothing(file, pattern):
            return "\(file): load filter pattern '\(pattern)' matches no tensor in the model or the file"
        case let .invalidRecord(file, reason):
            return "\(file): cannot write this checkpoint: \(reason)"
        case let .writeFailed(file, action, detail):
            return "\(file): saving failed while \(action) (\(detail)); the previous file, if any, is unchanged"
        }
    }
}
