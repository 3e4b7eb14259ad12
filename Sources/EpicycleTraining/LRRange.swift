import EpicycleCheckpoint
import EpicycleData
import EpicycleRuntime
import EpicycleSchedules
import Foundation

/// How the LR range test raises the learning rate from `start` to `end` over its T steps.
public enum LRRangeRamp: String, CaseIterable, Sendable {
    /// Smith 2017 (*Cyclical Learning Rates for Training Neural Networks*, §3.3):
    /// lr_i = start + (end − start) · i / (T − 1).
    case linear
    /// Equal ratios from step to step (Smith's later notes, fastai's `lr_find`):
    /// lr_i = start · (end / start)^(i / (T − 1)).
    case exp

    /// The learning rate of step `step` (from 0) of `steps`.
    public func learningRate(step: Int, of steps: Int, from start: Double, to end: Double) -> Double {
        guard steps > 1 else { return start }
        let t = Double(step) / Double(steps - 1)
        switch self {
        case .linear: return start + (end - start) * t
        case .exp: return start * pow(end / start, t)
        }
    }
}

/// What `lrRangeTest` does beyond the recipe.
public struct LRRangeOptions: Sendable {
    /// Learning rates of the first and the last step: 1e-12 ≤ start < end ≤ 1e4.
    public var start: Double
    public var end: Double
    public var ramp: LRRangeRamp
    /// Validation scorings per epoch, evenly spaced (the last at the epoch's end).
    public var evaluationsPerEpoch: Int
    /// Each scoring reads the first this many validation images.
    public var validationImages: Int
    /// The folder for `lr-range.csv` and `lr-range.svg`; nil: `<the recipe's run folder>-lr-range`.
    public var output: String?
    public var quiet: Bool

    public init(start: Double = 1e-5, end: Double = 1, ramp: LRRangeRamp = .linear, evaluationsPerEpoch: Int = 8,
                validationImages: Int = 2000, output: String? = nil, quiet: Bool = false) {
        self.start = start
        self.end = end
        self.ramp = ramp
        self.evaluationsPerEpoch = evaluationsPerEpoch
        self.validationImages = validationImages
        self.output = output
        self.quiet = quiet
    }

    static let learningRates = 1e-12...1e4
    static let evaluations = 1...1000
    static let images = 1...1_000_000
}

/// One training step of the range test.
public struct LRRangeStep: Equatable, Sendable {
    /// From 1.
    public var step: Int
    /// Epochs done after this step (1.5: half-way through the second epoch).
    public var epoch: Double
    public var learningRate: Double
    public var loss: Double
    /// The exponential moving average of the loss with β = `LRRangeResult.smoothing`, bias-corrected
    /// (divided by 1 − β^step) so the first steps are not pulled towards 0.
    public var smoothedLoss: Double
}

/// A validation scoring of the range test, after `step`.
public struct LRRangeEvaluation: Equatable, Sendable {
    public var step: Int
    public var learningRate: Double
    public var validationTop1: Double
}

/// Bounds for a cyclical learning rate read off a range test.
public struct LRRangeSuggestion: Equatable, Sendable {
    public var base: Double
    public var maximum: Double
    /// The rule that chose them, in words, with the figures it read.
    public var rule: String
    /// True when the maximum is the last learning rate tried: the range ended before the peak.
    public var maximumAtEnd: Bool
}

/// The suggested bounds: the maximum is the learning rate at which validation top-1 peaked (the
/// first of equal peaks; Smith 2017 §3.3 reads it where "the accuracy slows, becomes ragged, or
/// starts to fall"), or, without validation scorings, the one with the lowest smoothed loss; the base
/// is a quarter of it (§3.3: max_lr / 3 to / 4). Nil without a step.
public func suggestLearningRateBounds(steps: [LRRangeStep], evaluations: [LRRangeEvaluation]) -> LRRangeSuggestion? {
    guard let last = steps.last else { return nil }
    let maximum: Double, reading: String
    if let peak = evaluations.filter({ $0.validationTop1.isFinite }).max(by: { $0.validationTop1 < $1.validationTop1 }) {
        maximum = peak.learningRate
        reading = String(format: "validation top-1 peaked at %.2f %% after step %d", peak.validationTop1, peak.step)
    } else if let lowest = steps.filter({ $0.smoothedLoss.isFinite }).min(by: { $0.smoothedLoss < $1.smoothedLoss }) {
        maximum = lowest.learningRate
        reading = String(format: "the smoothed training loss was lowest (%.4g) at step %d", lowest.smoothedLoss, lowest.step)
    } else {
        return nil
    }
    return LRRangeSuggestion(base: maximum / 4, maximum: maximum,
                             rule: "max = the learning rate where \(reading); base = max / 4 (Smith 2017, §3.3: max / 3 to max / 4)",
                             maximumAtEnd: maximum == last.learningRate)
}

/// What `lrRangeTest` measured and wrote.
public struct LRRangeResult: Sendable {
    /// β of the loss's moving average (about a 10-step window: range tests here have tens to hundreds of steps).
    public static let smoothing = 0.9
    /// The test stops once the smoothed loss exceeds this many times its lowest value so far.
    public static let divergenceFactor = 4.0

