#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Cross-entropy of `softmax(logits / temperature)` against class labels, with label smoothing.
///
///     t = (1 − ε)·onehot(y) + ε/K                       (PyTorch's `label_smoothing`)
///     L = −(1/N) Σ_n Σ_k t[n, k] · log softmax(z[n] / T)[k]
///     ∂L/∂z[n, k] = (softmax(z[n] / T)[k] − t[n, k]) / (T·N)
///
/// With T = 1 and ε = 0 this is `torch.nn.CrossEntropyLoss()`. T is the softmax temperature of
/// cyclical temperature training (Smith 2022, "General Cyclical Training of Neural Networks", §4):
/// T < 1 sharpens the distribution, T > 1 softens it, and the gradient carries a factor 1/T.
public struct CrossEntropyLoss: ClassificationLoss, Sendable {
    /// T > 0: the logits are divided by it before the softmax.
    public var temperature: Float
    /// ε in [0, 1]: the share of the target spread uniformly over all K classes.
    public var labelSmoothing: Float

    public init(temperature: Float = 1, labelSmoothing: Float = 0) {
        self.temperature = temperature
        self.labelSmoothing = labelSmoothing
    }

    /// - Throws: see `ClassificationLoss`; also `LossError.invalidHyperParameter` when ε is outside [0, 1].
    public func perSample(logits: Tensor, labels: [Int32]) throws -> SampleLosses {
        let rows = try validatedRows(logits)
        try rows.checkLabels(labels, loss: Self.name)
        return losses(rows) { n, k in k == Int(labels[n]) ? 1 : 0 }
    }

    /// Cross-entropy against soft targets (rows of class probabilities summing to 1), as for mixup
    /// targets built elsewhere or timm's `SoftTargetCrossEntropy`. Label smoothing applies on top, as
    /// in PyTorch: t = (1 − ε)·targets + ε/K.
    /// - Parameter targets: `[batch, classes]`, the same shape as `logits`.
    public func callAsFunction(logits: Tensor, targets: Tensor) throws -> LossResult {
        let rows = try validatedRows(logits)
        guard targets.shape == logits.shape else {
            throw RuntimeError.shapeMismatch(path: "", kind: Self.name,
                                             expected: "targets \(describeShape(logits.shape)) like the logits",
                                             found: targets.shape)
        }
        return losses(rows) { n, k in Double(targets.scalars[n * rows.classes + k]) }.mean()
    }

    private static let name = "CrossEntropyLoss"

    private func validatedRows(_ logits: Tensor) throws -> LogSoftmaxRows {
        try checkHyperParameter(labelSmoothing, loss: Self.name, name: "labelSmoothing", requirement: "in [0, 1]",
                                valid: (0...1).contains(labelSmoothing))
        return try LogSoftmaxRows(loss: Self.name, logits: logits, temperature: temperature)
    }

    // `target(n, k)` is the unsmoothed target probability of class k for sample n; ∂L_n/∂u = p − t.
    private func losses(_ rows: LogSoftmaxRows, target: (Int, Int) -> Double) -> SampleLosses {
        let (N, K) = (rows.rows, rows.classes)
        let epsilon = Double(labelSmoothing)
        let uniform = epsilon / Double(K)
        var values = [Double](repeating: 0, count: N)  // [N]
        var gradients = [Double](repeating: 0, count: N * K)  // [N, K]
        rows.logProbabilities.withUnsafeBufferPointer { l in
            for n in 0..<N {
                for k in 0..<K {
                    let logP = Double(l[n * K + k])
                    let t = (1 - epsilon) * target(n, k) + uniform
                    values[n] -= t * logP
                    gradients[n * K + k] = exp(logP) - t
                }
            }
        }
        return SampleLosses(samples: N, classes: K, temperature: Double(temperature), values: values, gradients: gradients)
    }
}
