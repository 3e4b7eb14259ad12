import EpicycleData
import EpicycleSchedules
import Foundation
import Yams

/// The recipe a run folder keeps as `recipe.yaml`: the user's recipe with every default written out
/// (optimizer settings, weight decay and the other knobs, each schedule's parameters, data and
/// validation settings), like timm's `args.yaml`. It decodes back to the same `Recipe`.
///
/// The encoded recipe is laid over the user's text, so a key this encoder does not know is kept as
/// written rather than dropped.
public func resolvedRecipeText(_ recipe: Recipe, userText: String) throws -> String {
    guard let resolved = try Yams.compose(yaml: withPlainNumbers(YAMLEncoder().encode(recipe))) else { return userText }
    let merged = try Yams.compose(yaml: userText).map { overlaid($0, with: resolved) } ?? resolved
    return "# The resolved recipe of this run: the recipe as given, every default filled in.\n"
        + (try Yams.serialize(node: merged))
}

/// Writes `recipe.yaml` (the resolved recipe) into `folder`, replacing an earlier one.
func writeResolvedRecipe(_ recipe: Recipe, userText: String, folder: String) throws {
    try resolvedRecipeText(recipe, userText: userText).write(toFile: folder + "/recipe.yaml", atomically: true, encoding: .utf8)
}

/// `base`'s mappings with `top`'s keys written over them (mapping into mapping); anything else of `top` replaces.
private func overlaid(_ base: Node, with top: Node) -> Node {
    guard let baseMapping = base.mapping, let topMapping = top.mapping else { return top }
    var pairs: [(Node, Node)] = baseMapping.map { key, value in (key, topMapping[key].map { overlaid(value, with: $0) } ?? value) }
    for (key, value) in topMapping where baseMapping[key] == nil { pairs.append((key, value)) }
    return .mapping(Node.Mapping(pairs, topMapping.tag, topMapping.style))
}

extension Recipe: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(name, forKey: .name)
        try container.encode(seed, forKey: .seed)
        try container.encode(model, forKey: .model)
        try container.encode(optimizer, forKey: .optimizer)
        try container.encode(loss, forKey: .loss)
        try container.encode(resolvedSharedKnobs, forKey: .knobs)
        try container.encodeIfPresent(pretrain, forKey: .pretrain)
        try container.encodeIfPresent(finetune, forKey: .finetune)
        try container.encodeIfPresent(output, forKey: .output)
        try container.encode(checkpointEvery, forKey: .checkpointEvery)
        try container.encodeIfPresent(threads, forKey: .threads)
        try container.encode(preciseBN, forKey: .preciseBN)
        var sectionContainer = encoder.container(keyedBy: AnyKey.self)
        for key in sections.keys.sorted() {
            try sectionContainer.encode(AnySection(section: sections[key]!), forKey: AnyKey(stringValue: key))
        }
    }

    /// The shared knobs with every default a recipe of this kind accepts there: not momentum for
    /// AdamW, not an augmentation strength when no phase augments (the decoder refuses both).
    var resolvedSharedKnobs: KnobSchedules {
        var all = knobs.withDefaults
        if optimizer.kind == .adamw { all.schedules[.momentum] = nil }
        let augments = [pretrain, finetune].contains { phase in
            phase.map { $0.unlabeled != nil || (try? AugmentationPolicy(parsing: $0.data.augmentation))?.augmentations.isEmpty == false }
                ?? false
        }
        if !augments && knobs.schedules[.augmentationStrength] == nil { all.schedules[.augmentationStrength] = nil }
        return all
    }
}

/// An objective's section, encoded as itself.
private struct AnySection: Encodable {
    var section: any RecipeSection
    func encode(to encoder: any Encoder) throws { try section.encode(to: encoder) }
}

extension KnobSchedules: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Knob.self)
        for knob in schedules.keys.sorted() { try container.encode(schedules[knob]!, forKey: knob) }
    }
}

extension ModelRecipe: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(architecture, forKey: .architecture)
        try container.encode(shortcut.rawValue, forKey: .shortcut)
        try container.encode(dropout, forKey: .dropout)
    }
}

extension OptimizerRecipe: Encodable {
    /// Only the settings of its kind: the decoder refuses the other kind's.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kind.rawValue, forKey: .kind)
        switch kind {
        case .sgd:
            try container.encode(nesterov, forKey: .nesterov)
            try container.encode(decoupledWeightDecay, forKey: .decoupledWeightDecay)
        case .adamw:
            try container.encode(beta1, forKey: .beta1)
            try container.encode(beta2, forKey: .beta2)
            try container.encode(epsilon, forKey: .epsilon)
        }
        try container.encode(noDecayOnNormAndBias, forKey: .noDecayOnNormAndBias)
        try container.encodeIfPresent(lookahead, forKey: .lookahead)
    }
}

extension LookaheadRecipe: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(k, forKey: .k)
        try container.encode(alpha, forKey: .alpha)
    }
}

extension LossRecipe: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(kind.rawValue, forKey: .kind)
        try container.encode(labelSmoothing, forKey: .labelSmoothing)
        try container.encode(gamma, forKey: .gamma)
        try container.encode(gammaHighConfidence, forKey: .gammaHighConfidence)
    }
}

extension PhaseRecipe: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(data, forKey: .data)
        try container.encode(epochs, forKey: .epochs)
        if !knobs.schedules.isEmpty { try container.encode(knobs, forKey: .knobs) }
        if !freeze.isEmpty { try container.encode(freeze, forKey: .freeze) }
        try container.encodeIfPresent(unlabeled, forKey: .unlabeled)
    }
}

extension DataRecipe: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(dataset, forKey: .dataset)
        try container.encodeIfPresent(folder, forKey: .folder)
        try container.encodeIfPresent(format, forKey: .format)
        try container.encodeIfPresent(classes, forKey: .classes)
        try container.encodeIfPresent(first, forKey: .first)
        try container.encodeIfPresent(perClass, forKey: .perClass)
        try container.encode(validation, forKey: .validation)
        try container.encode(augmentation, forKey: .augmentation)
    }
}

extension ValidationSplit: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case let .heldOut(count): try container.encode(count)
        case let .heldOutFraction(fraction): try container.encode(fraction)
        case .test: try container.encode("test")
        }
    }
}

extension PreciseBNRecipe: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(when.rawValue, forKey: .when)
        try container.encode(images, forKey: .images)
    }
}

extension UnlabeledRecipe: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(dataset, forKey: .dataset)
        try container.encodeIfPresent(folder, forKey: .folder)
        try container.encodeIfPresent(format, forKey: .format)
        try container.encodeIfPresent(classes, forKey: .classes)
        try container.encodeIfPresent(first, forKey: .first)
        try container.encode(ratio, forKey: .ratio)
        try container.encode(weak, forKey: .weak)
        try container.encode(strong, forKey: .strong)
    }
}
