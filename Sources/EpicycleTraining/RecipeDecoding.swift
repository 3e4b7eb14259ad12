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

/// The bounds of every number and size a recipe, a flag or `--set` carries (README, "Recipes"): far
/// beyond any real run, and small enough that nothing sized or counted from them can overflow or hang.
/// Schedule parameters have theirs in `ScheduleLimits`, architectures in `ModelSpec.Limits`.
public enum RecipeLimits {
    public static let epochs = 1...100_000
    public static let batchSize = 1...65_536
    /// `threads:`, `--threads` and `compare --jobs`.
    public static let threads = 1...1024
    public static let checkpointEvery = 0...100_000
    /// `first`, `per_class` and `validation` of a data section.
    public static let samples = 0...100_000_000
    /// Class numbers in `classes` (so also how many a list can hold).
    public static let classLabel = 0...99_999
    /// Entries of `freeze`, loss terms of `distill`, seeds and variants of a comparison.
    public static let listLength = 1000
    /// Runs of one comparison (variants × seeds).
    public static let runs = 10_000
    /// A run or variant name.
    public static let nameLength = 100
    /// Paths (`output`, `folder`, `distill.teacher`) and other text.
    public static let textLength = 4096
    /// Learning rate, weight decay, temperature and clipping thresholds.
    public static let knobMagnitude = 1e6
    /// A recipe or experiment file.
    public static let fileBytes = 4 << 20
    /// Values (numbers, texts, list entries, mappings) in one recipe, counted after YAML aliases.
    public static let values = 100_000
}

/// "must be from 1 to 100000, got 9223372036854775807", the one wording of a range error.
func outside(_ range: ClosedRange<Int>, got value: String) -> String {
    "must be a whole number from \(range.lowerBound) to \(range.upperBound), got \(value)"
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
    codingPath.map { $0.intValue.map { "[\($0)]" } ?? shortenedForMessage($0.stringValue) }
        .joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
}

/// A top-level recipe section of an objective outside this module (distillation's `distill:`): the
/// recipe accepts it only when decoded for it (`RecipeSource.decodeRecipe(sections:)`), and the
/// objective reads it back with `Recipe.section(_:)`. Its decoder should name key paths in its errors
/// (`RecipeError`, with the helpers on `Decoder` and `KeyedDecodingContainer` here).
/// It encodes itself with every default written out, for the run folder's resolved `recipe.yaml`.
public protocol RecipeSection: Codable, Sendable {
    /// The section's top-level key, e.g. `distill`.
    static var key: String { get }
}

/// Which objective sections a recipe is decoded with (`Decoder.userInfo[.recipeSections]`).
struct RecipeSectionTypes {
    var types: [any RecipeSection.Type] = []
    /// Accept, unread, any top-level key that is neither the recipe's nor one of `types`.
    var ignoresOthers = false
}

extension CodingUserInfoKey {
    static let recipeSections = CodingUserInfoKey(rawValue: "epicycle.recipeSections")!
}

extension Decoder {
    /// Throws for any key of this mapping that neither `Keys` nor `besides` lists, naming the valid ones.
    public func rejectUnknownKeys<Keys: CodingKey & CaseIterable>(_ keys: Keys.Type, besides others: [String] = []) throws {
        let valid = Keys.allCases.map(\.stringValue) + others
        for key in try container(keyedBy: AnyKey.self).allKeys where !valid.contains(key.stringValue) {
            throw RecipeError(path: keyPath(codingPath + [key]),
                              problem: "unknown key; expected one of \(valid.joined(separator: ", "))")
        }
    }

    /// The key path of this decoder, for messages about the value as a whole.
    public var path: String { keyPath(codingPath) }
}

extension KeyedDecodingContainer {
    /// What the recipe holds under `key`, for messages: a number, 'text', "a list", "a mapping".
    func summary(forKey key: Key) -> String {
        (try? decode(ValueSummary.self, forKey: key))?.text ?? "a value of another type"
    }

