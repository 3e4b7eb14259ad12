import EpicycleRuntime

/// The FitNets regressor: a 1×1 convolution from the student's channels to the teacher's, then batch
/// norm (as torchdistill and CRD's FitNet regressors do). Trained with the student; a distilled
/// checkpoint keeps it under `/adapters` (`hint.<k>.conv.weight`, `hint.<k>.bn.*`).
public final class HintRegressor: Layer {
    public let convolution: Conv2D
    public let normalization: BatchNorm2D

    public init(studentChannels: Int, teacherChannels: Int, generator: inout RandomGenerator) {
        convolution = Conv2D(inputChannels: studentChannels, outputChannels: teacherChannels, kernelSize: 1,
                             generator: &generator)
        normalization = BatchNorm2D(channels: teacherChannels)
    }

    public func forward(_ input: Tensor, mode: Mode) throws -> Tensor {
        let projected = try forward(child: convolution, named: "conv", input, mode: mode)
        return try forward(child: normalization, named: "bn", projected, mode: mode)
    }

    public func backward(_ dOutput: Tensor) -> Tensor {
        convolution.backward(normalization.backward(dOutput))
    }

    public func collectState(into state: inout ModuleState) {
        state.add("conv", convolution)
        state.add("bn", normalization)
    }
}

/// FitNets hints (Romero et al. 2015, "FitNets: Hints for Thin Deep Nets", ICLR): the student's
/// feature map, through a learned regressor r, should equal the teacher's:
///
///     L = (1/M) Σ (r(F_s) − F_t)²,   M = N·H·W·C_t     (`nn.MSELoss()`, as torchdistill's FitNet)
///
/// The regressor runs in training mode (batch statistics in its batch norm) and its parameters get
/// w·∂L/∂θ; the returned gradient is w·∂L/∂F_s. Spatial sizes must agree; channels may differ.
public struct HintLoss: FeatureLoss {
    public let regressor: HintRegressor

    public init(regressor: HintRegressor) {
        self.regressor = regressor
    }

    public func callAsFunction(student: Tensor, teacher: Tensor, weight: Float = 1) throws -> LossResult {
        try checkFeaturePair(student, teacher, loss: "HintLoss", sameChannels: false)
        guard student.shape[3] == regressor.convolution.inputChannels, teacher.shape[3] == regressor.convolution.outputChannels else {
            throw RuntimeError.shapeMismatch(
                path: "", kind: "HintLoss",
                expected: "student/teacher channels \(regressor.convolution.inputChannels)/\(regressor.convolution.outputChannels) as the regressor was built for",
                found: [student.shape[3], teacher.shape[3]])
        }
        let regressed = try regressor.forward(student, mode: .training)
        var mse = try MeanSquaredErrorLoss()(prediction: regressed, target: teacher)
        if weight != 1 {
            mse.gradient.scalars.withUnsafeMutableBufferPointer { g in
                for i in g.indices { g[i] *= weight }
            }
        }
        return LossResult(value: mse.value, gradient: regressor.backward(mse.gradient))
    }
}
