import EpicycleRuntime

/// A loss between a student feature map and a teacher feature map of the same batch (NHWC), with
/// its gradient with respect to the student's map. The teacher's map is a constant.
///
/// The feature-matching methods of `DistillationMethod` conform: `HintLoss`, `AttentionTransferLoss`,
/// `SpatialSoftmaxLoss`. A term's weight scales the returned gradient (and, for a hint, the gradient its
/// regressor's parameters receive), so the weighted sum of terms is differentiated in one pass.
public protocol FeatureLoss {
    /// - Parameters:
    ///   - student: `[N, H, W, C_s]`.
    ///   - teacher: `[N, H, W, C_t]`; each method states which of its dimensions must match.
    ///   - weight: the term's weight w; the result's `value` is the unweighted loss L and its
    ///     `gradient` is w·∂L/∂student.
    func callAsFunction(student: Tensor, teacher: Tensor, weight: Float) throws -> LossResult
}

/// Checks that two NHWC maps have the same batch and spatial size (and channels, when asked).
func checkFeaturePair(_ student: Tensor, _ teacher: Tensor, loss: String, sameChannels: Bool) throws {
    guard student.rank == 4, student.count > 0 else {
        throw RuntimeError.shapeMismatch(path: "", kind: loss, expected: "a student feature map [N, H, W, C] (NHWC)",
                                         found: student.shape)
    }
    let matches = teacher.rank == 4 && teacher.shape[0...2] == student.shape[0...2]
        && (!sameChannels || teacher.shape[3] == student.shape[3])
    guard matches else {
        let channels = sameChannels ? "\(student.shape[3])" : "C"
        throw RuntimeError.shapeMismatch(
            path: "", kind: loss,
            expected: "a teacher feature map [\(student.shape[0]), \(student.shape[1]), \(student.shape[2]), \(channels)] like the student's",
            found: teacher.shape)
    }
}