    /// Text, or nil when absent; longer than `maxLength` characters is an error.
    public func text(forKey key: Key, maxLength: Int = RecipeLimits.textLength) throws -> String? {
        guard contains(key), (try? decodeNil(forKey: key)) != true else { return nil }
        guard let value = try? decode(String.self, forKey: key) else {
            throw RecipeError(path: keyPath(codingPath + [key]), problem: "expected text, got \(summary(forKey: key))")
        }
        guard value.prefix(maxLength + 1).count <= maxLength else {
            throw RecipeError(path: keyPath(codingPath + [key]),
                              problem: "must be at most \(maxLength) characters, got '\(shortenedForMessage(value))'")
        }
        return value
    }

    /// A knob by its recipe name (`learning_rate`, `batch_size`, …), or nil when absent.
    func knobName(forKey key: Key) throws -> Knob? {
        guard let name = try text(forKey: key) else { return nil }
        guard let knob = Knob(rawValue: name) else {
            throw RecipeError(path: keyPath(codingPath + [key]),
                              problem: "must name a knob (\(Knob.allCases.map(\.rawValue).joined(separator: ", "))), got '\(shortenedForMessage(name))'")
        }
        return knob
    }

    /// A whole number in `range`, or nil when absent.
    func wholeNumber(forKey key: Key, in range: ClosedRange<Int>) throws -> Int? {
        guard contains(key), (try? decodeNil(forKey: key)) != true else { return nil }
        let value = try? decode(Int.self, forKey: key)
        guard let value, range.contains(value) else {
            throw RecipeError(path: keyPath(codingPath + [key]), problem: outside(range, got: value.map(String.init) ?? summary(forKey: key)))
        }
        return value
    }

    /// A list of at most `maxCount` elements, or nil when absent. Text or number elements of the
    /// wrong type are reported by their index, e.g. `pretrain.data.classes[2]: expected a whole
    /// number, got 'x'`; mappings (loss terms) report their own errors.
    public func list<Element: Decodable>(of type: Element.Type, forKey key: Key, maxCount: Int) throws -> [Element]? {
        guard contains(key), (try? decodeNil(forKey: key)) != true else { return nil }
        guard var elements = try? nestedUnkeyedContainer(forKey: key) else {
            throw RecipeError(path: keyPath(codingPath + [key]), problem: "expected a list, got \(summary(forKey: key))")
        }
        if let count = elements.count, count > maxCount {
            throw RecipeError(path: keyPath(codingPath + [key]), problem: "must list at most \(maxCount) entries, got \(count)")
        }
        var values: [Element] = []
        while !elements.isAtEnd {
            let index = elements.currentIndex
            do {
                values.append(try elements.decode(Element.self))
            } catch let error as DecodingError where Element.self is String.Type || Element.self is Int.Type {
                guard case .typeMismatch = error else { throw error }
                let summary = (try? elements.decode(ValueSummary.self))?.text ?? "a value of another type"
                throw RecipeError(path: keyPath(codingPath + [key]) + "[\(index)]",
                                  problem: "expected \(describe(Element.self)), got \(summary)")
            }
        }
        return values
    }

    /// Decodes a schedule; a schedule's own error gets this key's full path in front.
    public func decodeSchedule(forKey key: Key) throws -> Schedule? {
        do {
            return try decodeIfPresent(Schedule.self, forKey: key)
        } catch let error as ScheduleError {
            throw RecipeError(path: keyPath(codingPath + [key]) + (error.path.isEmpty ? "" : "." + error.path),
                              problem: error.problem)
        }
    }
}

