/// What a model is: enough to rebuild it, stored as YAML text in every checkpoint.
///
/// Architectures are named as in the papers' tables and RepDistiller: `resnet20`, `resnet8x4`,
/// `wrn-16-2`, `plain-cnn`, `vgg13`, `mobilenetv2x0.5` (RepDistiller's `mobile_half`).
public struct ModelSpec: Codable, Equatable, Sendable {
    public enum Shortcut: String, Codable, Sendable {
        /// Parameter-free: subsample and zero-pad channels (He et al. 2016, §4.2, option A).
        case a = "A"
        /// 1×1 convolution + batch norm where the shape changes (option B).
        case b = "B"
    }

    public var architecture: String
    public var inputChannels: Int
    public var numClasses: Int
    public var shortcut: Shortcut
    /// Dropout between the convolutions of a wide-ResNet block (Zagoruyko & Komodakis use 0.3).
    public var dropout: Float

    public init(architecture: String, inputChannels: Int, numClasses: Int, shortcut: Shortcut = .a, dropout: Float = 0) {
        self.architecture = architecture
        self.inputChannels = inputChannels
        self.numClasses = numClasses
        self.shortcut = shortcut
        self.dropout = dropout
    }

    enum CodingKeys: String, CodingKey {
        case architecture, inputChannels = "input_channels", numClasses = "num_classes", shortcut, dropout
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        architecture = try container.decode(String.self, forKey: .architecture)
        inputChannels = try container.decodeIfPresent(Int.self, forKey: .inputChannels) ?? 1
        numClasses = try container.decodeIfPresent(Int.self, forKey: .numClasses) ?? 10
        shortcut = try container.decodeIfPresent(Shortcut.self, forKey: .shortcut) ?? .a
        dropout = try container.decodeIfPresent(Float.self, forKey: .dropout) ?? 0
    }

    /// The parsed architecture family and its size parameters.
    public enum Family: Equatable, Sendable {
        /// Depth 6n+2; width multiplier W gives stages 16W/32W/64W.
        case resNet(depth: Int, width: Int)
        /// WRN-d-k: depth 6n+4, widening factor k.
        case wideResNet(depth: Int, widen: Int)
        case plainCNN(width: Int)
        /// VGG-8/11/13 with batch norm (RepDistiller's CIFAR VGG); channels scaled by `width`.
        case vgg(depth: Int, width: Double)
        /// MobileNetV2 for CIFAR, expansion 6, width multiplier `width`.
        case mobileNetV2(width: Double)
    }

    /// The largest sizes a spec may name, far beyond any real network and small enough that no size
    /// arithmetic on them overflows. Whether a model fits this machine is `memoryEstimate`'s question.
    public enum Limits {
        public static let nameLength = 60
        public static let depth = 10_000
        /// ResNet width multiplier, WRN widening factor k, plain-CNN width.
        public static let width = 100_000
        /// VGG and MobileNetV2 width multiplier (a decimal such as 0.5).
        public static let widthMultiplier = 64.0
        public static let inputChannels = 1024
        public static let classes = 100_000
    }

    public func family() throws -> Family {
        // Checked before the name is echoed in any message.
        guard architecture.prefix(Limits.nameLength + 1).count <= Limits.nameLength else {
            throw RuntimeError.invalidSpec("the architecture name is longer than \(Limits.nameLength) characters; expected a name such as resnet20")
        }
        let name = architecture.lowercased()
        func numbers(after prefix: String, separator: Character) -> [Int]? {
            guard name.hasPrefix(prefix) else { return nil }
            let parts = name.dropFirst(prefix.count).split(separator: separator, omittingEmptySubsequences: false)
            let values = parts.map { Int($0) }
            return values.contains(nil) ? nil : values.map { $0! }
        }
        if name.hasPrefix("resnet"), let parts = numbers(after: "resnet", separator: "x"), (1...2).contains(parts.count) {
            let depth = parts[0], width = parts.count == 2 ? parts[1] : 1
            guard depth >= 8, (depth - 2) % 6 == 0, width >= 1 else {
                throw RuntimeError.invalidSpec("'\(architecture)': ResNet depth must be 6n+2 ≥ 8 (8, 14, 20, 32, 44, 56, 110) and the width ≥ 1")
            }
            try checkSize(depth: depth, width: width)
            return .resNet(depth: depth, width: width)
        }
        if let parts = numbers(after: "wrn-", separator: "-"), parts.count == 2 {
            guard parts[0] >= 10, (parts[0] - 4) % 6 == 0, parts[1] >= 1 else {
                throw RuntimeError.invalidSpec("'\(architecture)': WRN depth must be 6n+4 ≥ 10 (10, 16, 22, 28, 40) and k ≥ 1")
            }
            try checkSize(depth: parts[0], width: parts[1])
            return .wideResNet(depth: parts[0], widen: parts[1])
        }
        if name == "plain-cnn" { return .plainCNN(width: 1) }
        if let parts = numbers(after: "plain-cnnx", separator: "x"), parts.count == 1, parts[0] >= 1 {
            try checkSize(depth: 3, width: parts[0])
            return .plainCNN(width: parts[0])
        }
        if let match = name.wholeMatch(of: /vgg(\d+)(?:x([^x]+))?/) {
            let depth = Int(match.1) ?? 0
            guard vggStages[depth] != nil else {
                throw RuntimeError.invalidSpec("'\(architecture)': VGG depth must be 8, 11 or 13")
            }
            return .vgg(depth: depth, width: try widthMultiplier(match.2, smallestChannels: 64))
        }
        if let match = name.wholeMatch(of: /mobilenetv2(?:x([^x]+))?/) {
            return .mobileNetV2(width: try widthMultiplier(match.1, smallestChannels: 16))
        }
        throw RuntimeError.invalidSpec("unknown architecture '\(architecture)'; expected resnet<6n+2>[x<width>] (e.g. resnet20, resnet8x4), wrn-<depth>-<k> (e.g. wrn-16-2), plain-cnn, vgg<8|11|13>[x<width>] or mobilenetv2[x<width>] (e.g. mobilenetv2x0.5)")
    }

    // A decimal width multiplier after the name's `x` (1 without one), large enough that the
    // narrowest layer (`smallestChannels` at width 1) keeps at least one channel.
    private func widthMultiplier(_ text: Substring?, smallestChannels: Int) throws -> Double {
        guard let text else { return 1 }
        let minimum = 1 / Double(smallestChannels)
        guard let width = Double(text), width.isFinite, width >= minimum, width <= Limits.widthMultiplier else {
            throw RuntimeError.invalidSpec("'\(architecture)': the width multiplier after 'x' must be a number from \(minimum) to \(Int(Limits.widthMultiplier)), e.g. 0.5")
        }
        return width
    }

    private func checkSize(depth: Int, width: Int) throws {
        guard depth <= Limits.depth, width <= Limits.width else {
            throw RuntimeError.invalidSpec("'\(architecture)': depth must be at most \(Limits.depth) and the width at most \(Limits.width)")
        }
    }

    /// Checks every field, so a bad spec fails before any work starts.
    public func validate() throws {
        _ = try family()
        guard (1...Limits.inputChannels).contains(inputChannels) else {
            throw RuntimeError.invalidSpec("input_channels must be from 1 to \(Limits.inputChannels), got \(inputChannels)")
        }
        guard (2...Limits.classes).contains(numClasses) else {
            throw RuntimeError.invalidSpec("num_classes must be from 2 to \(Limits.classes), got \(numClasses)")
        }
        guard (0..<1).contains(dropout) else { throw RuntimeError.invalidSpec("dropout must be in [0, 1), got \(dropout)") }
    }
}
