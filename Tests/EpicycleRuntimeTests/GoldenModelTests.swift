import EpicycleRuntime
import Foundation
import Testing
import TestSupport

/// Whole models against PyTorch (fixtures from scripts/make_golden_fixtures.py): the same weights and
/// batch must give the same logits, features, loss, gradients, batch-norm statistics, parameters after
/// two SGD steps, and inference-mode logits. Tolerance 1e-4 normwise relative error: float32 sums of a
/// few thousand terms in a different order differ by ~1e-6 relative; 1e-4 leaves room for that while
/// any wrong index, missing term or wrong statistic shows up as errors of order 1e-2 or more.
@Suite struct GoldenModelTests {
    static let cases = ["resnet8-A", "resnet8-B", "wrn-10-1", "plain-cnn", "vgg8x0.125", "vgg11x0.0625", "vgg13x0.0625",
                        "mobilenetv2x0.25"]
    static let tolerance: Float = 1e-4

    /// Compares every parameter gradient with PyTorch's under `prefix`. A bias that a training-mode
    /// batch norm follows (VGG's) has an exactly zero gradient, which both frameworks compute as
    /// rounding noise (~1e-8 against gradients of ~0.1): there the check is that ours is negligible
    /// too, below `tolerance` times the model's largest gradient, since noise has no digits to match.
    static func expectGradientsMatch(_ model: Model, _ fixture: Fixture, prefix: String, _ what: String) throws {
        let parameters = model.state.parameters
        let expected = try parameters.map { try #require(fixture[prefix + $0.name]) }
        let largest = expected.map { $0.scalars.reduce(Float(0)) { max($0, abs($1)) } }
        let modelScale = largest.max() ?? 0
        for ((name, parameter), (expected, largest)) in zip(parameters, zip(expected, largest)) {
            guard largest < tolerance * modelScale else {
                expectNormwiseClose(parameter.gradient, expected, tolerance: tolerance, "\(what) gradient of \(name)")
                continue
            }
            let ours = parameter.gradient.scalars.reduce(Float(0)) { max($0, abs($1)) }
            #expect(ours < tolerance * modelScale, "\(what) gradient of \(name): \(ours), PyTorch's cancels to \(largest)")
        }
    }

    static func fixture(_ name: String) throws -> Fixture {
        let url = try #require(Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures"))
        return try Fixture(manifest: url)
    }

    /// Builds the fixture's model and loads PyTorch's initial state into it, checking that the
    /// state_dict names and shapes agree one to one.
    static func model(for fixture: Fixture) throws -> Model {
        let manifest = fixture.manifest
        let spec = ModelSpec(architecture: manifest.architecture, inputChannels: manifest.inputChannels,
                             numClasses: manifest.numClasses, shortcut: ModelSpec.Shortcut(rawValue: manifest.shortcut)!)
        let model = try Model(spec, seed: 1)
        let state = model.state
        #expect(Set(state.parameters.map(\.name) + state.buffers.map(\.name)) == Set(fixture.names(under: "initial/")),
                "state_dict names differ from PyTorch's")
        for (name, parameter) in state.parameters {
            let value = try #require(fixture["initial/" + name])
            #expect(parameter.value.shape == value.shape, "\(name): shape \(parameter.value.shape) vs PyTorch \(value.shape)")
            parameter.value = value
        }
        for (name, buffer) in state.buffers {
            let value = try #require(fixture["initial/" + name])
            buffer.value = name.hasSuffix("num_batches_tracked") ? .int64(Int64(value.scalars[0])) : .float32(value)
        }
        return model
    }

