import EpicycleCheckpoint
import EpicycleRuntime
@testable import EpicycleTraining
import Foundation
import Testing
import TestSupport

/// Model soups and ensembles of checkpoints of a real (one-epoch) Fashion-MNIST run.
@Suite(.serialized) struct AveragingTests {
    static let recipe = """
        seed: 4
        model: {architecture: resnet8}
        knobs: {learning_rate: 0.05, batch_size: 64}
        pretrain:
          data: {classes: [0, 1, 2, 3, 4], validation: 200, first: 320}
          epochs: 1
        """

    /// A folder with `good.h5` from a one-epoch run, its copy `twin.h5`, and `bad.h5`: the same
    /// model with its classifier (fc) multiplied by −10, so it ranks classes backwards.
    static func ingredients() throws -> String {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("epicycle-averaging-tests/\(UUID().uuidString)").path
        _ = try pretrain(recipe: RecipeSource(text: recipe, origin: "soup.yaml"), options: RunOptions(output: folder + "/run", quiet: true))
        var good = try Checkpoint.read(from: folder + "/run/last.h5")
        good.optimizer = nil
        try good.write(to: folder + "/good.h5")
        try good.write(to: folder + "/twin.h5")
        var bad = good
        bad.model.parameters = good.model.parameters.map { entry -> (name: String, tensor: Tensor) in
            guard entry.name.hasPrefix("fc.") else { return entry }
            return (entry.name, Tensor(shape: entry.tensor.shape, scalars: entry.tensor.scalars.map { -10 * $0 }))
        }
        try bad.write(to: folder + "/bad.h5")
        return folder
    }

    @Test func averagingIsTheElementwiseMean() {
        let states = [([1, 2] as [Float], [0.5] as [Float], Int64(7)), ([3, 5], [1.5], 9), ([2, 2], [4], 11)].map { p, b, n in
            StateRecord(parameters: [("w", Tensor(shape: [2], scalars: p))],
                        buffers: [("bn.running_mean", .float32(Tensor(shape: [1], scalars: b))), ("bn.num_batches_tracked", .int64(n))])
        }
        let mean = averagedModelState(states)
        #expect(mean.parameters[0].name == "w" && mean.parameters[0].tensor.scalars == [2, 3])
        #expect(mean.buffers[0].value == .float32(Tensor(shape: [1], scalars: [2])))
        #expect(mean.buffers[1].value == .int64(7), "a count is the first model's")
    }

    /// Greedy: good and twin tie at the top (kept in the given order), and adding bad would turn the
    /// soup's classifier to −8/3 of good's, so it is left out. Uniform takes all; its tensors are the
    /// means of the ingredients', and both soups' batch-norm statistics are recalibrated.
    @Test func greedySoupLeavesOutTheIngredientThatHurtsAndUniformAveragesAll() throws {
        let folder = try Self.ingredients()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let paths = ["bad", "good", "twin"].map { folder + "/\($0).h5" }
        let greedy = try makeSoup(.greedy, of: paths, output: folder + "/greedy.h5")
        #expect(greedy.chosen == [paths[1], paths[2]])
        #expect(greedy.ingredients[0].validation.top1 < greedy.ingredients[1].validation.top1)
        #expect(greedy.ingredients[1].validation.top1 == greedy.ingredients[2].validation.top1)
        let good = try Checkpoint.read(from: paths[1]), bad = try Checkpoint.read(from: paths[0])
        let greedySoup = try Checkpoint.read(from: folder + "/greedy.h5")
        for (soup, ingredient) in zip(greedySoup.model.parameters, good.model.parameters) {
            #expect(soup.name == ingredient.name && soup.tensor == ingredient.tensor, "the mean of two equal models is that model")
        }
        #expect(greedySoup.input == good.input, "/data is copied")
        #expect(greedySoup.training?.recipe == good.training?.recipe && greedySoup.training?.test == nil)
        #expect(greedy.summary.contains("soup of 2: validation top-1"))

        let uniform = try makeSoup(.uniform, of: paths, output: folder + "/uniform.h5")
        #expect(uniform.chosen == paths)
        #expect(uniform.validation.top1 < greedy.validation.top1)
        let uniformSoup = try Checkpoint.read(from: folder + "/uniform.h5")
        for (index, soup) in uniformSoup.model.parameters.enumerated() {
            let a = good.model.parameters[index].tensor.scalars, b = bad.model.parameters[index].tensor.scalars
            let expected = a.indices.map { Float((2 * Double(a[$0]) + Double(b[$0])) / 3) }
            #expect(soup.tensor.scalars == expected, "\(soup.name) is the mean of good, bad and twin")
        }
        // Recalibrated: the soup's running statistics are the plain average over the first training
        // images, not the ingredients' moving averages.
        let mean = { (checkpoint: Checkpoint) in checkpoint.model.buffers.first { $0.name == "bn1.running_mean" }!.value }
        #expect(mean(greedySoup) != mean(good))
        let recalibrated = try loadedModel(good)
        let data = try EvaluationSource(good, path: paths[1]).data(for: good, path: paths[1], spec: recalibrated.spec)
        let images = data.loader(for: data.training.samples(at: Array(0..<min(2048, data.training.count)), name: "first"))
        try recalibrated.recalibrateBatchNorm(on: images.epoch(0, batchSize: Trainer.evaluationBatchSize).lazy.map(\.images))
        #expect(mean(greedySoup) == recalibrated.state.buffers.first { $0.name == "bn1.running_mean" }!.buffer.value)
    }

