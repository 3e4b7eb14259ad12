import EpicycleRuntime

/// Every knob's value at one step, built once per step from the schedules
/// (`KnobSchedules.values(at:in:)`) and bound in one place (`bind(to:)`, `clipGradients(_:)`; the
/// loop reads the batch size and augmentation strength at each epoch's start, and the objective its
/// temperature and focal mix).
///
/// Adding a knob: a `Knob` case, a field here with its default (optional when the knob may be off),
/// its line in the subscript, and its binding.
public struct KnobValues: Equatable, Sendable {
    public var learningRate = 0.1
    public var weightDecay = 5e-4
    /// nil for optimizers without one (AdamW: β1 is `optimizer.beta1`).
    public var momentum: Double? = 0.9
    /// Whole, at least 1 (`wholeBatchSize`).
    public var batchSize = 128
    /// Softmax temperature of the loss on labels.
    public var temperature = 1.0
    /// Clip every gradient element to [−t, t]; nil: no clipping by value.
    public var clipValue: Double?
    /// Rescale gradients whose global L2 norm exceeds t; nil: no clipping by norm.
    public var clipNorm: Double?
    public var augmentationStrength = 0.0
    /// ξ of the cyclical focal loss; nil with any other loss.
    public var focalMix: Double?
    /// Data selection (`SampleSelection`); each nil: off.
    public var sampleLossThreshold: Double?
    public var keepFraction: Double?
    public var sampleLossClip: Double?

    /// The defaults of every knob (what `Knob.defaultValue` reports).
    public init() {}

    /// A knob's value, nil when it is off. Setting nil turns an optional knob off and leaves a
    /// required one as it was; a batch size is made whole.
    public subscript(knob: Knob) -> Double? {
        get {
            switch knob {
            case .learningRate: learningRate
            case .weightDecay: weightDecay
            case .momentum: momentum
            case .batchSize: Double(batchSize)
            case .temperature: temperature
            case .clipValue: clipValue
            case .clipNorm: clipNorm
            case .augmentationStrength: augmentationStrength
            case .focalMix: focalMix
            case .sampleLossThreshold: sampleLossThreshold
            case .keepFraction: keepFraction
            case .sampleLossClip: sampleLossClip
            }
        }
        set {
            switch knob {
            case .learningRate: learningRate = newValue ?? learningRate
            case .weightDecay: weightDecay = newValue ?? weightDecay
            case .momentum: momentum = newValue
            case .batchSize: batchSize = newValue.map(wholeBatchSize) ?? batchSize
            case .temperature: temperature = newValue ?? temperature
            case .clipValue: clipValue = newValue
            case .clipNorm: clipNorm = newValue
            case .augmentationStrength: augmentationStrength = newValue ?? augmentationStrength
            case .focalMix: focalMix = newValue
            case .sampleLossThreshold: sampleLossThreshold = newValue
            case .keepFraction: keepFraction = newValue
            case .sampleLossClip: sampleLossClip = newValue
            }
        }
    }

    /// The knobs that are on, by recipe name: what progress lines and metrics log.
    public var named: [String: Double] {
        Dictionary(uniqueKeysWithValues: Knob.allCases.compactMap { knob in self[knob].map { (knob.rawValue, $0) } })
    }

    /// Sets the optimizer's learning rate, weight decay and, where it has one, momentum.
    /// - Precondition: the optimizer declares momentum when it is set (recipes refuse it for AdamW).
    public func bind(to optimizer: any Optimizer) {
        optimizer.set(.learningRate, to: Float(learningRate))
        optimizer.set(.weightDecay, to: Float(weightDecay))
        if let momentum { optimizer.set(.momentum, to: Float(momentum)) }
    }

    /// Which samples the label loss learns from.
    public var sampleSelection: SampleSelection {
        SampleSelection(lossThreshold: sampleLossThreshold, keepFraction: keepFraction, lossClip: sampleLossClip)
    }

    /// Clips the parameters' gradients by value or by norm, as the clipping knobs ask.
    public func clipGradients(_ parameters: [Parameter]) {
        if let clipValue { clipGradientsByValue(parameters, threshold: Float(clipValue)) }
        if let clipNorm { clipGradientsByNorm(parameters, maxNorm: Float(clipNorm)) }
    }
}
