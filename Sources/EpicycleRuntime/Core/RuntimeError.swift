/// Errors of the runtime: each names the layer or tensor and says what was expected.
public enum RuntimeError: Error, Equatable, CustomStringConvertible {
    /// A layer got an input it cannot take. `path` is the dotted name inside the model (empty for a
    /// layer used on its own), `kind` the layer type, e.g. "Conv2D".
    case shapeMismatch(path: String, kind: String, expected: String, found: [Int])
    /// A requested intermediate feature does not exist.
    case unknownFeature(String, valid: [String])
    /// A model description that cannot be built.
    case invalidSpec(String)

    /// The same error seen from a parent that holds the failing layer under `name`.
    public func nested(in name: String) -> RuntimeError {
        guard case let .shapeMismatch(path, kind, expected, found) = self else { return self }
        return .shapeMismatch(path: path.isEmpty ? name : name + "." + path, kind: kind, expected: expected, found: found)
    }

    public var description: String {
        switch self {
        case let .shapeMismatch(path, kind, expected, found):
            let where_ = path.isEmpty ? kind : "\(path) (\(kind))"
            return "\(where_): expected input \(expected), got \(describeShape(found))"
        case let .unknownFeature(name, valid):
            return "unknown feature '\(name)'; valid names: \(valid.joined(separator: ", "))"
        case let .invalidSpec(message):
            return "invalid model spec: \(message)"
        }
    }
}
