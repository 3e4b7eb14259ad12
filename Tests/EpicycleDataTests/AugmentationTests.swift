@testable import EpicycleData
import EpicycleRuntime
import Foundation
import Testing
import TestSupport

/// Eight random 12×10 RGB images in pixel units, each a whole number in [0, 255].
private func randomImages(channels: Int = 3, seed: UInt64 = 1) -> [[Float]] {
    var generator = RandomGenerator(seed: seed)
    return (0..<8).map { _ in (0..<(12 * 10 * channels)).map { _ in Float(generator.next() % 256) } }
}

private func augmented(_ image: [Float], _ augmentation: Augmentation, strength: Float, channels: Int = 3, key: UInt64) -> [Float] {
    var result = image
    AugmentationPolicy([augmentation]).augmentImage(&result, height: 12, width: 10, channels: channels, strength: strength,
                                                    channelMeans: [0.3, 0.4, 0.5].prefix(channels).map { $0 },
                                                    generator: RandomGenerator(seed: 7).derived(key))
    return result
}

private let perImage = Augmentation.available.filter { !$0.mixesSamples }

@Suite struct AugmentationTests {
    @Test(arguments: perImage)
    func strengthZeroIsBitwiseIdentity(augmentation: Augmentation) {
        for (key, image) in randomImages().enumerated() {
            let result = augmented(image, augmentation, strength: 0, key: UInt64(key))
            #expect(result.map(\.bitPattern) == image.map(\.bitPattern), "\(augmentation.name) changed image \(key) at strength 0")
        }
    }

    @Test(arguments: perImage)
    func strengthOneChangesImages(augmentation: Augmentation) {
        let images = randomImages()
        let changed = images.indices.filter { augmented(images[$0], augmentation, strength: 1, key: UInt64($0)) != images[$0] }
        // The flip happens with probability 1/2, the others (almost) always.
        #expect(changed.count >= (augmentation == .horizontalFlip ? 1 : 7), "\(augmentation.name) changed \(changed.count) of 8")
    }

    @Test(arguments: perImage)
    func sameStreamSameResultOtherStreamOtherResult(augmentation: Augmentation) {
        let image = randomImages()[0]
        #expect(augmented(image, augmentation, strength: 0.7, key: 3) == augmented(image, augmentation, strength: 0.7, key: 3))
        let variants = Set((0..<8).map { augmented(image, augmentation, strength: 1, key: UInt64($0)) })
        #expect(variants.count >= 2)
    }