    static func expectStateMatches(_ model: Model, _ fixture: Fixture, prefix: String, buffersOnly: Bool) throws {
        let state = model.state
        if !buffersOnly {
            for (name, parameter) in state.parameters {
                expectNormwiseClose(parameter.value, try #require(fixture[prefix + name]), tolerance: tolerance, prefix + name)
            }
        }
        for (name, buffer) in state.buffers {
            let expected = try #require(fixture[prefix + name])
            switch buffer.value {
            case let .float32(tensor): expectNormwiseClose(tensor, expected, tolerance: tolerance, prefix + name)
            case let .int64(count): #expect(Float(count) == expected.scalars[0], "\(prefix + name)")
            }
        }
    }

    @Test(arguments: cases)
    func trainingStepMatchesPyTorch(_ name: String) throws {
        let fixture = try Self.fixture(name)
        let model = try Self.model(for: fixture)
        let input = try #require(fixture["input"])
        let labels = try #require(fixture["labels"]).scalars.map { Int32($0) }

        let output = try model.forward(input, mode: .training, capture: fixture.manifest.capture)
        expectNormwiseClose(output.logits, try #require(fixture["train/logits"]), tolerance: Self.tolerance, "\(name) logits")
        for feature in fixture.manifest.capture {
            expectNormwiseClose(try #require(output.features[feature]), try #require(fixture["train/feature/" + feature]),
                                tolerance: Self.tolerance, "\(name) feature \(feature)")
        }
        let loss = try CrossEntropyLoss()(logits: output.logits, labels: labels)
        #expect(abs(loss.value - fixture["train/loss"]!.scalars[0]) <= Self.tolerance * loss.value, "\(name) loss")
        model.backward(loss.gradient)
        try Self.expectGradientsMatch(model, fixture, prefix: "train/grad/", name)
        try Self.expectStateMatches(model, fixture, prefix: "train/state/", buffersOnly: true)
    }

    /// Gradients of CE + Σ feature⊙S: the extra gradient must enter the backward pass exactly where the
    /// named feature is produced (this is how feature-matching distillation losses reach the network).
    @Test(arguments: cases)
    func featureGradientsMatchPyTorch(_ name: String) throws {
        let fixture = try Self.fixture(name)
        let model = try Self.model(for: fixture)
        let input = try #require(fixture["input"])
        let labels = try #require(fixture["labels"]).scalars.map { Int32($0) }
        let feature = fixture.manifest.capture[0]
        let output = try model.forward(input, mode: .training, capture: [feature])
        let loss = try CrossEntropyLoss()(logits: output.logits, labels: labels)
        let weights = try #require(fixture["feature_grad/weights"])
        let dInput = model.backwardToInput(loss.gradient, featureGradients: [feature: weights])
        expectNormwiseClose(dInput, try #require(fixture["feature_grad/input"]), tolerance: Self.tolerance,
                            "\(name) input gradient with a gradient on \(feature)")
        try Self.expectGradientsMatch(model, fixture, prefix: "feature_grad/grad/", "\(name) with a gradient on \(feature),")
    }

    @Test(arguments: cases)
    func twoSGDStepsAndInferenceMatchPyTorch(_ name: String) throws {
        let fixture = try Self.fixture(name)
        let model = try Self.model(for: fixture)
        let input = try #require(fixture["input"])
        let labels = try #require(fixture["labels"]).scalars.map { Int32($0) }
        let settings = fixture.manifest.sgd
        let optimizer = SGD(groups: ParameterGroup.standard(model.state.parameters, weightDecay: settings.weightDecay),
                            learningRate: settings.lr, momentum: settings.momentum)
        for _ in 0..<2 {
            optimizer.zeroGradients()
            let logits = try model.forward(input, mode: .training).logits
            model.backward(try CrossEntropyLoss()(logits: logits, labels: labels).gradient)
            optimizer.step()
        }
        try Self.expectStateMatches(model, fixture, prefix: "sgd/", buffersOnly: false)
        let logits = try model.forward(input, mode: .inference).logits
        expectNormwiseClose(logits, try #require(fixture["eval/logits"]), tolerance: Self.tolerance, "\(name) inference logits")
    }
}
