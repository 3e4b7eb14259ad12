#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// An unlabeled-data loss: its value and gradient with respect to the student's logits, and for
/// every row the target's pseudo-label and whether it passed the confidence threshold.
public struct ConsistencyResult: Sendable, Equatable {
    /// The mean over **all** rows, masked rows counting as 0 (FixMatch's mean over μB).
    public var loss: LossResult
    /// argmax of the target distribution at T = 1, per row (the first maximum on ties, as torch.max).
    public var pseudoLabels: [Int32]  // [N]
    /// Whether the target's largest probability at T = 1 reached the threshold τ, per row.
    public var confident: [Bool]  // [N]

    /// The share of rows above the threshold.
    public var maskRate: Double { Double(confident.count(where: { $0 })) / Double(max(confident.count, 1)) }
}

/// FixMatch's consistency loss (Sohn et al. 2020, "FixMatch: Simplifying Semi-Supervised Learning with
/// Consistency and Confidence", eq. 4) on μB unlabeled images seen twice:
///
///     q_n = softmax(z_weak[n]),  ŷ_n = argmax q_n,  m_n = 1(max q_n ≥ τ)
///     L = (1/N) Σ_n m_n · (−log softmax(z_strong[n])[ŷ_n])
///     ∂L/∂z_strong[n, k] = m_n · (softmax(z_strong[n])[k] − 1(k = ŷ_n)) / N
///
/// The weak view only supplies the hard pseudo-label: no gradient flows through it. Cross-entropy at
/// T = 1 without smoothing, as in the paper. N counts every unlabeled row, so a step where few images
/// pass τ contributes little (the paper's mean over μB, not over the confident ones).
public struct FixMatchLoss: Sendable {
    /// τ in [0, 1]: the confidence a pseudo-label needs to count.
    public var threshold: Float

    public init(threshold: Float = 0.95) {
        self.threshold = threshold
    }

    /// - Parameters:
    ///   - weakLogits: `[N, K]`, the model on the weakly augmented images.
    ///   - strongLogits: `[N, K]`, the model on the strongly augmented images.
    /// - Throws: `RuntimeError.shapeMismatch` when the shapes differ or are not `[N, K]`;
    ///   `LossError.invalidHyperParameter` for τ outside [0, 1].
    public func callAsFunction(weakLogits: Tensor, strongLogits: Tensor) throws -> ConsistencyResult {
        let name = "FixMatchLoss"
        let targets = try ConfidentTargets(loss: name, logits: weakLogits, threshold: threshold, role: "weak-view logits")
        let strong = try LogSoftmaxRows(loss: name, logits: strongLogits, temperature: 1, role: "strong-view logits")
        try targets.checkShape(of: strongLogits, loss: name, role: "strong-view logits")
        let (N, K) = (strong.rows, strong.classes)
        var gradient = Tensor(zeros: [N, K])  // [N, K]
        var total: Double = 0
        strong.logProbabilities.withUnsafeBufferPointer { l in
            gradient.scalars.withUnsafeMutableBufferPointer { g in
                for n in 0..<N where targets.confident[n] {
                    let label = Int(targets.pseudoLabels[n])
                    total -= Double(l[n * K + label])
                    for k in 0..<K {
                        g[n * K + k] = Float((exp(Double(l[n * K + k])) - (k == label ? 1 : 0)) / Double(N))
                    }
                }
            }
        }
        return ConsistencyResult(loss: LossResult(value: Float(total / Double(N)), gradient: gradient),
                                 pseudoLabels: targets.pseudoLabels, confident: targets.confident)
    }
}