/// Turns Swift's decoding errors into key-path messages; `root`, the decoded document, lets a
/// message say what was found.
func recipeError(from error: any Error, root: Node? = nil) -> any Error {
    switch error {
    case let error as DecodingError:
        switch error {
        case let .keyNotFound(key, context):
            return RecipeError(path: keyPath(context.codingPath + [key]), problem: "is required")
        case let .typeMismatch(type, context):
            let found = root.flatMap { node(at: context.codingPath, in: $0) }.map { ", got " + summary(of: $0) } ?? ""
            return RecipeError(path: keyPath(context.codingPath), problem: "expected \(describe(type))\(found)")
        case let .valueNotFound(type, context):
            return RecipeError(path: keyPath(context.codingPath), problem: "expected \(describe(type)), found nothing")
        case let .dataCorrupted(context):
            return RecipeError(path: keyPath(context.codingPath), problem: shortenedForMessage(context.debugDescription))
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
    // Yams names the node kind it needed when a value has the wrong shape.
    case is Node.Scalar.Type: return "a single value (text or a number)"
    case is Node.Sequence.Type: return "a list"
    default:
        // Every other recipe type (a section, a schedule, a loss term) is read from a mapping.
        return String(describing: type).hasPrefix("Array") ? "a list" : "a mapping"
    }
}

/// What a value in a recipe is, for messages: a number, 'text' (shortened), "a list", "a mapping".
private func summary(of node: Node) -> String {
    switch node {
    case .scalar:
        let text = node.string ?? ""
        if node.null != nil || text.isEmpty { return "nothing (null)" }
        if node.int != nil || node.float != nil { return shortenedForMessage(text) }
        return "'\(shortenedForMessage(text))'"
    case .mapping: return "a mapping"
    case .sequence: return "a list"
    default: return "an alias"
    }
}

/// The node at a decoder's coding path, if the path leads anywhere.
private func node(at path: [any CodingKey], in root: Node) -> Node? {
    var current = root
    for key in path {
        if let index = key.intValue, let sequence = current.sequence, sequence.indices.contains(index) {
            current = sequence[index]
        } else if let child = current.mapping?[Node(key.stringValue)] {
            current = child
        } else {
            return nil
        }
    }
    return current
}

/// Whatever a recipe holds at one place, read through any decoder, as `summary(of:)` words it.
struct ValueSummary: Decodable {
    let text: String

    init(from decoder: any Decoder) throws {
        if let single = try? decoder.singleValueContainer() {
            if single.decodeNil() { text = "nothing (null)"; return }
            if let number = try? single.decode(Double.self) { text = formatNumber(number); return }
            if let flag = try? single.decode(Bool.self) { text = String(flag); return }
            if let value = try? single.decode(String.self) { text = "'\(shortenedForMessage(value))'"; return }
        }
        if (try? decoder.unkeyedContainer()) != nil { text = "a list"; return }
        if (try? decoder.container(keyedBy: AnyKey.self)) != nil { text = "a mapping"; return }
        text = "a value of another type"
    }
}

/// Reads a recipe or experiment file as UTF-8 text, bounded in size, with messages that name the
/// file and what is wrong with it (missing, unreadable, too large, not UTF-8 at byte N).
public func readRecipeText(_ path: String, kind: String = "recipe") throws -> String {
    let handle: FileHandle
    do {
        handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
    } catch {
        throw RecipeError(path: "", problem: "cannot read \(kind) file '\(path)': \(fileSystemReason(error))")
    }
    defer { try? handle.close() }
    let data: Data
    do {
        data = try handle.read(upToCount: RecipeLimits.fileBytes + 1) ?? Data()
    } catch {
        throw RecipeError(path: "", problem: "cannot read \(kind) file '\(path)': \(fileSystemReason(error))")
    }
    guard data.count <= RecipeLimits.fileBytes else {
        throw RecipeError(path: "", problem: "\(kind) file '\(path)' is larger than \(RecipeLimits.fileBytes >> 20) MiB; a \(kind) is a short YAML file")
    }
    if let offset = firstInvalidUTF8Offset(data) {
        throw RecipeError(path: "", problem: "\(kind) file '\(path)' is not UTF-8 text: invalid byte 0x\(String(data[data.startIndex + offset], radix: 16, uppercase: true)) at byte offset \(offset)")
    }
    return String(decoding: data, as: UTF8.self)
}

/// The offset of the first byte that does not belong to valid UTF-8, or nil for valid text.
func firstInvalidUTF8Offset(_ data: Data) -> Int? {
    var parser = Unicode.UTF8.ForwardParser()
    var bytes = data.makeIterator()
    var offset = 0
    while true {
        switch parser.parseScalar(from: &bytes) {
        case let .valid(scalar): offset += scalar.count
        case .emptyInput: return nil
        case .error: return offset
        }
    }
}

/// Throws when a document holds more than `RecipeLimits.values` values: a recipe is short, and YAML
/// aliases could otherwise make a tiny file expand into billions of nodes.
func checkSize(of root: Node, origin: String) throws {
    var budget = RecipeLimits.values
    func visit(_ node: Node) throws {
        budget -= 1
        guard budget >= 0 else {
            throw RecipeError(path: "", problem: "\(origin) holds more than \(RecipeLimits.values) values; a recipe is a short file (YAML aliases count once per use)")
        }
        switch node {
        case let .mapping(mapping):
            for (key, value) in mapping {
                try visit(key)
                try visit(value)
            }
        case let .sequence(sequence):
            for element in sequence { try visit(element) }
        default:
            break
        }
    }
    try visit(root)
}

/// Parses YAML text, with Yams' message (line, column and what it found) shortened, and bounded in
/// how many values it may hold.
public func composeRecipe(_ text: String, origin: String) throws -> Node {
    let root: Node
    do {
        root = try Yams.compose(yaml: text) ?? Node.mapping(Node.Mapping([]))
    } catch let YamlError.duplicatedKeysInMapping(duplicates, context) {
        // Yams' own message quotes the whole document.
        let keys = shortenedForMessage(duplicates.sorted().map { "'\($0)'" }.joined(separator: ", "))
        throw RecipeError(path: "", problem: "\(origin) gives the key \(keys) twice in the mapping at line \(context.mark.line)")
    } catch {
        // Yams' description: where (line, column), the problem, and the offending line.
        let message = "\(error)".split(separator: "\n").prefix(3).map { shortenedForMessage(String($0)) }.joined(separator: " ")
        throw RecipeError(path: "", problem: "\(origin) is not valid YAML: \(message)")
    }
    try checkSize(of: root, origin: origin)
    return root
}

/// Recipe text with `--set key.path=value` overrides applied, in the form checkpoints store.
public struct RecipeSource: Equatable, Sendable {
    /// The effective recipe as YAML: what was read, with every override applied.
    public let text: String
    /// Where it came from, for messages (a file path, or "<inline>").
    public let origin: String
    /// The absolute folder that the text's relative paths are relative to (`RecipePaths`): the
    /// recipe file's folder, else the working folder.
    public let folder: String

    /// - Parameters:
    ///   - folder: what the text's relative paths are relative to; nil: the working folder.
    ///   - overrides: `key.path=value` strings; the value is YAML (`5e-4`, `[0, 1]`, `{cyclical: {easy: 1, hard: 2}}`);
    ///     `[i]` picks an existing list element (`distill.losses[1].temperature=4`).
    ///   - overridesFolder: what the overrides' relative paths are relative to; nil: the working folder.
    public init(text: String, origin: String, folder: String? = nil, overrides: [String] = [], overridesFolder: String? = nil) throws {
        self.origin = origin
        self.folder = folder.map { RecipePaths.absolutePath(of: $0, in: RecipePaths.workingFolder) } ?? RecipePaths.workingFolder
        guard !overrides.isEmpty else {
            self.text = text
            return
        }
        let overridesFolder = overridesFolder.map { RecipePaths.absolutePath(of: $0, in: RecipePaths.workingFolder) } ?? RecipePaths.workingFolder
        var root = try composeRecipe(text, origin: origin)
        for override in overrides {
            guard let equals = override.firstIndex(of: "="), equals != override.startIndex else {
                throw RecipeError(path: "", problem: "--set '\(shortenedForMessage(override))': expected key.path=value")
            }
            let path = String(override[..<equals])
            guard path.count <= 200 else {
                throw RecipeError(path: "", problem: "--set '\(shortenedForMessage(path))': a key path is at most 200 characters")
            }
            let valueText = String(override[override.index(after: equals)...])
            let value: Node
            do {
                value = try Yams.compose(yaml: valueText) ?? Node("")
                try checkSize(of: value, origin: "--set \(path)")
            } catch let error as RecipeError {
                throw error
            } catch {
                throw RecipeError(path: path, problem: "--set value '\(shortenedForMessage(valueText))' is not valid YAML")
            }
            let elements = try Self.pathElements(path)
            let keyPath = elements.compactMap { element -> String? in if case let .key(key) = element { return key } else { return nil } }
            let relocated = keyPath.count == elements.count
                ? RecipePaths.relocating(value, at: keyPath, from: overridesFolder, to: self.folder) : value
            root = try Self.setting(relocated, at: elements[...], in: root, pathSoFar: "")
        }
        self.text = try Yams.serialize(node: root)
    }

    public init(contentsOf path: String, overrides: [String] = []) throws {
        try self.init(text: try readRecipeText(path), origin: path, folder: RecipePaths.folder(of: path), overrides: overrides)
    }

    /// This recipe with `overrides` (relative paths relative to the working folder) applied on top.
    public func overriding(_ overrides: [String]) throws -> RecipeSource {
        try RecipeSource(text: text, origin: origin, folder: folder, overrides: overrides)
    }

    /// The same recipe for a file in `newFolder`: its relative paths rewritten to point where they
    /// pointed from `folder`. The text is unchanged when nothing needs rewriting.
    public func relocated(to newFolder: String) throws -> RecipeSource {
        let target = RecipePaths.absolutePath(of: newFolder, in: RecipePaths.workingFolder)
        guard target != folder else { return self }
        let root = try composeRecipe(text, origin: origin)
        let moved = RecipePaths.relocating(root, from: folder, to: target)
        return try RecipeSource(text: moved == root ? text : Yams.serialize(node: moved), origin: origin, folder: target)
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
            guard rest.isEmpty else { throw RecipeError(path: path, problem: "--set: unexpected '\(shortenedForMessage(String(rest)))'") }
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

    /// Decodes the recipe with the sections of the objectives that will run it.
    /// - Parameters:
    ///   - sections: the objectives' sections the recipe may hold (see `RecipeSection`); any other
    ///     unknown key is an error.
    ///   - ignoringOtherSections: accept other unknown top-level keys unread, for a recipe a checkpoint
    ///     stores (it was checked when it ran, perhaps with an objective this caller does not load).
    public func decodeRecipe(sections: [any RecipeSection.Type] = [], ignoringOtherSections: Bool = false) throws -> Recipe {
        try decode(Recipe.self, userInfo: [.recipeSections: RecipeSectionTypes(types: sections, ignoresOthers: ignoringOtherSections)])
    }

    /// Decodes the recipe text into `type`, turning every problem into a key-path message.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try decode(type, userInfo: [:])
    }

    private func decode<T: Decodable>(_ type: T.Type, userInfo: [CodingUserInfoKey: Any]) throws -> T {
        // Decoded recipes hold absolute paths, so no program depends on the working folder.
        let node = RecipePaths.absolutizing(try composeRecipe(text, origin: origin), in: folder)
        do {
            return try YAMLDecoder().decode(type, from: node, userInfo: userInfo)
        } catch let error as RecipeError {
            throw error
        } catch {
            // A problem with the document as a whole (not a mapping at all) names the file instead.
            let converted = recipeError(from: error, root: node)
            if let problem = converted as? RecipeError, problem.path.isEmpty {
                throw RecipeError(path: "", problem: "\(origin): \(problem.problem)")
            }
            throw converted
        }
    }
}

/// `text` with the numbers Yams writes in scientific notation (`0e+0`, `3e-1`, `5e-4`) in Swift's
/// shortest decimal form (`0`, `0.3`, `0.0005`), which reads back to the same value.
func withPlainNumbers(_ text: String) throws -> String {
    guard let root = try Yams.compose(yaml: text) else { return text }
    return try Yams.serialize(node: plainNumbers(root))
}

private func plainNumbers(_ node: Node) -> Node {
    switch node {
    case let .scalar(scalar):
        guard scalar.style == .plain, Int(scalar.string) == nil, let value = Double(scalar.string), value.isFinite else { return node }
        let plain = value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : "\(value)"
        return .scalar(Node.Scalar(plain, scalar.tag, .plain))
    case let .mapping(mapping):
        return .mapping(Node.Mapping(mapping.map { ($0.key, plainNumbers($0.value)) }, mapping.tag, mapping.style))
    case let .sequence(sequence):
        return .sequence(Node.Sequence(sequence.map(plainNumbers), sequence.tag, sequence.style))
    default:
        return node
    }
}
