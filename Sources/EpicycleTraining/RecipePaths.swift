import Foundation
import Yams

/// The recipe keys whose values name files or folders, and where their relative values point.
///
/// A relative path in a recipe is relative to the folder of the file that holds the recipe — the
/// recipe or experiment file, a comparison run's `recipe.yaml`, the folder of a checkpoint that stores
/// it — as in a Compose file or a Cargo manifest, so that a folder of recipes, checkpoints and results
/// can move as a whole. A path given on the command line (`--set`, `--teacher`) is relative to the
/// working folder, as any shell argument. `output` is not one of these keys: it names where a run
/// writes, inside the working folder.
public enum RecipePaths {
    /// The key paths (mapping keys from the top) of every path-valued setting.
    public static let keyPaths: [[String]] = ["pretrain", "finetune"].flatMap { phase in
        [[phase, "data", "folder"], [phase, "unlabeled", "folder"], [phase, "unlabeled", "teacher"]]
    } + [["distill", "teacher"]]

    /// Whether `keyPath` is a path-valued setting.
    static func isPath(_ keyPath: [String]) -> Bool { keyPaths.contains(keyPath) }

    /// Whether a path-valued setting lies at or under `keyPath`.
    static func holdsPaths(_ keyPath: [String]) -> Bool { keyPaths.contains { $0.starts(with: keyPath) } }

    /// `node` (found at `keyPath`) with every relative path value under it rewritten by `rewrite`.
    static func rewriting(_ node: Node, at keyPath: [String], _ rewrite: (String) -> String) -> Node {
        if isPath(keyPath) {
            guard case let .scalar(scalar) = node, !scalar.string.isEmpty, !scalar.string.hasPrefix("/") else { return node }
            return .scalar(Node.Scalar(rewrite(scalar.string), scalar.tag, scalar.style))
        }
        guard holdsPaths(keyPath), case let .mapping(mapping) = node else { return node }
        let pairs = mapping.map { key, value in
            (key, key.string.map { rewriting(value, at: keyPath + [$0], rewrite) } ?? value)
        }
        return .mapping(Node.Mapping(pairs, mapping.tag, mapping.style))
    }

    /// `node` (found at `keyPath`) with its relative paths, relative to `from`, made relative to `to`.
    static func relocating(_ node: Node, at keyPath: [String] = [], from: String, to: String) -> Node {
        guard from != to else { return node }
        return rewriting(node, at: keyPath) { relativePath(from: to, to: absolutePath(of: $0, in: from)) }
    }

    /// `node` with its relative paths, relative to `folder`, made absolute.
    static func absolutizing(_ node: Node, in folder: String) -> Node {
        rewriting(node, at: []) { absolutePath(of: $0, in: folder) }
    }

    /// `path` (relative to `folder`, or absolute) as an absolute path without `.` or `..` steps.
    /// Lexical: a symbolic link is not followed (Foundation's `standardizedFileURL` may follow one, and
    /// a link inside the folder must keep pointing from inside it).
    public static func absolutePath(of path: String, in folder: String) -> String {
        var parts: [Substring] = []
        for part in ((path.hasPrefix("/") ? "" : folder + "/") + path).split(separator: "/") {
            switch part {
            case ".": continue
            case "..": _ = parts.popLast()
            default: parts.append(part)
            }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// The absolute folder of `file` (relative to the working folder, or absolute).
    public static func folder(of file: String) -> String {
        absolutePath(of: file + "/..", in: workingFolder)
    }

    /// The working folder, absolute.
    public static var workingFolder: String { absolutePath(of: FileManager.default.currentDirectoryPath, in: "/") }

    /// `target` (absolute) as a path relative to `base` (an absolute folder): `../../x/y`. When the two
    /// share nothing but the root, `target` stays absolute: such a file does not move with the folder.
    public static func relativePath(from base: String, to target: String) -> String {
        let baseParts = absolutePath(of: base, in: "/").split(separator: "/")
        let targetParts = absolutePath(of: target, in: "/").split(separator: "/")
        let shared = zip(baseParts, targetParts).prefix { $0 == $1 }.count
        guard shared > 0 else { return absolutePath(of: target, in: "/") }
        let parts = Array(repeating: "..", count: baseParts.count - shared) + targetParts.dropFirst(shared).map(String.init)
        return parts.isEmpty ? "." : parts.joined(separator: "/")
    }

    /// `resolved` (a decoded recipe written out, its paths absolute) with each path that `written`
    /// gives relative put back as written.
    static func restoringRelativePaths(of written: Node, in resolved: Node) -> Node {
        var result = resolved
        for keyPath in keyPaths {
            guard let value = value(at: keyPath, in: written), let text = value.string, !text.isEmpty, !text.hasPrefix("/") else { continue }
            result = replacing(at: keyPath[...], in: result, with: value)
        }
        return result
    }

    private static func value(at keyPath: [String], in node: Node) -> Node? {
        keyPath.reduce(Optional(node)) { node, key in node?.mapping?[Node(key)] }
    }

    private static func replacing(at keyPath: ArraySlice<String>, in node: Node, with value: Node) -> Node {
        guard let key = keyPath.first else { return value }
        guard case let .mapping(mapping) = node, let child = mapping[Node(key)] else { return node }
        var copy = mapping
        copy[Node(key)] = replacing(at: keyPath.dropFirst(), in: child, with: value)
        return .mapping(copy)
    }
}
