import EpicycleData
import EpicycleRuntime
import EpicycleSchedules
import EpicycleTraining
import Foundation

/// What one term of the student's loss compares.
public enum DistillationMethod {
    /// The recipe's loss on the labels (cross-entropy, focal…, at `knobs.temperature`).
    case labels
    /// Logit distillation, `KLDivergenceLoss` at the term's temperature T (Hinton et al. 2015).
    case logits
    /// FitNets hints through a learned regressor.
    case hint(HintLoss)
    case attention(AttentionTransferLoss)
    /// Channel-wise spatial softmax at the term's temperature τ.
    case spatialSoftmax
}

/// One term: a method and its weight (and temperature) schedules, with the feature pair it compares.
public struct DistillationTerm {
    public var method: DistillationMethod
    public var weight: Schedule
    /// T of `logits`, τ of `spatialSoftmax`.
    public var temperature: Schedule?
    public var studentFeature: String?
    public var teacherFeature: String?
    /// How the pair's spatial sizes were matched: average pooling of the larger map by an integer
    /// factor (nil when the sizes agree).
    let studentPooling: AvgPool2D?
    let teacherPooling: AvgPool2D?
}

/// The student's loss in distillation: the weighted sum Σ_k w_k(t)·L_k of its terms, with every
/// weight and temperature evaluated at the step's cycle position, and one forward and backward pass
/// of the student per step. The teacher runs in inference mode on the same (augmented) batch, caches
/// nothing and is never updated. Its recipe section is `distill:` (`DistillRecipe`).
public final class DistillationObjective: TrainingObjective {
    public static var recipeSection: (any RecipeSection.Type)? { DistillRecipe.self }

    public let student: Model
    public let teacher: Model
    public let terms: [DistillationTerm]
    /// The recipe's loss on labels, which the `labels` term uses.
    public let labels: LabelObjective
    /// The hint regressors, named `hint.<k>.conv.weight`, `hint.<k>.bn.*` (k counts the hint terms).
    public let adapters: ModuleState
    /// The number format of every convolution's products: the student's, the teacher's and the hint
    /// regressors' (see `Precision`).
    public var precision: Precision = .fp32 {
        didSet {
            student.precision = precision
            teacher.precision = precision
            for term in terms { if case let .hint(loss) = term.method { loss.regressor.convolution.precision = precision } }
        }
    }
    public func usePrecision(_ precision: Precision) { self.precision = precision }

    public var adapterBatchNorms: [BatchNorm2D] {
        terms.compactMap { if case let .hint(loss) = $0.method { loss.regressor.normalization } else { nil } }
    }
    /// Each term's name in logged values (see `scheduledValues`), in `terms` order.
    public let termNames: [String]
    /// Each term's unweighted value at the last step (NaN while its weight is 0).
    public private(set) var lastValues: [Float]
    /// Each term's temperature at the last step (nil for terms without one).
    public private(set) var lastTemperatures: [Double?]
    /// Wall time spent in the teacher's forward passes and in whole steps.
    public private(set) var teacherSeconds = 0.0
    public private(set) var stepSeconds = 0.0
    public private(set) var images = 0

    private let studentCapture: [String]
    private let teacherCapture: [String]

