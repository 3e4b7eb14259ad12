import EpicycleRuntime
import Foundation

/// Golden values written by `scripts/make_golden_fixtures.py`: a JSON manifest naming each tensor's
/// shape and offset, and a little-endian float32 blob.
public struct Fixture {
    public struct Manifest: Decodable {
        public struct Entry: Decodable {
            public let shape: [Int]
            public let offset: Int
        }
        public struct SGDSettings: Decodable {
            public let lr: Float
            public let momentum: Float
            public let weightDecay: Float
            enum CodingKeys: String, CodingKey { case lr, momentum, weightDecay = "weight_decay" }
        }
        public let architecture: String
        public let shortcut: String
        public let inputChannels: Int
        public let numClasses: Int
        public let capture: [String]
        public let sgd: SGDSettings
        public let tensors: [String: Entry]

        enum CodingKeys: String, CodingKey {
            case architecture, shortcut, inputChannels = "input_channels", numClasses = "num_classes", capture, sgd, tensors
        }
    }

    public let manifest: Manifest
    private let tensors: GoldenTensors

    /// - Parameter url: the manifest; the blob sits beside it with the extension `.bin`.
    public init(manifest url: URL) throws {
        manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: url))
        tensors = try GoldenTensors(manifest: url)
    }

    /// Names of the stored tensors that start with `prefix`, with the prefix removed.
    public func names(under prefix: String) -> [String] { tensors.names(under: prefix) }

    public subscript(name: String) -> Tensor? { tensors[name] }
}

/// Golden tensors in the same format without the model fields: a manifest with `tensors` (name →
/// shape and offset) and optional numeric `settings`, as `scripts/make_distillation_fixtures.py` writes.
public struct GoldenTensors {
    struct Manifest: Decodable {
        let tensors: [String: Fixture.Manifest.Entry]
        let settings: [String: Double]?
    }

    private let entries: [String: Fixture.Manifest.Entry]
    private let scalars: [Float]
    /// The case's numbers, e.g. "temperature".
    public let settings: [String: Double]

    /// - Parameter url: the manifest; the blob sits beside it with the extension `.bin`.
    public init(manifest url: URL) throws {
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: url))
        entries = manifest.tensors
        settings = manifest.settings ?? [:]
        let blob = try Data(contentsOf: url.deletingPathExtension().appendingPathExtension("bin"))
        scalars = blob.withUnsafeBytes { raw in
            (0..<blob.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
    }

    /// Names of the stored tensors that start with `prefix`, with the prefix removed.
    public func names(under prefix: String) -> [String] {
        entries.keys.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }.sorted()
    }

    public subscript(name: String) -> Tensor? {
        guard let entry = entries[name] else { return nil }
        let count = entry.shape.reduce(1, *)
        return Tensor(shape: entry.shape, scalars: Array(scalars[entry.offset..<entry.offset + count]))
    }
}
