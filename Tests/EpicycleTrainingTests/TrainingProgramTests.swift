import EpicycleCheckpoint
import EpicycleData
import EpicycleRuntime
import EpicycleSchedules
@testable import EpicycleTraining
import Foundation
import Testing
import TestSupport

/// Real runs on small Fashion-MNIST subsets (installed by scripts/setup): a few hundred images,
/// validated on a held-out slice of the training images so an epoch takes well under a second.
@Suite(.serialized) struct TrainingProgramTests {
    /// Writes `images` as an uncompressed IDX pair `<prefix>-images-idx3-ubyte` / `<prefix>-labels-idx1-ubyte`.
    static func writeIDXPair(_ images: ImageDataset, to prefix: String) throws {
        func bigEndian(_ value: Int) -> [UInt8] { [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: value >> $0) } }
        try Data([0, 0, 8, 3] + bigEndian(images.count) + bigEndian(images.height) + bigEndian(images.width) + images.pixels)
            .write(to: URL(fileURLWithPath: prefix + "-images-idx3-ubyte"))
        try Data([0, 0, 8, 1] + bigEndian(images.count) + images.labels.map { UInt8($0) })
            .write(to: URL(fileURLWithPath: prefix + "-labels-idx1-ubyte"))
    }

    static func folder(_ name: String) -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("epicycle-training-tests/\(name)-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static let pretrainRecipe = """
        seed: 3
        model: {architecture: resnet8}
        checkpoint_every: 1
        knobs:
          learning_rate: {cosine: {peak: 0.05, final: 0.005, warmup_epochs: 1, warmup_start: 0.01}}
          weight_decay: {cyclical: {easy: 1e-5, hard: 5e-4, factor: 2}}
          temperature: {cyclical: {easy: 0.5, hard: 2, factor: 1}}
          augmentation_strength: {cyclical: {easy: 0, hard: 1}}
          batch_size: 64
        pretrain:
          data: {classes: [0, 1, 2, 3, 4], validation: 200, first: 320, augmentation: "crop,flip,cutout"}
          epochs: 3
        """

    /// The parameters, buffers and optimizer state of two checkpoints agree bit for bit.
    static func expectIdentical(_ a: Checkpoint, _ b: Checkpoint) {
        #expect(a.model.parameters.count == b.model.parameters.count)
        for (x, y) in zip(a.model.parameters, b.model.parameters) {
            #expect(x.name == y.name && x.tensor.scalars.map(\.bitPattern) == y.tensor.scalars.map(\.bitPattern), "\(x.name) differs")
        }
        for (x, y) in zip(a.model.buffers, b.model.buffers) { #expect(x.name == y.name && x.value == y.value, "\(x.name) differs") }
        let tensorsA = a.optimizer?.tensors ?? [], tensorsB = b.optimizer?.tensors ?? []
        #expect(tensorsA.count == tensorsB.count && !tensorsA.isEmpty)
        for (x, y) in zip(tensorsA, tensorsB) {
            #expect(x.name == y.name && x.tensor.scalars.map(\.bitPattern) == y.tensor.scalars.map(\.bitPattern), "optimizer \(x.name) differs")
        }
    }

    /// A run killed after epoch 2 leaves `last.h5` of epoch 2 (here: the numbered copy, which is that
    /// file); resuming from it must end exactly where the uninterrupted run ended. With Lookahead
    /// (k = 3, 2 steps per epoch) the kill lands one fast step into a period.
    @Test(arguments: [[], ["optimizer={kind: sgd, lookahead: {k: 3, alpha: 0.5}}"]])
    func resumingAfterAKillIsBitIdentical(overrides: [String]) throws {
        let source = try RecipeSource(text: Self.pretrainRecipe, origin: "resume.yaml", overrides: overrides)
        let whole = Self.folder("whole"), resumed = Self.folder("resumed")
        let full = try pretrain(recipe: source, options: RunOptions(output: whole, quiet: true))
        #expect(full.phases[0].history.count == 3)
        try FileManager.default.copyItem(atPath: whole + "/epoch-0002.h5", toPath: resumed + "/last.h5")
        let continued = try pretrain(recipe: source, options: RunOptions(output: resumed, resume: true, quiet: true))
        #expect(continued.phases[0].history.count == 3, "the history carries the two epochs before the kill")
        Self.expectIdentical(try Checkpoint.read(from: whole + "/last.h5"), try Checkpoint.read(from: resumed + "/last.h5"))
        if !overrides.isEmpty {
            let killed = try Checkpoint.read(from: whole + "/epoch-0002.h5")
            let saved = try #require(killed.optimizer), steps = try #require(killed.training?.step)
            #expect(saved.kind == "Lookahead(SGD)" && saved.hyperparameters["lookahead_k"] == 3)
            let fastSteps = try #require(saved.tensors.first { $0.name == "conv1.weight.lookahead_step" }).tensor
            #expect(fastSteps.scalars == [Float(steps % 3)] && steps % 3 != 0, "\(steps) steps into periods of 3")
        }
        // Same recipe, same seed: the same numbers (the determinism the comparisons rely on).
        #expect(full.phases[0].history.map(\.validationTop1) == continued.phases[0].history.map(\.validationTop1))
    }

    @Test func resumingWithAnotherRecipeIsRefused() throws {
        let output = Self.folder("other-recipe")
        _ = try pretrain(recipe: RecipeSource(text: Self.pretrainRecipe, origin: "a.yaml", overrides: ["pretrain.epochs=1"]),
                         options: RunOptions(output: output, quiet: true))
        #expect(throws: RecipeError.self) {
            _ = try pretrain(recipe: RecipeSource(text: Self.pretrainRecipe, origin: "a.yaml"),
                             options: RunOptions(output: output, resume: true, quiet: true))
        }
    }

    /// A learning rate that jumps to 10⁴ at epoch 3 makes the loss explode; the guard stops the run
    /// with a message and leaves epoch 2's checkpoint as it was.
    @Test func divergenceStopsTheRunAndKeepsTheLastGoodCheckpoint() throws {
        let output = Self.folder("diverge")
        let source = try RecipeSource(text: Self.pretrainRecipe, origin: "diverge.yaml",
                                      overrides: ["knobs.learning_rate={step: {initial: 0.01, milestones: [2], gamma: 1000000}}"])
        do {
            _ = try pretrain(recipe: source, options: RunOptions(output: output, quiet: true))
            Issue.record("the run should have diverged")
        } catch let error as TrainingError {
            guard case let .diverged(epoch, _, _, lastGood) = error else { Issue.record("\(error)"); return }
            #expect(epoch == 2)
            #expect(lastGood == output + "/last.h5")
            #expect(error.description.contains("Lower the learning rate"))
        }
        let kept = try Checkpoint.read(from: output + "/last.h5")
        #expect(kept.training?.epoch == 2)
        #expect(kept.model.parameters.allSatisfy { $0.tensor.scalars.allSatisfy { $0.isFinite } })
    }

    /// `cycle` spans both phases: pretraining records its end as the cycle position, fine-tuning starts
    /// there, and a knob without a factor peaks at the end of pretraining and returns to easy.
    @Test func cycleRunsPretrainingAndFineTuningAsOneCycle() throws {
        let output = Self.folder("cycle")
        let text = Self.pretrainRecipe + """

            finetune:
              data: {classes: [5, 6, 7, 8, 9], validation: 200, per_class: 40}
              epochs: 2
              knobs: {learning_rate: 0.01}
            """
        let result = try cycle(recipe: RecipeSource(text: text, origin: "cycle.yaml"), options: RunOptions(output: output, quiet: true))
        #expect(result.phases.count == 2)
        let pretrained = try Checkpoint.read(from: output + "/pretrain/last.h5")
        let finetuned = try Checkpoint.read(from: output + "/finetune/last.h5")
        #expect(pretrained.training?.program == .pretrain && pretrained.training?.cyclePosition == 3)
        #expect(finetuned.training?.program == .finetune && finetuned.training?.cyclePosition == 5)
        #expect(finetuned.numClasses == 5)

        // Weight decay: cyclical 1e-5 → 5e-4 with f = 2 over E = 5 epochs (t = e/4): epochs 0…4 give
        // δ = 0, 0.5, 1, 0.5, 0 → 1e-5, 2.55e-4, 5e-4, 2.55e-4, 1e-5. The fine-tune's epochs are 3 and 4.
        let decay = result.phases.flatMap(\.history).map { $0.knobs["weight_decay"]! }
        let expected = [1e-5, 2.55e-4, 5e-4, 2.55e-4, 1e-5]
        #expect(zip(decay, expected).allSatisfy { abs($0 - $1) < 1e-12 }, "weight decay per epoch: \(decay)")
        // Temperature with f = 1 rises over the whole cycle: 0.5 + 1.5·e/4.
        let temperature = result.phases.flatMap(\.history).map { $0.knobs["temperature"]! }
        #expect(temperature == [0.5, 0.875, 1.25, 1.625, 2.0])
        // The fine-tune's own learning rate overrides the shared schedule.
        #expect(result.phases[1].history.allSatisfy { $0.knobs["learning_rate"] == 0.01 })
        // The pretrained body reached the fine-tune: its first convolution is unchanged only if frozen,
        // so compare against the fine-tune's starting point instead — the fc head was replaced.
        #expect(pretrained.model.parameters.first { $0.name == "fc.weight" }?.tensor.shape == [5, 64])
    }

    @Test func fineTuningFreezesTheNamedLayers() throws {
        let output = Self.folder("freeze")
        let text = Self.pretrainRecipe + """

            finetune:
              data: {classes: [5, 6, 7, 8, 9], validation: 200, per_class: 40}
              epochs: 1
              freeze: [conv1, bn1, layer1]
            """
        let source = try RecipeSource(text: text, origin: "freeze.yaml")
        let pretrained = try pretrain(recipe: source, options: RunOptions(output: output + "/pretrain", quiet: true))
        _ = try finetune(from: pretrained.checkpoint, recipe: source, options: RunOptions(output: output + "/finetune", quiet: true))
        let before = try Checkpoint.read(from: pretrained.checkpoint).model.parameters
        let after = try Checkpoint.read(from: output + "/finetune/last.h5").model.parameters
        let isFrozen = { (name: String) in ["conv1.", "bn1.", "layer1."].contains { name.hasPrefix($0) } }
        for (x, y) in zip(before, after) where x.name != "fc.weight" && x.name != "fc.bias" {
            let frozen = isFrozen(x.name)
            #expect((x.tensor == y.tensor) == frozen, "\(x.name) should \(frozen ? "" : "not ")be unchanged")
        }
        // A frozen batch norm keeps the pretrained running statistics (timm's FrozenBatchNorm2d); the others move on.
        let buffersBefore = try Checkpoint.read(from: pretrained.checkpoint).model.buffers
        let finetuned = try Checkpoint.read(from: output + "/finetune/last.h5")
        for (x, y) in zip(buffersBefore, finetuned.model.buffers) {
            #expect(x.name == y.name)
            let frozen = isFrozen(x.name)
            #expect((x.value == y.value) == frozen, "\(x.name) should \(frozen ? "" : "not ")be unchanged")
        }
        // The frozen part computes in training mode what it computes in inference mode.
        let model = try Model(ModelSpec(yaml: finetuned.architecture, file: "last.h5"), seed: 0)
        try finetuned.loadModel(into: model.state)
        for (name, parameter) in model.state.parameters where isFrozen(name) { parameter.trainable = false }
        let images = randomTensor([4, 28, 28, 1], seed: 5)
        let training = try #require(model.forward(images, mode: .training, capture: ["layer1"]).features["layer1"])
        let inference = try #require(model.forward(images, mode: .inference, capture: ["layer1"]).features["layer1"])
        expectClose(training, inference, rtol: 1e-4, atol: 1e-5, "layer1 in training vs inference mode")
        #expect(throws: RecipeError.self) {
            _ = try finetune(from: pretrained.checkpoint, recipe: RecipeSource(text: text, origin: "freeze.yaml", overrides: ["finetune.freeze=[layer9]"]),
                             options: RunOptions(output: output + "/bad", quiet: true))
        }
    }

    /// Every run ends by scoring the test split once; `eval` gives the same figure by default, names
    /// the split, and gives validation's figure with `--split validation`; naming the checkpoint's own
    /// classes changes nothing, since the normalisation comes from the checkpoint.
    @Test func evaluationScoresTheTestSplitWithTheStoredPipeline() throws {
        let output = Self.folder("eval")
        let result = try pretrain(recipe: RecipeSource(text: Self.pretrainRecipe, origin: "eval.yaml", overrides: ["pretrain.epochs=1"]),
                                  options: RunOptions(output: output, quiet: true))
        let phase = result.phases[0]
        let test = try #require(phase.test)
        let evaluation = try evaluate(checkpoint: result.checkpoint)
        #expect(evaluation.split == .test && evaluation.isTestSplit && evaluation.summary.hasPrefix("test split of"))
        #expect(evaluation.score.images == 5000 && test.last.images == 5000)
        #expect(evaluation.score.top1 == test.last.top1)
        let withClasses = try evaluate(checkpoint: result.checkpoint, classes: [0, 1, 2, 3, 4])
        #expect(withClasses.score == evaluation.score)
        let validation = try evaluate(checkpoint: result.checkpoint, split: .validation)
        #expect(validation.score.images == 200 && !validation.isTestSplit)
        #expect(abs(validation.score.top1 - phase.finalTop1) < 1e-9)
        #expect(evaluation.confusion.map { $0.reduce(0, +) } == [1000, 1000, 1000, 1000, 1000])
        #expect(evaluation.confusion.indices.map { evaluation.confusion[$0][$0] }.reduce(0, +) == Int((test.last.top1 * 50).rounded()))
        // The scores are in last.h5 (the phase is complete) and in test.json.
        #expect(try Checkpoint.read(from: result.checkpoint).training?.test == test)
        let report = try JSONDecoder().decode(TestReport.self, from: Data(contentsOf: URL(fileURLWithPath: output + "/test.json")))
        #expect(report.scores == test && report.validation == "held-out")
    }

    /// A ≤ 30-line h5py + PyTorch script that reads only what the checkpoint stores (its model, its
    /// `/data` input pipeline) and the dataset's IDX test files reproduces `eval`'s test top-1.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["EPICYCLE_PYTHON"] != nil,
                   "set EPICYCLE_PYTHON to a Python with torch and h5py (scripts/setup-python)"))
    func aPyTorchReaderReproducesTheTestAccuracyFromTheCheckpointAlone() throws {
        let output = Self.folder("pytorch-eval")
        // Classes 3, 1, 4 in that order: the reader must follow the stored label mapping.
        let recipe = Self.pretrainRecipe.replacingOccurrences(of: "classes: [0, 1, 2, 3, 4]", with: "classes: [3, 1, 4]")
        let result = try pretrain(recipe: RecipeSource(text: recipe, origin: "pytorch.yaml", overrides: ["pretrain.epochs=1"]),
                                  options: RunOptions(output: output, quiet: true))
        let evaluation = try evaluate(checkpoint: result.checkpoint)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../scripts/eval_checkpoint.py").standardized.path
        #expect(try String(contentsOfFile: script, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false).count <= 30)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ProcessInfo.processInfo.environment["EPICYCLE_PYTHON"]!)
        process.arguments = [script, result.checkpoint]
        let out = Pipe(), errors = Pipe()
        process.standardOutput = out
        process.standardError = errors
        try process.run()
        let printed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "\(message)")
        // "3000 images, top-1 71.2333 %"
        let words = printed.split(separator: " ")
        #expect(words.first == "\(evaluation.score.images)")
        let top1 = try #require(words.count > 3 ? Double(words[3]) : nil, "\(printed)")
        #expect(abs(top1 - evaluation.score.top1) < 0.01, "PyTorch \(top1) vs eval \(evaluation.score.top1)")
    }

    /// A model whose outputs are NaN has no accuracy: `eval` refuses it (it used to report
    /// "loss nan, top-1 100.00 %", since NaN compares as no larger than the label's logit).
    @Test func evaluatingNonFiniteOutputsIsAnError() throws {
        let output = Self.folder("nan-eval")
        let result = try pretrain(recipe: RecipeSource(text: Self.pretrainRecipe, origin: "nan.yaml", overrides: ["pretrain.epochs=1"]),
                                  options: RunOptions(output: output, quiet: true))
        var checkpoint = try Checkpoint.read(from: result.checkpoint)
        let index = try #require(checkpoint.model.parameters.firstIndex { $0.name == "fc.bias" })
        let bias = checkpoint.model.parameters[index].tensor
        checkpoint.model.parameters[index].tensor = Tensor(shape: bias.shape, scalars: bias.scalars.map { _ in .nan })
        try checkpoint.write(to: output + "/nan.h5")
        do {
            let evaluation = try evaluate(checkpoint: output + "/nan.h5")
            Issue.record("evaluated NaN outputs as top-1 \(evaluation.score.top1)")
        } catch {
            #expect("\(error)".contains("NaN"), "\(error)")
        }
    }

    /// Without `validation:` a recipe holds out 10 % of the training split; `validation: test` must be
    /// asked for, and then every output says so.
    @Test func validationIsHeldOutUnlessTheRecipeAsksForTheTestSplit() throws {
        let heldOut = try PreparedData(DataRecipe(), path: "data")
        #expect(heldOut.validation.count == 6000 && heldOut.training.count == 54000 && heldOut.test.count == 10000)
        #expect(!heldOut.validatesOnTest)
        let recipe = try RecipeSource(text: Self.pretrainRecipe.replacingOccurrences(of: "validation: 200", with: "validation: test"),
                                      origin: "on-test.yaml", overrides: ["pretrain.epochs=1"])
        let result = try pretrain(recipe: recipe, options: RunOptions(output: Self.folder("on-test"), quiet: true))
        #expect(result.phases[0].validatesOnTest && result.summary.contains("the test split"))
        #expect(result.phases[0].history[0].validationTop1 == result.phases[0].test?.last.top1)
        #expect(throws: RecipeError.self) {
            _ = try RecipeSource(text: Self.pretrainRecipe.replacingOccurrences(of: "validation: 200", with: "validation: 0"),
                                 origin: "zero.yaml").decode(Recipe.self)
        }
    }

    /// The test split cannot influence training or selection: with the test images replaced by noise,
    /// every checkpoint and every training and validation figure is the same (creation times and
    /// wall-clock columns aside), and only the test scores differ.
    @Test func testImagesDoNotInfluenceTrainingOrSelection() throws {
        let data = Self.folder("noise-data")
        let splits = try loadDataset(DatasetSource.named())
        let train = try splits.training.first(600), test = try splits.test.first(300)
        try Self.writeIDXPair(train, to: data + "/train")
        try Self.writeIDXPair(test, to: data + "/t10k")
        let text = """
            seed: 1
            model: {architecture: resnet8}
            checkpoint_every: 1
            precise_bn: {when: always, images: 256}
            knobs:
              learning_rate: {cyclical: {easy: 0.01, hard: 0.1, factor: 2}}
              augmentation_strength: 0.5
              batch_size: 64
            pretrain:
              data: {folder: \(data), format: idx, validation: 100, augmentation: "crop,flip"}
              epochs: 3
            """
        let real = Self.folder("noise-real"), noise = Self.folder("noise-noise")
        let first = try pretrain(recipe: RecipeSource(text: text, origin: "noise.yaml"), options: RunOptions(output: real, quiet: true))
        var generator = RandomGenerator(seed: 9)
        try Self.writeIDXPair(ImageDataset(name: "noise", height: 28, width: 28, channels: 1, classNames: test.classNames,
                                  pixels: (0..<test.pixels.count).map { _ in UInt8(truncatingIfNeeded: generator.next()) },
                                  labels: test.labels), to: data + "/t10k")
        let second = try pretrain(recipe: RecipeSource(text: text, origin: "noise.yaml"), options: RunOptions(output: noise, quiet: true))

        let timing: Set<String> = ["seconds", "img_per_s", TradeoffColumns.seconds]
        for file in ["best.h5", "epoch-0001.h5", "epoch-0002.h5", "epoch-0003.h5", "last.h5"] {
            var a = try Checkpoint.read(from: real + "/" + file), b = try Checkpoint.read(from: noise + "/" + file)
            #expect(file != "last.h5" || (a.training?.test != nil && a.training?.test != b.training?.test))
            a.training?.test = nil
            b.training?.test = nil
            Self.expectIdentical(a, b)
            #expect(a.training?.rngState == b.training?.rngState && a.training?.step == b.training?.step)
            #expect(a.training?.bestTop1 == b.training?.bestTop1 && a.input == b.input)
            let columns = try #require(a.training?.metrics.columns)
            for column in columns where !timing.contains(column) {
                #expect(a.training?.metrics.column(column)?.map(\.bitPattern) == b.training?.metrics.column(column)?.map(\.bitPattern), "\(file): metrics column \(column)")
            }
        }
        func trainingColumns(_ folder: String) throws -> [[String]] {
            let lines = try String(contentsOfFile: folder + "/metrics.csv", encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
            let keep = lines[0].indices.filter { !timing.contains(lines[0][$0]) }
            return lines.map { row in keep.map { row[$0] } }
        }
        #expect(try trainingColumns(real) == trainingColumns(noise))
        #expect(first.phases[0].history.map(\.validationTop1) == second.phases[0].history.map(\.validationTop1))
        #expect(first.phases[0].test?.last.top1 != second.phases[0].test?.last.top1)
    }

    /// Recalibration replaces the running statistics by the plain average of the batch statistics
    /// over the recalibration images: checked against a direct computation for the stem's batch norm.
    @Test func batchNormRecalibrationAveragesTheBatchStatistics() throws {
        let model = try Model(ModelSpec(architecture: "resnet8", inputChannels: 1, numClasses: 3), seed: 4)
        var generator = RandomGenerator(seed: 5)
        let batches = (0..<3).map { _ in Tensor(shape: [8, 6, 6, 1], scalars: (0..<288).map { _ in Float(generator.nextUniform()) * 2 - 1 }) }
        let stem = model.state.parameters.first { $0.name == "conv1.weight" }!.parameter.value  // [16, 1, 3, 3]
        // The stem batch norm sees conv1's output; compute it per batch with a plain loop (padding 1, stride 1).
        var means = [[Double]](), variances = [[Double]]()
        for batch in batches {
            var values = [[Double]](repeating: [], count: 16)
            for n in 0..<8 { for y in 0..<6 { for x in 0..<6 { for k in 0..<16 {
                var sum = 0.0
                for r in 0..<3 { for c in 0..<3 {
                    let (yy, xx) = (y + r - 1, x + c - 1)
                    guard (0..<6).contains(yy), (0..<6).contains(xx) else { continue }
                    sum += Double(batch.scalars[(n * 6 + yy) * 6 + xx]) * Double(stem.scalars[k * 9 + r * 3 + c])
                }}
                values[k].append(sum)
            }}}}
            means.append(values.map { $0.reduce(0, +) / Double($0.count) })
            variances.append(values.map { v in let m = v.reduce(0, +) / Double(v.count); return v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(v.count - 1) })
        }
        let tracked = model.batchNorms[0].batchesTracked.value
        try model.recalibrateBatchNorm(on: batches)
        guard case let .float32(mean) = model.batchNorms[0].runningMean.value,
              case let .float32(variance) = model.batchNorms[0].runningVariance.value else { Issue.record("float32 buffers"); return }
        for k in 0..<16 {
            #expect(abs(Double(mean.scalars[k]) - (means[0][k] + means[1][k] + means[2][k]) / 3) < 1e-5)
            #expect(abs(Double(variance.scalars[k]) - (variances[0][k] + variances[1][k] + variances[2][k]) / 3) < 1e-4 * max(1, variances[0][k]))
        }
        #expect(model.batchNorms[0].batchesTracked.value == tracked, "recalibration batches are not training batches")
        #expect(model.batchNorms.count == 7, "stem + 3 blocks × 2 (ResNet-8, option A)")
    }

    /// An IDX folder (28×28) with the given training and test labels.
    static func idxFolder(_ name: String, training: [UInt8], test: [UInt8]) throws -> String {
        let folder = Self.folder(name)
        func header(_ values: [Int]) -> [UInt8] { values.flatMap { v in [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: v >> $0) } } }
        for (prefix, labels) in [("train", training), ("t10k", test)] {
            let images = header([0x803, labels.count, 28, 28]) + (0..<labels.count * 784).map { UInt8($0 % 251) }
            try Data(images).write(to: URL(fileURLWithPath: folder + "/\(prefix)-images-idx3-ubyte"))
            try Data(header([0x801, labels.count]) + labels).write(to: URL(fileURLWithPath: folder + "/\(prefix)-labels-idx1-ubyte"))
        }
        return folder
    }

    /// A split without images is an error naming the data section, not a run that reports a top-1.
    @Test func emptySplitsAreErrors() throws {
        let recipe = { (data: String) in "model: {architecture: resnet8}\npretrain: {epochs: 1, data: \(data)}\n" }
        let noTest = try Self.idxFolder("no-test", training: [0, 1, 0, 1, 0, 1], test: [])
        let error = #expect(throws: RecipeError.self) {
            try pretrain(recipe: RecipeSource(text: recipe("{folder: \(noTest), format: idx}"), origin: "e.yaml"),
                         options: RunOptions(output: noTest + "/run", quiet: true))
        }
        #expect(error?.description.hasPrefix("pretrain.data: has no test images") == true, "\(String(describing: error))")
        let noTraining = try Self.idxFolder("no-training", training: [], test: [0, 1])
        let second = #expect(throws: RecipeError.self) {
            try pretrain(recipe: RecipeSource(text: recipe("{folder: \(noTraining), format: idx}"), origin: "e.yaml"),
                         options: RunOptions(output: noTraining + "/run", quiet: true))
        }
        // The reader refuses it first: a test label outside the classes the (empty) training files define.
        #expect(second?.description.hasPrefix("pretrain.data: ") == true && second?.description.contains("label") == true,
                "\(String(describing: second))")
        // Holding out every image of the chosen class leaves none to train on.
        let third = #expect(throws: RecipeError.self) {
            try pretrain(recipe: RecipeSource(text: recipe("{folder: \(noTest), format: idx, classes: [1], validation: 3}"), origin: "e.yaml"),
                         options: RunOptions(output: noTest + "/run", quiet: true))
        }
        #expect(third?.description.hasPrefix("pretrain.data: has no training images after classes [1], validation: 3") == true,
                "\(String(describing: third))")
        #expect(!FileManager.default.fileExists(atPath: noTest + "/run/last.h5"))
    }

    /// Running variances of −100 leave training (batch statistics) finite but make every inference-mode
    /// output NaN: validation must stop the run as a divergence, not report a top-1.
    @Test func nonFiniteValidationOutputsAreADivergence() throws {
        let output = Self.folder("nan-validation")
        let prepared = try PreparedRecipe(RecipeSource(text: Self.pretrainRecipe, origin: "nan.yaml", overrides: ["pretrain.epochs=1"]),
                                          options: RunOptions(output: output, quiet: true))
        let data = try #require(prepared.pretrainData)
        let model = try Model(prepared.recipe.model.spec(inputChannels: data.channels, numClasses: data.classCount), seed: 0)
        let variance = try #require(model.state.buffers.first { $0.name == "bn1.running_var" }).buffer
        variance.value = .float32(Tensor(repeating: -100, shape: [16]))
        let trainer = try Trainer(model: model, optimizer: prepared.makeOptimizer(for: model, phase: .pretrain), program: .pretrain,
                              phase: .pretrain, cyclePhase: .pretrain, cycle: prepared.jointCycle, recipe: prepared.recipe,
                              recipeText: prepared.storedText(in: output), data: data, folder: output, progress: ProgressReporter(quiet: true),
                              objective: LabelObjective(model: model, loss: prepared.recipe.loss))
        let error = #expect(throws: TrainingError.self) { try trainer.run(resumingFrom: nil) }
        guard case let .nonFiniteValidation(epoch, step, lastGood)? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(epoch == 0 && step == 5 && lastGood == nil)
        #expect(error?.description.contains("diverged") == true)
        #expect(!FileManager.default.fileExists(atPath: output + "/last.h5"), "no checkpoint of the diverged epoch")
    }

    /// Smith's easy end is the large batch: a cyclical 256 → 100 with f = 3 over 5 epochs (t = e/4) has
    /// δ = 0, 0.75, 0.75, 0.375, 0, so epoch 3 asks for 197.5, which trains at 198.
    @Test func scheduledBatchSizesAreRounded() throws {
        let text = Self.pretrainRecipe.replacingOccurrences(of: "batch_size: 64", with: "batch_size: {cyclical: {easy: 256, hard: 100, factor: 3}}")
            .replacingOccurrences(of: "epochs: 3", with: "epochs: 5")
        let table = try scheduleTable(recipe: RecipeSource(text: text, origin: "rounding.yaml"))
        let batchSize = try #require(table.values.first { $0.knob == .batchSize }).values
        #expect(batchSize == [256, 139, 139, 198, 256])
        #expect(table.steps == [2, 3, 3, 2, 2], "320 images per epoch")
        #expect(table.text.contains("rounded half away from zero"))
        #expect(throws: RecipeError.self) {
            try RecipeSource(text: text, origin: "r.yaml", overrides: ["knobs.batch_size=100.5"]).decode(Recipe.self)
        }
        let perStep = #expect(throws: RecipeError.self) {
            try RecipeSource(text: text, origin: "r.yaml", overrides: ["knobs.batch_size={cyclical: {easy: 256, hard: 100, per: step}}"])
                .decode(Recipe.self)
        }
        #expect(perStep?.description.contains("knobs.batch_size") == true)
    }

    /// A cyclical batch size makes epochs of different lengths. A per-step knob must then follow the same
    /// steps in pretraining, in the cycle's fine-tune, in a separate fine-tune from the pretraining
    /// checkpoint, and in `epicycle schedule` (which predicted T = 0.7308 where a fine-tune used 0.607).
    @Test func perStepKnobsCountTheSameStepsInEveryProgram() throws {
        let output = Self.folder("steps")
        let text = Self.pretrainRecipe
            .replacingOccurrences(of: "batch_size: 64", with: "batch_size: {cyclical: {easy: 160, hard: 45}}")
            .replacingOccurrences(of: "temperature: {cyclical: {easy: 0.5, hard: 2, factor: 1}}",
                                  with: "temperature: {cyclical: {easy: 0.5, hard: 2, factor: 1, per: step}}") + """

            finetune:
              data: {classes: [5, 6, 7, 8, 9], validation: 200, per_class: 40}
              epochs: 2
            """
        let source = try RecipeSource(text: text, origin: "steps.yaml")
        let table = try scheduleTable(recipe: source)
        let result = try cycle(recipe: source, options: RunOptions(output: output + "/cycle", quiet: true))
        let history = result.phases.flatMap(\.history)
        // Joint cycle of 5 epochs, f = 5/3: batch sizes 160, 112, 64, 88, 160 (δ = 0, 5/12, 5/6, 5/8, 0).
        #expect(history.map { $0.knobs["batch_size"]! } == [160, 112, 64, 88, 160])
        #expect(table.steps == [2, 3, 5, 3, 2])
        let logged = result.phases.map { $0.history.map(\.step) }
        #expect(logged == [[2, 5, 10], [3, 5]], "each phase's optimizer steps, as the table predicts")
        let predicted = try #require(table.values.first { $0.knob == .temperature }).values
        #expect(history.map { $0.knobs["temperature"]! } == predicted)
        // Fine-tune epoch 1 starts at step 10 of 15: T = 0.5 + 1.5·10/14.
        #expect(abs(predicted[3] - (0.5 + 1.5 * 10 / 14)) < 1e-12)

        let separate = try finetune(from: output + "/cycle/pretrain/last.h5", recipe: source,
                                    options: RunOptions(output: output + "/finetune", quiet: true))
        #expect(separate.phases[0].history.map { $0.knobs["temperature"]! } == Array(predicted.suffix(2)))
        #expect(separate.phases[0].history.map(\.validationTop1) == result.phases[1].history.map(\.validationTop1))
    }

    /// Data selection end to end: a cyclical keep fraction 0.5 → 1 → 0.5 drops half of each batch (⌈n/2⌉
    /// of n kept) in the first and last epoch and nothing in the middle, and says so in `dropped_share`
    /// (history, metrics.csv, `epicycle schedule`); a selection that keeps everything trains bit for bit
    /// like no selection, and without selection knobs there is no such column.
    @Test func dataSelectionLogsTheDroppedShare() throws {
        let output = Self.folder("selection")
        defer { try? FileManager.default.removeItem(atPath: output) }
        let plain = try pretrain(recipe: RecipeSource(text: Self.pretrainRecipe, origin: "plain.yaml"),
                                 options: RunOptions(output: output + "/plain", quiet: true))
        #expect(plain.phases[0].history.allSatisfy { $0.knobs["dropped_share"] == nil })
        let lenient = try pretrain(
            recipe: RecipeSource(text: Self.pretrainRecipe, origin: "lenient.yaml",
                                 overrides: ["knobs.sample_loss_threshold=1e6", "knobs.keep_fraction=1", "knobs.sample_loss_clip=1e6"]),
            options: RunOptions(output: output + "/lenient", quiet: true))
        #expect(lenient.phases[0].history.map { $0.knobs["dropped_share"] } == [0, 0, 0])
        Self.expectIdentical(try Checkpoint.read(from: output + "/plain/last.h5"), try Checkpoint.read(from: output + "/lenient/last.h5"))

        let cyclical = try RecipeSource(text: Self.pretrainRecipe, origin: "keep.yaml",
                                        overrides: ["knobs.keep_fraction={cyclical: {easy: 0.5, hard: 1, factor: 2}}"])
        let table = try scheduleTable(recipe: cyclical)
        #expect(try #require(table.values.first { $0.knob == .keepFraction }).values == [0.5, 1, 0.5])
        #expect(table.text.contains("keep_fraction"))
        let result = try pretrain(recipe: cyclical, options: RunOptions(output: output + "/keep", quiet: true))
        let history = result.phases[0].history
        #expect(history.map { $0.knobs["keep_fraction"]! } == [0.5, 1, 0.5])
        // 320 training images in 5 batches of 64: 32 of each dropped at keep fraction 0.5.
        #expect(history.map { $0.knobs["dropped_share"]! } == [0.5, 0, 0.5])
        let csv = try String(contentsOfFile: output + "/keep/metrics.csv", encoding: .utf8).split(separator: "\n")
        let header = csv[0].split(separator: ",")
        let column = try #require(header.firstIndex(of: "dropped_share"), "metrics.csv has a dropped_share column: \(header)")
        #expect(csv.dropFirst().map { $0.split(separator: ",")[column] } == ["0.5", "0", "0.5"])
        // Dropping half of every batch trains on different gradients.
        #expect(history.map(\.trainLoss) != plain.phases[0].history.map(\.trainLoss))
    }

    @Test func scheduleTableFollowsTheJointCycle() throws {
        let text = Self.pretrainRecipe + "\nfinetune:\n  data: {classes: [5, 6]}\n  epochs: 1\n"
        let table = try scheduleTable(recipe: RecipeSource(text: text, origin: "table.yaml"))
        #expect(table.epochs == ["pretrain 1", "pretrain 2", "pretrain 3", "finetune 1"])
        let temperature = try #require(table.values.first { $0.knob == .temperature }).values
        #expect(temperature == [0.5, 1.0, 1.5, 2.0])
        #expect(table.svg.hasPrefix("<svg") && table.svg.contains("temperature"))
        #expect(table.text.contains("weight_decay"))
    }

    /// `cycles: 2` over a joint cycle of 3 + 3 epochs: two cycles of 3 epochs, each easy → hard → easy.
    @Test func scheduleTableShowsRepeatedCycles() throws {
        let text = Self.pretrainRecipe + "\nfinetune:\n  data: {classes: [5, 6]}\n  epochs: 3\n"
        let table = try scheduleTable(recipe: RecipeSource(
            text: text, origin: "cycles.yaml",
            overrides: ["knobs.temperature={cyclical: {easy: 0.5, hard: 2, factor: 2, cycles: 2}}"]))
        let temperature = try #require(table.values.first { $0.knob == .temperature }).values
        #expect(temperature == [0.5, 2, 0.5, 0.5, 2, 0.5])
    }

    /// Cycle ends follow the knob with cycles of its own (here the temperature: two cycles of 3 epochs
    /// over 3 + 3 epochs end after joint epochs 3 and 6), or the one `cycle_ends_of` names.
    @Test func scheduleTableNamesTheCycleEnds() throws {
        let text = Self.pretrainRecipe + "\nfinetune:\n  data: {classes: [5, 6]}\n  epochs: 3\n"
        let cycles = "knobs.temperature={cyclical: {easy: 0.5, hard: 2, factor: 2, cycles: 2}}"
        let table = try scheduleTable(recipe: RecipeSource(text: text, origin: "cycles.yaml", overrides: [cycles]))
        #expect(table.notes.last == "cycle ends (snapshots, SWA, tradeoff points) after epochs: pretrain 3 (temperature); finetune 3 (temperature)")
        let restarts = "knobs.learning_rate={warm_restarts: {maximum: 0.1, first_period: 1, period_multiplier: 2}}"
        let named = try scheduleTable(recipe: RecipeSource(text: text, origin: "cycles.yaml",
                                                           overrides: [cycles, restarts, "cycle_ends_of=temperature"]))
        #expect(named.notes.last == "cycle ends (snapshots, SWA, tradeoff points) after epochs: pretrain 3 (temperature); finetune 3 (temperature)")
        // Periods of 1, 2 epochs end after joint epochs 1 and 3; the next (4 epochs) would end at 7 > 6.
        let byLearningRate = try scheduleTable(recipe: RecipeSource(text: text, origin: "cycles.yaml", overrides: [cycles, restarts]))
        #expect(byLearningRate.notes.last == "cycle ends (snapshots, SWA, tradeoff points) after epochs: pretrain 1, 3 (learning_rate); finetune 3 (learning_rate)")
    }
}
