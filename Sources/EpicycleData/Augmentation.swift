#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import EpicycleRuntime
import Foundation

/// One augmentation with its settings at full strength. Every augmentation takes a strength in [0, 1]
/// that a schedule moves: strength 0 leaves images exactly unchanged (bitwise), strength 1 applies the
/// settings given here, and strengths between scale the magnitude (not the probability, except for the
/// flip) linearly. Geometric augmentations fill uncovered pixels with black (0), as torchvision pads.
public enum Augmentation: Sendable, Equatable {
    /// Random crop of the image padded by `round(s · padding)` pixels on every side, back to its own
    /// size (torchvision `RandomCrop(size, padding)`); the offset is uniform in each axis.
    case randomCrop(padding: Int = 4)
    /// Left–right mirror with probability `s / 2` (0.5 at full strength, the usual setting).
    case horizontalFlip
    /// Shift by a whole number of pixels, uniform in ±`s · maxFraction` of the width and height
    /// (torchvision `RandomAffine(translate:)`), rounded to the nearest pixel.
    case translation(maxFraction: Float = 0.125)
    /// Rotation uniform in ±`s · maxRotationDegrees`, scale uniform in 1 ± `s · maxScaleChange` and
    /// horizontal shear uniform in ±`s · maxShearDegrees`, about the centre, bilinear.
    case affine(maxRotationDegrees: Float = 15, maxScaleChange: Float = 0.1, maxShearDegrees: Float = 10)
    /// Cutout (DeVries & Taylor 2017): a square of side `round(s · maxSizeFraction · min(height, width))`
    /// centred at a uniform pixel (it may overlap the border), filled with the dataset mean, so it is 0
    /// after normalisation. The paper's 16 px on CIFAR's 32 px is `maxSizeFraction` 0.5.
    case cutout(maxSizeFraction: Float = 0.5)
    /// Brightness and contrast factors uniform in 1 ± `s · maxBrightness` and 1 ± `s · maxContrast`
    /// (torchvision `ColorJitter(brightness, contrast)`), brightness first, clamped to the pixel range.
    case colorJitter(maxBrightness: Float = 0.4, maxContrast: Float = 0.4)
    /// Additive normal noise with standard deviation `s · maxStandardDeviation` of the pixel range,
    /// clamped to the pixel range.
    case gaussianNoise(maxStandardDeviation: Float = 0.1)
    /// Mixup (Zhang et al. 2018), per batch as timm does: λ ~ Beta(α, α) with α = `s · maxAlpha`, every
    /// image becomes λ·x + (1 − λ)·x′ with x′ its partner in the reversed batch.
    case mixup(maxAlpha: Float = 0.8)
    /// CutMix (Yun et al. 2019), per batch as timm does: λ ~ Beta(α, α) with α = `s · maxAlpha`, a box of
    /// area (1 − λ) at a uniform centre is pasted from the partner in the reversed batch, and λ is then
    /// corrected to the box's clipped area.
    case cutmix(maxAlpha: Float = 1.0)
    /// RandAugment as FixMatch's strong augmentation uses it (Sohn et al. 2020, §2.3 and appendix:
    /// "RandAugment with random magnitude"): `operations` operations drawn uniformly, with replacement,
    /// from `RandAugmentOperation.allCases`, each at a magnitude uniform in [0, s].
    case randAugment(operations: Int = 2)

    /// The name used in policies given as text.
    public var name: String {
        switch self {
        case .randomCrop: "crop"
        case .horizontalFlip: "flip"
        case .translation: "translate"
        case .affine: "affine"
        case .cutout: "cutout"
        case .colorJitter: "jitter"
        case .gaussianNoise: "noise"
        case .mixup: "mixup"
        case .cutmix: "cutmix"
        case .randAugment: "randaugment"
        }
    }

    /// Every augmentation with its default settings, in the order a full policy applies them.
    public static let all: [Augmentation] = [
        .randomCrop(), .horizontalFlip, .translation(), .affine(), .colorJitter(), .gaussianNoise(),
        .cutout(), .mixup(), .cutmix(),
    ]

    /// Every augmentation a policy may name: `all`, and RandAugment, which stands for several of them
    /// and is the strong view of semi-supervised training rather than part of the full policy.
    public static let available: [Augmentation] = all + [.randAugment()]

    /// Mixup and CutMix work on whole batches; the others on one image at a time.
    public var mixesSamples: Bool {
        switch self {
        case .mixup, .cutmix: true
        default: false
        }
    }
}

