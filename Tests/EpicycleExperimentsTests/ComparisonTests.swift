import EpicycleTraining
import Foundation
import Testing
@testable import EpicycleExperiments

/// An experiment of tiny real runs (plain-cnn, 100 Fashion-MNIST images, 1 epoch) in a fresh folder.
func tinyExperiment(in folder: URL, variants: String, seeds: String = "[0, 1]") throws -> Experiment {
    try Experiment(text: """
        name: tiny
        program: pretrain
        \(tinyBase.replacingOccurrences(of: "epochs: 2", with: "epochs: 1"))
        seeds: \(seeds)
        baseline: constant
        variants:
        \(variants)
        results: \(folder.path)/results
        """, origin: folder.appendingPathComponent("tiny.yaml").path)
}

func temporaryFolder() throws -> URL {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("epicycle-compare-\(UUID())")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    return folder
}

func modificationDate(_ path: String) throws -> Date {
    try #require(try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date)
}

/// The `epicycle` tool, built beside this test bundle (the test target depends on it).
let epicycleExecutable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    .deletingLastPathComponent().appendingPathComponent("epicycle").path

@Suite(.serialized) struct ComparisonTests {
    @Test func finishedRunsAreNotRepeatedAndUnfinishedOnesContinue() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let variants = """
              constant: {}
              cyclical: {knobs.weight_decay: {cyclical: {easy: 1e-5, hard: 8e-4}}}
            """
        let experiment = try tinyExperiment(in: folder, variants: variants)
        let labels = ["constant/seed-0", "constant/seed-1", "cyclical/seed-0", "cyclical/seed-1"]

        let first = try runComparison(experiment: experiment)
        #expect(first.executed == labels && first.skipped.isEmpty && first.failed.isEmpty)
        for run in first.report.runs {
            let history = try #require(run.phases.first?.history)
            #expect(run.status == .finished && history.count == 1)
            #expect(run.finalTop1 == history.last?.validationTop1)
        }
        for path in [first.tablePath, first.csvPath, first.reportPath] { #expect(FileManager.default.fileExists(atPath: path)) }
        let constantFolders = ["constant/seed-0", "constant/seed-1"].map { experiment.results + "/runs/" + $0 }
        let checkpointDates = try constantFolders.map { try modificationDate($0 + "/last.h5") }
        let records = constantFolders.map { FileManager.default.contents(atPath: $0 + "/run.json") }

        // The state a killed comparison leaves: cyclical/seed-1 never started, and cyclical/seed-0 was
        // killed after its last checkpoint but before its run.json said finished.
        let killedMidRun = experiment.runFolder(variant: "cyclical", seed: 0)
        let before = try #require(first.report.runs.first { $0.label == "cyclical/seed-0" })
        try FileManager.default.removeItem(atPath: experiment.runFolder(variant: "cyclical", seed: 1))
        var running = before
        running.status = .running
        try running.write(folder: killedMidRun)

        let second = try runComparison(experiment: experiment)
        #expect(second.skipped == ["constant/seed-0", "constant/seed-1"])
        #expect(second.executed == ["cyclical/seed-0", "cyclical/seed-1"])
        #expect(second.failed.isEmpty)
        #expect(try constantFolders.map { try modificationDate($0 + "/last.h5") } == checkpointDates)
        #expect(constantFolders.map { FileManager.default.contents(atPath: $0 + "/run.json") } == records)
        let resumed = try #require(second.report.runs.first { $0.label == "cyclical/seed-0" })
        #expect(resumed.resumed)
        #expect(resumed.phases == before.phases, "continued from last.h5 after its last epoch: no epoch trained again")
        #expect(second.report.summaries.allSatisfy { $0.finishedRuns == 2 })
        // Every run folder keeps the resolved recipe, defaults written out, as the runner prepared it.
        let kept = try String(contentsOfFile: constantFolders[0] + "/recipe.yaml", encoding: .utf8)
        #expect(kept == (try experiment.program.resolvedText(experiment.runRecipe(variant: experiment.variants[0], seed: 0), in: constantFolders[0])))
        #expect(kept.contains("momentum: 0.9") && kept.contains("no_decay_on_norm_and_bias: true"), "\(kept)")
        // A run prepared before run folders kept the resolved recipe (its recipe.yaml as generated) is still finished.
        try experiment.runRecipe(variant: experiment.variants[0], seed: 0).text
            .write(toFile: constantFolders[0] + "/recipe.yaml", atomically: true, encoding: .utf8)
        #expect(try runComparison(experiment: experiment).executed.isEmpty)

        // Editing a variant makes its runs stale: they start afresh; the others stay.
        let edited = try tinyExperiment(in: folder, variants: variants.replacingOccurrences(of: "8e-4", with: "4e-4"))
        let third = try runComparison(experiment: edited)
        #expect(third.skipped == ["constant/seed-0", "constant/seed-1"])
        #expect(third.executed == ["cyclical/seed-0", "cyclical/seed-1"])
        #expect(third.report.runs.allSatisfy { !$0.resumed && $0.status == .finished })
    }

