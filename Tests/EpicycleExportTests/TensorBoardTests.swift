import EpicycleExport
import EpicycleTraining
import Foundation
import TestSupport
import Testing

/// Reads a run folder with TensorBoard's own `EventAccumulator` (every scalar kept, restarts purged
/// as TensorBoard does) and prints each tag's [step, value] pairs, NaN as null.
private let tensorBoardReader = #"""
import json, math, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
accumulator = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
accumulator.Reload()
print(json.dumps({tag: [[e.step, None if math.isnan(e.value) else e.value] for e in accumulator.Scalars(tag)]
                  for tag in accumulator.Tags()["scalars"]}))
"""#

@Suite(.serialized) struct TensorBoardTests {
    /// Two epochs of 5 steps; a per-step temperature, so step values differ from the epoch's.
    static let recipe = """
        pretrain:
          epochs: 2
          data: {first: 320, validation: 200, classes: [0, 1, 2, 3, 4]}
        knobs:
          batch_size: 64
          temperature: {cyclical: {easy: 0.5, hard: 2, factor: 1, per: step}}
          weight_decay: {cyclical: {easy: 1e-5, hard: 5e-4, factor: 2}}
          learning_rate: {cosine: {peak: 0.05, final: 0.005, warmup_epochs: 1}}
        model: {architecture: resnet8}
        checkpoint_every: 1
        seed: 4
        """

    /// Each tag's (step, value) pairs as TensorBoard reads the folder.
    static func scalars(in folder: String) throws -> [String: [(step: Int, value: Double?)]] {
        let seen = try #require(try runPeerScript(tensorBoardReader, [folder]) as? [String: [[Any]]])
        return seen.mapValues { pairs in pairs.map { ($0[0] as! Int, $0[1] as? Double) } }
    }

    static func jsonRows(_ path: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
            try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
        }
    }

    static func close(_ a: Double?, _ b: Double) -> Bool {
        guard let a else { return b.isNaN }
        return abs(a - b) <= 1e-5 * max(1, abs(b))
    }

    /// A run's event file holds, at each step, the loss and every knob as `steps.jsonl` has them, and
    /// at each epoch's last step every column of `metrics.csv`.
    @Test(.enabled(if: peerPython != nil, peerReason))
    func tensorBoardReadsEveryStepAndEpochOfARun() throws {
        let folder = try temporaryFolder("tensorboard")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        _ = try pretrain(recipe: try RecipeSource(text: Self.recipe, origin: "tb.yaml"), options: RunOptions(output: folder, quiet: true))
        let events = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix("events.out.tfevents.") }
        #expect(events.count == 1 && events[0].hasSuffix("." + ProcessInfo.processInfo.hostName), "\(events)")
        let scalars = try Self.scalars(in: folder)

        let steps = try Self.jsonRows(folder + "/steps.jsonl")
        #expect(steps.map { $0["step"] as? Int } == Array(1...10))
        for name in ["loss", "learning_rate", "weight_decay", "temperature", "batch_size", "epoch"] {
            let logged = try #require(scalars["step/" + name], "no step/\(name) in \(scalars.keys.sorted())")
            #expect(logged.map(\.step) == Array(1...10))
            for (pair, row) in zip(logged, steps) {
                #expect(Self.close(pair.value, try #require(row[name] as? Double)), "step/\(name) at \(pair.step)")
            }
        }
        // A per-step temperature moves within an epoch: the step rows are not the epoch's first value repeated.
        #expect(Set(steps.prefix(5).map { $0["temperature"] as? Double }).count == 5)

        let csv = try String(contentsOfFile: folder + "/metrics.csv", encoding: .utf8).split(separator: "\n")
        let columns = csv[0].split(separator: ",").map(String.init)
        let rows = csv.dropFirst().map { $0.split(separator: ",").map { Double($0)! } }
        #expect(rows.count == 2)
        for (index, column) in columns.enumerated() where !["step", "seconds", "img_per_s"].contains(column) {
            // A column without a value in any epoch (the tradeoff curve's cycle-end test score of a run
            // with no cycle end before its last epoch) has no scalar.
            if rows.allSatisfy({ $0[index].isNaN }) {
                #expect(scalars["epoch/" + column] == nil, "epoch/\(column) logged without a value")
                continue
            }
            let logged = try #require(scalars["epoch/" + column], "no epoch/\(column) in \(scalars.keys.sorted())")
            #expect(logged.map(\.step) == rows.map { Int($0[1]) }, "epoch/\(column)")
            for (pair, row) in zip(logged, rows) { #expect(Self.close(pair.value, row[index]), "epoch/\(column) at \(pair.step)") }
        }
    }

    /// A run killed after its epoch-1 checkpoint, having logged steps of epoch 2, and resumed: the step
    /// rows past the checkpoint are dropped and taken again, and TensorBoard, told of the restart,
    /// shows each step once, with the values of an uninterrupted run.
    @Test(.enabled(if: peerPython != nil, peerReason))
    func aResumedRunShowsEachStepOnceWithTheUninterruptedValues() throws {
        let folder = try temporaryFolder("tensorboard-resume")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let source = try RecipeSource(text: Self.recipe, origin: "tb.yaml")
        _ = try pretrain(recipe: source, options: RunOptions(output: folder, quiet: true))
        let uninterruptedSteps = try String(contentsOfFile: folder + "/steps.jsonl", encoding: .utf8)
        let uninterrupted = try Self.scalars(in: folder)
        // The state a kill in epoch 2 leaves: last.h5 at epoch 1, steps.jsonl and the event file ahead of it
        // (with a row cut short by the kill).
        try FileManager.default.removeItem(atPath: folder + "/last.h5")
        try FileManager.default.copyItem(atPath: folder + "/epoch-0001.h5", toPath: folder + "/last.h5")
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: folder + "/steps.jsonl"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("{\"epoch\":2,\"lo".utf8))
        try handle.close()
        // The resumed process's event file must sort after the first's (names start with the second).
        Thread.sleep(forTimeInterval: 1.1)
        _ = try pretrain(recipe: source, options: RunOptions(output: folder, resume: true, quiet: true))

        #expect(try String(contentsOfFile: folder + "/steps.jsonl", encoding: .utf8) == uninterruptedSteps)
        let resumed = try Self.scalars(in: folder)
        #expect(resumed.keys.sorted() == uninterrupted.keys.sorted())
        // The training seconds are wall-clock time: a resumed run's differ.
        for (tag, pairs) in uninterrupted where tag != "epoch/train_seconds" {
            let again = try #require(resumed[tag])
            #expect(again.map(\.step) == pairs.map(\.step), "\(tag)")
            for (a, b) in zip(again, pairs) { #expect(a.value == b.value, "\(tag) at step \(a.step)") }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix("events.out.tfevents.") }.count == 2)
    }
}
