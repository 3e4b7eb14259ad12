/// A loss value and its gradient with respect to the prediction (the logits for classification).
public struct LossResult: Sendable, Equatable {
    /// The loss averaged over the batch, accumulated in Double and rounded once.
    public var value: Float
    /// ∂value/∂prediction, the same shape as the prediction. It already carries the 1/batch factor of
    /// the mean, so it feeds a model's `backward` directly.
    public var gradient: Tensor

    public init(value: Float, gradient: Tensor) {
        self.value = value
        self.gradient = gradient
    }
}

/// Errors from a loss given labels or settings it cannot use. Shape problems are thrown as
/// `RuntimeError.shapeMismatch` with the loss's type name as the kind.
public enum LossError: Error, Equatable, CustomStringConvertible {
    /// A class label outside `0..<classCount`; `sample` is its position in the batch.
    case labelOutOfRange(loss: String, label: Int32, sample: Int, classCount: Int)
    /// The number of labels differs from the batch size of the logits.
    case labelCountMismatch(loss: String, labelCount: Int, batchSize: Int)
    /// A hyper-parameter outside its valid range, e.g. a temperature ≤ 0.
    case invalidHyperParameter(loss: String, name: String, value: Float, requirement: String)

    public var description: String {
        switch self {
        case let .labelOutOfRange(loss, label, sample, classCount):
            return "\(loss): label \(label) of sample \(sample) is outside 0..<\(classCount) "
                + "(the logits have \(classCount) classes); check that the dataset's class count matches the model's"
        case let .labelCountMismatch(loss, labelCount, batchSize):
            return "\(loss): \(labelCount) labels for a batch of \(batchSize) logit rows; pass one label per sample"
        case let .invalidHyperParameter(loss, name, value, requirement):
            return "\(loss): \(name) is \(value), but it must be \(requirement)"
        }
    }
}

/// A loss of class logits against integer labels, defined per sample; its batch loss is the mean.
public protocol ClassificationLoss {
    /// Each sample's loss and its gradient.
    /// - Parameters:
    ///   - logits: `[batch, classes]`, row-major.
    ///   - labels: one class index per row, each in `0..<classes`.
    /// - Throws: `LossError.labelOutOfRange` naming the first bad label, `LossError.labelCountMismatch`,
    ///   `LossError.invalidHyperParameter`, or `RuntimeError.shapeMismatch` when the logits are not
    ///   `[batch, classes]` with both at least 1.
    func perSample(logits: Tensor, labels: [Int32]) throws -> SampleLosses
}

extension ClassificationLoss {
    /// The mean loss over the batch and its gradient with respect to the logits (throws as `perSample`).
    public func callAsFunction(logits: Tensor, labels: [Int32]) throws -> LossResult {
        try perSample(logits: logits, labels: labels).mean()
    }

    /// The loss against mixed targets, as mixup and CutMix need: λ·L(z, y_a) + (1 − λ)·L(z, y_b).
    ///
    /// For cross-entropy this equals the loss against the soft target λ·t(y_a) + (1 − λ)·t(y_b), label
    /// smoothing included, because cross-entropy is linear in its target (timm's `mixup_target`).
    /// - Parameters:
    ///   - labels: y_a, the labels of the samples as they are.
    ///   - partnerLabels: y_b, the labels of the samples mixed in.
    ///   - mixWeight: λ in [0, 1], the share of the original samples.
    public func callAsFunction(
        logits: Tensor, labels: [Int32], partnerLabels: [Int32], mixWeight: Float
    ) throws -> LossResult {
        try checkMixWeight(mixWeight)
        let first = try self(logits: logits, labels: labels)
        let second = try self(logits: logits, labels: partnerLabels)
        let lambda = Double(mixWeight)
        var gradient = first.gradient
        let weightFirst = mixWeight, weightSecond = 1 - mixWeight
        gradient.scalars.withUnsafeMutableBufferPointer { g in
            second.gradient.scalars.withUnsafeBufferPointer { h in
                for i in g.indices { g[i] = weightFirst * g[i] + weightSecond * h[i] }
            }
        }
        let value = lambda * Double(first.value) + (1 - lambda) * Double(second.value)
        return LossResult(value: Float(value), gradient: gradient)
    }

    /// Each sample's mixed loss λ·L_n(z, y_a) + (1 − λ)·L_n(z, y_b) and its gradient, for selecting
    /// samples of a mixed batch (parameters as for the batch loss above).
    public func perSample(
        logits: Tensor, labels: [Int32], partnerLabels: [Int32], mixWeight: Float
    ) throws -> SampleLosses {
        try checkMixWeight(mixWeight)
        let first = try perSample(logits: logits, labels: labels)
        return first.mixed(with: try perSample(logits: logits, labels: partnerLabels), weight: Double(mixWeight))
    }

    private func checkMixWeight(_ mixWeight: Float) throws {
        try checkHyperParameter(mixWeight, loss: String(describing: Self.self), name: "mixWeight", requirement: "in [0, 1]",
                                valid: (0...1).contains(mixWeight))
    }
}

// MARK: - Shared validation and log-softmax rows

/// Validated `[N, K]` logits with their log-softmax at a temperature.
struct LogSoftmaxRows {
    let rows: Int
    let classes: Int
    let temperature: Float
    let logProbabilities: [Float]  // [N, K]

    init(loss: String, logits: Tensor, temperature: Float, role: String = "logits") throws {
        try checkHyperParameter(temperature, loss: loss, name: "temperature", requirement: "finite and > 0",
                                valid: temperature > 0 && temperature.isFinite)
        guard logits.rank == 2, logits.shape[0] >= 1, logits.shape[1] >= 1 else {
            throw RuntimeError.shapeMismatch(path: "", kind: loss, expected: "\(role) [batch, classes] with both ≥ 1",
                                             found: logits.shape)
        }
        rows = logits.shape[0]
        classes = logits.shape[1]
        self.temperature = temperature
        var logProbabilities = [Float](repeating: 0, count: logits.count)
        let (rows, classes) = (self.rows, self.classes)
        logits.scalars.withUnsafeBufferPointer { z in
            logProbabilities.withUnsafeMutableBufferPointer { l in
                logSoftmaxForward(logits: z.baseAddress!, logProbabilities: l.baseAddress!,
                                  rows: rows, classes: classes, temperature: temperature)
            }
        }
        self.logProbabilities = logProbabilities
    }

    /// Checks one label per row, each in `0..<classes`.
    func checkLabels(_ labels: [Int32], loss: String) throws {
        guard labels.count == rows else {
            throw LossError.labelCountMismatch(loss: loss, labelCount: labels.count, batchSize: rows)
        }
        for (sample, label) in labels.enumerated() where label < 0 || Int(label) >= classes {
            throw LossError.labelOutOfRange(loss: loss, label: label, sample: sample, classCount: classes)
        }
    }
}

func checkHyperParameter(_ value: Float, loss: String, name: String, requirement: String, valid: Bool) throws {
    guard valid else {
        throw LossError.invalidHyperParameter(loss: loss, name: name, value: value, requirement: requirement)
    }
}
