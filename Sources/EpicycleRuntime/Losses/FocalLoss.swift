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
public struct FocalLoss: ClassificationLoss, Sendable {
    /// γ ≥ 0, the focusing parameter; the paper's best setting is 2.
    public var gamma: Float
    /// T > 0: the logits are divided by it before the softmax.
    public var temperature: Float

    public init(gamma: Float = 2, temperature: Float = 1) {
        self.gamma = gamma
        self.temperature = temperature
    }

    public func callAsFunction(logits: Tensor, labels: [Int32]) throws -> LossResult {
        let name = "FocalLoss"
        try checkHyperParameter(gamma, loss: name, name: "gamma", requirement: "finite and ≥ 0",
                                valid: gamma >= 0 && gamma.isFinite)
        let gamma = Double(gamma)
        return try modulatedCrossEntropy(loss: name, logits: logits, labels: labels, temperature: temperature) {
            focalModulation(gamma: gamma, $0)
        }
    }
}

/// What a modulated cross-entropy −w(p)·log p needs of its weight w at one sample's true-class
/// probability p.
struct Modulation {
    /// w(p).
    var weight: Double
    /// −w′(p)·p·log p: the weight's own contribution to ∂L/∂u_y, where u = z / T.
    var slope: Double
}

/// The true-class probability p, 1 − p and log p of one sample, with 1 − p computed accurately
/// for confident samples (as −expm1(log p), not 1 − p).
struct TrueClassProbability {
    var p: Double
    var oneMinusP: Double
    var logP: Double
}

/// Focal weight w = (1 − p)^γ. The slope γ·(1 − p)^(γ−1)·p·log p tends to 0 as p → 1 for γ > 0 and is
/// 0 for γ = 0; both cases are taken exactly rather than through 0·∞.
func focalModulation(gamma: Double, _ x: TrueClassProbability) -> Modulation {
    let weight = pow(x.oneMinusP, gamma)
    let slope = gamma == 0 || x.oneMinusP == 0 ? 0 : gamma * pow(x.oneMinusP, gamma - 1) * x.p * x.logP
    return Modulation(weight: weight, slope: slope)
}

/// High-confidence weight w = (1 + p)^γ of the cyclical focal loss; slope −γ·(1 + p)^(γ−1)·p·log p.
func highConfidenceModulation(gamma: Double, _ x: TrueClassProbability) -> Modulation {
    let weight = pow(1 + x.p, gamma)
    let slope = gamma == 0 ? 0 : -gamma * pow(1 + x.p, gamma - 1) * x.p * x.logP
    return Modulation(weight: weight, slope: slope)
}

/// The mean of −w(p_t)·log p_t over the batch and its gradient. With u = z / T and p = softmax(u):
///
///     ∂L_n/∂u_j = g · (δ[j, y] − p_j),   g = −w′(p_t)·p_t·log p_t − w(p_t)
///
/// (from ∂p_t/∂u_j = p_t·(δ[j, y] − p_j)); ∂/∂z carries a further 1/T and the mean 1/N.
func modulatedCrossEntropy(
    loss: String, logits: Tensor, labels: [Int32], temperature: Float,
    modulation: (TrueClassProbability) -> Modulation
) throws -> LossResult {
    let rows = try LogSoftmaxRows(loss: loss, logits: logits, temperature: temperature)
    try rows.checkLabels(labels, loss: loss)
    let (N, K) = (rows.rows, rows.classes)
    let gradientScale = 1 / (Double(temperature) * Double(N))
    var gradient = Tensor(zeros: [N, K])  // [N, K]
    var total: Double = 0
    rows.logProbabilities.withUnsafeBufferPointer { l in
        gradient.scalars.withUnsafeMutableBufferPointer { dz in
            for n in 0..<N {
                let y = Int(labels[n])
                let logP = Double(l[n * K + y])
                let m = modulation(TrueClassProbability(p: exp(logP), oneMinusP: -expm1(logP), logP: logP))
                total -= m.weight * logP
                let g = (m.slope - m.weight) * gradientScale
                for k in 0..<K {
                    let p = exp(Double(l[n * K + k]))
                    dz[n * K + k] = Float(g * ((k == y ? 1 : 0) - p))
                }
            }
        }
    }
    return LossResult(value: Float(total / Double(N)), gradient: gradient)
}
