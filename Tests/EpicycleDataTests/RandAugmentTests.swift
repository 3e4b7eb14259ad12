@testable import EpicycleData
import EpicycleRuntime
import Testing

/// A 6×5 grey image in pixel units, a ramp 10, 17, 24, … with every third pixel raised by 30, so that
/// every operation has room to act (on a pure ramp, smoothing and so sharpness change nothing).
private let ramp: [Float] = (0..<30).map { (index: Int) -> Float in Float(10 + 7 * index + (index % 3 == 0 ? 30 : 0)) }

private func applied(_ operation: RandAugmentOperation, magnitude: Float, to image: [Float] = ramp, seed: UInt64 = 3) -> [Float] {
    let workspace = AugmentationWorkspace(height: 6, width: 5, channels: 1)
    workspace.current.update(from: image, count: image.count)
    var random = RandomGenerator(seed: seed)
    operation.apply(to: workspace, magnitude: magnitude, random: &random)
    return Array(UnsafeBufferPointer(start: workspace.current, count: image.count))
}

@Suite struct RandAugmentTests {
    @Test(arguments: RandAugmentOperation.allCases)
    func magnitudeZeroLeavesTheImage(_ operation: RandAugmentOperation) {
        // Blends and enhancement factors of exactly 1 may round in the last place, nothing more.
        let result = applied(operation, magnitude: 0)
        #expect(zip(result, ramp).allSatisfy { abs($0 - $1) <= 1e-3 }, "\(operation.rawValue) at magnitude 0")
    }

    @Test(arguments: RandAugmentOperation.allCases.filter { $0 != .identity })
    func fullMagnitudeChangesTheImage(_ operation: RandAugmentOperation) {
        #expect(applied(operation, magnitude: 1) != ramp, "\(operation.rawValue) at magnitude 1")
    }

    @Test func pointOperationsByHand() {
        // Solarize at m = 0.5 inverts values ≥ 128: 220 → 35, 127 stays.
        var values: [Float] = [127, 128, 220, 0]
        solarizeImage(&values, count: 4, threshold: 128)
        #expect(values == [127, 127, 35, 0])
        // Posterize to 4 bits keeps the high nibble: 0b1011_0111 = 183 → 0b1011_0000 = 176.
        values = [183, 15, 255, 16]
        posterizeImage(&values, count: 4, bits: 4)
        #expect(values == [176, 0, 240, 16])
        // Auto-contrast stretches [50, 150] to [0, 255]; half blended, 100 → 100 + (127.5 − 100)/2.
        values = [50, 100, 150, 150]
        autoContrastImage(&values, H: 2, W: 2, C: 1, blend: 1)
        #expect(values == [0, 127.5, 255, 255])
        values = [50, 100, 150, 150]
        autoContrastImage(&values, H: 2, W: 2, C: 1, blend: 0.5)
        #expect(values == [25, 113.75, 202.5, 202.5])
        // Equalise 4 values [3, 3, 9, 200]: cdf 2, 2, 3, 4, minimum 2 → 0, 0, 255·1/2, 255.
        values = [3, 3, 9, 200]
        equalizeImage(&values, H: 2, W: 2, C: 1, blend: 1)
        #expect(values == [0, 0, 127.5, 255])
    }

    @Test func sharpnessAmplifiesTheCentreAgainstItsNeighbours() {
        // A 3×3 image with a bright centre: smooth = (5·90 + 8·10)/13 = 530/13 at the centre; factor
        // 1.9 gives 530/13 + 1.9·(90 − 530/13) = 134.31, the border stays.
        var image = [Float](repeating: 10, count: 9)
        image[4] = 90
        var output = [Float](repeating: 0, count: 9)
        sharpenImage(image, &output, H: 3, W: 3, C: 1, factor: 1.9)
        #expect(abs(output[4] - (530 / 13 + 1.9 * (90 - 530 / 13))) < 1e-3)
        #expect(output.enumerated().allSatisfy { $0.offset == 4 || $0.element == 10 })
    }

    @Test func policyDrawsItsOperationsFromTheStream() throws {
        let policy = AugmentationPolicy([.randAugment(operations: 2)])
        func run(_ key: UInt64) -> [Float] {
            var image = ramp
            policy.augmentImage(&image, height: 6, width: 5, channels: 1, strength: 1, channelMeans: [0.5],
                                generator: RandomGenerator(seed: 11).derived(key))
            return image
        }
        #expect(run(1) == run(1))
        #expect(Set((0..<12).map { run(UInt64($0)) }).count >= 6)
        #expect(try AugmentationPolicy(parsing: "crop,flip,randaugment,cutout").description == "crop,flip,randaugment,cutout")
    }
}