    /// Builds the terms a recipe lists, checking feature names, spatial sizes and channels on a probe
    /// image, and creating hint regressors sized to the feature pairs.
    /// - Parameters:
    ///   - imageShape: [H, W, C] of the training images.
    ///   - seed: draws the regressors' initial weights.
    ///   - loss: the recipe's `loss:`, for the `labels` term.
    /// - Throws: `RecipeError` naming `distill.losses[i]…` for an unknown feature name (listing the valid
    ///   ones), sizes that cannot be matched, or channels that must agree and do not.
    public init(student: Model, teacher: Model, terms recipes: [DistillTermRecipe], imageShape: [Int], seed: UInt64,
                loss: LossRecipe = LossRecipe()) throws {
        self.student = student
        self.teacher = teacher
        labels = LabelObjective(model: student, loss: loss)
        for (index, term) in recipes.enumerated() {
            let path = "distill.losses[\(index)]."
            if let name = term.student, !student.featureNames.contains(name) {
                throw RecipeError(path: path + "student", problem: "'\(name)' is not a feature of the student (\(student.spec.architecture)); valid names: \(student.featureNames.joined(separator: ", "))")
            }
            if let name = term.teacher, !teacher.featureNames.contains(name) {
                throw RecipeError(path: path + "teacher", problem: "'\(name)' is not a feature of the teacher (\(teacher.spec.architecture)); valid names: \(teacher.featureNames.joined(separator: ", "))")
            }
        }
        studentCapture = Array(Set(recipes.compactMap(\.student))).sorted()
        teacherCapture = Array(Set(recipes.compactMap(\.teacher))).sorted()
        // One inference-mode image through both networks gives every feature's shape; nothing is cached.
        let probe = Tensor(zeros: [1] + imageShape)
        let studentShapes = try student.forward(probe, mode: .inference, capture: studentCapture).features.mapValues(\.shape)
        let teacherShapes = try teacher.forward(probe, mode: .inference, capture: teacherCapture).features.mapValues(\.shape)

        var generator = RandomGenerator(seed: seed &+ 0x4849_4E54)
        var adapters = ModuleState()
        var terms: [DistillationTerm] = []
        for (index, term) in recipes.enumerated() {
            let path = "distill.losses[\(index)]"
            guard let studentName = term.student, let teacherName = term.teacher else {
                terms.append(DistillationTerm(method: term.kind == .labels ? .labels : .logits, weight: term.weight,
                                              temperature: term.temperature, studentFeature: nil, teacherFeature: nil,
                                              studentPooling: nil, teacherPooling: nil))
                continue
            }
            let studentShape = studentShapes[studentName]!, teacherShape = teacherShapes[teacherName]!
            let describe = "the student's '\(studentName)' is \(studentShape[1])×\(studentShape[2])×\(studentShape[3]), the teacher's '\(teacherName)' \(teacherShape[1])×\(teacherShape[2])×\(teacherShape[3]) (H×W×C)"
            guard studentShape.count == 4, teacherShape.count == 4 else {
                throw RecipeError(path: path, problem: "feature matching needs spatial maps; 'pool' is a vector — choose a stage such as layer3")
            }
            let (studentPooling, teacherPooling) = try poolings(studentShape, teacherShape, path: path, describe: describe)
            let method: DistillationMethod
            switch term.kind {
            case .hint:
                let regressor = HintRegressor(studentChannels: studentShape[3], teacherChannels: teacherShape[3], generator: &generator)
                adapters.add("hint.\(terms.filter { if case .hint = $0.method { true } else { false } }.count)", regressor)
                method = .hint(HintLoss(regressor: regressor))
            case .attention:
                method = .attention(AttentionTransferLoss())
            case .spatialSoftmax:
                guard studentShape[3] == teacherShape[3] else {
                    throw RecipeError(path: path, problem: "spatial_softmax compares channel by channel, but \(describe); choose layers with equal channels, or use a hint")
                }
                method = .spatialSoftmax
            case .labels, .logits:
                preconditionFailure("labels and logits terms name no features (checked when decoding)")
            }
            terms.append(DistillationTerm(method: method, weight: term.weight, temperature: term.temperature,
                                          studentFeature: studentName, teacherFeature: teacherName,
                                          studentPooling: studentPooling, teacherPooling: teacherPooling))
        }
        self.terms = terms
        self.adapters = adapters
        let names = terms.map(\.logName)
        // The same kind on the same pair twice would log under one name: the recipe index tells them apart.
        termNames = names.enumerated().map { index, name in names.filter { $0 == name }.count > 1 ? "\(name)[\(index)]" : name }
        lastValues = [Float](repeating: .nan, count: terms.count)
        lastTemperatures = [Double?](repeating: nil, count: terms.count)
    }

    /// The labels term's (data selection applies to it alone).
    public var droppedSamples: Int { labels.droppedSamples }

    /// `step(_:value:labelLoss:)` with the schedules read at `position` and the recipe's loss on labels
    /// at the step's knob values.
    public func step(_ batch: Batch, knobs: KnobValues, at position: CyclePosition) throws -> (loss: Float, logits: Tensor) {
        try step(batch, value: position.value(of:), labelLoss: { try labels.labelLoss(logits: $0, batch: batch, knobs: knobs) })
    }