/// A list of augmentations applied in turn with one shared strength: the per-image ones in the order
/// listed, then, on the whole normalised batch, mixup or CutMix (when both are listed, each batch uses
/// one of them with probability 1/2, as timm does).
public struct AugmentationPolicy: Sendable, Equatable, CustomStringConvertible {
    public var augmentations: [Augmentation]

    public init(_ augmentations: [Augmentation]) {
        self.augmentations = augmentations
    }

    /// No augmentation at all.
    public static let none = AugmentationPolicy([])
    /// Every augmentation with its default settings (`Augmentation.all`).
    public static let full = AugmentationPolicy(Augmentation.all)

    /// A policy from text: `none`, `full`, or comma-separated names with default settings, e.g.
    /// `crop,flip,cutout`. Names: crop, flip, translate, affine, cutout, jitter, noise, mixup, cutmix,
    /// randaugment.
    public init(parsing text: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if trimmed == "none" || trimmed.isEmpty { self = .none; return }
        if trimmed == "full" { self = .full; return }
        let valid = Augmentation.available.map(\.name)
        var chosen = [Augmentation]()
        for part in trimmed.split(separator: ",") {
            let name = part.trimmingCharacters(in: .whitespaces)
            guard let augmentation = Augmentation.available.first(where: { $0.name == name }) else {
                throw DataError.invalidRequest(
                    "unknown augmentation '\(name)' in policy '\(text)'; valid names: \(valid.joined(separator: ", ")), or 'full' or 'none'")
            }
            chosen.append(augmentation)
        }
        self.init(chosen)
    }

    public var description: String {
        augmentations.isEmpty ? "none" : augmentations.map(\.name).joined(separator: ",")
    }

    var batchAugmentations: [Augmentation] { augmentations.filter(\.mixesSamples) }

    /// Applies the per-image augmentations to one image of pixel values in [0, 255], laid out
    /// `[height, width, channels]`, at `strength` in [0, 1]. `channelMeans` (in [0, 1], one per channel)
    /// fill cutouts. The same generator always gives the same result.
    public func augmentImage(_ image: inout [Float], height: Int, width: Int, channels: Int, strength: Float,
                             channelMeans: [Float], generator: RandomGenerator) {
        precondition(image.count == height * width * channels, "augmentImage: \(image.count) values are not \(height)×\(width)×\(channels)")
        let workspace = AugmentationWorkspace(height: height, width: width, channels: channels)
        workspace.current.update(from: image, count: image.count)
        augmentImage(in: workspace, strength: strength, fill: channelMeans.map { $0 * 255 }, generator: generator)
        image = Array(UnsafeBufferPointer(start: workspace.current, count: image.count))
    }

