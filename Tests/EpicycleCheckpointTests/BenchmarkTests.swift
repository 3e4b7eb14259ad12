import EpicycleCheckpoint
import EpicycleRuntime
import Foundation
import Testing
import TestSupport

extension CheckpointTests {
    /// Not a unit test: measures save + load of a ResNet-56 with SGD momentum state, when
    /// EPICYCLE_BENCHMARK is set (run it with `swift test -c release`). Goal: median below 50 ms.
    @Suite struct Benchmark {
        @Test(.enabled(if: ProcessInfo.processInfo.environment["EPICYCLE_BENCHMARK"] != nil, "set EPICYCLE_BENCHMARK"))
        func resNet56SaveAndLoad() throws {
            let folder = try makeTemporaryFolder()
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let shapes = cifarResNetShapes(blocksPerStage: 9)
            let model = makeModelState(parameters: shapes.parameters, buffers: shapes.buffers, seed: 1)
            let momentum = model.parameters.map { ($0.name + ".momentum_buffer", randomTensor($0.parameter.value.shape, seed: 9)) }
            let checkpoint = Checkpoint(
                model: model, architecture: "model: resnet56", numClasses: 10,
                optimizer: OptimizerRecord(kind: "sgd", hyperparameters: ["lr": 0.1, "momentum": 0.9], tensors: momentum),
                training: TrainingRecord(program: .pretrain, epoch: 0, step: 391, cyclePosition: 1, seed: 1,
                                         rngState: [1, 2, 3, 4], recipe: "model: resnet56"))
            let path = folder + "/last.h5"
            let target = makeModelState(parameters: shapes.parameters, buffers: shapes.buffers, seed: 2)
            var saves: [Double] = [], loads: [Double] = [], totals: [Double] = []
            for _ in 0..<21 {
                let start = DispatchTime.now().uptimeNanoseconds
                try checkpoint.write(to: path)
                let saved = DispatchTime.now().uptimeNanoseconds
                try Checkpoint.read(from: path).loadModel(into: target)
                let loaded = DispatchTime.now().uptimeNanoseconds
                saves.append(Double(saved - start) / 1e6)
                loads.append(Double(loaded - saved) / 1e6)
                totals.append(Double(loaded - start) / 1e6)
            }
            #expect(target.parameters.map(\.parameter.value) == model.parameters.map(\.parameter.value))
            func median(_ values: [Double]) -> String { String(format: "%.1f ms", values.sorted()[values.count / 2]) }
            let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int ?? 0
            print("""
                ResNet-56 checkpoint: \(model.parameters.count) parameters + \(model.buffers.count) buffers \
                + \(momentum.count) momentum tensors, \(StateRecord(model).parameterCount) parameters, \(size) bytes; \
                median of 21: save \(median(saves)), read + load \(median(loads)), total \(median(totals))
                """)
        }
    }
}