    /// One training step's loss: forward passes of student (training mode) and teacher (inference
    /// mode), every term, and the student's backward pass with the logit and feature gradients. The
    /// caller zeroes gradients before and steps the optimizer after.
    /// - Parameters:
    ///   - value: a schedule's value at this step's cycle position.
    ///   - labelLoss: the recipe's loss on the batch's labels, given the student's logits.
    /// - Returns: the weighted sum and the student's logits.
    public func step(_ batch: Batch, value: (Schedule) -> Double,
                     labelLoss: (Tensor) throws -> LossResult) throws -> (loss: Float, logits: Tensor) {
        let started = Date()
        let output = try student.forward(batch.images, mode: .training, capture: studentCapture)
        // A recipe of labels alone (the baseline) needs no teacher pass.
        var teacherOutput: Model.Output?
        if terms.contains(where: \.usesTeacher) {
            let teacherStarted = Date()
            teacherOutput = try teacher.forward(batch.images, mode: .inference, capture: teacherCapture)
            teacherSeconds += Date().timeIntervalSince(teacherStarted)
        }

        var dLogits = Tensor(zeros: output.logits.shape)  // [N, classes]
        var featureGradients: [String: Tensor] = [:]
        var total = 0.0
        for (index, term) in terms.enumerated() {
            let weight = Float(value(term.weight))
            lastTemperatures[index] = term.temperature.map(value)
            guard weight != 0 else {
                lastValues[index] = .nan
                continue
            }
            let result: LossResult
            switch term.method {
            case .labels:
                result = try labelLoss(output.logits)
                addScaled(result.gradient, weight, into: &dLogits)
            case .logits:
                let temperature = Float(value(term.temperature!))
                result = try KLDivergenceLoss(temperature: temperature)(studentLogits: output.logits, teacherLogits: teacherOutput!.logits)
                addScaled(result.gradient, weight, into: &dLogits)
            case let .hint(loss):
                result = try matchFeatures(term, output, teacherOutput!, into: &featureGradients) { try loss(student: $0, teacher: $1, weight: weight) }
            case let .attention(loss):
                result = try matchFeatures(term, output, teacherOutput!, into: &featureGradients) { try loss(student: $0, teacher: $1, weight: weight) }
            case .spatialSoftmax:
                let loss = SpatialSoftmaxLoss(temperature: Float(value(term.temperature!)))
                result = try matchFeatures(term, output, teacherOutput!, into: &featureGradients) { try loss(student: $0, teacher: $1, weight: weight) }
            }
            lastValues[index] = result.value
            total += Double(weight) * Double(result.value)
        }
        student.backward(dLogits, featureGradients: featureGradients)
        stepSeconds += Date().timeIntervalSince(started)
        images += batch.count
        return (Float(total), output.logits)
    }

    /// Runs a feature loss on a pair (pooled to one size) and adds its gradient at the student's feature.
    private func matchFeatures(_ term: DistillationTerm, _ output: Model.Output, _ teacherOutput: Model.Output,
                               into featureGradients: inout [String: Tensor],
                               _ loss: (Tensor, Tensor) throws -> LossResult) throws -> LossResult {
        let name = term.studentFeature!
        var studentMap = output.features[name]!  // [N, H, W, C_s]
        var teacherMap = teacherOutput.features[term.teacherFeature!]!  // [N, H, W, C_t]
        if let pooling = term.studentPooling { studentMap = try pooling.forward(studentMap, mode: .training) }
        if let pooling = term.teacherPooling { teacherMap = try pooling.forward(teacherMap, mode: .inference) }
        var result = try loss(studentMap, teacherMap)
        if let pooling = term.studentPooling { result.gradient = pooling.backward(result.gradient) }
        if featureGradients[name] == nil {
            featureGradients[name] = result.gradient
        } else {
            featureGradients[name]! += result.gradient
        }
        return result
    }

    /// Every term's weight and, where it has one, temperature at a cycle position, as the metrics log
    /// them each epoch: `<term>.weight` and `<term>.temperature`, the term named `labels`, `logits`,
    /// `hint.<student>`, `attention.<student>` or `spatial_softmax.<student>` (feature terms add
    /// `-<teacher>` when the teacher's feature has another name, and `[i]`, the index in
    /// `distill.losses`, when two terms would share a name). The labels term's temperature is
    /// `knobs.temperature`, logged as a knob.
    /// - Parameter value: a schedule's value at the position.
    public func loggedValues(at position: CyclePosition) -> [String: Double] {
        scheduledValues(position.value(of:))
    }

