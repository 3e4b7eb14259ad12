import EpicycleData
import EpicycleSchedules

/// A phase's `unlabeled:` section: semi-supervised training (Smith 2022, §4.3) with FixMatch's
/// consistency loss (Sohn et al. 2020) on images whose labels training never reads.
///
///     pretrain:
///       data: {dataset: fashion-mnist, per_class: 50, validation: 1000}
///       unlabeled:
///         first: 4000                            # at most this many unlabeled images
///         ratio: 2                               # μ: unlabeled images per labeled image in a step
///         weak: "crop,flip"                      # the view that gives the pseudo-label
///         strong: "crop,flip,randaugment,cutout" # the view trained to agree with it
///     knobs:
///       unlabeled_weight: {cyclical: {easy: 0, hard: 1, factor: 2}}   # λ_u; default 1
///       confidence_threshold: 0.95                                      # τ; default 0.95
///
/// Without `dataset` or `folder`, the pool is the phase's training images that `data.per_class` or
/// `data.first` did not choose as labeled; validation is held out before either, so the pool never
/// holds a validation image. With `dataset` or `folder` (and `format`, `classes` as in `data:`) it is
/// that source's training split. Its labels are hidden from training; they are kept aside only to log
/// how often the pseudo-labels are right.
///
/// With `teacher: teacher.h5` the targets are that frozen model's soft predictions on the weak view
/// instead of the student's own pseudo-labels (distillation on unlabeled data, Hinton et al. 2015;
/// the self-training of Xie et al. 2020's Noisy Student when the teacher was trained on the labeled
/// images): `SoftTargetConsistencyLoss` at `temperature`, kept where the teacher's confidence reaches τ.
public struct UnlabeledRecipe: Decodable, Sendable, Equatable {
    public var dataset: String?
    public var folder: String?
    public var format: String?
    /// Classes of a separate source, relabelled in the order given (only for the logged accuracy).
    public var classes: [Int]?
    /// Keep only the first N images of the pool.
    public var first: Int?
    /// μ, FixMatch's ratio of unlabeled to labeled images per step (the paper's 7).
    public var ratio: Int = 7
    /// The weak augmentation, read as `data.augmentation` is (FixMatch: flip and a small shift).
    public var weak: String = "crop,flip"
    /// The strong augmentation (FixMatch: RandAugment, then cutout).
    public var strong: String = "crop,flip,randaugment,cutout"
    /// A checkpoint whose soft predictions are the targets (its classes must be the phase's).
    public var teacher: String?
    /// T of the teacher's soft targets (only with `teacher`).
    public var temperature: Double = 1

    /// The largest μ: a step's forward pass holds (1 + 2μ) times the labeled batch.
    public static let ratios = 1...64

    enum CodingKeys: String, CodingKey, CaseIterable { case dataset, folder, format, classes, first, ratio, weak, strong, teacher, temperature }

    public init(from decoder: any Decoder) throws {
        try decoder.rejectUnknownKeys(CodingKeys.self)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let path = decoder.path
        dataset = try container.text(forKey: .dataset, maxLength: RecipeLimits.nameLength)
        folder = try container.text(forKey: .folder)
        format = try container.text(forKey: .format)
        classes = try container.list(of: Int.self, forKey: .classes, maxCount: RecipeLimits.classLabel.count)
        first = try container.wholeNumber(forKey: .first, in: RecipeLimits.samples)
        ratio = try container.wholeNumber(forKey: .ratio, in: Self.ratios) ?? 7
        weak = try container.text(forKey: .weak, maxLength: 200) ?? "crop,flip"
        strong = try container.text(forKey: .strong, maxLength: 200) ?? "crop,flip,randaugment,cutout"
        teacher = try container.text(forKey: .teacher)
        if let value = try container.decodeIfPresent(Double.self, forKey: .temperature) {
            guard teacher != nil else {
                throw RecipeError(path: path + ".temperature", problem: "is the temperature of a teacher's soft targets; set unlabeled.teacher too")
            }
            guard value > 0 && value <= 100 else {
                throw RecipeError(path: path + ".temperature", problem: "must be in (0, 100], got \(formatNumber(value))")
            }
            temperature = value
        }
        if let first, first < 1 { throw RecipeError(path: path + ".first", problem: "must be ≥ 1, got \(first)") }
        if dataset == nil && folder == nil {
            for (key, value) in [("format", format as Any?), ("classes", classes)] where value != nil {
                throw RecipeError(path: path + "." + key, problem: "applies to a separate source only (dataset or folder); the phase's own unlabeled images keep its classes")
            }
        }
        if let format, DatasetFormat(rawValue: format) == nil {
            throw RecipeError(path: path + ".format", problem: "expected one of \(DatasetFormat.allCases.map(\.rawValue).joined(separator: ", ")), got '\(shortenedForMessage(format))'")
        }
        if let classes, let index = classes.firstIndex(where: { !RecipeLimits.classLabel.contains($0) }) {
            throw RecipeError(path: path + ".classes[\(index)]", problem: outside(RecipeLimits.classLabel, got: String(classes[index])))
        }
        _ = try Self.policy(weak, path: path + ".weak")
        _ = try Self.policy(strong, path: path + ".strong")
    }

    /// A view's augmentation policy; mixup and CutMix mix images of a batch and are refused, since each
    /// unlabeled image must keep its own pseudo-label.
    static func policy(_ text: String, path: String) throws -> AugmentationPolicy {
        let policy: AugmentationPolicy
        do {
            policy = try AugmentationPolicy(parsing: text)
        } catch {
            throw RecipeError(path: path, problem: "\(error)")
        }
        if let mixer = policy.augmentations.first(where: \.mixesSamples) {
            throw RecipeError(path: path, problem: "'\(mixer.name)' mixes images, so a pseudo-label would belong to two; use per-image augmentations")
        }
        if let repeated = policy.augmentations.first(where: { one in policy.augmentations.filter { $0.name == one.name }.count > 1 }) {
            throw RecipeError(path: path, problem: "lists '\(repeated.name)' twice")
        }
        return policy
    }
}
