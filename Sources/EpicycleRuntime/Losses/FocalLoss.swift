#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection", eq. 4, without the α
/// class weight) for softmax classification:
///
///     p_t = softmax(z / T)[y],   L = −(1/N) Σ_n (1 − p_t)^γ · log p_t
///
/// γ = 0 is cross-entropy; larger γ shrinks the loss of well-classified samples so training
/// concentrates on hard ones. The modulating factor is differentiated too (as autograd does for
/// the usual PyTorch implementations), so the gradient is exact.
///
/// With label smoothing ε the loss is taken against the smoothed target q = (1 − ε)·onehot(y) + ε/K
/// (PyTorch's `label_smoothing`), each class modulated by its own probability:
/// L = −(1/N) Σ_n Σ_k q_k·(1 − p_k)^γ·log p_k. With γ = 0 it is `CrossEntropyLoss(labelSmoothing: ε)`.
public struct FocalLoss: ClassificationLoss, Sendable {
    /// γ ≥ 0, the focusing parameter; the paper's best setting is 2.
    public var gamma: Float
    /// T > 0: the logits are divided by it before the softmax.
    public var temperature: Float
    /// ε in [0, 1]: the share of the target spread uniformly over all K classes.
    public var labelSmoothing: Float

    public init(gamma: Float = 2, temperature: Float = 1, labelSmoothing: Float = 0) {
        self.gamma = gamma
        self.temperature = temperature
        self.labelSmoothing = labelSmoothing
    }

    public func perSample(logits: Tensor, labels: [Int32]) throws -> SampleLosses {
        let name = "FocalLoss"
        try checkHyperParameter(gamma, loss: name, name: "gamma", requirement: "finite and ≥ 0",
                                valid: gamma >= 0 && gamma.isFinite)
        let gamma = Double(gamma)
        return try modulatedCrossEntropy(loss: name, logits: logits, labels: labels, temperature: temperature,
                                         labelSmoothing: labelSmoothing) {
            focalModulation(gamma: gamma, $0)
        }
    }
}

/// What a modulated cross-entropy −w(p)·log p needs of its weight w at one class probability p.
struct Modulation {
    /// w(p).
    var weight: Double
    /// −w′(p)·p·log p: the weight's own contribution to ∂L/∂u_k, where u = z / T.
    var slope: Double
}

/// One class probability p of one sample, 1 − p and log p, with 1 − p computed accurately for
/// confident samples (as −expm1(log p), not 1 − p).
struct ClassProbability {
    var p: Double
    var oneMinusP: Double
    var logP: Double
}

/// Focal weight w = (1 − p)^γ. The slope γ·(1 − p)^(γ−1)·p·log p tends to 0 as p → 1 for γ > 0 and is
/// 0 for γ = 0; both cases are taken exactly rather than through 0·∞.
func focalModulation(gamma: Double, _ x: ClassProbability) -> Modulation {
    let weight = pow(x.oneMinusP, gamma)
    let slope = gamma == 0 || x.oneMinusP == 0 ? 0 : gamma * pow(x.oneMinusP, gamma - 1) * x.p * x.logP
    return Modulation(weight: weight, slope: slope)
}

/// High-confidence weight w = (1 + p)^γ of the cyclical focal loss; slope −γ·(1 + p)^(γ−1)·p·log p.
func highConfidenceModulation(gamma: Double, _ x: ClassProbability) -> Modulation {
    let weight = pow(1 + x.p, gamma)
    let slope = gamma == 0 ? 0 : -gamma * pow(1 + x.p, gamma - 1) * x.p * x.logP
    return Modulation(weight: weight, slope: slope)
}

/// Each sample's −Σ_k q_k·w(p_k)·log p_k, with q = (1 − ε)·onehot(y) + ε/K the label-smoothed target
/// (ε = 0 leaves the single term −w(p_y)·log p_y), and its gradient. With u = z / T and
/// p = softmax(u), from ∂p_k/∂u_j = p_k·(δ[j, k] − p_j):
///
///     ∂L_n/∂u_j = q_j·g_j − p_j·Σ_k q_k·g_k,   g_k = −w′(p_k)·p_k·log p_k − w(p_k)
///
/// ∂/∂z carries a further 1/T. Classes with q_k = 0 add nothing and are skipped.
func modulatedCrossEntropy(
    loss: String, logits: Tensor, labels: [Int32], temperature: Float, labelSmoothing: Float,
    modulation: (ClassProbability) -> Modulation
) throws -> SampleLosses {
    try checkHyperParameter(labelSmoothing, loss: loss, name: "labelSmoothing", requirement: "in [0, 1]",
                            valid: (0...1).contains(labelSmoothing))
    let rows = try LogSoftmaxRows(loss: loss, logits: logits, temperature: temperature)
    try rows.checkLabels(labels, loss: loss)
    let (N, K) = (rows.rows, rows.classes)
    let epsilon = Double(labelSmoothing), uniform = Double(labelSmoothing) / Double(K)
    var values = [Double](repeating: 0, count: N)  // [N]
    var gradients = [Double](repeating: 0, count: N * K)  // [N, K]: ∂L_n/∂u
    var weighted = [Double](repeating: 0, count: K)  // [K]: q_k·g_k of the current sample
    rows.logProbabilities.withUnsafeBufferPointer { l in
        for n in 0..<N {
            let y = Int(labels[n])
            var weightedSum: Double = 0
            for k in 0..<K {
                let q = (k == y ? 1 - epsilon : 0) + uniform
                guard q > 0 else { weighted[k] = 0; continue }
                let logP = Double(l[n * K + k])
                let m = modulation(ClassProbability(p: exp(logP), oneMinusP: -expm1(logP), logP: logP))
                values[n] -= q * m.weight * logP
                weighted[k] = q * (m.slope - m.weight)
                weightedSum += weighted[k]
            }
            for k in 0..<K {
                let p = exp(Double(l[n * K + k]))
                gradients[n * K + k] = weighted[k] - p * weightedSum
            }
        }
    }
    return SampleLosses(samples: N, classes: K, temperature: Double(temperature), values: values, gradients: gradients)
}