    /// `loggedValues`, with `value` reading each schedule.
    public func scheduledValues(_ value: (Schedule) -> Double) -> [String: Double] {
        var values: [String: Double] = [:]
        for (name, term) in zip(termNames, terms) {
            values[name + ".weight"] = value(term.weight)
            if let temperature = term.temperature { values[name + ".temperature"] = value(temperature) }
        }
        return values
    }

    /// Each term's loss at the last step, `<term>.loss` (a term whose weight was 0 is left out).
    public var stepValues: [String: Double] {
        var values: [String: Double] = [:]
        for (name, value) in zip(termNames, lastValues) where !value.isNaN { values[name + ".loss"] = Double(value) }
        return values
    }

    /// What the progress line shows: the teacher's share of the step time and each term's value.
    public var progressNote: String {
        let share = stepSeconds > 0 ? 100 * teacherSeconds / stepSeconds : 0
        let teacherRate = teacherSeconds > 0 ? Double(images) / teacherSeconds : 0
        let values = terms.indices.map { index in
            let value = lastValues[index]
            let temperature = lastTemperatures[index].map { String(format: " (T %.3g)", $0) } ?? ""
            return "\(terms[index].label) \(value.isNaN ? "off" : String(format: "%.4g", value))\(temperature)"
        }
        let teacherPart = terms.contains(where: \.usesTeacher)
            ? String(format: "teacher %.0f%% of step (%.0f img/s)", share, teacherRate) : "no teacher pass"
        return ([teacherPart] + values).joined(separator: "  ")
    }
}

extension DistillationTerm {
    var usesTeacher: Bool {
        if case .labels = method { return false }
        return true
    }

    /// The term's name in logged values, before disambiguation: `labels`, `logits`, `hint.layer2`,
    /// `attention.layer3`, `spatial_softmax.layer3`, with `-<teacher feature>` when it differs.
    var logName: String {
        let kind: String
        switch method {
        case .labels: return "labels"
        case .logits: return "logits"
        case .hint: kind = "hint"
        case .attention: kind = "attention"
        case .spatialSoftmax: kind = "spatial_softmax"
        }
        let pair = studentFeature == teacherFeature ? studentFeature! : "\(studentFeature!)-\(teacherFeature!)"
        return "\(kind).\(pair)"
    }

    /// A short name for progress lines: `labels`, `kd`, `hint(layer2)`, `at(layer3)`, `cwd(layer3)`.
    var label: String {
        switch method {
        case .labels: return "labels"
        case .logits: return "kd"
        case .hint: return "hint(\(studentFeature!))"
        case .attention: return "at(\(studentFeature!))"
        case .spatialSoftmax: return "cwd(\(studentFeature!))"
        }
    }
}

/// Average pooling that brings the larger of two maps to the smaller's size, when one is an integer
/// multiple of the other by the same factor in both directions; sizes that do not divide are an error.
private func poolings(_ student: [Int], _ teacher: [Int], path: String, describe: String) throws -> (AvgPool2D?, AvgPool2D?) {
    if student[1] == teacher[1] && student[2] == teacher[2] { return (nil, nil) }
    func factor(_ large: [Int], _ small: [Int]) -> Int? {
        guard large[1] % small[1] == 0, large[2] % small[2] == 0, large[1] / small[1] == large[2] / small[2] else { return nil }
        return large[1] / small[1]
    }
    if student[1] >= teacher[1], let k = factor(student, teacher) { return (AvgPool2D(kernelSize: k), nil) }
    if teacher[1] >= student[1], let k = factor(teacher, student) { return (nil, AvgPool2D(kernelSize: k)) }
    throw RecipeError(path: path, problem: "the feature maps' sizes do not match: \(describe); they must be equal or one an integer multiple of the other (the larger is average-pooled)")
}

/// `target += scale · source`.
func addScaled(_ source: Tensor, _ scale: Float, into target: inout Tensor) {
    precondition(source.shape == target.shape, "addScaled: shapes \(source.shape) and \(target.shape) differ")
    source.scalars.withUnsafeBufferPointer { s in
        target.scalars.withUnsafeMutableBufferPointer { t in
            for i in t.indices { t[i] += scale * s[i] }
        }
    }
}