    /// The mean of the members' softmaxes, computed here in Double from each member's logits; an
    /// ensemble of a model and its copy scores exactly as the model.
    @Test func ensembleAveragesSoftmaxOutputs() throws {
        let folder = try Self.ingredients()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let members = try ["good", "bad"].map { try loadedModel(try Checkpoint.read(from: folder + "/\($0).h5")) }
        let batch = Tensor(shape: [3, 28, 28, 1], scalars: (0..<(3 * 784)).map { Float(($0 * 37) % 101) / 50 - 1 })
        let probabilities = try ensembleProbabilities(members, images: batch)
        var expected = [Double](repeating: 0, count: 15)
        for member in members {
            let logits = try member.forward(batch, mode: .inference).logits.scalars.map(Double.init)
            for row in 0..<3 {
                let z = logits[(5 * row)..<(5 * row + 5)], top = z.max()!
                let total = z.map { exp($0 - top) }.reduce(0, +)
                for j in 0..<5 { expected[5 * row + j] += exp(z[5 * row + j] - top) / total / 2 }
            }
        }
        expectClose(probabilities.scalars, expected.map(Float.init), rtol: 1e-5, atol: 1e-7, "mean softmax")

        let single = try evaluate(checkpoint: folder + "/good.h5")
        let twins = try evaluateEnsemble(checkpoints: [folder + "/good.h5", folder + "/twin.h5"])
        #expect(twins.score.top1 == single.score.top1 && twins.score.images == single.score.images)
        #expect(abs(twins.score.loss - single.score.loss) < 1e-4)
        #expect(twins.summary.hasPrefix("ensemble of 2 (mean softmax), test split of"))
    }

    @Test func incompatibleCheckpointsAreRefusedByName() throws {
        let folder = try Self.ingredients()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let good = try Checkpoint.read(from: folder + "/good.h5"), goodPath = folder + "/good.h5"
        func written(_ name: String, _ change: (inout Checkpoint) -> Void) throws -> String {
            var checkpoint = good
            change(&checkpoint)
            try checkpoint.write(to: folder + "/\(name).h5")
            return folder + "/\(name).h5"
        }
        func soupProblem(_ other: String) -> String {
            do { _ = try makeSoup(.uniform, of: [goodPath, other], output: folder + "/out.h5"); return "made" } catch { return "\(error)" }
        }
        let renamed = try written("renamed") { $0.model.parameters[0].name = "stem.weight" }
        #expect(soupProblem(renamed) == "tensor 1 of '/model/parameters' differs: \(goodPath) has conv1.weight, \(renamed) has stem.weight")
        let reshaped = try written("reshaped") { checkpoint in
            let index = checkpoint.model.parameters.firstIndex { $0.name == "bn1.weight" }!
            checkpoint.model.parameters[index].tensor = Tensor(zeros: [17])
        }
        #expect(soupProblem(reshaped) == "'/model/parameters/bn1.weight' differs: \(goodPath) has shape [16], \(reshaped) has shape [17]")
        let renormalised = try written("renormalised") { $0.input!.mean = [0.5] }
        let meanProblem = soupProblem(renormalised)
        #expect(meanProblem.hasPrefix("/data field 'mean' differs: \(goodPath) has [0.") && meanProblem.hasSuffix("\(renormalised) has [0.5]"))
        let noInput = try written("no-input") { $0.input = nil }
        #expect(soupProblem(noInput).hasPrefix("\(noInput) has no /data (input pipeline)"))
        do {
            _ = try makeSoup(.greedy, of: [goodPath, folder + "/twin.h5"], output: goodPath)
            Issue.record("writing over an ingredient should be refused")
        } catch {
            #expect("\(error)" == "--output \(goodPath) is the ingredient \(goodPath); write the soup to a new file")
        }
        #expect(throws: IncompatibleCheckpoints.self) { _ = try evaluateEnsemble(checkpoints: [goodPath]) }
        do {
            _ = try evaluateEnsemble(checkpoints: [goodPath, renormalised])
            Issue.record("an ensemble over different inputs should be refused")
        } catch {
            #expect("\(error)".hasPrefix("/data field 'mean' differs"))
        }
        // Members may differ in architecture, not in classes.
        let otherClasses = try written("other-classes") { $0.input!.classes = [5, 6, 7, 8, 9] }
        do {
            _ = try evaluateEnsemble(checkpoints: [goodPath, otherClasses])
            Issue.record("an ensemble over different classes should be refused")
        } catch {
            #expect("\(error)" == "/data field 'classes' differs: \(goodPath) has [0, 1, 2, 3, 4], \(otherClasses) has [5, 6, 7, 8, 9]")
        }
    }
}
