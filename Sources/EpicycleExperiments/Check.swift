import EpicycleDistillation
import EpicycleTraining
import Yams

/// `epicycle check`: takes one recipe or experiment file as far as its command would go before
/// training starts, writing nothing, and says how it was checked; throws the first problem.
///
/// A recipe runs its program with `RunOptions.checkOnly`: `distill` when it has a distill section,
/// else `cycle` (both phases), `pretrain`, or `finetune` from `checkpoint`. An experiment (a file
/// with `program:`) is read and every variant decoded, as `epicycle compare` does before any run.
public func checkFile(_ path: String, overrides: [String] = [], checkpoint: String? = nil) throws -> String {
    let text = try readRecipeText(path)
    if (try? Yams.compose(yaml: text))??.mapping?["program"] != nil {
        guard overrides.isEmpty else { throw RecipeError(path: "", problem: "--set applies to recipes; \(path) is an experiment") }
        let experiment = try Experiment(text: text, origin: path)
        return "ok (experiment: \(experiment.variants.count) variants × \(experiment.seeds.count) seeds)"
    }
    let source = try RecipeSource(text: text, origin: path, folder: RecipePaths.folder(of: path), overrides: overrides)
    let recipe = try source.decodeRecipe(sections: [DistillRecipe.self])
    let options = RunOptions(quiet: true, checkOnly: true)
    if recipe.section(DistillRecipe.self) != nil {
        _ = try distill(teacher: nil, recipe: source, options: options)
        return "ok (distill)"
    }
    if recipe.pretrain != nil && recipe.finetune != nil {
        _ = try cycle(recipe: source, options: options)
        return "ok (cycle)"
    }
    if recipe.pretrain != nil {
        _ = try pretrain(recipe: source, options: options)
        return "ok (pretrain)"
    }
    guard let checkpoint else {
        throw RecipeError(path: "finetune", problem: "a fine-tune-only recipe is checked against its checkpoint: pass --from <file.h5>")
    }
    _ = try finetune(from: checkpoint, recipe: source, options: options)
    return "ok (finetune)"
}