    public var steps: [LRRangeStep]
    public var evaluations: [LRRangeEvaluation]
    /// The steps the ramp had; more than `steps.count` when the loss diverged first.
    public var plannedSteps: Int
    /// The step at which the loss diverged, nil when the ramp ran to its end.
    public var divergedAtStep: Int?
    /// Optimizer steps in the first epoch (the unit of the suggested `step_size`).
    public var stepsPerEpoch: Int
    public var suggestion: LRRangeSuggestion?
    public var csvPath: String
    public var svgPath: String

    /// Ready-to-paste `knobs:` lines for the suggested bounds, a triangular schedule with a half cycle
    /// of 4 epochs' steps (Smith 2017, §3.3: 2–10) and the general cyclical schedule with f = 2.
    public var scheduleBlock: String? {
        guard let suggestion else { return nil }
        let base = String(format: "%.3g", suggestion.base), maximum = String(format: "%.3g", suggestion.maximum)
        return """
            knobs:
              learning_rate: {triangular: {base: \(base), maximum: \(maximum), step_size: \(4 * stepsPerEpoch)}}
            # or, one cycle over the run:
            knobs:
              learning_rate: {cyclical: {easy: \(base), hard: \(maximum), factor: 2}}
            """
    }
}

/// `epicycle lr-range`: the LR range test (Smith 2017, §3.3) on the recipe's `pretrain` phase. The
/// learning rate rises from `options.start` to `options.end` over every step of the phase's epochs
/// (the other knobs follow their schedules); each step's training loss and its moving average, and
/// validation top-1 `evaluationsPerEpoch` times an epoch (after batch-norm recalibration unless the
/// recipe says `precise_bn: false`), are recorded against it. Stops early once
/// the smoothed loss passes `divergenceFactor` × its lowest (or a loss is not finite). Writes
/// `lr-range.csv` and `lr-range.svg`; no checkpoint.
public func lrRangeTest(recipe source: RecipeSource, options: LRRangeOptions) throws -> LRRangeResult {
    guard LRRangeOptions.learningRates.contains(options.start), LRRangeOptions.learningRates.contains(options.end),
          options.start < options.end else {
        throw RecipeError(path: "", problem: "--start and --end must satisfy 1e-12 ≤ start < end ≤ 1e4, got start \(options.start), end \(options.end)")
    }
    guard LRRangeOptions.evaluations.contains(options.evaluationsPerEpoch) else {
        throw RecipeError(path: "", problem: "--evaluations-per-epoch must be from 1 to 1000, got \(options.evaluationsPerEpoch)")
    }
    guard LRRangeOptions.images.contains(options.validationImages) else {
        throw RecipeError(path: "", problem: "--validation-images must be from 1 to 1000000, got \(options.validationImages)")
    }
    let prepared = try PreparedRecipe(source, options: RunOptions(quiet: options.quiet))
    guard let data = prepared.pretrainData, let epochs = prepared.recipe.pretrain?.epochs else {
        throw RecipeError(path: "pretrain", problem: "is required: the LR range test trains the recipe's pretrain phase")
    }
    let cycle = prepared.jointCycle
    try prepared.validateKnobs(.pretrain, cycle: cycle)
    let recipe = prepared.recipe
    let folder = options.output ?? prepared.output + "-lr-range"
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)

    let model = try Model(recipe.model.spec(inputChannels: data.channels, numClasses: data.classCount), seed: recipe.seed)
    let optimizer = prepared.makeOptimizer(for: model, phase: .pretrain)
    let objective = try phaseObjective(model: model, recipe: recipe, data: data, phase: .pretrain)
    objective.usePrecision(resolvedPrecision(recipe.precision))
    let parameters = model.state.parameters.map(\.parameter).filter(\.trainable)
    let knobs = recipe.knobs(for: .pretrain)
    let trainingLoader = data.trainingLoader(seed: recipe.seed)
    let validation = data.loader(for: data.validation.samples(
        at: Array(0..<min(options.validationImages, data.validation.count)),
        name: "\(data.validation.name), first \(options.validationImages)"))
    // The ramp ends at its hardest, so `precise_bn: auto` recalibrates as `always` does: batch norm's
    // moving averages trail weights that move this fast.
    let recalibration = recipe.preciseBN.when == .never ? nil : data.loader(for: data.training.samples(
        at: Array(0..<min(recipe.preciseBN.images, data.training.count)),
        name: "\(data.training.name), first \(recipe.preciseBN.images) for batch-norm recalibration"))
    let plannedSteps = cycle.epochSteps.prefix(epochs).reduce(0, +)
    let progress = ProgressReporter(quiet: options.quiet)

    var steps: [LRRangeStep] = [], evaluations: [LRRangeEvaluation] = []
    var average = 0.0, lowest = Double.infinity, divergedAt: Int?
    var step = 0
    training: for epoch in 0..<epochs {
        let first = knobs.values(at: cycle.position(epoch: epoch, stepInEpoch: 0), in: cycle)
        let batches = cycle.epochSteps[epoch]
        // Scorings evenly spaced over the epoch, the last after its final batch.
        let scoredBatches = Set((1...options.evaluationsPerEpoch).map { $0 * batches / options.evaluationsPerEpoch }.filter { $0 > 0 })
        var batchIndex = 0
        for batch in trainingLoader.epoch(epoch, batchSize: first.batchSize, strength: Float(first.augmentationStrength)) {
            let position = cycle.position(epoch: epoch, stepInEpoch: batchIndex)
            var values = knobs.values(at: position, in: cycle)
            values.learningRate = options.ramp.learningRate(step: step, of: plannedSteps, from: options.start, to: options.end)
            values.bind(to: optimizer)
            optimizer.zeroGradients()
            let (loss, _) = try objective.step(batch, knobs: values, at: CyclePosition(position, in: cycle))
            step += 1
            batchIndex += 1
            average = LRRangeResult.smoothing * average + (1 - LRRangeResult.smoothing) * Double(loss)
            let smoothed = average / (1 - pow(LRRangeResult.smoothing, Double(step)))
            steps.append(LRRangeStep(step: step, epoch: Double(epoch) + Double(batchIndex) / Double(batches),
                                     learningRate: values.learningRate, loss: Double(loss), smoothedLoss: smoothed))
            guard loss.isFinite, smoothed <= LRRangeResult.divergenceFactor * lowest else {
                divergedAt = step
                break training
            }
            lowest = min(lowest, smoothed)
            values.clipGradients(parameters)
            optimizer.step()
            if scoredBatches.contains(batchIndex) {
                let score: SplitScore
                do {
                    if let recalibration {
                        try model.recalibrateBatchNorm(on: recalibration.epoch(0, batchSize: Trainer.evaluationBatchSize).lazy.map(\.images))
                    }
                    score = try evaluateModel(model, on: validation, split: "validation", source: folder).score
                } catch TrainingError.nonFiniteOutputs {
                    // The step left the weights overflowed: as diverged as a non-finite loss.
                    divergedAt = step
                    break training
                }
                evaluations.append(LRRangeEvaluation(step: step, learningRate: values.learningRate, validationTop1: score.top1))
                progress.epochFinished(String(format: "lr-range step %d/%d  lr %.4g  smoothed loss %.4f  val top-1 %.2f",
                                              step, plannedSteps, values.learningRate, smoothed, score.top1), secondsLeft: 0)
            }
        }
    }
    let result = LRRangeResult(
        steps: steps, evaluations: evaluations, plannedSteps: plannedSteps, divergedAtStep: divergedAt,
        stepsPerEpoch: cycle.epochSteps[0], suggestion: suggestLearningRateBounds(steps: steps, evaluations: evaluations),
        csvPath: folder + "/lr-range.csv", svgPath: folder + "/lr-range.svg")
    try Data(lrRangeCSV(result).utf8).write(to: URL(fileURLWithPath: result.csvPath), options: .atomic)
    try Data(lrRangeSVG(result, logarithmic: options.ramp == .exp).utf8).write(to: URL(fileURLWithPath: result.svgPath), options: .atomic)
    return result
}

