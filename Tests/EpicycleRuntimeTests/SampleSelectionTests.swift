import EpicycleRuntime
import Foundation
import Testing
import TestSupport

/// A case written by `scripts/make_selection_fixtures.py`.
struct SelectionFixture {
    let name: String
    let tensors: GoldenTensors

    init(_ name: String) throws {
        self.name = name
        let url = try #require(Bundle.module.url(forResource: "selection-" + name, withExtension: "json", subdirectory: "Fixtures"),
                               "run scripts/make_selection_fixtures.py")
        tensors = try GoldenTensors(manifest: url)
    }

    var settings: [String: Double] { tensors.settings }
    var logits: Tensor { tensors["logits"]! }
    func labels(_ name: String = "labels") -> [Int32]? { tensors[name].map { $0.scalars.map { Int32($0) } } }

    var selection: SampleSelection {
        SampleSelection(lossThreshold: settings["threshold"], keepFraction: settings["keep_fraction"], lossClip: settings["clip"])
    }

    /// The label loss the case names: cross-entropy, focal (`gamma`) or cyclical focal (`gamma`, `xi`).
    func perSample(_ logits: Tensor) throws -> SampleLosses {
        let temperature = Float(settings["temperature"]!), smoothing = Float(settings["label_smoothing"] ?? 0)
        func run(_ loss: some ClassificationLoss) throws -> SampleLosses {
            if let partners = labels("partner_labels") {
                return try loss.perSample(logits: logits, labels: labels()!, partnerLabels: partners,
                                          mixWeight: Float(settings["mix_weight"]!))
            }
            return try loss.perSample(logits: logits, labels: labels()!)
        }
        switch (settings["gamma"].map(Float.init), settings["xi"].map(Float.init)) {
        case let (gamma?, xi?):
            return try run(CyclicalFocalLoss(gammaHighConfidence: 3, gammaFocal: gamma, xi: xi, temperature: temperature,
                                             labelSmoothing: smoothing))
        case let (gamma?, nil):
            return try run(FocalLoss(gamma: gamma, temperature: temperature, labelSmoothing: smoothing))
        default:
            return try run(CrossEntropyLoss(temperature: temperature, labelSmoothing: smoothing))
        }
    }
}

@Suite struct SampleSelectionTests {
    static let cases = ["threshold-ce", "keep-focal", "clip-cyclical-focal", "all-three-ce", "keep-ties-ce", "mixup-keep-ce"]

    /// Tolerance against PyTorch: both compute in float32 with different summation orders (Epicycle's
    /// per-sample sums in Double), so values agree to a few ulps; 1e-5 normwise is ~100 ulps, while a
    /// wrong denominator, a missed clip or a wrongly kept sample is off by 10 % or more.
    @Test(arguments: cases) func matchesPyTorch(_ name: String) throws {
        let fixture = try SelectionFixture(name)
        let losses = try fixture.perSample(fixture.logits)
        let golden = fixture.tensors
        expectNormwiseClose(Tensor(shape: [losses.samples], scalars: losses.values.map(Float.init)), golden["per_sample"]!,
                            tolerance: 1e-5, "\(name) per-sample losses")
        let selection = fixture.selection
        #expect(selection.weights(losses: losses.values).map(Float.init) == golden["weights"]!.scalars, "\(name) kept samples")
        let (result, dropped) = selection.apply(to: losses)
        expectNormwiseClose(Tensor(shape: [1], scalars: [result.value]), golden["loss"]!, tolerance: 1e-5, "\(name) loss")
        expectNormwiseClose(result.gradient, golden["grad/logits"]!, tolerance: 1e-5, "\(name) gradient")
        // Dropped: weighted 0, or above the clip (no gradient).
        let clip = fixture.settings["clip"] ?? .infinity
        let idle = zip(golden["weights"]!.scalars, golden["per_sample"]!.scalars).filter { $0 == 0 || Double($1) > clip }.count
        #expect(dropped == idle, "\(name) dropped count")
        #expect(idle > 0 && idle < losses.samples, "\(name): the case should drop some samples and keep others")
    }

    /// One block of a batch split over processes: the whole batch's losses stand in for the other
    /// processes' (`DataParallel` all-gathers them).
    final class BlockOfBatch: BatchRowGatherer {
        let all: [Double], rows: Range<Int>
        init(_ all: [Double], rows: Range<Int>) { (self.all, self.rows) = (all, rows) }
        func gatherRows(_ values: [Double]) -> (all: [Double], rows: Range<Int>) {
            #expect(values == Array(all[rows]), "a block gathers its own rows")
            return (all, rows)
        }
        func sum(_ values: [Double]) -> [Double] { values }
    }

