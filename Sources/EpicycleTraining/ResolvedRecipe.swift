import EpicycleData
import EpicycleSchedules
import Foundation
import Yams

/// The recipe a run folder keeps as `recipe.yaml`: the user's recipe with every default written out
/// (optimizer settings, weight decay and the other knobs, each schedule's parameters, data and
/// validation settings), like timm's `args.yaml`. It decodes back to the same `Recipe`.
///
/// The encoded recipe is laid over the user's text, so a key this encoder does not know is kept as
/// written rather than dropped; a path the text gives relative stays relative, to `source.folder`.
/// - Parameters: recipe: `source` decoded.
public func resolvedRecipeText(_ recipe: Recipe, source: RecipeSource) throws -> String {
    guard let resolved = try Yams.compose(yaml: withPlainNumbers(YAMLEncoder().encode(recipe))) else { return source.text }
    let merged = try Yams.compose(yaml: source.text).map { RecipePaths.restoringRelativePaths(of: $0, in: overlaid($0, with: resolved)) } ?? resolved
    return "# The resolved recipe of this run: the recipe as given, every default filled in.\n"
        + (try Yams.serialize(node: merged))
}

/// Writes `recipe.yaml` (the resolved recipe, its relative paths relative to `folder`) into
/// `folder`, replacing an earlier one.
func writeResolvedRecipe(_ recipe: Recipe, source: RecipeSource, folder: String) throws {
    try resolvedRecipeText(recipe, source: source.relocated(to: folder))
        .write(toFile: folder + "/recipe.yaml", atomically: true, encoding: .utf8)
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
        try container.encode([(.name, name), (.seed, seed), (.model, model), (.optimizer, optimizer), (.loss, loss),
                              (.knobs, resolvedSharedKnobs), (.pretrain, pretrain), (.finetune, finetune), (.output, output),
                              (.checkpointEvery, checkpointEvery), (.threads, threads), (.preciseBN, preciseBN),
                              // Only bf16 is written, so that fp32 recipes read as they did before it existed.
                              (.precision, precision == .bf16 ? precision : nil)])
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
        try container.encode(schedules.keys.sorted().map { ($0, schedules[$0]) })
    }
}

extension KeyedEncodingContainer {
    /// Writes each value under its key, in order, leaving out the nil ones.
    public mutating func encode(_ fields: [(Key, (any Encodable)?)]) throws {
        for (key, value) in fields {
            if let value { try encode(value, forKey: key) }
        }
    }
}

extension ModelRecipe: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode([(.architecture, architecture), (.shortcut, shortcut.rawValue), (.dropout, dropout)])
    }
}

extension OptimizerRecipe: Encodable {
    /// Only the settings of its kind: the decoder refuses the other kind's.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        let own: [(CodingKeys, (any Encodable)?)] = kind == .sgd
            ? [(.nesterov, nesterov), (.decoupledWeightDecay, decoupledWeightDecay)]
            : [(.beta1, beta1), (.beta2, beta2), (.epsilon, epsilon)]
        try container.encode([(.kind, kind.rawValue)] + own
                             + [(.noDecayOnNormAndBias, noDecayOnNormAndBias), (.lookahead, lookahead)])
    }
}

extension LookaheadRecipe: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode([(.k, k), (.alpha, alpha)])
    }
}

extension LossRecipe: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode([(.kind, kind.rawValue), (.labelSmoothing, labelSmoothing), (.gamma, gamma),
                              (.gammaHighConfidence, gammaHighConfidence)])
    }
}

extension PhaseRecipe: Encodable {
    /// Empty phase knobs and `freeze` lists are left out, as their defaults.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode([(.data, data), (.epochs, epochs), (.knobs, knobs.schedules.isEmpty ? nil : knobs),
                              (.freeze, freeze.isEmpty ? nil : freeze), (.unlabeled, unlabeled)])
    }
}

extension DataRecipe: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        // An image folder's own val/ split stands in for `validation:`, which such a recipe must not state.
        let validation = validationIsStated || !["folder", "csv"].contains(format ?? "") ? self.validation : nil
        try container.encode([(.dataset, dataset), (.folder, folder), (.format, format), (.classes, classes), (.first, first),
                              (.perClass, perClass), (.validation, validation), (.augmentation, augmentation)])
        try container.encode([(.imageSize, imageSize), (.channels, channels), (.badImages, badImages?.rawValue)])
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
        try container.encode([(.when, when.rawValue), (.images, images)])
    }
}

extension UnlabeledRecipe: Encodable {
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode([(.dataset, dataset), (.folder, folder), (.format, format), (.classes, classes), (.first, first),
                              (.ratio, ratio), (.weak, weak), (.strong, strong)])
    }
}
