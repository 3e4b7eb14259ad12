import EpicycleCheckpoint
import EpicycleData
import Foundation
import Testing

/// The `epicycle` binary end to end, as a user runs it.
@Suite(.serialized) struct CLITests {
    /// The tool built beside this test bundle.
    static let executable: String = {
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0])
        var folder = bundle.deletingLastPathComponent()
        if bundle.pathExtension != "xctest" { folder = bundle.deletingLastPathComponent() }
        return folder.appendingPathComponent("epicycle").path
    }()

    struct Run {
        /// The exit status, or the signal's number when `signalled`.
        var status: Int32
        var signalled: Bool
        var output: String
        var errors: String
    }

    /// Runs the tool in `folder` with `environment` added to this process's. With `interruptWhen`,
    /// sends `signal` (Ctrl-C's SIGINT by default) once the condition holds for the folder.
    static func run(_ arguments: [String], in folder: String, environment: [String: String] = [:], signal: Int32 = SIGINT,
                    interruptWhen: ((String) -> Bool)? = nil) throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        if let interruptWhen {
            // Poll for the moment to press Ctrl-C, then send SIGINT as a terminal would.
            while process.isRunning && !interruptWhen(folder) { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, signal) }
        }
        let out = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return Run(status: process.terminationStatus, signalled: process.terminationReason == .uncaughtSignal, output: out,
                   errors: err)
    }

    static func folder(_ name: String) -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("epicycle-cli-tests/\(name)-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static let recipe = """
        name: small
        seed: 5
        model: {architecture: resnet8}
        knobs:
          learning_rate: 0.03
          weight_decay: {cyclical: {easy: 1e-5, hard: 5e-4}}
          batch_size: 32
        pretrain:
          data: {classes: [0, 1, 2, 3, 4], validation: 100, first: 640, augmentation: "crop,flip"}
          epochs: 4
        finetune:
          data: {classes: [5, 6, 7, 8, 9], validation: 100, per_class: 20}
          epochs: 2
        """

    @Test func helpShowsEveryCommandWithAnExample() throws {
        let folder = Self.folder("help")
        let top = try Self.run(["--help"], in: folder)
        #expect(top.status == 0)
        for command in ["pretrain", "finetune", "cycle", "eval", "soup", "schedule", "lr-range", "inspect", "data", "compare"] {
            #expect(top.output.contains(command), "top-level help lists \(command)")
            let help = try Self.run([command, "--help"], in: folder)
            #expect(help.status == 0, "\(command) --help")
            #expect(help.output.contains("Example:"), "\(command) --help has an example")
        }
    }

    @Test func pretrainFinetuneEvalAndInspect() throws {
        let folder = Self.folder("pipeline")
        try Self.recipe.write(toFile: folder + "/small.yaml", atomically: true, encoding: .utf8)
        let pretrained = try Self.run(["pretrain", "--recipe", "small.yaml", "--set", "pretrain.epochs=1", "--output", "out/pre"], in: folder)
        #expect(pretrained.status == 0, "\(pretrained.errors)")
        #expect(FileManager.default.fileExists(atPath: folder + "/out/pre/best.h5"))
        // Not a terminal: one plain line per epoch, no redrawn bar.
        #expect(pretrained.errors.contains("pretrain epoch 1/1") && !pretrained.errors.contains("\r"))
        // Top-5 of five classes is always 100 %: not shown.
        #expect(!pretrained.errors.contains("top-5"), "\(pretrained.errors)")
        // The run folder keeps the resolved recipe, which trains the same run again.
        let resolved = try String(contentsOfFile: folder + "/out/pre/recipe.yaml", encoding: .utf8)
        #expect(resolved.contains("  epochs: 1\n") && resolved.contains("momentum: 0.9") && resolved.contains("dataset: fashion-mnist"))
        let again = try Self.run(["pretrain", "--recipe", "out/pre/recipe.yaml", "--output", "out/again"], in: folder)
        #expect(again.status == 0, "\(again.errors)")
        #expect(try String(contentsOfFile: folder + "/out/again/recipe.yaml", encoding: .utf8) == resolved)
        let weights = { (path: String) in try Checkpoint.read(from: folder + path).model.parameters.map(\.tensor.scalars) }
        #expect(try weights("/out/again/last.h5") == weights("/out/pre/last.h5"), "the same weights, bit for bit")

        let finetuned = try Self.run(["finetune", "--from", "out/pre/last.h5", "--recipe", "small.yaml", "--set", "pretrain.epochs=1",
                                      "--output", "out/fine"], in: folder)
        #expect(finetuned.status == 0, "\(finetuned.errors)")
        let evaluated = try Self.run(["eval", "out/fine/last.h5"], in: folder)
        #expect(evaluated.status == 0 && evaluated.output.contains("top-1"), "\(evaluated.errors)")

        let inspected = try Self.run(["inspect", "out/fine/last.h5"], in: folder)
        #expect(inspected.status == 0)
        #expect(inspected.output.contains("resnet8") && inspected.output.contains("finetune"), "\(inspected.output)")
        #expect(inspected.output.contains("dropout: 0\n") && !inspected.output.contains("e+0"), "\(inspected.output)")

        let cycled = try Self.run(["cycle", "--recipe", "small.yaml", "--set", "pretrain.epochs=1", "--set", "finetune.epochs=1",
                                   "--output", "out/cycle"], in: folder)
        #expect(cycled.status == 0, "\(cycled.errors)")
        #expect(try Self.run(["inspect", "out/cycle/finetune/last.h5"], in: folder).status == 0)
        for phase in ["pretrain", "finetune"] {
            #expect(FileManager.default.fileExists(atPath: folder + "/out/cycle/\(phase)/recipe.yaml"), "\(phase) keeps its recipe")
        }
    }

    @Test func badInputGivesAMessageNotACrash() throws {
        let folder = Self.folder("errors")
        try (Self.recipe + "\n  wieght_decay: 1\n").write(toFile: folder + "/bad.yaml", atomically: true, encoding: .utf8)
        try Self.recipe.write(toFile: folder + "/small.yaml", atomically: true, encoding: .utf8)
        let unknown = try Self.run(["pretrain", "--recipe", "small.yaml", "--set", "knobs.temprature=2"], in: folder)
        #expect(unknown.status != 0 && unknown.errors.contains("knobs.temprature: unknown key"), "\(unknown.errors)")
        let missing = try Self.run(["pretrain", "--recipe", "nope.yaml"], in: folder)
        #expect(missing.status != 0 && missing.errors.contains("cannot read recipe file 'nope.yaml'"))
        let notACheckpoint = try Self.run(["eval", "small.yaml"], in: folder)
        #expect(notACheckpoint.status != 0 && notACheckpoint.errors.contains("small.yaml"), "\(notACheckpoint.errors)")
        #expect(!unknown.errors.contains("Fatal error") && !notACheckpoint.errors.contains("Fatal error"))
    }

    /// A runtime error is one `error:` line (and a `hint:` line) with status 1; only argument errors
    /// get ArgumentParser's usage text.
    @Test func runtimeErrorsAreOneLineWithoutUsage() throws {
        let folder = Self.folder("error-output")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try Self.recipe.write(toFile: folder + "/small.yaml", atomically: true, encoding: .utf8)
        let traversal = try Self.run(["pretrain", "--recipe", "small.yaml", "--set", "name=../../x"], in: folder)
        #expect(traversal.status == 1 && traversal.errors.hasPrefix("error: name: becomes a folder name"), "\(traversal.errors)")
        #expect(!traversal.errors.contains("Usage") && traversal.errors.split(separator: "\n").count == 1, "\(traversal.errors)")
        var bytes = Data(Self.recipe.utf8)
        bytes.insert(0xFF, at: 25)
        try bytes.write(to: URL(fileURLWithPath: folder + "/latin.yaml"))
        let latin = try Self.run(["schedule", "--recipe", "latin.yaml"], in: folder)
        #expect(latin.status == 1 && latin.errors == "error: recipe file 'latin.yaml' is not UTF-8 text: invalid byte 0xFF at byte offset 25\n")
        let unwritable = try Self.run(["pretrain", "--recipe", "small.yaml", "--output", "small.yaml/run"], in: folder)
        #expect(unwritable.status == 1 && unwritable.errors == "error: cannot write small.yaml/run: not a directory\n", "\(unwritable.errors)")
        let argument = try Self.run(["compare", "x.yaml", "--jobs", "0"], in: folder)
        #expect(argument.status == 64 && argument.errors.contains("--jobs must be from 1 to 1024") && argument.errors.contains("Usage"))
    }

    /// Two processes on one run folder: the second is refused and names the first's process id; the
    /// first finishes untouched. Then the folder holds a run, which only --resume or --overwrite reuse.
    @Test func oneWriterPerRunFolder() throws {
        let folder = Self.folder("lock")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try Self.recipe.write(toFile: folder + "/small.yaml", atomically: true, encoding: .utf8)
        let first = Process()
        first.executableURL = URL(fileURLWithPath: Self.executable)
        first.arguments = ["pretrain", "--recipe", "small.yaml", "--output", "run", "--quiet"]
        first.currentDirectoryURL = URL(fileURLWithPath: folder)
        first.standardOutput = FileHandle.nullDevice
        first.standardError = FileHandle.nullDevice
        try first.run()
        let lockFile = folder + "/run/.lock"
        while first.isRunning && (try? String(contentsOfFile: lockFile, encoding: .utf8))?.hasSuffix("\n") != true { usleep(10_000) }
        let second = try Self.run(["pretrain", "--recipe", "small.yaml", "--output", "run", "--set", "seed=99"], in: folder)
        first.waitUntilExit()
        #expect(second.status == 1, "\(second.errors)")
        #expect(second.errors.hasPrefix("error: run is in use by process \(first.processIdentifier) "), "\(second.errors)")
        #expect(second.errors.contains("hint: wait for that run to finish"))
        #expect(first.terminationStatus == 0)
        let saved = try Checkpoint.read(from: folder + "/run/last.h5")
        #expect(saved.training?.epoch == 4 && saved.training?.seed == 5, "the first run's checkpoint, whole")
        let metrics = try String(contentsOfFile: folder + "/run/metrics.csv", encoding: .utf8)
        #expect(metrics.split(separator: "\n").count == 5, "one header and the first run's four epochs")

        let again = try Self.run(["pretrain", "--recipe", "small.yaml", "--output", "run", "--set", "pretrain.epochs=1"], in: folder)
        #expect(again.status == 1 && again.errors == "error: run already holds a run (last.h5)\n"
                + "hint: add --resume to continue it, --overwrite to replace it, or choose another --output\n", "\(again.errors)")
        let replaced = try Self.run(["pretrain", "--recipe", "small.yaml", "--output", "run", "--set", "pretrain.epochs=1", "--overwrite"],
                                    in: folder)
        #expect(replaced.status == 0, "\(replaced.errors)")
        #expect(try Checkpoint.read(from: folder + "/run/last.h5").training?.epoch == 1)
    }

    /// `soup` and `eval --ensemble` on a one-epoch run and its copy, and what they refuse.
    @Test func soupAndEnsembleOfCheckpoints() throws {
        let folder = Self.folder("soup")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try Self.recipe.write(toFile: folder + "/small.yaml", atomically: true, encoding: .utf8)
        // The data named by a relative path, which the checkpoints store relative to their own folder.
        try FileManager.default.createSymbolicLink(atPath: folder + "/fm", withDestinationPath: try DatasetSource.named().folder)
        let run = try Self.run(["pretrain", "--recipe", "small.yaml", "--output", "a", "--set", "pretrain.epochs=1",
                                "--set", "finetune=null", "--set", "pretrain.data.folder=fm", "--quiet"], in: folder)
        #expect(run.status == 0, "\(run.errors)")
        // The copy sits as deep as the original, so its stored relative data path points at the same folder.
        try FileManager.default.createDirectory(atPath: folder + "/b", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: folder + "/a/last.h5", toPath: folder + "/b/last.h5")

        let soup = try Self.run(["soup", "a/last.h5", "b/last.h5", "--output", "soup.h5"], in: folder)
        #expect(soup.status == 0, "\(soup.errors)")
        #expect(soup.output.hasPrefix("greedy soup of 2 checkpoints, on the validation split of fm (idx in "), "\(soup.output)")
        #expect(soup.output.contains("soup of 2: validation top-1") && soup.output.hasSuffix("→ soup.h5\n"))
        let scored = try Self.run(["eval", "soup.h5", "--split", "validation"], in: folder)
        #expect(scored.status == 0 && scored.output.contains("validation split of fm"), "\(scored.errors)")
        // A soup in another folder still finds the data its first ingredient's recipe names.
        let deeper = try Self.run(["soup", "a/last.h5", "b/last.h5", "--output", "soups/uniform/soup.h5", "--kind", "uniform"], in: folder)
        #expect(deeper.status == 0, "\(deeper.errors)")
        let scoredDeeper = try Self.run(["eval", "soups/uniform/soup.h5", "--split", "validation"], in: folder)
        #expect(scoredDeeper.status == 0 && scoredDeeper.output.contains("validation split of fm"), "\(scoredDeeper.errors)")
        #expect(try Checkpoint.read(from: folder + "/soups/uniform/soup.h5").training?.recipe.contains("folder: ../../fm") == true)

        let ensemble = try Self.run(["eval", "--ensemble", "a/last.h5", "b/last.h5", "soup.h5"], in: folder)
        #expect(ensemble.status == 0, "\(ensemble.errors)")
        #expect(ensemble.output.hasPrefix("ensemble of 3 (mean softmax), test split of fm"), "\(ensemble.output)")

        // A checkpoint copied away from its data says so, and --folder gives the data.
        try FileManager.default.copyItem(atPath: folder + "/a/last.h5", toPath: folder + "/alone.h5")
        let lost = try Self.run(["eval", "alone.h5"], in: folder)
        #expect(lost.status == 1 && lost.errors.contains("alone.h5 was trained on") && lost.errors.contains("--folder"), "\(lost.errors)")
        #expect(try Self.run(["eval", "alone.h5", "--folder", "fm"], in: folder).status == 0)

        let nothing = try Self.run(["eval"], in: folder)
        #expect(nothing.status != 0 && nothing.errors.contains("Give a checkpoint, or --ensemble with the checkpoints to average."))
        let one = try Self.run(["soup", "a/last.h5", "--output", "one.h5"], in: folder)
        #expect(one.status == 1 && one.errors.contains("a soup needs at least 2 checkpoints, got 1"), "\(one.errors)")
        let missing = try Self.run(["eval", "--ensemble", "a/last.h5", "nowhere.h5"], in: folder)
        #expect(missing.status == 1 && missing.errors.contains("nowhere.h5"), "\(missing.errors)")
    }

    @Test func scheduleWritesAnSVG() throws {
        let folder = Self.folder("schedule")
        try Self.recipe.write(toFile: folder + "/small.yaml", atomically: true, encoding: .utf8)
        let unasked = try Self.run(["schedule", "--recipe", "small.yaml"], in: folder)
        #expect(unasked.status == 0 && unasked.output.contains("pretrain 1"), "\(unasked.errors)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["small.yaml"], "no plot unless asked")
        let result = try Self.run(["schedule", "--recipe", "small.yaml", "--plot", "cycle.svg"], in: folder)
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.output.contains("pretrain 1") && result.output.contains("finetune 2"))
        let svg = try String(contentsOfFile: folder + "/cycle.svg", encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("weight_decay") && svg.hasSuffix("</svg>\n"))
    }

    /// The LR range test end to end: bounds with their rule and a schedule to paste, the CSV and SVG;
    /// bad flags are one-line errors.
    @Test func lrRangePrintsBoundsAndWritesItsFiles() throws {
        let folder = Self.folder("lr-range")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try Self.recipe.write(toFile: folder + "/small.yaml", atomically: true, encoding: .utf8)
        let result = try Self.run(["lr-range", "--recipe", "small.yaml", "--epochs", "1", "--set", "pretrain.data.first=160",
                                   "--start", "0.001", "--end", "0.5", "--evaluations-per-epoch", "2", "--output", "lr"], in: folder)
        #expect(result.status == 0, "\(result.errors)")
        #expect(result.output.contains("suggested learning-rate bounds: base ") && result.output.contains("rule: max = the learning rate where"))
        #expect(result.output.contains("learning_rate: {triangular: {base: ") && result.output.contains("learning_rate: {cyclical: {easy: "))
        // 160 images in batches of 32: 5 steps.
        let rows = try String(contentsOfFile: folder + "/lr/lr-range.csv", encoding: .utf8).split(separator: "\n")
        #expect(rows.count == 6 && rows.last?.hasPrefix("5,1,0.5,") == true, "\(rows)")
        let svg = try String(contentsOfFile: folder + "/lr/lr-range.svg", encoding: .utf8)
        #expect(svg.hasPrefix("<svg") && svg.contains("Validation top-1 (%) vs learning rate") && svg.hasSuffix("</svg>\n"))

        let reversed = try Self.run(["lr-range", "--recipe", "small.yaml", "--start", "2", "--end", "1"], in: folder)
        #expect(reversed.status == 1 && reversed.errors.contains("--start and --end must satisfy 1e-12 ≤ start < end ≤ 1e4, got start 2.0, end 1.0"),
                "\(reversed.errors)")
        let mode = try Self.run(["lr-range", "--recipe", "small.yaml", "--mode", "sideways"], in: folder)
        #expect(mode.status != 0 && mode.errors.contains("sideways") && !mode.errors.contains("Fatal error"), "\(mode.errors)")
    }

    /// Ctrl-C during training finishes the step, saves and exits with 130; `--resume` then ends exactly
    /// where an uninterrupted run ends.
    @Test func ctrlCSavesAndResumeIsBitIdentical() throws {
        let folder = Self.folder("interrupt")
        try Self.recipe.write(toFile: folder + "/small.yaml", atomically: true, encoding: .utf8)
        let whole = try Self.run(["pretrain", "--recipe", "small.yaml", "--output", "whole"], in: folder)
        #expect(whole.status == 0, "\(whole.errors)")

        // Interrupt once the first epoch's metrics are written: the run is then inside epoch 2 or later.
        let interrupted = try Self.run(["pretrain", "--recipe", "small.yaml", "--output", "cut"], in: folder) { folder in
            ((try? String(contentsOfFile: folder + "/cut/metrics.csv", encoding: .utf8))?.split(separator: "\n").count ?? 0) >= 2
        }
        #expect(interrupted.status == 130, "\(interrupted.errors)")
        #expect(interrupted.errors.contains("continue with --resume"))
        let saved = try Checkpoint.read(from: folder + "/cut/last.h5")
        #expect((saved.training?.epoch ?? 99) < 4, "the interrupt must land before the run ends")

        let resumed = try Self.run(["pretrain", "--recipe", "small.yaml", "--output", "cut", "--resume"], in: folder)
        #expect(resumed.status == 0, "\(resumed.errors)")
        let a = try Checkpoint.read(from: folder + "/whole/last.h5"), b = try Checkpoint.read(from: folder + "/cut/last.h5")
        for (x, y) in zip(a.model.parameters, b.model.parameters) {
            #expect(x.tensor.scalars.map(\.bitPattern) == y.tensor.scalars.map(\.bitPattern), "\(x.name) differs after resume")
        }
        for (x, y) in zip(a.model.buffers, b.model.buffers) { #expect(x.value == y.value, "\(x.name) differs after resume") }
        #expect(a.training?.step == b.training?.step)
    }
}
