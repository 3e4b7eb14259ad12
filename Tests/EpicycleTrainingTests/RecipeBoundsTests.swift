import EpicycleCheckpoint
@testable import EpicycleTraining
import Foundation
import Testing

/// Numbers, sizes and texts from a recipe or `--set` are bounded before anything is sized or counted
/// from them (the cases of issue 13's fault campaign first), messages name the key and quote at most
/// a short prefix, and run folders have one writer and are not written over by accident.
@Suite(.serialized) struct RecipeBoundsTests {
    static let recipe = """
        name: bounds
        seed: 1
        model: {architecture: resnet8}
        knobs: {batch_size: 64, learning_rate: 0.05}
        pretrain:
          data: {classes: [0, 1], first: 128}
          epochs: 1
        """

    static func folder(_ name: String) -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("epicycle-bounds-tests/\(name)-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// The message of checking the recipe with `overrides` the way `epicycle pretrain` would before its first step.
    func problem(_ overrides: [String], text: String = Self.recipe) -> String? {
        do {
            _ = try pretrain(recipe: RecipeSource(text: text, origin: "bounds.yaml", overrides: overrides),
                             options: RunOptions(quiet: true, checkOnly: true))
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test(arguments: [
        // Issue 13: these trapped, aborted allocating 46 TB, or hung.
        ("knobs.batch_size=1e19", "knobs.batch_size: must be a whole number from 1 to 65536, got 1e+19"),
        ("pretrain.epochs=9223372036854775807", "pretrain.epochs: must be a whole number from 1 to 100000, got 9223372036854775807"),
        ("threads=2147483648", "threads: must be a whole number from 1 to 1024, got 2147483648"),
        ("model.architecture=resnet8x100000", "model.architecture: resnet8x100000 needs ~"),
        ("pretrain.epochs=1000000000000", "pretrain.epochs: must be a whole number from 1 to 100000, got 1000000000000"),
        // Schedules that become batch sizes, and the other bounds.
        ("knobs.batch_size={step: {initial: 128, milestones: [0], gamma: 1e9}}", "knobs.batch_size: must be a whole number from 1 to 65536"),
        ("knobs.batch_size=-5", "knobs.batch_size: must be a whole number from 1 to 65536, got -5"),
        ("knobs.temperature={cyclical: {easy: 0.5, hard: 2, factor: 2, cycles: 2}}",
         "knobs.temperature.cyclical.cycles: 2 cycles need at least 2 epochs, the cycle has 1"),
        ("cycle_ends_of=speed", "cycle_ends_of: must name a knob (learning_rate, weight_decay"),
        ("cycle_ends_of=temperature", "cycle_ends_of: names temperature, which no knobs: section schedules"),
        ("checkpoint_every=1000000", "checkpoint_every: must be a whole number from 0 to 100000, got 1000000"),
        ("pretrain.data.classes=[0, 100000]", "pretrain.data.classes[1]: must be a whole number from 0 to 99999, got 100000"),
        ("pretrain.data.classes=[0, x]", "pretrain.data.classes[1]: expected a whole number, got 'x'"),
        ("pretrain.data.first=1000000000000", "pretrain.data.first: must be a whole number from 0 to 100000000, got 1000000000000"),
        ("pretrain.data.augmentation=crop,flip,crop", "pretrain.data.augmentation: lists 'crop' twice"),
        ("model.architecture=resnet10004", "model: 'resnet10004': depth must be at most 10000"),
        ("knobs.learning_rate=1e300", "knobs.learning_rate: must be in [0, 1000000], got 1e+300"),
        ("knobs.temperature=.nan", "knobs.temperature: must be a finite number, got nan"),
        // Data selection (Smith 2022, §4.2).
        ("knobs.keep_fraction=0", "knobs.keep_fraction: must be in (0, 1], got 0"),
        ("knobs.keep_fraction={cyclical: {easy: 1.5, hard: 1}}", "knobs.keep_fraction: must be in (0, 1], got 1.5"),
        ("pretrain.knobs.keep_fraction=-0.5", "pretrain.knobs.keep_fraction: must be in (0, 1], got -0.5"),
        ("knobs.sample_loss_threshold=-1", "knobs.sample_loss_threshold: must be in (0, 1000000], got -1"),
        ("knobs.sample_loss_threshold={cyclical: {easy: 0, hard: 3}}", "knobs.sample_loss_threshold: must be in (0, 1000000], got 0"),
        ("knobs.sample_loss_clip=1e7", "knobs.sample_loss_clip: must be in (0, 1000000], got 10000000"),
        ("knobs.sample_loss_clip=x", "knobs.sample_loss_clip: expected a number"),
        ("loss.gamma=.nan", "loss.gamma: must be in [0, 100], got nan"),
        ("optimizer.epsilon=.inf", "optimizer.epsilon: must be in (0, 1], got inf"),
        ("knobs.weight_decay={step: {initial: 0.1, milestones: [1, 1000000000000]}}",
         "knobs.weight_decay.step.milestones: must be epochs from 0 to 100000"),
        // Wrong types say what was expected and what was found.
        ("model.architecture=[1]", "model.architecture: expected text, got a list"),
        ("pretrain.data.classes=abc", "pretrain.data.classes: expected a list, got 'abc'"),
        ("model=[resnet8]", "model: expected a mapping, got a list"),
        ("name=../../x", "name: becomes a folder name under Checkpoints/"),
        ("output=/etc/epicycle", "output: must be a folder inside the working folder"),
        ("output=runs/../../x", "output: must be a folder inside the working folder"),
    ])
    func rejectedByKeyPath(override: String, expected: String) throws {
        let message = try #require(problem([override]), "\(override) must be rejected")
        #expect(message.hasPrefix(expected), "got: \(message)")
        #expect(message.count < 400)
    }

    @Test func theCampaignsMemoryCaseNamesTheFigure() throws {
        let message = try #require(problem(["model.architecture=resnet8x100000", "knobs.batch_size=128"]))
        #expect(message.contains("PiB to train at batch 128 on 28×28×1 images; this machine has"), "got: \(message)")
    }

    @Test func longValuesAreQuotedShort() throws {
        let long = String(repeating: "crop-", count: 200_000)
        for text in [Self.recipe + "\noptimizer: {kind: \(long)}\n", Self.recipe + "\n\(long): 1\n",
                     Self.recipe.replacingOccurrences(of: "resnet8", with: long)] {
            let message = try #require(problem([], text: text))
            #expect(message.count < 300, "\(message.prefix(300))")
            #expect(message.contains("crop-crop") == message.contains("…"), "a quoted value is cut short: \(message.prefix(300))")
        }
        #expect(problem([], text: Self.recipe + "\noptimizer: {kind: \(long)}\n")?.hasPrefix("optimizer.kind: must be at most 4096 characters, got 'crop-crop") == true)
        let listed = "[" + (0...1000).map(String.init).joined(separator: ", ") + "]"
        #expect(problem(["pretrain.freeze=\(listed)"])?.hasPrefix("pretrain.freeze: must list at most 1000 entries, got 1001") == true)
    }

    @Test func recipeFilesAreReadCarefully() throws {
        let folder = Self.folder("files")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var bytes = Data(Self.recipe.utf8)
        bytes.insert(contentsOf: [0xC3, 0x28], at: 10)
        try bytes.write(to: URL(fileURLWithPath: folder + "/bad.yaml"))
        #expect(throws: RecipeError(path: "", problem: "recipe file '\(folder)/bad.yaml' is not UTF-8 text: invalid byte 0xC3 at byte offset 10")) {
            try RecipeSource(contentsOf: folder + "/bad.yaml")
        }
        try Data(count: 5 << 20).write(to: URL(fileURLWithPath: folder + "/big.yaml"))
        #expect(throws: RecipeError(path: "", problem: "recipe file '\(folder)/big.yaml' is larger than 4 MiB; a recipe is a short YAML file")) {
            try RecipeSource(contentsOf: folder + "/big.yaml")
        }
        #expect(throws: RecipeError(path: "", problem: "cannot read recipe file '\(folder)/none.yaml': no such file or directory")) {
            try RecipeSource(contentsOf: folder + "/none.yaml")
        }
        // Aliases that expand a short file into 10⁹ values.
        var bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for level in 1...9 { bomb += "a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ", ") + "]\n" }
        #expect(problem([], text: bomb)?.contains("holds more than 100000 values") == true)
    }

