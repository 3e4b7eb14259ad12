import EpicycleCheckpoint
import EpicycleData
import EpicycleRuntime
import EpicycleSchedules
@testable import EpicycleTraining
import Foundation
import Testing
import TestSupport

/// Semi-supervised training (`unlabeled:`): its recipe checks, its data, and real runs on small
/// Fashion-MNIST subsets.
@Suite(.serialized) struct SemiSupervisedTests {
    static let recipe = """
        model: {architecture: resnet8}
        knobs: {unlabeled_weight: {cyclical: {easy: 0, hard: 1, factor: 2}}}
        pretrain:
          data: {classes: [0, 1, 2], per_class: 20, validation: 300}
          unlabeled: {first: 200, ratio: 2}
          epochs: 3
        """

    func problem(_ text: String, overrides: [String] = []) -> String? {
        do {
            let prepared = try PreparedRecipe(RecipeSource(text: text, origin: "semi.yaml", overrides: overrides),
                                              options: RunOptions(checkOnly: true))
            try prepared.validateKnobs(.pretrain, cycle: prepared.jointCycle)
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func defaultsFillTheSemiSupervisedKnobsOfItsPhaseOnly() throws {
        let recipe = try RecipeSource(text: Self.recipe, origin: "semi.yaml").decode(Recipe.self)
        let unlabeled = try #require(recipe.pretrain?.unlabeled)
        #expect(unlabeled.ratio == 2 && unlabeled.weak == "crop,flip" && unlabeled.strong == "crop,flip,randaugment,cutout")
        let knobs = recipe.knobs(for: .pretrain).schedules
        #expect(knobs[.unlabeledWeight] == .cyclical(easy: 0, hard: 1, factor: 2))
        #expect(knobs[.confidenceThreshold] == .constant(0.95))
        // A labeled-only phase of the same recipe gets neither knob.
        let withFinetune = try RecipeSource(text: Self.recipe + "\nfinetune: {data: {classes: [3, 4]}, epochs: 1}", origin: "semi.yaml")
            .decode(Recipe.self)
        #expect(withFinetune.knobs(for: .finetune).schedules[.unlabeledWeight] == nil)
        #expect(withFinetune.knobs(for: .finetune).schedules[.confidenceThreshold] == nil)
    }

    @Test(arguments: [
        (["pretrain.unlabeled=null", "knobs.unlabeled_weight=1"],
         "knobs.unlabeled_weight: only applies to a phase with unlabeled data (its unlabeled: section)"),
        (["pretrain.unlabeled=null", "knobs={confidence_threshold: 0.9}"],
         "knobs.confidence_threshold: only applies to a phase with unlabeled data (its unlabeled: section)"),
        (["pretrain.unlabeled.ratio=0"], "pretrain.unlabeled.ratio: must be a whole number from 1 to 64, got 0"),
        (["pretrain.unlabeled.ratio=1000000"], "pretrain.unlabeled.ratio: must be a whole number from 1 to 64, got 1000000"),
        (["pretrain.unlabeled.first=0"], "pretrain.unlabeled.first: must be ≥ 1, got 0"),
        (["pretrain.unlabeled.strong=crop,mixup"],
         "pretrain.unlabeled.strong: 'mixup' mixes images, so a pseudo-label would belong to two; use per-image augmentations"),
        (["pretrain.unlabeled.weak=crop,spin"], "pretrain.unlabeled.weak: unknown augmentation 'spin'"),
        (["pretrain.unlabeled.classes=[1]"],
         "pretrain.unlabeled.classes: applies to a separate source only (dataset or folder); the phase's own unlabeled images keep its classes"),
        (["pretrain.unlabeled.labels=true"], "pretrain.unlabeled.labels: unknown key; expected one of dataset, folder, format"),
        (["knobs.confidence_threshold=1.5"], "knobs.confidence_threshold: must be in [0, 1], got 1.5"),
        (["knobs.unlabeled_weight=-1"], "knobs.unlabeled_weight: must be in [0, 1000000], got -1"),
        (["pretrain.data.per_class=null"],
         "pretrain.unlabeled: the phase labels all its training images; choose the labeled ones with pretrain.data.per_class or pretrain.data.first, or give a separate dataset or folder"),
        (["pretrain.unlabeled.dataset=fashion-mnist"],
         "pretrain.unlabeled: names the phase's own dataset (fashion-mnist), whose training split holds its validation images"),
        (["pretrain.unlabeled.dataset=no-such-set"], "pretrain.unlabeled: "),
        (["pretrain.unlabeled.temperature=2"],
         "pretrain.unlabeled.temperature: is the temperature of a teacher's soft targets; set unlabeled.teacher too"),
        (["pretrain.unlabeled.teacher=t.h5", "pretrain.unlabeled.temperature=0"], "pretrain.unlabeled.temperature: must be in (0, 100], got 0"),
    ])
    func refusalsNameTheKeyPath(overrides: [String], expected: String) {
        let message = problem(Self.recipe, overrides: overrides)
        #expect(message?.hasPrefix(expected) == true, "\(overrides): \(message ?? "accepted")")
    }

    @Test func thePoolIsTheUnchosenTrainingImagesAndNeverValidation() throws {
        let prepared = try PreparedRecipe(RecipeSource(text: Self.recipe, origin: "semi.yaml", overrides: ["pretrain.unlabeled.first=null"]),
                                          options: RunOptions(checkOnly: true))
        let data = try #require(prepared.pretrainData)
        let pool = try #require(data.unlabeled)
        #expect(pool.images.labels.allSatisfy { $0 == ImageDataset.hiddenLabel })
        // Three classes of 6000 training images, 300 held out, 60 labeled: the rest is the pool.
        #expect(pool.images.count == 18_000 - 300 - 60)
        #expect(pool.heldBackLabels?.count == pool.images.count)
        // No pool image is a validation or a labeled image (Fashion-MNIST has no duplicates among these).
        func keys(_ images: ImageDataset) -> Set<[UInt8]> {
            Set((0..<images.count).map { Array(images.pixels[($0 * images.imageSize)..<(($0 + 1) * images.imageSize)]) })
        }
        let poolKeys = keys(pool.images)
        #expect(poolKeys.isDisjoint(with: keys(data.validation)))
        #expect(poolKeys.isDisjoint(with: keys(data.training)))
        // The resolved knobs show the defaults.
        #expect(prepared.recipe.knobs(for: .pretrain).schedules[.confidenceThreshold] == .constant(0.95))
    }

    /// The pool's labels are held back for the log only: with every one of them changed, training,
    /// selection and every logged figure but the pseudo-label accuracy are the same, bit for bit.
    @Test func trainingNeverReadsTheHeldBackLabels() throws {
        let data = TrainingProgramTests.folder("held-back-data")
        let splits = try loadDataset(DatasetSource.named())
        let train = try splits.training.first(400), test = try splits.test.first(200)
        try TrainingProgramTests.writeIDXPair(train, to: data + "/train")
        try TrainingProgramTests.writeIDXPair(test, to: data + "/t10k")
        // Validation on the test split keeps the training file's order, so images 100… are the pool.
        let text = """
            seed: 2
            model: {architecture: resnet8}
            knobs: {learning_rate: 0.05, batch_size: 50, augmentation_strength: 1, confidence_threshold: 0, unlabeled_weight: 1}
            pretrain:
              data: {folder: \(data), format: idx, validation: test, first: 100, augmentation: "crop,flip"}
              unlabeled: {ratio: 1}
              epochs: 2
            """
        let real = TrainingProgramTests.folder("held-back-real"), scrambled = TrainingProgramTests.folder("held-back-scrambled")
        defer { for folder in [data, real, scrambled] { try? FileManager.default.removeItem(atPath: folder) } }
        _ = try pretrain(recipe: RecipeSource(text: text, origin: "held.yaml"), options: RunOptions(output: real, quiet: true))
        let changed = train.labels.enumerated().map { index, label in index < 100 ? label : (label + 1) % 10 }
        try TrainingProgramTests.writeIDXPair(ImageDataset(name: "scrambled", height: 28, width: 28, channels: 1,
                                                           classNames: train.classNames, pixels: train.pixels, labels: changed),
                                              to: data + "/train")
        _ = try pretrain(recipe: RecipeSource(text: text, origin: "held.yaml"), options: RunOptions(output: scrambled, quiet: true))

        var a = try Checkpoint.read(from: real + "/last.h5"), b = try Checkpoint.read(from: scrambled + "/last.h5")
        TrainingProgramTests.expectIdentical(a, b)
        #expect(a.training?.rngState == b.training?.rngState)
        let columns = try #require(a.training?.metrics.columns)
        let accuracy = SemiSupervisedObjective.accuracyName
        #expect(columns.contains(SemiSupervisedObjective.maskRateName) && columns.contains(accuracy))
        for column in columns where !["seconds", "img_per_s", TradeoffColumns.seconds, accuracy].contains(column) {
            #expect(a.training?.metrics.column(column)?.map(\.bitPattern) == b.training?.metrics.column(column)?.map(\.bitPattern), "metrics column \(column)")
        }
        // τ = 0 keeps every pseudo-label: right about as often as the model is, wrong under shifted labels.
        let realAccuracy = try #require(a.training?.metrics.column(accuracy)), scrambledAccuracy = try #require(b.training?.metrics.column(accuracy))
        #expect(zip(realAccuracy, scrambledAccuracy).allSatisfy { $0.isFinite && $1.isFinite && $0 != $1 })
        #expect(a.training?.metrics.column(SemiSupervisedObjective.maskRateName) == [100, 100])
        a.training?.test = nil
        b.training?.test = nil
        #expect(a.training?.bestTop1 == b.training?.bestTop1)
    }

    /// Unlabeled images help where labels are scarce: 10 labeled Fashion-MNIST images per class and
    /// 1,000 unlabeled ones, 30 epochs of 5 steps, FixMatch at μ = 3, τ = 0.7, λ_u = 1, against the
    /// labeled images alone.
    ///
    /// Measured with `epicycle compare` over seeds 0–3 (this recipe, `--jobs 2`): labels-only test
    /// top-1 58.93, 56.64, 57.75, 56.72 (57.51 ± 1.07); FixMatch 61.05, 59.18, 62.18, 56.68; paired
    /// Δ +2.12, +2.54, +4.43, −0.04 (+2.26 ± 1.84, 95 % CI [−0.66, +5.18]). A run's numbers depend only
    /// on the recipe and seed, so this seed-0 pair reproduces +2.12 exactly; the test asks for +1.0,
    /// about one labels-only standard deviation over seeds, so it fails if the unlabeled loss stops
    /// helping (seed 3 shows a single seed can gain nothing, which is why the claim over seeds is the
    /// committed experiment's, Experiments/semi-supervised-fmnist.yaml, not this test's).
    @Test func unlabeledImagesImproveOnLabelsOnly() throws {
        let recipe = """
            seed: 0
            precise_bn: true
            model: {architecture: resnet8}
            optimizer: {kind: sgd, nesterov: true}
            knobs:
              learning_rate: {cosine: {peak: 0.05, final: 0.0005, warmup_epochs: 2, warmup_start: 0.01}}
              weight_decay: 5e-4
              augmentation_strength: 1
              batch_size: 20
            pretrain:
              data: {dataset: fashion-mnist, per_class: 10, validation: 500, augmentation: "crop,flip"}
              epochs: 30
            """
        let semiSupervised = ["pretrain.unlabeled={first: 1000, ratio: 3}", "knobs.confidence_threshold=0.7", "knobs.unlabeled_weight=1"]
        func testTop1(_ overrides: [String], _ name: String) throws -> Double {
            let folder = TrainingProgramTests.folder(name)
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let result = try pretrain(recipe: RecipeSource(text: recipe, origin: "\(name).yaml", overrides: overrides),
                                      options: RunOptions(output: folder, quiet: true))
            return try #require(result.phases.first?.test).last.top1
        }
        let labelsOnly = try testTop1([], "labels-only"), fixMatch = try testTop1(semiSupervised, "fixmatch")
        #expect(fixMatch - labelsOnly >= 1.0, "FixMatch \(fixMatch) %, labels only \(labelsOnly) %")
    }

    /// With `unlabeled.teacher`, a step is the labeled loss plus λ_u times the soft-target loss of the
    /// student's strong view against the frozen teacher on the weak view — the teacher fed the images
    /// renormalised to its own /data statistics — with the weak view no longer in the student's batch.
    /// Checked against the same computation done by hand on a twin student: loss and every gradient.
    @Test func aBlockOfAnUnlabeledBatchIsThoseRowsOfTheWholeBatch() throws {
        let prepared = try PreparedRecipe(RecipeSource(text: Self.recipe, origin: "semi.yaml"), options: RunOptions(checkOnly: true))
        let data = try #require(prepared.pretrainData)
        let spec = prepared.recipe.model.spec(inputChannels: data.channels, numClasses: data.classCount)
        let objective = try phaseObjective(model: try Model(spec, seed: 1), recipe: prepared.recipe, data: data, phase: .pretrain)
        let loader = try #require(objective as? SemiSupervisedObjective).loader
        // What a process with rows 5..<17 of a data-parallel step draws: the same images and views.
        let whole = loader.batch(1, epoch: 2, size: 40, strength: 1)
        let block = loader.batch(1, epoch: 2, size: 40, strength: 1, rows: 5..<17)
        let imageSize = whole.weak.count / whole.count
        #expect(block.sampleIndices == Array(whole.sampleIndices[5..<17]))
        #expect(block.weak.shape == [12] + Array(whole.weak.shape.dropFirst()))
        #expect(block.weak.scalars == Array(whole.weak.scalars[(5 * imageSize)..<(17 * imageSize)]))
        #expect(block.strong.scalars == Array(whole.strong.scalars[(5 * imageSize)..<(17 * imageSize)]))
    }

    @Test func aTeachersSoftTargetsReplaceThePseudoLabels() throws {
        let folder = TrainingProgramTests.folder("unlabeled-teacher")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let prepared = try PreparedRecipe(RecipeSource(text: Self.recipe, origin: "semi.yaml",
                                                       overrides: ["pretrain.unlabeled.teacher=\(folder)/teacher.h5",
                                                                   "pretrain.unlabeled.temperature=2"]),
                                          options: RunOptions(checkOnly: true))
        let data = try #require(prepared.pretrainData)
        let spec = prepared.recipe.model.spec(inputChannels: data.channels, numClasses: data.classCount)
        // The teacher was trained on other statistics than the phase's: mean 0.3, deviation 0.4.
        let teacherModel = try Model(spec, seed: 7)
        var input = data.inputPipeline
        (input.mean, input.standardDeviation) = ([0.3], [0.4])
        try Checkpoint(model: teacherModel.state, architecture: try spec.yaml, numClasses: spec.numClasses, input: input)
            .write(to: folder + "/teacher.h5")

        let student = try Model(spec, seed: 1), twin = try Model(spec, seed: 1)
        let objective = try phaseObjective(model: student, recipe: prepared.recipe, data: data, phase: .pretrain)
        let semi = try #require(objective as? SemiSupervisedObjective)
        let batch = data.trainingLoader(seed: 0).batch(0, epoch: 0, batchSize: 20)
        let views = semi.loader.batch(0, epoch: 0, size: 2 * batch.count, strength: 0)
        var renormalised = views.weak
        let (mean, deviation) = (data.normalization.mean[0], data.normalization.standardDeviation[0])
        renormalised.scalars = renormalised.scalars.map { ($0 * deviation + mean - 0.3) / 0.4 }
        let teacherLogits = try teacherModel.forward(renormalised, mode: .inference).logits
        // τ at the median confidence keeps about half the rows.
        let classes = teacherLogits.shape[1]
        let confidences = (0..<views.count).map { row in
            let z = teacherLogits.scalars[(row * classes)..<((row + 1) * classes)].map(Double.init)
            return 1 / z.map { exp($0 - z.max()!) }.reduce(0, +)
        }.sorted()
        let threshold = Float(confidences[views.count / 2])
        var knobs = KnobValues()
        knobs[.unlabeledWeight] = 0.5
        knobs[.confidenceThreshold] = Double(threshold)
        knobs[.augmentationStrength] = 0
        let position = CyclePosition(Position(epoch: 0, stepsPerEpoch: 3, totalEpochs: 3), in: prepared.jointCycle)
        let (loss, _) = try objective.step(batch, knobs: knobs, at: position)

        let images = Tensor(shape: [batch.count + views.count] + Array(batch.images.shape.dropFirst()),
                            scalars: batch.images.scalars + views.strong.scalars)
        let logits = try twin.forward(images, mode: .training).logits
        let labeledLogits = Tensor(shape: [batch.count, classes], scalars: Array(logits.scalars[..<(batch.count * classes)]))
        let strongLogits = Tensor(shape: [views.count, classes], scalars: Array(logits.scalars[(batch.count * classes)...]))
        let labeled = try LabelObjective(model: twin, loss: prepared.recipe.loss).labelLoss(logits: labeledLogits, batch: batch, knobs: knobs)
        let soft = try SoftTargetConsistencyLoss(temperature: 2, threshold: threshold)(teacherLogits: teacherLogits, studentLogits: strongLogits)
        #expect(soft.confident.contains(true) && soft.confident.contains(false), "τ = \(threshold) should keep some rows and drop others")
        twin.backward(Tensor(shape: logits.shape, scalars: labeled.gradient.scalars + soft.loss.gradient.scalars.map { 0.5 * $0 }))
        let expected = Double(labeled.value) + 0.5 * Double(soft.loss.value)
        #expect(abs(Double(loss) - expected) <= 1e-6 * abs(expected), "loss \(loss), by hand \(expected)")
        for ((name, mine), (_, theirs)) in zip(student.state.parameters, twin.state.parameters) {
            expectClose(mine.gradient, theirs.gradient, rtol: 1e-5, atol: 1e-7, name)
        }
    }

    /// A teacher must predict the phase's classes from its kind of images.
    @Test func aTeacherOfOtherClassesIsRefused() throws {
        let folder = TrainingProgramTests.folder("unlabeled-teacher-classes")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let spec = try RecipeSource(text: Self.recipe, origin: "semi.yaml").decode(Recipe.self).model.spec(inputChannels: 1, numClasses: 5)
        try Checkpoint(model: try Model(spec, seed: 0).state, architecture: try spec.yaml, numClasses: 5).write(to: folder + "/five.h5")
        let prepared = try PreparedRecipe(RecipeSource(text: Self.recipe, origin: "semi.yaml",
                                                       overrides: ["pretrain.unlabeled.teacher=\(folder)/five.h5"]),
                                          options: RunOptions(checkOnly: true))
        let data = try #require(prepared.pretrainData)
        let student = try Model(prepared.recipe.model.spec(inputChannels: 1, numClasses: 3), seed: 0)
        #expect { try phaseObjective(model: student, recipe: prepared.recipe, data: data, phase: .pretrain) } throws: { error in
            "\(error)".hasPrefix("pretrain.unlabeled.teacher: \(folder)/five.h5 takes 1-channel images and predicts 5 classes; "
                + "the phase has 1-channel images of 3 classes")
        }
        let missing = try PreparedRecipe(RecipeSource(text: Self.recipe, origin: "semi.yaml",
                                                      overrides: ["pretrain.unlabeled.teacher=\(folder)/none.h5"]),
                                         options: RunOptions(checkOnly: true))
        #expect { try phaseObjective(model: student, recipe: missing.recipe, data: data, phase: .pretrain) } throws: { error in
            "\(error)".hasPrefix("pretrain.unlabeled.teacher: \(folder)/none.h5 is not a model checkpoint: ")
        }
    }
}