/// `lr-range.csv`: one row per step (step, epoch, learning_rate, loss, smoothed_loss, val_top1), the
/// last column empty where validation was not scored.
func lrRangeCSV(_ result: LRRangeResult) -> String {
    let scored = Dictionary(result.evaluations.map { ($0.step, $0.validationTop1) }, uniquingKeysWith: { first, _ in first })
    var text = "step,epoch,learning_rate,loss,smoothed_loss,val_top1\n"
    for step in result.steps {
        text += String(format: "%d,%.6g,%.8g,%.6g,%.6g,", step.step, step.epoch, step.learningRate, step.loss, step.smoothedLoss)
            + (scored[step.step].map { String(format: "%.4f", $0) } ?? "") + "\n"
    }
    return text
}

/// `lr-range.svg`: smoothed training loss and validation top-1 against the learning rate, with the
/// suggested bounds marked.
func lrRangeSVG(_ result: LRRangeResult, logarithmic: Bool) -> String {
    let markers = result.suggestion.map { [(x: $0.base, label: "base"), (x: $0.maximum, label: "max")] } ?? []
    let loss = LineChart(title: "Training loss vs learning rate (raw and smoothed)", xLabel: "learning rate",
                         series: [LineChart.Series(name: "loss", x: result.steps.map(\.learningRate), y: result.steps.map(\.loss)),
                                  LineChart.Series(name: "smoothed", x: result.steps.map(\.learningRate),
                                                   y: result.steps.map(\.smoothedLoss))],
                         markers: markers, width: 560, height: 320, logXBase: logarithmic ? 10 : nil,
                             markersAreBoundaries: false)
    let accuracy = LineChart(title: "Validation top-1 (%) vs learning rate", xLabel: "learning rate",
                             series: [LineChart.Series(name: "", x: result.evaluations.map(\.learningRate),
                                                       y: result.evaluations.map(\.validationTop1))],
                             markers: markers, width: 560, height: 320, logXBase: logarithmic ? 10 : nil,
                             markersAreBoundaries: false)
    return svgGrid([loss, accuracy], columns: 2)
}