    /// The per-image augmentations on `workspace.current`; every augmentation draws from its own stream
    /// derived from `generator` and its position in the policy.
    func augmentImage(in workspace: AugmentationWorkspace, strength: Float, fill cutoutFill: [Float],
                      generator: RandomGenerator) {
        precondition((0...1).contains(strength), "augmentation strength \(strength) is outside [0, 1]")
        guard strength > 0 else { return }
        let (H, W, C) = (workspace.height, workspace.width, workspace.channels)
        for (position, augmentation) in augmentations.enumerated() {
            var random = generator.derived(UInt64(position))
            func uniform(_ magnitude: Float) -> Float { magnitude * (2 * random.nextUniform() - 1) }
            func integer(_ bound: Int) -> Int { Int(random.next() % UInt64(2 * bound + 1)) - bound }
            switch augmentation {
            case let .randomCrop(padding):
                let pad = Int((strength * Float(padding)).rounded())
                guard pad > 0 else { continue }
                let dy = integer(pad), dx = integer(pad)
                shiftImage(workspace.current, workspace.spare, H: H, W: W, C: C, dy: dy, dx: dx, fill: 0)
                workspace.swap()
            case .horizontalFlip:
                if random.nextUniform() < strength / 2 { flipImageHorizontally(workspace.current, H: H, W: W, C: C) }
            case let .translation(maxFraction):
                let dy = Int(uniform(strength * maxFraction * Float(H)).rounded())
                let dx = Int(uniform(strength * maxFraction * Float(W)).rounded())
                guard dx != 0 || dy != 0 else { continue }
                shiftImage(workspace.current, workspace.spare, H: H, W: W, C: C, dy: -dy, dx: -dx, fill: 0)
                workspace.swap()
            case let .affine(maxRotationDegrees, maxScaleChange, maxShearDegrees):
                let angle = uniform(strength * maxRotationDegrees) * .pi / 180
                let scale = 1 + uniform(strength * maxScaleChange)
                let shear = uniform(strength * maxShearDegrees) * .pi / 180
                // Forward map M = scale · R(angle) · [[1, tan shear], [0, 1]].
                let (cosine, sine, slope) = (cosf(angle), sinf(angle), tanf(shear))
                workspace.warp(forward: (scale * cosine, scale * (cosine * slope - sine), scale * sine,
                                         scale * (sine * slope + cosine)))
            case let .cutout(maxSizeFraction):
                let side = Int((strength * maxSizeFraction * Float(min(H, W))).rounded())
                guard side > 0 else { continue }
                let centreY = Int(random.next() % UInt64(H)), centreX = Int(random.next() % UInt64(W))
                let top = centreY - side / 2, left = centreX - side / 2
                fillRectangle(workspace.current, H: H, W: W, C: C, top: top, left: left,
                              bottom: top + side, right: left + side, values: cutoutFill)
            case let .colorJitter(maxBrightness, maxContrast):
                let brightness = max(1 + uniform(strength * maxBrightness), 0)
                let contrast = max(1 + uniform(strength * maxContrast), 0)
                adjustBrightnessContrast(workspace.current, H: H, W: W, C: C, brightness: brightness, contrast: contrast)
            case let .gaussianNoise(maxStandardDeviation):
                addGaussianNoise(workspace.current, count: H * W * C,
                                 standardDeviation: strength * maxStandardDeviation * 255, generator: &random)
            case let .randAugment(operations):
                for _ in 0..<operations {
                    let operation = RandAugmentOperation.allCases[Int(random.next() % UInt64(RandAugmentOperation.allCases.count))]
                    operation.apply(to: workspace, magnitude: strength * random.nextUniform(), random: &random)
                }
            case .mixup, .cutmix:
                continue
            }
        }
    }

    /// Mixes a batch in place with mixup or CutMix at `strength`, pairing image i with image N − 1 − i.
    /// - Returns: λ, the weight of each image's own label (1 − λ goes to its partner's); `nil` when the
    ///   policy mixes nothing at this strength.
    func mixBatch(_ images: UnsafeMutablePointer<Float>, count: Int, height: Int, width: Int, channels: Int,
                  strength: Float, generator: RandomGenerator) -> Float? {
        let mixers = batchAugmentations
        guard strength > 0, !mixers.isEmpty, count > 1 else { return nil }
        var random = generator
        let mixer = mixers.count == 1 ? mixers[0] : mixers[random.nextUniform() < 0.5 ? 0 : 1]
        let imageSize = height * width * channels
        switch mixer {
        case let .mixup(maxAlpha) where maxAlpha > 0:
            let lambda = Float(sampleSymmetricBeta(alpha: Double(strength * maxAlpha), generator: &random))
            mixPairs(images, count: count, imageSize: imageSize, lambda: lambda)
            return lambda
        case let .cutmix(maxAlpha) where maxAlpha > 0:
            let lambda = sampleSymmetricBeta(alpha: Double(strength * maxAlpha), generator: &random)
            let box = cutmixBox(height: height, width: width, lambda: lambda, generator: &random)
            swapBoxes(images, count: count, height: height, width: width, channels: channels, box: box)
            return 1 - Float((box.bottom - box.top) * (box.right - box.left)) / Float(height * width)
        default:
            return nil
        }
    }
}

/// Two image buffers that per-image augmentations ping-pong between, allocated once per worker.
final class AugmentationWorkspace {
    let height: Int, width: Int, channels: Int
    private(set) var current: UnsafeMutablePointer<Float>  // [height, width, channels]
    private(set) var spare: UnsafeMutablePointer<Float>  // [height, width, channels]

    init(height: Int, width: Int, channels: Int) {
        (self.height, self.width, self.channels) = (height, width, channels)
        current = .allocate(capacity: height * width * channels)
        spare = .allocate(capacity: height * width * channels)
    }

    deinit {
        current.deallocate()
        spare.deallocate()
    }

    /// Makes the buffer a geometric kernel just wrote the current image.
    func swap() { (current, spare) = (spare, current) }

    /// Loads a stored image as float pixel values.
    func load(_ pixels: UnsafePointer<UInt8>) {
        for i in 0..<(height * width * channels) { current[i] = Float(pixels[i]) }
    }
}
