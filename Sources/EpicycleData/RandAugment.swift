#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import EpicycleRuntime

/// The operations of RandAugment (Cubuk et al. 2020, "RandAugment: Practical automated data
/// augmentation with a reduced search space", table of transformations) in the ranges FixMatch's
/// strong augmentation draws them from (Sohn et al. 2020, appendix, table 12), without `color`, which
/// only grey images would not see. Each takes a magnitude m in [0, 1]: 0 leaves the image exactly as
/// it is, 1 is the range's end. Operations without a magnitude of their own (auto-contrast, equalize)
/// blend the original towards their result by m.
public enum RandAugmentOperation: String, CaseIterable, Sendable {
    case identity, autoContrast = "auto_contrast", equalize, rotate, solarize, posterize, contrast, brightness
    case sharpness, shearX = "shear_x", shearY = "shear_y", translateX = "translate_x", translateY = "translate_y"

    /// Applies the operation to `workspace.current` at magnitude m; signed ranges draw their sign
    /// from `random`. Geometric operations fill uncovered pixels with black (0), as the others do.
    func apply(to workspace: AugmentationWorkspace, magnitude m: Float, random: inout RandomGenerator) {
        let (H, W, C) = (workspace.height, workspace.width, workspace.channels)
        let signed = random.nextUniform() < 0.5 ? -m : m
        let image = workspace.current
        switch self {
        case .identity:
            break
        case .autoContrast:
            autoContrastImage(image, H: H, W: W, C: C, blend: m)
        case .equalize:
            equalizeImage(image, H: H, W: W, C: C, blend: m)
        case .rotate:  // ±30°
            let angle = signed * 30 * .pi / 180
            workspace.warp(forward: (cosf(angle), -sinf(angle), sinf(angle), cosf(angle)))
        case .solarize:  // invert every value ≥ 256·(1 − m)
            solarizeImage(image, count: H * W * C, threshold: 256 * (1 - m))
        case .posterize:  // keep 8 − round(4m) bits
            posterizeImage(image, count: H * W * C, bits: 8 - Int((4 * m).rounded()))
        case .contrast:  // factor 1 ± 0.9
            adjustBrightnessContrast(image, H: H, W: W, C: C, brightness: 1, contrast: 1 + 0.9 * signed)
        case .brightness:
            adjustBrightnessContrast(image, H: H, W: W, C: C, brightness: 1 + 0.9 * signed, contrast: 1)
        case .sharpness:
            sharpenImage(image, workspace.spare, H: H, W: W, C: C, factor: 1 + 0.9 * signed)
            workspace.swap()
        case .shearX:  // ±0.3 of the height per row
            workspace.warp(forward: (1, 0.3 * signed, 0, 1))
        case .shearY:
            workspace.warp(forward: (1, 0, 0.3 * signed, 1))
        case .translateX, .translateY:  // ±30 % of the side
            let along = self == .translateX ? W : H
            let shift = Int((0.3 * signed * Float(along)).rounded())
            guard shift != 0 else { return }
            shiftImage(image, workspace.spare, H: H, W: W, C: C, dy: self == .translateY ? -shift : 0,
                       dx: self == .translateX ? -shift : 0, fill: 0)
            workspace.swap()
        }
    }
}

extension AugmentationWorkspace {
    /// Resamples `current` under the forward map `m` = (a, b, c, d), [[a, b], [c, d]] on (x, y) offsets
    /// from the centre, bilinearly with black outside.
    func warp(forward m: (Float, Float, Float, Float)) {
        let determinant = m.0 * m.3 - m.1 * m.2
        let inverse = (m.3 / determinant, -m.1 / determinant, -m.2 / determinant, m.0 / determinant)
        affineImage(current, spare, H: height, W: width, C: channels, inverse: inverse, fill: 0)
        swap()
    }
}
