@testable import EpicycleTraining
import Foundation
import Testing

/// The LR range test (Smith 2017, §3.3): the ramp, a tiny real run and the rule that reads the bounds.
@Suite(.serialized) struct LRRangeTests {
    static let recipe = """
        seed: 2
        model: {architecture: plain-cnn}
        knobs: {batch_size: 50, learning_rate: 0.05}
        pretrain:
          data: {first: 200, validation: 100}
          epochs: 2
        """

    @Test func theRampsHitBothEndsAndTheirMiddles() {
        #expect(LRRangeRamp.linear.learningRate(step: 0, of: 5, from: 0.1, to: 0.5) == 0.1)
        #expect(abs(LRRangeRamp.linear.learningRate(step: 2, of: 5, from: 0.1, to: 0.5) - 0.3) < 1e-15)
        #expect(LRRangeRamp.linear.learningRate(step: 4, of: 5, from: 0.1, to: 0.5) == 0.5)
        // Exponential: the geometric middle, 1e-5 · (1e5)^(1/2) = 1e-2.5.
        #expect(abs(LRRangeRamp.exp.learningRate(step: 2, of: 5, from: 1e-5, to: 1) - pow(10, -2.5)) < 1e-15)
        #expect(abs(LRRangeRamp.exp.learningRate(step: 4, of: 5, from: 1e-5, to: 1) - 1) < 1e-12)
    }

    @Test func aTinyRunFollowsTheRampAndWritesItsFiles() throws {
        let folder = TrainingProgramTests.folder("lr-range")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let result = try lrRangeTest(recipe: RecipeSource(text: Self.recipe, origin: "lr-range.yaml"),
                                     options: LRRangeOptions(start: 0.001, end: 0.2, evaluationsPerEpoch: 2, output: folder, quiet: true))
        // 200 training images in batches of 50: 4 steps an epoch, 8 in all, each at its point on the line.
        #expect(result.plannedSteps == 8 && result.steps.count == 8 && result.divergedAtStep == nil)
        for (index, step) in result.steps.enumerated() {
            #expect(step.step == index + 1 && abs(step.learningRate - (0.001 + (0.2 - 0.001) * Double(index) / 7)) < 1e-15)
            #expect(abs(step.epoch - Double(index + 1) / 4) < 1e-12)
        }
        // The moving average, bias-corrected, by hand.
        var average = 0.0
        for (index, step) in result.steps.enumerated() {
            average = 0.9 * average + 0.1 * step.loss
            #expect(abs(step.smoothedLoss - average / (1 - pow(0.9, Double(index + 1)))) < 1e-9)
        }
        #expect(result.evaluations.map(\.step) == [2, 4, 6, 8])
        #expect(result.evaluations.map(\.learningRate) == [2, 4, 6, 8].map { result.steps[$0 - 1].learningRate })
        #expect(result.suggestion == suggestLearningRateBounds(steps: result.steps, evaluations: result.evaluations))

        let rows = try String(contentsOfFile: folder + "/lr-range.csv", encoding: .utf8).split(separator: "\n")
            .map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        #expect(rows.first == ["step", "epoch", "learning_rate", "loss", "smoothed_loss", "val_top1"])
        #expect(rows.count == 9 && rows.dropFirst().map { $0[5].isEmpty } == [true, false, true, false, true, false, true, false])
        #expect(rows.dropFirst().map { Double($0[2])! } == result.steps.map { Double(String(format: "%.8g", $0.learningRate))! })
        let svg = try String(contentsOfFile: folder + "/lr-range.svg", encoding: .utf8)
        // Raw and smoothed loss over 8 steps, validation top-1 at 4 scorings.
        let curves = svg.components(separatedBy: "<polyline class=\"curve\"").dropFirst().map { line in
            line.components(separatedBy: "points=\"")[1].split(separator: "\"")[0].split(separator: " ").count
        }
        #expect(curves == [8, 8, 4])
    }

    /// Up to 10 the plain CNN's batch norm keeps the loss within 2.5 × its lowest (measured); 1e4 breaks it.
    @Test func aLossThatExplodesStopsTheRamp() throws {
        let folder = TrainingProgramTests.folder("lr-range-diverges")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let result = try lrRangeTest(recipe: RecipeSource(text: Self.recipe, origin: "lr-range.yaml", overrides: ["pretrain.epochs=4"]),
                                     options: LRRangeOptions(start: 1, end: 1e4, ramp: .exp, output: folder, quiet: true))
        let stop = try #require(result.divergedAtStep)
        #expect(stop < result.plannedSteps && result.steps.count == stop)
        let last = try #require(result.steps.last)
        let lowest = result.steps.dropLast().map(\.smoothedLoss).min()!
        #expect(!last.loss.isFinite || last.smoothedLoss > 4 * lowest)
    }

    /// The rule on constructed curves: the maximum where validation top-1 peaks, the base a quarter of it.
    @Test func theSuggestionFollowsTheStatedRule() throws {
        let rates = [0.001, 0.01, 0.05, 0.1, 0.2, 0.4]
        let losses = [2.3, 2.0, 1.2, 0.9, 1.1, 3.0]
        let steps = zip(rates, losses).enumerated().map { index, point in
            LRRangeStep(step: index + 1, epoch: Double(index + 1) / 6, learningRate: point.0, loss: point.1, smoothedLoss: point.1)
        }
        let accuracy = [20.0, 45, 70, 78, 81, 60]
        let evaluations = zip(steps, accuracy).map { LRRangeEvaluation(step: $0.step, learningRate: $0.learningRate, validationTop1: $1) }
        let suggestion = try #require(suggestLearningRateBounds(steps: steps, evaluations: evaluations))
        #expect(suggestion.maximum == 0.2 && suggestion.base == 0.05 && !suggestion.maximumAtEnd)
        #expect(suggestion.rule.contains("peaked at 81.00 % after step 5") && suggestion.rule.contains("max / 4"))
        // Without scorings: the lowest smoothed loss.
        let byLoss = try #require(suggestLearningRateBounds(steps: steps, evaluations: []))
        #expect(byLoss.maximum == 0.1 && byLoss.base == 0.025 && byLoss.rule.contains("lowest (0.9) at step 4"))
        // Accuracy still rising at the last rate: flagged.
        let rising = evaluations.enumerated().map { index, evaluation in
            LRRangeEvaluation(step: evaluation.step, learningRate: evaluation.learningRate, validationTop1: Double(index))
        }
        #expect(try #require(suggestLearningRateBounds(steps: steps, evaluations: rising)).maximumAtEnd)
        #expect(suggestLearningRateBounds(steps: [], evaluations: []) == nil)
    }
}