    @Test func shiftMatchesHandBuiltCropOfPaddedImage() {
        // 3×4 grey image with values 1…12; dy = 1, dx = −2: output (y, x) reads input (y + 1, x − 2).
        let source: [Float] = (1...12).map(Float.init)
        var output = [Float](repeating: -1, count: 12)
        shiftImage(source, &output, H: 3, W: 4, C: 1, dy: 1, dx: -2, fill: 0)
        #expect(output == [0, 0, 5, 6,
                           0, 0, 9, 10,
                           0, 0, 0, 0])
        shiftImage(source, &output, H: 3, W: 4, C: 1, dy: 0, dx: 5, fill: 9)
        #expect(output == [Float](repeating: 9, count: 12))
    }

    @Test func flipMirrorsEachRowKeepingChannels() {
        var image: [Float] = [1, 2, 3, 4, 5, 6,  // one row of three RGB-less pairs (C = 2)
                              7, 8, 9, 10, 11, 12]
        flipImageHorizontally(&image, H: 2, W: 3, C: 2)
        #expect(image == [5, 6, 3, 4, 1, 2, 11, 12, 9, 10, 7, 8])
    }

    @Test func affineQuarterTurnMatchesExactRotation() {
        // A quarter turn about the centre of a 5×5 image lands on the pixel grid, so bilinear sampling
        // reproduces an exact rotation; cos(90°) is not exactly 0 in float, hence the small tolerance.
        let source: [Float] = (0..<25).map(Float.init)
        var output = [Float](repeating: 0, count: 25)
        // Output (x, y) samples source offset [[0, −1], [1, 0]]·(x − 2, y − 2): source x = 2 − (y − 2), source y = x.
        affineImage(source, &output, H: 5, W: 5, C: 1, inverse: (cosf(.pi / 2), -1, 1, cosf(.pi / 2)), fill: -1)
        var expected = [Float](repeating: 0, count: 25)
        for y in 0..<5 { for x in 0..<5 { expected[y * 5 + x] = source[x * 5 + (4 - y)] } }
        expectClose(output, expected, rtol: 0, atol: 1e-4, "rotated")
        // The identity map is exact, and a half-pixel shift averages neighbours (fill beyond the border).
        affineImage(source, &output, H: 5, W: 5, C: 1, inverse: (1, 0, 0, 1), fill: -1)
        #expect(output == source)
        affineImage(source, &output, H: 1, W: 5, C: 1, inverse: (0.75, 0, 0, 1), fill: 10)
        // Source x = 2 + 0.75·(x − 2): 0.5, 1.25, 2, 2.75, 3.5.
        expectClose(Array(output.prefix(5)), [0.5, 1.25, 2, 2.75, 3.5], rtol: 0, atol: 1e-6, "scaled")
    }

    @Test func cutoutFillsOneClippedSquareWithTheMean() {
        let image = [Float](repeating: 0, count: 12 * 10)
        for key in 0..<6 {
            // Side round(1 · 0.5 · 10) = 5, so 3 to 5 rows and columns after clipping.
            let result = augmented(image, .cutout(), strength: 1, channels: 1, key: UInt64(key))
            let filled = result.indices.filter { result[$0] != 0 }
            #expect(filled.allSatisfy { result[$0] == 0.3 * 255 })
            let rows = Set(filled.map { $0 / 10 }), columns = Set(filled.map { $0 % 10 })
            #expect((3...5).contains(rows.count) && (3...5).contains(columns.count))
            #expect(filled.count == rows.count * columns.count, "cutout is not a rectangle")
            #expect(rows.max()! - rows.min()! == rows.count - 1 && columns.max()! - columns.min()! == columns.count - 1)
        }
    }

    @Test func brightnessContrastFollowTorchvisionFormulas() {
        // Grey 1×4 image; brightness 1.5 gives 15, 30, 60, 300 → clamped 255; mean 90; contrast 0.5.
        var image: [Float] = [10, 20, 40, 200]
        adjustBrightnessContrast(&image, H: 1, W: 4, C: 1, brightness: 1.5, contrast: 0.5)
        expectClose(image, [52.5, 60, 75, 172.5], rtol: 0, atol: 1e-4, "jitter")
        // RGB: the contrast centre is the ITU-R 601 luma mean.
        var rgb: [Float] = [100, 0, 0, 0, 100, 0]
        adjustBrightnessContrast(&rgb, H: 1, W: 2, C: 3, brightness: 1, contrast: 2)
        let luma: Float = (29.9 + 58.7) / 2
        expectClose(rgb, [200 - luma, 0, 0, 0, 200 - luma, 0].map { max($0, 0) }, rtol: 0, atol: 1e-3, "rgb contrast")
    }

    @Test func noiseHasTheStatedDeviation() {
        // Mid-grey, σ = 0.1 · 255 = 25.5: clamping at 0 and 255 is 5σ away and changes nothing measurable.
        var image = [Float](repeating: 128, count: 40_000)
        var generator = RandomGenerator(seed: 3)
        addGaussianNoise(&image, count: image.count, standardDeviation: 25.5, generator: &generator)
        let mean = image.reduce(0, +) / Float(image.count)
        let deviation = (image.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(image.count)).squareRoot()
        // Standard errors: mean 25.5/200 ≈ 0.13, deviation 25.5/283 ≈ 0.09; allow about 4 of them.
        #expect(abs(mean - 128) < 0.5 && abs(deviation - 25.5) < 0.4, "mean \(mean), deviation \(deviation)")
    }

    @Test(arguments: [0.8, 0.2, 0.004])
    func betaSamplesHaveTheRightMoments(alpha: Double) {
        var generator = RandomGenerator(seed: 11)
        let samples = (0..<20_000).map { _ in sampleSymmetricBeta(alpha: alpha, generator: &generator) }
        #expect(samples.allSatisfy { (0...1).contains($0) })
        let mean = samples.reduce(0, +) / Double(samples.count)
        let variance = samples.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(samples.count)
        // Beta(α, α): mean 1/2, variance 1 / (4 (2α + 1)); both within a few standard errors.
        #expect(abs(mean - 0.5) < 0.015, "mean \(mean)")
        #expect(abs(variance - 1 / (4 * (2 * alpha + 1))) < 0.006, "variance \(variance)")
    }

    @Test func policyParsingNamesTheBadPart() throws {
        #expect(try AugmentationPolicy(parsing: "crop, flip,cutout") == AugmentationPolicy([.randomCrop(), .horizontalFlip, .cutout()]))
        #expect(try AugmentationPolicy(parsing: "full") == .full)
        #expect(try AugmentationPolicy(parsing: "none") == .none)
        #expect(AugmentationPolicy.full.description == "crop,flip,translate,affine,jitter,noise,cutout,mixup,cutmix")
        expectDataError(["unknown augmentation 'blur'", "crop, flip, translate"]) {
            _ = try AugmentationPolicy(parsing: "crop,blur")
        }
    }
}