    /// Blocks weighted by their share n_r/B, as the data-parallel all-reduce weighs them, add up to the
    /// whole batch's loss and gradient: each rank keeps the samples one process keeps (keep_fraction
    /// ranks the whole batch, ties by its rows) and divides by the whole batch's Σ w.
    @Test(arguments: cases) func blocksOfASplitBatchAddUpToTheWholeBatch(_ name: String) throws {
        let fixture = try SelectionFixture(name)
        let losses = try fixture.perSample(fixture.logits)
        let selection = fixture.selection
        let (whole, wholeDropped) = selection.apply(to: losses)
        let (N, K) = (losses.samples, losses.classes)
        var value = 0.0, dropped = 0
        var gradient = [Float]()
        for rows in [0..<(N / 3), (N / 3)..<N] {
            let block = SampleLosses(samples: rows.count, classes: K, temperature: losses.temperature,
                                     values: Array(losses.values[rows]),
                                     gradients: Array(losses.gradients[(rows.lowerBound * K)..<(rows.upperBound * K)]))
            let (result, blockDropped) = selection.apply(to: block, across: BlockOfBatch(losses.values, rows: rows))
            let share = Double(rows.count) / Double(N)
            value += share * Double(result.value)
            gradient += result.gradient.scalars.map { $0 * Float(share) }
            dropped += blockDropped
        }
        #expect(dropped == wholeDropped)
        #expect(abs(value - Double(whole.value)) <= 1e-6 * max(1, abs(Double(whole.value))), "\(name): \(value) against \(whole.value)")
        expectNormwiseClose(Tensor(shape: [N, K], scalars: gradient), whole.gradient, tolerance: 1e-6, "\(name) gradient")
    }

    @Test func tiesGoToTheLowerIndex() throws {
        let fixture = try SelectionFixture("keep-ties-ce")
        let losses = try fixture.perSample(fixture.logits)
        #expect(losses.values[0] == losses.values[1] && losses.values[0] == losses.values[3] && losses.values[0] == losses.values[6])
        #expect(fixture.selection.weights(losses: losses.values) == [1, 1, 1, 1, 0, 0, 0, 0])
        // By hand, without the fixture: equal losses, keep two of four.
        #expect(SampleSelection(keepFraction: 0.5).weights(losses: [1, 1, 1, 1]) == [1, 1, 0, 0])
        #expect(SampleSelection(keepFraction: 0.5).weights(losses: [2, 1, 1, 0.5]) == [0, 1, 0, 1])
    }

    /// The gradient is exactly the gradient of the stated batch loss with the weights held constant:
    /// central differences of Σ w·min(l, c) / Σ w (tolerance as `expectGradientMatchesFiniteDifferences`;
    /// the fixtures' losses sit at least 0.18 away from their clip, far beyond what a 1e-2 step moves them).
    @Test(arguments: cases) func gradientMatchesFiniteDifferences(_ name: String) throws {
        let fixture = try SelectionFixture(name)
        let selection = fixture.selection
        let weights = selection.weights(losses: try fixture.perSample(fixture.logits).values)
        let result = try fixture.perSample(fixture.logits).weightedMean(weights: weights, clip: selection.lossClip)
        #expect(result.gradient.scalars.contains { $0 != 0 }, "\(name): the gradient is zero, so the check would be empty")
        try expectGradientMatchesFiniteDifferences(result.gradient, at: fixture.logits, atol: 1e-3, name) {
            try fixture.perSample($0).weightedMean(weights: weights, clip: selection.lossClip).value
        }
    }

    @Test func generalWeightsMatchFiniteDifferences() throws {
        let loss = FocalLoss(gamma: 2, temperature: 0.7, labelSmoothing: 0.1)
        let logits = randomTensor([5, 4], seed: 91, low: -2, high: 2)
        let labels: [Int32] = [0, 3, 1, 1, 2]
        let weights = [0.5, 2, 0, 1, 0.25]
        let result = try loss.perSample(logits: logits, labels: labels).weightedMean(weights: weights, clip: nil)
        // By hand: Σ w·l / Σ w.
        let values = try loss.perSample(logits: logits, labels: labels).values
        let expected = zip(weights, values).map(*).reduce(0, +) / weights.reduce(0, +)
        #expect(abs(Double(result.value) - expected) < 1e-6)
        try expectGradientMatchesFiniteDifferences(result.gradient, at: logits, "weights \(weights)") {
            try loss.perSample(logits: $0, labels: labels).weightedMean(weights: weights, clip: nil).value
        }
    }

