import EpicycleSchedules
import Foundation
import Yams

/// A recipe problem, named by its key path: `knobs.temperature.cyclical.factor: must be ≥ 1, got 0.5`.
public struct RecipeError: Error, Equatable, CustomStringConvertible {
    public var path: String
    public var problem: String

    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    public var description: String { path.isEmpty ? problem : "\(path): \(problem)" }
}

/// A coding key for any string, to list the keys a mapping really has.
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(stringValue: String) { self.stringValue = stringValue }
    init(intValue: Int) {
        stringValue = String(intValue)
        self.intValue = intValue
    }
}

func keyPath(_ codingPath: [any CodingKey]) -> String {
    codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
        .joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
}

extension Decoder {
    /// Throws for any key of this mapping that `Keys` does not list, naming the valid ones.
    func rejectUnknownKeys<Keys: CodingKey & CaseIterable>(_ keys: Keys.Type) throws {
        let valid = Keys.allCases.map(\.stringValue)
        for key in try container(keyedBy: AnyKey.self).allKeys where !valid.contains(key.stringValue) {
            throw RecipeError(path: keyPath(codingPath + [key]),
                              problem: "unknown key; expected one of \(valid.joined(separator: ", "))")
        }
    }

    /// The key path of this decoder, for messages about the value as a whole.
    var path: String { keyPath(codingPath) }
}

extension KeyedDecodingContainer {
    /// Decodes a schedule; a schedule's own error gets this key's full path in front.
    func decodeSchedule(forKey key: Key) throws -> Schedule? {
        do {
            return try decodeIfPresent(Schedule.self, forKey: key)
        } catch let error as ScheduleError {
            throw RecipeError(path: keyPath(codingPath + [key]) + (error.path.isEmpty ? "" : "." + error.path),
                              problem: error.problem)
        }
    }
}

/// Turns Swift's decoding errors into key-path messages.
func recipeError(from error: any Error) -> any Error {
    switch error {
    case let error as DecodingError:
        switch error {
        case let .keyNotFound(key, context):
            return RecipeError(path: keyPath(context.codingPath + [key]), problem: "is required")
        case let .typeMismatch(type, context):
            return RecipeError(path: keyPath(context.codingPath), problem: "expected \(describe(type))")
        case let .valueNotFound(type, context):
            return RecipeError(path: keyPath(context.codingPath), problem: "expected \(describe(type)), found nothing")
        case let .dataCorrupted(context):
            return RecipeError(path: keyPath(context.codingPath), problem: context.debugDescription)
        @unknown default:
            return error
        }
    default:
        return error
    }
}

private func describe(_ type: Any.Type) -> String {
    switch type {
    case is Double.Type, is Float.Type: return "a number"
    case is Int.Type, is UInt64.Type: return "a whole number"
    case is String.Type: return "text"
    case is Bool.Type: return "true or false"
    default:
        let name = String(describing: type)
        return name.hasPrefix("Array") ? "a list" : name.hasPrefix("Dictionary") ? "a mapping" : "a mapping (\(name))"
    }
}

/// Recipe text with `--set key.path=value` overrides applied, in the form checkpoints store.
public struct RecipeSource: Equatable, Sendable {
    /// The effective recipe as YAML: what was read, with every override applied.
    public let text: String
    /// Where it came from, for messages (a file path, or "<inline>").
    public let origin: String

