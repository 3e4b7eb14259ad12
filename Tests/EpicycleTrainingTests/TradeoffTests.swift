import EpicycleCheckpoint
@testable import EpicycleTraining
import Foundation
import Testing

/// One-run tradeoff points (Portes et al. 2022) on a real tiny run with warm restarts (T₀ = 1,
/// T_mult = 2): over 3 epochs the cycles end after epochs 1 and 3.
@Suite(.serialized) struct TradeoffTests {
    static let recipe = """
        seed: 5
        model: {architecture: plain-cnn}
        checkpoint_every: 1
        knobs:
          learning_rate: {warm_restarts: {maximum: 0.05, minimum: 0.001, first_period: 1, period_multiplier: 2}}
          batch_size: 50
        pretrain:
          data: {first: 200, validation: 100}
          epochs: 3
        """

    static func rows(_ path: String) throws -> [[String]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
    }

    @Test func cycleEndsGiveOnePointEachWithTheirOwnTestScore() throws {
        let folder = TrainingProgramTests.folder("tradeoff")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let result = try pretrain(recipe: RecipeSource(text: Self.recipe, origin: "tradeoff.yaml"),
                                  options: RunOptions(output: folder, quiet: true))
        let phase = try #require(result.phases.first)
        let points = phase.tradeoff
        #expect(points.map(\.epoch) == [1, 3])
        // `first: 200` training images (validation is held out before), every epoch.
        #expect(points.map(\.images) == [200, 600])
        #expect(points.allSatisfy { $0.seconds > 0 } && points[0].seconds < points[1].seconds)
        #expect(points.map(\.validationTop1) == [phase.history[0].validationTop1, phase.history[2].validationTop1])
        // Each point's test score is that of the weights saved at that epoch, scored by `epicycle eval`.
        #expect(points[0].testTop1 == (try evaluate(checkpoint: folder + "/epoch-0001.h5").score.top1))
        #expect(points[1].testTop1 == phase.test?.last.top1)
        // The budget columns are in the checkpoint's metrics, so a resume keeps the earlier points.
        let metrics = try #require(try Checkpoint.read(from: folder + "/last.h5").training?.metrics)
        #expect(metrics.column(TradeoffColumns.images) == [200, 400, 600])
        let cycleEndTests = try #require(metrics.column(TradeoffColumns.testTop1))
        #expect(cycleEndTests[0] == points[0].testTop1 && cycleEndTests[1].isNaN && cycleEndTests[2].isNaN)

        let rows = try Self.rows(folder + "/tradeoff.csv")
        #expect(rows.first == ["point", "epoch", "images", "seconds", "val_top1", "test_top1"])
        #expect(rows.dropFirst().map { Array($0.prefix(3)) } == [["1", "1", "200"], ["2", "3", "600"]])
        #expect(rows.dropFirst().map { Double($0[5]) } == points.map { (($0.testTop1 * 1e4).rounded() / 1e4) })
    }

    /// A run killed after epoch 2 (its `epoch-0002.h5` is the `last.h5` it left) and resumed writes the
    /// same points as the uninterrupted run, except the seconds.
    @Test func aResumedRunKeepsTheEarlierPoints() throws {
        let source = try RecipeSource(text: Self.recipe, origin: "tradeoff.yaml")
        let whole = TrainingProgramTests.folder("tradeoff-whole"), resumed = TrainingProgramTests.folder("tradeoff-resumed")
        defer { for folder in [whole, resumed] { try? FileManager.default.removeItem(atPath: folder) } }
        let full = try pretrain(recipe: source, options: RunOptions(output: whole, quiet: true))
        try FileManager.default.copyItem(atPath: whole + "/epoch-0002.h5", toPath: resumed + "/last.h5")
        let continued = try pretrain(recipe: source, options: RunOptions(output: resumed, resume: true, quiet: true))
        func withoutSeconds(_ points: [TradeoffPoint]) -> [TradeoffPoint] {
            points.map { var point = $0; point.seconds = 0; return point }
        }
        let expected = try #require(full.phases.first?.tradeoff), got = try #require(continued.phases.first?.tradeoff)
        #expect(expected.count == 2 && withoutSeconds(got) == withoutSeconds(expected))
        func csvWithoutSeconds(_ folder: String) throws -> [[String]] {
            try Self.rows(folder + "/tradeoff.csv").map { row in row.enumerated().map { $0.offset == 3 ? "" : $0.element } }
        }
        #expect(try csvWithoutSeconds(resumed) == csvWithoutSeconds(whole))
    }
}