    @Test func perSampleLossIsTheLossOfThatRowAlone() throws {
        let loss = CyclicalFocalLoss(xi: 0.3, temperature: 1.4, labelSmoothing: 0.15)
        let logits = randomTensor([4, 5], seed: 92, low: -3, high: 3)
        let labels: [Int32] = [4, 0, 2, 2]
        let losses = try loss.perSample(logits: logits, labels: labels)
        for n in 0..<4 {
            let row = Tensor(shape: [1, 5], scalars: Array(logits.scalars[(n * 5)..<(n * 5 + 5)]))
            let alone = try loss(logits: row, labels: [labels[n]])
            #expect(abs(Float(losses.values[n]) - alone.value) < 1e-6, "sample \(n)")
            // The batch of one's gradient is ∂l_n/∂z_n; the per-sample form holds ∂l_n/∂u_n = T·∂l_n/∂z_n.
            let rowGradient = losses.gradients[(n * 5)..<(n * 5 + 5)].map { Float($0 / losses.temperature) }
            expectClose(rowGradient, alone.gradient.scalars, rtol: 1e-6, atol: 1e-8, "sample \(n) gradient")
        }
    }

    @Test func unitWeightsAndNoSelectionAreTheMeanBitForBit() throws {
        let loss = CrossEntropyLoss(temperature: 0.6, labelSmoothing: 0.1)
        let logits = randomTensor([6, 7], seed: 93, low: -3, high: 3)
        let labels: [Int32] = [0, 6, 3, 3, 1, 2]
        let losses = try loss.perSample(logits: logits, labels: labels)
        let mean = try loss(logits: logits, labels: labels)
        #expect(losses.weightedMean(weights: Array(repeating: 1, count: 6), clip: nil) == mean)
        #expect(SampleSelection().apply(to: losses) == (mean, 0))
        // A threshold and a clip above every loss, and keeping every sample, change nothing either.
        let lenient = SampleSelection(lossThreshold: 1e6, keepFraction: 1, lossClip: 1e6)
        #expect(lenient.apply(to: losses) == (mean, 0))
    }

    @Test func nothingKeptGivesZeroLossAndGradient() throws {
        let losses = try CrossEntropyLoss().perSample(logits: randomTensor([3, 4], seed: 94, low: -1, high: 1), labels: [0, 1, 2])
        let (result, dropped) = SampleSelection(lossThreshold: 1e-3).apply(to: losses)
        #expect(result.value == 0 && dropped == 3)
        #expect(result.gradient.shape == [3, 4] && result.gradient.scalars.allSatisfy { $0 == 0 })
    }

    @Test func clippingKeepsTheValueAndDropsTheGradientAboveTheClip() throws {
        // Label 0 against rows [8, 0, 0], [0, 2, 0], [0, 4, 0]: losses ≈ 0.0007, 2.24 and 4.04.
        let logits = Tensor(shape: [3, 3], scalars: [8, 0, 0, 0, 2, 0, 0, 4, 0])
        let losses = try CrossEntropyLoss().perSample(logits: logits, labels: [0, 0, 0])
        let clip = 3.0
        let (result, dropped) = SampleSelection(lossClip: clip).apply(to: losses)
        #expect(dropped == 1)
        let expected = (losses.values[0] + losses.values[1] + clip) / 3
        #expect(abs(Double(result.value) - expected) < 1e-6)
        #expect(result.gradient.scalars[6..<9].allSatisfy { $0 == 0 })
        let mean = losses.mean()
        expectClose(Array(result.gradient.scalars[0..<6]), Array(mean.gradient.scalars[0..<6]), rtol: 0, atol: 0, "unclipped rows")
    }

    @Test func keptCountIsTheCeilingAtLeastOne() {
        #expect(SampleSelection(keepFraction: 0.3).keptCount(of: 10) == 3, "0.3·10 is 3.0000000000000004 in Double")
        #expect(SampleSelection(keepFraction: 0.5).keptCount(of: 7) == 4)
        #expect(SampleSelection(keepFraction: 0.5).keptCount(of: 128) == 64)
        #expect(SampleSelection(keepFraction: 0.51).keptCount(of: 100) == 51)
        #expect(SampleSelection(keepFraction: 1e-9).keptCount(of: 128) == 1)
        #expect(SampleSelection(keepFraction: 1).keptCount(of: 5) == 5)
        #expect(SampleSelection().keptCount(of: 5) == 5)
    }

    @Test func thresholdAndKeepFractionBothApplyAndNaNRanksHardest() {
        let losses = [0.2, 3, .nan, 0.1, 1.5, 0.9]
        #expect(SampleSelection(lossThreshold: 1).weights(losses: losses) == [1, 0, 0, 1, 0, 1])
        // ⌈0.5·6⌉ = 3 easiest: 0.1, 0.2, 0.9; the threshold 0.5 then drops 0.9.
        #expect(SampleSelection(lossThreshold: 0.5, keepFraction: 0.5).weights(losses: losses) == [1, 0, 0, 1, 0, 0])
        #expect(SampleSelection(keepFraction: 5.0 / 6).weights(losses: losses) == [1, 1, 0, 1, 1, 1])
    }
}
