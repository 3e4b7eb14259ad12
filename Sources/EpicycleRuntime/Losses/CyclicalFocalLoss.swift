/// Cyclical focal loss (Smith 2022, "Cyclical Focal Loss", arXiv 2202.08978):
///
///     L = ξ·L_hc + (1 − ξ)·L_focal
///     L_hc    = −(1 + p_t)^γ_hc · log p_t      (weights confident samples up)
///     L_focal = −(1 − p_t)^γ_focal · log p_t   (weights hard samples up; Lin et al. 2017)
///
/// with p_t = softmax(z / T)[y], averaged over the batch. ξ is set from outside, usually once per
/// epoch by a cyclical schedule: the paper's reference code (lnsmith54/CFL, `asl_focal_loss.py`)
/// starts at ξ = 1 (confident samples, the easy end), falls to 0 and, with a cyclical factor > 1,
/// rises again, i.e. ξ = 1 − δ(t) with the hardness δ of DESIGN.md. Its command lines use
/// γ_hc = 3 and γ_focal = 2, the defaults here.
///
/// ξ = 0 gives `FocalLoss(gamma: gammaFocal)`; ξ = 1 gives L_hc alone. Label smoothing ε takes the
/// loss against q = (1 − ε)·onehot(y) + ε/K, each class k weighted by its own ξ·(1 + p_k)^γ_hc +
/// (1 − ξ)·(1 − p_k)^γ_focal (as `FocalLoss` does); the reference code smooths its targets the same
/// way but weights the other classes by its asymmetric-loss factors instead.
public struct CyclicalFocalLoss: ClassificationLoss, Sendable {
    /// γ_hc ≥ 0, the exponent of the high-confidence term.
    public var gammaHighConfidence: Float
    /// γ_focal ≥ 0, the exponent of the focal term.
    public var gammaFocal: Float
    /// ξ in [0, 1]: the weight of the high-confidence term.
    public var xi: Float
    /// T > 0: the logits are divided by it before the softmax.
    public var temperature: Float
    /// ε in [0, 1]: the share of the target spread uniformly over all K classes.
    public var labelSmoothing: Float

    public init(gammaHighConfidence: Float = 3, gammaFocal: Float = 2, xi: Float, temperature: Float = 1,
                labelSmoothing: Float = 0) {
        self.gammaHighConfidence = gammaHighConfidence
        self.gammaFocal = gammaFocal
        self.xi = xi
        self.temperature = temperature
        self.labelSmoothing = labelSmoothing
    }

    public func perSample(logits: Tensor, labels: [Int32]) throws -> SampleLosses {
        let name = "CyclicalFocalLoss"
        try checkHyperParameter(gammaHighConfidence, loss: name, name: "gammaHighConfidence",
                                requirement: "finite and ≥ 0",
                                valid: gammaHighConfidence >= 0 && gammaHighConfidence.isFinite)
        try checkHyperParameter(gammaFocal, loss: name, name: "gammaFocal", requirement: "finite and ≥ 0",
                                valid: gammaFocal >= 0 && gammaFocal.isFinite)
        try checkHyperParameter(xi, loss: name, name: "xi", requirement: "in [0, 1]", valid: (0...1).contains(xi))
        let (gammaHC, gammaF, xi) = (Double(gammaHighConfidence), Double(gammaFocal), Double(xi))
        return try modulatedCrossEntropy(loss: name, logits: logits, labels: labels, temperature: temperature,
                                         labelSmoothing: labelSmoothing) { x in
            let highConfidence = highConfidenceModulation(gamma: gammaHC, x)
            let focal = focalModulation(gamma: gammaF, x)
            return Modulation(weight: xi * highConfidence.weight + (1 - xi) * focal.weight,
                              slope: xi * highConfidence.slope + (1 - xi) * focal.slope)
        }
    }
}