    /// - Parameters:
    ///   - overrides: `key.path=value` strings; the value is YAML (`5e-4`, `[0, 1]`, `{cyclical: {easy: 1, hard: 2}}`);
    ///     `[i]` picks an existing list element (`distill.losses[1].temperature=4`).
    public init(text: String, origin: String, overrides: [String] = []) throws {
        self.origin = origin
        guard !overrides.isEmpty else {
            self.text = text
            return
        }
        var root: Node
        do {
            root = try Yams.compose(yaml: text) ?? Node.mapping(Node.Mapping([]))
        } catch {
            throw RecipeError(path: "", problem: "\(origin) is not valid YAML: \(error)")
        }
        for override in overrides {
            guard let equals = override.firstIndex(of: "="), equals != override.startIndex else {
                throw RecipeError(path: "", problem: "--set '\(override)': expected key.path=value")
            }
            let path = String(override[..<equals])
            let valueText = String(override[override.index(after: equals)...])
            let value: Node
            do {
                value = try Yams.compose(yaml: valueText) ?? Node("")
            } catch {
                throw RecipeError(path: path, problem: "--set value '\(valueText)' is not valid YAML")
            }
            root = try Self.setting(value, at: try Self.pathElements(path)[...], in: root, pathSoFar: "")
        }
        self.text = try Yams.serialize(node: root)
    }

    public init(contentsOf path: String, overrides: [String] = []) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw RecipeError(path: "", problem: "cannot read recipe file '\(path)'")
        }
        try self.init(text: text, origin: path, overrides: overrides)
    }

    /// One step of a `--set` path: a mapping key or a list index.
    private enum PathElement {
        case key(String)
        case index(Int)
    }

    /// `a.b[2].c` → key a, key b, index 2, key c.
    private static func pathElements(_ path: String) throws -> [PathElement] {
        var elements: [PathElement] = []
        for part in path.split(separator: ".", omittingEmptySubsequences: false) {
            var rest = Substring(part)
            let name = rest.prefix { $0 != "[" }
            guard !name.isEmpty else { throw RecipeError(path: path, problem: "--set: empty key in the path") }
            elements.append(.key(String(name)))
            rest = rest.dropFirst(name.count)
            while rest.first == "[" {
                guard let close = rest.firstIndex(of: "]"), let index = Int(rest[rest.index(after: rest.startIndex)..<close]) else {
                    throw RecipeError(path: path, problem: "--set: expected [index] with a whole number")
                }
                elements.append(.index(index))
                rest = rest[rest.index(after: close)...]
            }
            guard rest.isEmpty else { throw RecipeError(path: path, problem: "--set: unexpected '\(rest)'") }
        }
        return elements
    }

    private static func setting(_ value: Node, at path: ArraySlice<PathElement>, in node: Node, pathSoFar: String) throws -> Node {
        guard let element = path.first else { return value }
        switch element {
        case let .key(key):
            let here = pathSoFar.isEmpty ? key : pathSoFar + "." + key
            var mapping: Node.Mapping
            switch node {
            case let .mapping(existing): mapping = existing
            case .scalar where node.string?.isEmpty ?? false: mapping = Node.Mapping([])
            default:
                // A constant knob being replaced by a schedule, or the reverse, is fine; anything deeper
                // into a scalar is a typo.
                throw RecipeError(path: here, problem: "--set goes inside '\(pathSoFar)', which is not a mapping")
            }
            let child = mapping[Node(key)] ?? Node("")
            mapping[Node(key)] = try setting(value, at: path.dropFirst(), in: child, pathSoFar: here)
            return .mapping(mapping)
        case let .index(index):
            let here = pathSoFar + "[\(index)]"
            guard case var .sequence(sequence) = node, sequence.indices.contains(index) else {
                throw RecipeError(path: here, problem: "--set: '\(pathSoFar)' has no element \(index)")
            }
            sequence[index] = try setting(value, at: path.dropFirst(), in: sequence[index], pathSoFar: here)
            return .sequence(sequence)
        }
    }

    /// Decodes the recipe text into `type`, turning every problem into a key-path message.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let node: Node
        do {
            node = try Yams.compose(yaml: text) ?? Node.mapping(Node.Mapping([]))
        } catch {
            // Yams' description carries the line, the column and the offending text.
            throw RecipeError(path: "", problem: "\(origin) is not valid YAML: \(error)")
        }
        do {
            return try YAMLDecoder().decode(type, from: node)
        } catch let error as RecipeError {
            throw error
        } catch {
            throw recipeError(from: error)
        }
    }
}