    @Test func fileSystemErrorsReadAsOneLine() {
        let readOnly = CocoaError(.fileWriteVolumeReadOnly, userInfo: [NSFilePathErrorKey: "Checkpoints/x/last.h5"])
        #expect(errorMessage(readOnly) == "cannot write Checkpoints/x/last.h5: read-only file system")
        let denied = CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: "Checkpoints/x/metrics.csv"])
        #expect(errorMessage(denied) == "cannot write Checkpoints/x/metrics.csv: permission denied")
        #expect(errorMessage(CocoaError(.fileReadNoSuchFile, userInfo: [NSFilePathErrorKey: "r.yaml"])) == "cannot read r.yaml: no such file or directory")
        do {
            try "x".write(toFile: "/proc/epicycle-cannot-write-here", atomically: false, encoding: .utf8)
            Issue.record("writing into /proc must fail")
        } catch {
            #expect(errorMessage(error).hasPrefix("cannot "), "\(errorMessage(error))")
            #expect(!errorMessage(error).contains("NSCocoaErrorDomain"))
        }
    }

    @Test func oneWriterPerFolder() throws {
        let folder = Self.folder("lock")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var first: RunFolderLock? = try RunFolderLock(folder)
        #expect(try String(contentsOfFile: folder + "/.lock", encoding: .utf8) == "\(getpid())\n")
        // flock conflicts between two opens even within one process, as between two processes.
        #expect(throws: RunFolderError.inUse(folder: folder, holder: getpid())) { try RunFolderLock(folder) }
        #expect(first != nil)
        first = nil
        _ = try RunFolderLock(folder)
    }

    @Test func anEarlierRunIsOnlyReplacedOnRequest() throws {
        let output = Self.folder("overwrite")
        defer { try? FileManager.default.removeItem(atPath: output) }
        let source = try RecipeSource(text: Self.recipe, origin: "bounds.yaml", overrides: ["checkpoint_every=1"])
        _ = try pretrain(recipe: source, options: RunOptions(output: output, quiet: true))
        try "mine".write(toFile: output + "/notes.txt", atomically: true, encoding: .utf8)
        #expect(FileManager.default.fileExists(atPath: output + "/epoch-0001.h5"))

        #expect(throws: RunFolderError.existingRun(folder: output, file: output + "/last.h5")) {
            try pretrain(recipe: source, options: RunOptions(output: output, quiet: true))
        }
        #expect(throws: RunFolderError.resumeAndOverwrite) {
            try pretrain(recipe: source, options: RunOptions(output: output, resume: true, quiet: true, overwrite: true))
        }
        let plain = try RecipeSource(text: Self.recipe, origin: "bounds.yaml")
        _ = try pretrain(recipe: plain, options: RunOptions(output: output, quiet: true, overwrite: true))
        // The earlier run's files are gone (no numbered checkpoint now), the user's file stays.
        #expect(!FileManager.default.fileExists(atPath: output + "/epoch-0001.h5"))
        #expect(try String(contentsOfFile: output + "/notes.txt", encoding: .utf8) == "mine")
        let metrics = try String(contentsOfFile: output + "/metrics.csv", encoding: .utf8)
        #expect(metrics.split(separator: "\n").count == 2, "one header and one epoch, not two runs' rows")

        // A cycle's phases count as its run.
        let cycled = Self.folder("overwrite-cycle")
        defer { try? FileManager.default.removeItem(atPath: cycled) }
        try FileManager.default.createDirectory(atPath: cycled + "/finetune", withIntermediateDirectories: true)
        try "".write(toFile: cycled + "/finetune/metrics.csv", atomically: true, encoding: .utf8)
        let cycle = try RecipeSource(text: Self.recipe + "\nfinetune: {data: {classes: [2, 3], per_class: 10}, epochs: 1}\n", origin: "c.yaml")
        #expect(throws: RunFolderError.existingRun(folder: cycled, file: cycled + "/finetune/metrics.csv")) {
            try EpicycleTraining.cycle(recipe: cycle, options: RunOptions(output: cycled, quiet: true))
        }
    }

    @Test func runNamesStayUnderTheOutputRoot() throws {
        let unnamed = Self.recipe.replacingOccurrences(of: "name: bounds\n", with: "")
        do {
            _ = try pretrain(recipe: RecipeSource(text: unnamed, origin: "my recipe.yaml"), options: RunOptions(quiet: true, checkOnly: true))
            Issue.record("a file name with a space is no run name")
        } catch let error as RecipeError {
            #expect(error.path == "name" && error.problem.contains("'my recipe'"))
        }
        // An explicit output is the user's choice; then the name does not matter.
        _ = try pretrain(recipe: RecipeSource(text: unnamed, origin: "my recipe.yaml"),
                         options: RunOptions(output: "/tmp/anywhere", quiet: true, checkOnly: true))
        #expect(!FileManager.default.fileExists(atPath: "/tmp/anywhere"), "a check writes nothing")
    }
}
