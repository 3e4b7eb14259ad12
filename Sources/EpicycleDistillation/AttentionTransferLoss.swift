#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import EpicycleRuntime

/// Attention transfer (Zagoruyko & Komodakis 2017, "Paying More Attention to Attention", ICLR), p = 2:
///
///     Q[n, i] = (1/C) Σ_c F[n, i, c]²                 spatial attention map, i over the H·W positions
///     a[n]    = Q[n] / max(‖Q[n]‖₂, 1e-12)            normalised per sample
///     L       = (1/(N·H·W)) Σ_n Σ_i (a_s[n, i] − a_t[n, i])²
///
/// as the authors' code computes it (`at_loss`: `(at(x) − at(y)).pow(2).mean()`, with
/// `at(x) = F.normalize(x.pow(2).mean(1).view(N, −1))`), which is why their β is about 10³ (the
/// recipe's weight). Student and teacher may have different channel counts; their spatial sizes must
/// agree. The gradient, with g = 2(a_s − a_t)/(N·H·W):
///
///     ∂L/∂Q_s[n] = (g[n] − a_s[n]·⟨a_s[n], g[n]⟩) / ‖Q_s[n]‖,     ∂L/∂F_s[n, i, c] = ∂L/∂Q_s[n, i] · 2·F_s[n, i, c] / C
public struct AttentionTransferLoss: FeatureLoss, Sendable {
    public init() {}

    public func callAsFunction(student: Tensor, teacher: Tensor, weight: Float = 1) throws -> LossResult {
        try checkFeaturePair(student, teacher, loss: "AttentionTransferLoss", sameChannels: false)
        let batch = student.shape[0], positions = student.shape[1] * student.shape[2]
        let studentChannels = student.shape[3]
        let (studentMaps, studentNorms) = attentionMaps(student)  // [N, H·W], [N]
        let (teacherMaps, _) = attentionMaps(teacher)  // [N, H·W]
        let scale = 1 / Double(batch * positions)
        var total = 0.0
        var gradient = Tensor(zeros: student.shape)  // [N, H, W, C_s]
        var dMap = [Double](repeating: 0, count: positions)  // [H·W], one sample's ∂L/∂a_s then ∂L/∂Q_s
        gradient.scalars.withUnsafeMutableBufferPointer { dF in
            student.scalars.withUnsafeBufferPointer { f in
                for n in 0..<batch {
                    var projection = 0.0
                    for i in 0..<positions {
                        let difference = studentMaps[n * positions + i] - teacherMaps[n * positions + i]
                        total += difference * difference
                        dMap[i] = 2 * difference * scale * Double(weight)
                        projection += studentMaps[n * positions + i] * dMap[i]
                    }
                    // Below the clamp the normalisation is a constant division, with no projection term.
                    let norm = studentNorms[n]
                    let clamped = norm <= normalizationEpsilon
                    let channelFactor = 2 / Double(studentChannels)
                    for i in 0..<positions {
                        let dQ = clamped ? dMap[i] / normalizationEpsilon
                            : (dMap[i] - studentMaps[n * positions + i] * projection) / norm
                        let base = (n * positions + i) * studentChannels
                        let factor = Float(dQ * channelFactor)
                        for c in 0..<studentChannels { dF[base + c] = factor * f[base + c] }
                    }
                }
            }
        }
        return LossResult(value: Float(total * scale), gradient: gradient)
    }
}

/// `F.normalize`'s default ε.
private let normalizationEpsilon = 1e-12

/// The normalised attention maps a[n] ([N, H·W], in Double) and the norms ‖Q[n]‖ ([N]) of `features`.
private func attentionMaps(_ features: Tensor) -> (maps: [Double], norms: [Double]) {
    let batch = features.shape[0], positions = features.shape[1] * features.shape[2], channels = features.shape[3]
    var maps = [Double](repeating: 0, count: batch * positions)
    var norms = [Double](repeating: 0, count: batch)
    features.scalars.withUnsafeBufferPointer { f in
        for n in 0..<batch {
            var squaredNorm = 0.0
            for i in 0..<positions {
                let base = (n * positions + i) * channels
                var sum: Float = 0
                for c in 0..<channels { sum += f[base + c] * f[base + c] }
                let q = Double(sum) / Double(channels)
                maps[n * positions + i] = q
                squaredNorm += q * q
            }
            let norm = squaredNorm.squareRoot()
            norms[n] = norm
            let divisor = max(norm, normalizationEpsilon)
            for i in 0..<positions { maps[n * positions + i] /= divisor }
        }
    }
    return (maps, norms)
}
