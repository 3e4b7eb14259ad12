import EpicycleCheckpoint
import Foundation
import Testing
import TestSupport

/// A run that keeps SWA (with its own learning rate), EMA and snapshots, killed or interrupted at
/// chosen moments and resumed: the folder must then be the uninterrupted run's, averages (in every
/// `last.h5` and `epoch-N.h5`), `swa.h5`, `ema.h5` and every `snapshot-K.h5` included.
@Suite(.serialized) struct AveragingResumeTests {
    static let recipe = """
        name: averaging-faults
        seed: 7
        threads: 1
        checkpoint_every: 1
        model: {architecture: resnet8}
        knobs:
          learning_rate: {warm_restarts: {maximum: 0.05, minimum: 0.001, first_period: 1, period_multiplier: 2}}
          batch_size: 64
        averaging:
          swa: {start: 2, lr: 0.01}
          ema: {decay: 0.9, warmup: true}
        snapshots: cycle_ends
        pretrain:
          data: {classes: [0, 1], first: 192, validation: 64}
          epochs: 3
        """

    static let arguments = ["pretrain", "--recipe", "averaging.yaml", "--output", "out", "--quiet"]

    static func folder(_ name: String) throws -> String {
        let folder = CLITests.folder(name)
        try recipe.write(toFile: folder + "/averaging.yaml", atomically: true, encoding: .utf8)
        return folder
    }

    static let reference: Result<String, any Error> = Result {
        let folder = try Self.folder("averaging-reference")
        let run = try CLITests.run(arguments, in: folder)
        guard run.status == 0, !run.signalled else { throw InterruptionTests.Failure("the uninterrupted run failed: \(run.errors)") }
        return folder + "/out"
    }

    /// Cycles of 1 and 2 epochs end after epochs 1 and 3; SWA averages epochs 2 and 3 at its own
    /// learning rate from epoch 2 on; EMA follows every one of the 9 steps.
    @Test func theReferenceRunKeepsWhatTheRecipeAsks() throws {
        let out = try Self.reference.get()
        #expect(InterruptionTests.files(out).filter { $0.hasPrefix("snapshot-") } == ["snapshot-1.h5", "snapshot-2.h5"])
        let last = try Checkpoint.read(from: out + "/last.h5")
        #expect(last.averages.map(\.name) == ["swa", "ema"] && last.averages.map(\.updates) == [2, 9])
        let rows = try InterruptionTests.csvRows(out + "/metrics.csv")
        let learningRate = try #require(rows[0].firstIndex(of: "learning_rate"))
        #expect(rows[1][learningRate] == "0.05" && rows[2][learningRate] == "0.01" && rows[3][learningRate] == "0.01",
                "SWA's learning rate from epoch 2")
        let swa = try #require(rows[0].firstIndex(of: "swa_val_top1"))
        #expect(rows[1][swa] == "nan" && Double(rows[2][swa]) != nil, "SWA scored from its first update")
        let test = try #require(last.training?.test)
        #expect(test.swa != nil && test.ema != nil && test.snapshots == 2)
    }

    // 9 steps (3 per epoch); SIGINT mid-epoch (step 2: last.h5 holds EMA mid-way) and on an epoch's
    // last step (6: SWA's first update), SIGKILL mid-epoch and after every fourth file rename (the
    // snapshots among them and, at the end, swa.h5 or ema.h5 before the test scores are recorded).
    @Test(arguments: [
        InterruptionTests.Fault.interrupt("step", at: [2, 6]), .kill("step", at: [5]), .kill("rename", every: 4),
    ])
    func resumingGivesTheUninterruptedRun(_ fault: InterruptionTests.Fault) throws {
        let reference = try Self.reference.get()
        var struck = 0
        for n in fault.listed ?? Array(stride(from: 1, through: 200, by: fault.every)) {
            let folder = try Self.folder("averaging-fault")
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let first = try CLITests.run(Self.arguments, in: folder, environment: [fault.variable: "\(fault.event):\(n)"])
            let moment = "\(fault.testDescription): \(n)"
            guard first.errors.contains("fault injection:") else { break }
            struck += 1
            for _ in 0..<3 {
                let resumed = try CLITests.run(Self.arguments + ["--resume"], in: folder)
                if resumed.status == 0 && !resumed.signalled { break }
                Issue.record("\(moment): --resume failed (status \(resumed.status)): \(resumed.errors)")
            }
            try InterruptionTests().expectSameRun(folder + "/out", reference, moment)
        }
        #expect(struck >= (fault.listed?.count ?? 3), "\(fault.testDescription): struck \(struck) times")
    }
}
