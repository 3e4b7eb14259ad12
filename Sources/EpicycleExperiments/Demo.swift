import EpicycleTraining
import Foundation

/// `epicycle demo`, the whole story on Fashion-MNIST in a few minutes on 2 cores:
/// 1. a ResNet-20 teacher pretrained on classes 0–4 and fine-tuned on classes 5–9 as one cycle;
/// 2. a ResNet-8 student distilled from it on classes 5–9 (100 labelled images per class) with a
///    constant and a cyclical recipe, two seeds each, through the comparison runner;
/// 3. the comparison table and the HTML report.
/// The recipes are written into the demo folder, so every step can be rerun or changed by hand.
public enum Demo {
    public static let teacherRecipe = """
        # The demo's teacher: pretrain on Fashion-MNIST classes 0–4, fine-tune on 5–9, one cycle.
        name: demo-teacher
        seed: 0
        model: {architecture: resnet20}
        optimizer: {kind: sgd, nesterov: true}
        knobs:
          learning_rate: {cosine: {peak: 0.1, final: 0.01, warmup_epochs: 1, warmup_start: 0.02}}
          weight_decay: {cyclical: {easy: 1e-4, hard: 1e-3}}
          augmentation_strength: {cyclical: {easy: 0, hard: 1}}
          batch_size: 128
        pretrain:
          data: {classes: [0, 1, 2, 3, 4], first: 5000, validation: 1000, augmentation: "crop,flip"}
          epochs: 3
        finetune:
          data: {classes: [5, 6, 7, 8, 9], per_class: 100, validation: 1000, augmentation: "crop,flip"}
          epochs: 4
          knobs: {learning_rate: 0.02, batch_size: 50}

        """

    /// The distillation comparison; `TEACHER` is replaced by the teacher checkpoint's path.
    public static let distillationExperiment = """
        # The demo's comparison: a ResNet-8 student distilled from the demo teacher on classes 5–9 from
        # 100 labelled images per class, constant vs cyclical KD temperature and augmentation (Smith 2022, §5.2).
        name: demo-distillation
        program: distill
        seeds: [0, 1]
        baseline: constant
        results: results
        base:
          model: {architecture: resnet8}
          optimizer: {kind: sgd, nesterov: true}
          knobs:
            learning_rate: {cosine: {peak: 0.05, final: 0.005}}
            augmentation_strength: 0.5
            batch_size: 50
          pretrain:
            data: {classes: [5, 6, 7, 8, 9], per_class: 100, validation: 1000, augmentation: "crop,flip"}
            epochs: 6
          distill:
            teacher: TEACHER
            losses:
              - {kind: labels, weight: 1}
              - {kind: logits, weight: 1, temperature: 4}
              - {kind: hint, student: layer2, teacher: layer2, weight: 1}
        variants:
          constant: {}
          cyclical:
            knobs.augmentation_strength: {cyclical: {easy: 0, hard: 1, factor: 2}}
            distill.losses[1].temperature: {cyclical: {easy: 1, hard: 4, factor: 2}}

        """

    public struct Result: Sendable {
        public var teacher: ProgramResult
        public var comparison: ComparisonResult
    }

    /// Runs the demo in `folder`; finished steps are kept, so running it again only reports.
    /// - Parameters:
    ///   - executable: the `epicycle` binary, to run the comparison's runs as `jobs` child processes.
    public static func run(folder: String, jobs: Int, executable: String?, command: String,
                           log: @escaping (String) -> Void) throws -> Result {
        // The recipes written below are the demo's own: one demo per folder at a time.
        let lock = try RunFolderLock(folder)
        defer { withExtendedLifetime(lock) {} }
        let teacherFile = folder + "/teacher.yaml"
        try teacherRecipe.write(toFile: teacherFile, atomically: true, encoding: .utf8)
        log("1/2 teacher: pretrain on classes 0–4, fine-tune on 5–9 as one cycle (\(teacherFile))")
        let teacher = try cycle(recipe: RecipeSource(contentsOf: teacherFile),
                                options: RunOptions(output: folder + "/teacher", resume: true))
        log(teacher.summary)

        let experimentFile = folder + "/distillation.yaml"
        // Relative to the experiment file, so the demo folder can move without its runs starting again.
        let teacherPath = RecipePaths.relativePath(from: RecipePaths.folder(of: experimentFile),
                                                   to: RecipePaths.absolutePath(of: teacher.checkpoint, in: RecipePaths.workingFolder))
        try distillationExperiment.replacingOccurrences(of: "TEACHER", with: teacherPath)
            .write(toFile: experimentFile, atomically: true, encoding: .utf8)
        log("2/2 distillation: constant vs cyclical, 2 seeds (\(experimentFile))")
        let comparison = try runComparison(experiment: Experiment(contentsOf: experimentFile), jobs: jobs,
                                           executable: executable, command: command, log: log)
        return Result(teacher: teacher, comparison: comparison)
    }
}
