#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Logit distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network"):
///
///     q = softmax(z_teacher / T),  p = softmax(z_student / T)
///     L = T² · (1/N) Σ_n Σ_k q[n, k] · (log q[n, k] − log p[n, k])
///     ∂L/∂z_student[n, k] = T · (p[n, k] − q[n, k]) / N
///
/// i.e. `F.kl_div(log p, q, reduction="batchmean") * T**2`. The T² keeps the gradient's size
/// comparable across temperatures, so the temperature can cycle (Smith 2022, §5.2) without retuning
/// the term's weight. The teacher is a constant: no gradient flows to it.
public struct KLDivergenceLoss: Sendable {
    /// T > 0, applied to both teacher and student logits.
    public var temperature: Float

    public init(temperature: Float = 1) {
        self.temperature = temperature
    }

    /// - Parameters:
    ///   - studentLogits: `[batch, classes]`.
    ///   - teacherLogits: the same shape.
    /// - Returns: the batch-mean loss and its gradient with respect to `studentLogits`.
    /// - Throws: `RuntimeError.shapeMismatch` when the shapes differ or are not `[batch, classes]`;
    ///   `LossError.invalidHyperParameter` for a temperature that is not finite and > 0.
    public func callAsFunction(studentLogits: Tensor, teacherLogits: Tensor) throws -> LossResult {
        let name = "KLDivergenceLoss"
        let student = try LogSoftmaxRows(loss: name, logits: studentLogits, temperature: temperature,
                                         role: "student logits")
        guard teacherLogits.shape == studentLogits.shape else {
            throw RuntimeError.shapeMismatch(path: "", kind: name,
                                             expected: "teacher logits \(describeShape(studentLogits.shape)) like the student's",
                                             found: teacherLogits.shape)
        }
        let teacher = try LogSoftmaxRows(loss: name, logits: teacherLogits, temperature: temperature,
                                         role: "teacher logits")
        let (N, K) = (student.rows, student.classes)
        let T = Double(temperature)
        let gradientScale = T / Double(N)
        var gradient = Tensor(zeros: [N, K])  // [N, K]
        var total: Double = 0
        student.logProbabilities.withUnsafeBufferPointer { lp in
            teacher.logProbabilities.withUnsafeBufferPointer { lq in
                gradient.scalars.withUnsafeMutableBufferPointer { dz in
                    for i in 0..<(N * K) {
                        let logQ = Double(lq[i]), logP = Double(lp[i])
                        let q = exp(logQ)
                        // q·log q → 0 as q → 0, as PyTorch's xlogy-based kl_div takes it.
                        if q > 0 { total += q * (logQ - logP) }
                        dz[i] = Float((exp(logP) - q) * gradientScale)
                    }
                }
            }
        }
        return LossResult(value: Float(T * T * total / Double(N)), gradient: gradient)
    }
}