    @Test func aFailedRunIsRecordedAndTheOthersGoOn() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        // A learning rate of 1e6 diverges in the first steps.
        let experiment = try tinyExperiment(in: folder, variants: """
              constant: {}
              exploding: {knobs.learning_rate: 1e6}
            """, seeds: "[0]")
        let result = try runComparison(experiment: experiment)
        #expect(result.executed == ["constant/seed-0", "exploding/seed-0"])
        #expect(result.failed.map(\.label) == ["exploding/seed-0"])
        #expect(result.failed.first?.error?.contains("diverged") == true)
        #expect(result.report.summaries.map(\.finishedRuns) == [1, 0])
        #expect(result.report.rows[1] == ["exploding [0 of 1 runs]", "0"] + Array(repeating: "n/a", count: 9))
        // A failed run is retried by the next call.
        #expect(try runComparison(experiment: experiment).executed == ["exploding/seed-0"])
    }

    /// Issue 12, item 9: two distillation variants that differ only in the KD temperature. The report
    /// must chart that temperature, not call the variants' knobs the same.
    @Test func reportChartsALossTermTemperatureThatDiffersBetweenVariants() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let teacher = try pretrain(recipe: RecipeSource(text: """
            model: {architecture: plain-cnn}
            knobs: {batch_size: 50, learning_rate: 0.05}
            pretrain: {epochs: 1, data: {first: 100, validation: 100}}
            """, origin: "teacher"), options: RunOptions(output: folder.path + "/teacher", quiet: true))
        let experiment = try Experiment(text: """
            name: kd-temperature
            program: distill
            base:
              model: {architecture: plain-cnn}
              knobs: {batch_size: 50, learning_rate: 0.05}
              pretrain: {epochs: 2, data: {first: 100, validation: 100}}
              distill:
                teacher: \(teacher.checkpoint)
                losses: [{kind: labels, weight: 1}, {kind: logits, weight: 1, temperature: 4}]
            seeds: [0]
            baseline: constant
            variants:
              constant: {}
              cyclical:
                distill.losses[1].temperature: {cyclical: {easy: 1, hard: 4}}
            results: \(folder.path)/results
            """, origin: folder.appendingPathComponent("kd.yaml").path)
        let result = try runComparison(experiment: experiment)
        #expect(result.failed.isEmpty)
        let html = result.report.html
        let figure = try #require(html.range(of: "<figure id=\"knobs\">").flatMap { start in
            html.range(of: "</figure>", range: start.upperBound..<html.endIndex).map { String(html[start.upperBound..<$0.lowerBound]) }
        }, "the report has knob charts")
        // One chart per varying value, titled by its name; the KD temperature's holds both variants.
        let charts = figure.components(separatedBy: "<svg ").filter { $0.contains("font-weight=\"bold\">") }
        let temperature = try #require(charts.first { $0.contains(">logits.temperature</text>") }, "logits.temperature is charted")
        #expect(temperature.components(separatedBy: "class=\"curve\"").count - 1 == 2)
        // Constant 4 against the rise from 1 at the first epoch to 4 at the last (f = 1).
        let runs = result.report.runs.map { ($0.variant, $0.phases[0].history.map { $0.knobs["logits.temperature"] }) }
        #expect(runs.map(\.0) == ["constant", "cyclical"] && runs.map(\.1) == [[4, 4], [1, 4]])
        let same = try #require(html.range(of: "The same in every variant and epoch: ").map { String(html[$0.upperBound...].prefix { $0 != "\n" }) })
        #expect(same.contains("<code>logits.weight</code> 1") && same.contains("<code>labels.weight</code> 1"))
        #expect(!same.contains("logits.temperature"))
    }

    @Test func severalJobsNeedChildProcesses() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let experiment = try tinyExperiment(in: folder, variants: "  constant: {}")
        #expect { try runComparison(experiment: experiment, jobs: 2) } throws: { error in
            "\(error)" == "running 2 jobs at once needs child processes: pass the epicycle executable"
        }
    }

    /// Kills a real `epicycle compare` process between two runs, then runs the comparison again.
    @Test func killedComparisonContinuesWithoutRepeatingFinishedRuns() throws {
        #expect(FileManager.default.isExecutableFile(atPath: epicycleExecutable))
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let experimentFile = folder.appendingPathComponent("tiny.yaml").path
        try """
            program: pretrain
            \(tinyBase.replacingOccurrences(of: "epochs: 2", with: "epochs: 1"))
            seeds: [0]
            variants: {short: {}, long: {pretrain.epochs: 60}}
            """.write(toFile: experimentFile, atomically: true, encoding: .utf8)
        // The second run is many times longer than the first, so the kill (as soon as the first has
        // finished) always lands inside it, however fast or loaded the machine.
        let experiment = try Experiment(contentsOf: experimentFile)
        let firstRun = experiment.runFolder(variant: "short", seed: 0)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: epicycleExecutable)
        process.arguments = ["compare", experimentFile, "--jobs", "1"]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(300)
        while RunRecord.read(folder: firstRun)?.status != .finished && process.isRunning && Date() < deadline {
            usleep(20_000)
        }
        #expect(RunRecord.read(folder: firstRun)?.status == .finished)
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        // The kernel ends the orphaned run with its parent (Linux's parent-death signal).
        var orphans = runProcesses(mentioning: experiment.results)
        while !orphans.isEmpty && Date() < deadline {
            usleep(100_000)
            orphans = runProcesses(mentioning: experiment.results)
        }
        #expect(orphans.isEmpty)
        #expect(RunRecord.read(folder: experiment.runFolder(variant: "long", seed: 0))?.status != .finished)
        let checkpointDate = try modificationDate(firstRun + "/last.h5")

        let again = try runComparison(experiment: experiment)
        #expect(again.skipped == ["short/seed-0"])
        #expect(again.executed == ["long/seed-0"])
        #expect(again.failed.isEmpty)
        #expect(try modificationDate(firstRun + "/last.h5") == checkpointDate)
    }

    /// A run whose comparison exited before the run could ask to end with it ends at once, untrained.
    @Test func aRunWhoseComparisonIsGoneEndsAtOnce() throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let experiment = try tinyExperiment(in: folder, variants: "  constant: {}", seeds: "[0]")
        let run = experiment.runFolder(variant: "constant", seed: 0)
        try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
        try experiment.runRecipe(variant: experiment.variants[0], seed: 0).text
            .write(toFile: run + "/recipe.yaml", atomically: true, encoding: .utf8)
        try RunRecord(variant: "constant", seed: 0, program: "pretrain", status: .running).write(folder: run)
        // An exited process stands for the comparison: its id is not the run's parent, as it would not
        // be for a run adopted by another process after its comparison was killed.
        let comparison = try Process.run(URL(fileURLWithPath: "/bin/true"), arguments: [])
        comparison.waitUntilExit()

        let child = Process()
        child.executableURL = URL(fileURLWithPath: epicycleExecutable)
        child.arguments = ["compare-run", run, "--parent-process", String(comparison.processIdentifier)]
        child.standardOutput = FileHandle.nullDevice
        try child.run()
        child.waitUntilExit()
        #expect(child.terminationReason == .exit && child.terminationStatus == 143)
        // Untouched: without the check, the run would have trained to the end and recorded `finished`.
        #expect(RunRecord.read(folder: run)?.status == .running)
        #expect(!FileManager.default.fileExists(atPath: run + "/metrics.jsonl"))
    }
}

/// Process ids whose command line mentions `text` (the runs of a comparison name their folder).
func runProcesses(mentioning text: String) -> [Int] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap(Int.init).filter { pid in
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(text)
    }
}