/// A teacher's soft targets on unlabeled images (distillation on unlabeled data; Hinton et al. 2015,
/// the unlabeled half of Smith 2022 §4.3 with a teacher), kept where the teacher is confident:
///
///     q_n = softmax(z_teacher[n] / T),  p_n = softmax(z_student[n] / T),  m_n = 1(max softmax(z_teacher[n]) ≥ τ)
///     L = T² · (1/N) Σ_n m_n · Σ_k q[n, k] · (log q[n, k] − log p[n, k])
///     ∂L/∂z_student[n, k] = m_n · T · (p[n, k] − q[n, k]) / N
///
/// With τ = 0 every row counts and this is `KLDivergenceLoss`. The confidence is read at T = 1, the
/// teacher's own prediction, so τ means the same as in `FixMatchLoss`. No gradient reaches the teacher.
public struct SoftTargetConsistencyLoss: Sendable {
    /// T > 0, applied to teacher and student logits.
    public var temperature: Float
    /// τ in [0, 1].
    public var threshold: Float

    public init(temperature: Float = 1, threshold: Float = 0) {
        self.temperature = temperature
        self.threshold = threshold
    }

    /// - Parameters:
    ///   - teacherLogits: `[N, K]`, the teacher on the (weakly augmented) unlabeled images.
    ///   - studentLogits: `[N, K]`, the student on the (strongly augmented) same images.
    /// - Throws: as `FixMatchLoss`, and for a temperature that is not finite and > 0.
    public func callAsFunction(teacherLogits: Tensor, studentLogits: Tensor) throws -> ConsistencyResult {
        let name = "SoftTargetConsistencyLoss"
        let targets = try ConfidentTargets(loss: name, logits: teacherLogits, threshold: threshold, role: "teacher logits")
        let student = try LogSoftmaxRows(loss: name, logits: studentLogits, temperature: temperature, role: "student logits")
        try targets.checkShape(of: studentLogits, loss: name, role: "student logits")
        let teacher = try LogSoftmaxRows(loss: name, logits: teacherLogits, temperature: temperature, role: "teacher logits")
        let (N, K) = (student.rows, student.classes)
        let T = Double(temperature)
        var gradient = Tensor(zeros: [N, K])  // [N, K]
        var total: Double = 0
        student.logProbabilities.withUnsafeBufferPointer { lp in
            teacher.logProbabilities.withUnsafeBufferPointer { lq in
                gradient.scalars.withUnsafeMutableBufferPointer { dz in
                    for n in 0..<N where targets.confident[n] {
                        for i in (n * K)..<((n + 1) * K) {
                            let logQ = Double(lq[i]), logP = Double(lp[i])
                            let q = exp(logQ)
                            if q > 0 { total += q * (logQ - logP) }
                            dz[i] = Float((exp(logP) - q) * T / Double(N))
                        }
                    }
                }
            }
        }
        return ConsistencyResult(loss: LossResult(value: Float(T * T * total / Double(N)), gradient: gradient),
                                 pseudoLabels: targets.pseudoLabels, confident: targets.confident)
    }
}

/// The hard pseudo-label and the confidence mask of `[N, K]` target logits at T = 1.
private struct ConfidentTargets {
    let shape: [Int]
    let pseudoLabels: [Int32]  // [N]
    let confident: [Bool]  // [N]

    init(loss: String, logits: Tensor, threshold: Float, role: String) throws {
        try checkHyperParameter(threshold, loss: loss, name: "threshold", requirement: "in [0, 1]",
                                valid: (0...1).contains(threshold))
        let rows = try LogSoftmaxRows(loss: loss, logits: logits, temperature: 1, role: role)
        let (N, K) = (rows.rows, rows.classes)
        var labels = [Int32](repeating: 0, count: N), confident = [Bool](repeating: false, count: N)
        for n in 0..<N {
            var best = 0
            for k in 1..<K where rows.logProbabilities[n * K + k] > rows.logProbabilities[n * K + best] { best = k }
            labels[n] = Int32(best)
            confident[n] = expf(rows.logProbabilities[n * K + best]) >= threshold
        }
        shape = logits.shape
        pseudoLabels = labels
        self.confident = confident
    }

    func checkShape(of other: Tensor, loss: String, role: String) throws {
        guard other.shape == shape else {
            throw RuntimeError.shapeMismatch(path: "", kind: loss, expected: "\(role) \(describeShape(shape)) like the targets'",
                                             found: other.shape)
        }
    }
}
