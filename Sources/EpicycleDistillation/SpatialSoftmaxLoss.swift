import EpicycleRuntime

/// Channel-wise distillation (Shu et al. 2021, "Channel-wise Knowledge Distillation for Dense
/// Prediction", ICCV): each channel's spatial map becomes a distribution by a softmax over the H·W
/// positions at temperature τ, and the student's matches the teacher's by KL divergence:
///
///     q[n, c] = softmax_i(F_t[n, i, c] / τ),   p[n, c] = softmax_i(F_s[n, i, c] / τ)
///     L = τ² / (N·C) · Σ_n Σ_c Σ_i q[n, c, i] · (log q[n, c, i] − log p[n, c, i])
///     ∂L/∂F_s[n, i, c] = τ · (p[n, c, i] − q[n, c, i]) / (N·C)
///
/// The τ² keeps the gradient's size steady as τ changes, so the temperature can cycle (Smith 2022,
/// §5.2): this is where cyclical temperature reaches the feature-matching losses. Student and teacher
/// must have the same channels and spatial size. It is `KLDivergenceLoss` over the N·C rows of the
/// maps laid out channel-first.
public struct SpatialSoftmaxLoss: FeatureLoss, Sendable {
    /// τ > 0.
    public var temperature: Float

    public init(temperature: Float) {
        self.temperature = temperature
    }

    public func callAsFunction(student: Tensor, teacher: Tensor, weight: Float = 1) throws -> LossResult {
        try checkFeaturePair(student, teacher, loss: "SpatialSoftmaxLoss", sameChannels: true)
        let kl = try KLDivergenceLoss(temperature: temperature)(studentLogits: channelRows(student),
                                                                teacherLogits: channelRows(teacher))
        var gradient = Tensor(zeros: student.shape)  // [N, H, W, C]
        transposeRows(kl.gradient, into: &gradient, scale: weight)
        return LossResult(value: kl.value, gradient: gradient)
    }
}

/// [N, H, W, C] → [N·C, H·W]: one row per channel map.
private func channelRows(_ features: Tensor) -> Tensor {
    let batch = features.shape[0], positions = features.shape[1] * features.shape[2], channels = features.shape[3]
    var rows = Tensor(zeros: [batch * channels, positions])
    features.scalars.withUnsafeBufferPointer { f in
        rows.scalars.withUnsafeMutableBufferPointer { r in
            for n in 0..<batch {
                for i in 0..<positions {
                    let source = (n * positions + i) * channels
                    for c in 0..<channels { r[(n * channels + c) * positions + i] = f[source + c] }
                }
            }
        }
    }
    return rows
}

/// [N·C, H·W] → `features`' [N, H, W, C], times `scale`.
private func transposeRows(_ rows: Tensor, into features: inout Tensor, scale: Float) {
    let batch = features.shape[0], positions = features.shape[1] * features.shape[2], channels = features.shape[3]
    rows.scalars.withUnsafeBufferPointer { r in
        features.scalars.withUnsafeMutableBufferPointer { f in
            for n in 0..<batch {
                for i in 0..<positions {
                    let target = (n * positions + i) * channels
                    for c in 0..<channels { f[target + c] = scale * r[(n * channels + c) * positions + i] }
                }
            }
        }
    }
}
