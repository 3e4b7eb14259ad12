import EpicycleCheckpoint
import EpicycleRuntime
import Foundation
import Testing
import TestSupport

/// Open MPI's launcher, from PATH.
let mpirunPath: String? = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":")
    .map { $0 + "/mpirun" }.first { FileManager.default.isExecutableFile(atPath: $0) }

/// Data-parallel training under `mpirun`: each test launches the built tool on two processes of this
/// machine (`--oversubscribe`, so two ranks fit whatever the core count) and compares with one process.
@Suite(.serialized, .enabled(if: mpirunPath != nil, "mpirun is not installed (Debian: openmpi-bin)"))
struct MPITests {

    /// The launcher's arguments for `processes` ranks, each an `epicycle` with its own arguments and
    /// extra environment.
    static func launch(_ ranks: [(arguments: [String], environment: [String: String])], in folder: String,
                       timeout: Double = 300) throws -> CLITests.Run {
        // Waiting processes yield their core rather than spin: other suites run beside these tests.
        var arguments = ["--oversubscribe", "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1"]
            + (getuid() == 0 ? ["--allow-run-as-root"] : [])
        for (index, rank) in ranks.enumerated() {
            if index > 0 { arguments.append(":") }
            arguments += ["-np", "1", "/usr/bin/env"] + rank.environment.map { "\($0.key)=\($0.value)" } + [CLITests.executable]
                + rank.arguments
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: mpirunPath!)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // A launch that hangs would hang the suite: it is ended, and the test fails on its status.
        let deadline = Date().addingTimeInterval(timeout)
        let watchdog = Thread {
            while process.isRunning && Date() < deadline { usleep(100_000) }
            if process.isRunning { process.terminate() }
        }
        watchdog.start()
        let out = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let err = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return CLITests.Run(status: process.terminationStatus, signalled: process.terminationReason == .uncaughtSignal,
                            output: out, errors: err)
    }

    /// `epicycle <arguments>` on two ranks, with `environment` added to each.
    static func twoRanks(_ arguments: [String], in folder: String, environment: [String: String] = [:]) throws -> CLITests.Run {
        try launch([(arguments, environment), (arguments, environment)], in: folder)
    }

    /// The direct convolution kernels, for comparisons of summation orders through steps that sit near
    /// a ReLU's kink: there the last bits that the Winograd kernels change move the step by more than
    /// rounding, as images one ulp apart do (Conv2DAlgorithm.swift), so these tests' tolerances hold for
    /// the kernels they were measured with.
    static let directKernels = ["EPICYCLE_CONV_ALGORITHM": "direct"]

    /// Augmented (crop, flip, cutout at full strength), so each rank's images are its own rows of the
    /// augmented global batch; 96 training images in one batch: one step.
    static let oneStepRecipe = """
        name: one-step
        seed: 11
        model: {architecture: resnet8}
        optimizer: {kind: sgd, nesterov: true}
        knobs:
          learning_rate: 0.1
          batch_size: 96
          augmentation_strength: 1
        pretrain:
          data: {classes: [0, 1, 2, 3, 4], first: 96, validation: 32, augmentation: "crop,flip,cutout"}
          epochs: 1
        """

    /// Two epochs of four steps (224 images: the last batch of each epoch 32), every epoch checkpointed.
    static let shortRecipe = """
        name: short
        seed: 3
        checkpoint_every: 1
        model: {architecture: resnet8}
        knobs: {learning_rate: 0.05, batch_size: 64}
        pretrain:
          data: {classes: [0, 1, 2, 3, 4], first: 224, validation: 64}
          epochs: 2
        """

    static func folder(_ name: String, recipe: String) throws -> String {
        let folder = CLITests.folder(name)
        try recipe.write(toFile: folder + "/recipe.yaml", atomically: true, encoding: .utf8)
        return folder
    }

    static func arguments(output: String, _ extra: [String] = []) -> [String] {
        ["pretrain", "--recipe", "recipe.yaml", "--output", output, "--quiet"] + extra
    }

    /// Every parameter and float buffer of the model: name → scalars.
    static func tensors(_ path: String) throws -> [(name: String, scalars: [Float])] {
        let model = try Checkpoint.read(from: path).model
        return model.parameters.map { ($0.name, $0.tensor.scalars) }
            + model.buffers.compactMap { if case let .float32(tensor) = $0.value { ($0.name, tensor.scalars) } else { nil } }
    }

    /// Per tensor, max|a − b| / max|b|, with the tensor's names.
    static func relativeDifferences(_ actual: String, _ expected: String) throws -> [(name: String, value: Double)] {
        let a = try tensors(actual), e = try tensors(expected)
        #expect(a.map(\.name) == e.map(\.name))
        return zip(a, e).map { x, y in
            let scale = Double(y.scalars.map { abs($0) }.max() ?? 0)
            let difference = Double(zip(x.scalars, y.scalars).map { abs($0 - $1) }.max() ?? 0)
            return (x.name, scale > 0 ? difference / scale : difference)
        }
    }

    /// The largest of `relativeDifferences`.
    static func largestRelativeDifference(_ actual: String, _ expected: String) throws -> (name: String, value: Double) {
        try relativeDifferences(actual, expected).max { $0.value < $1.value } ?? ("", 0)
    }

    static func medianRelativeDifference(_ actual: String, _ expected: String) throws -> Double {
        let values = try relativeDifferences(actual, expected).map(\.value).sorted()
        return values.isEmpty ? 0 : values[values.count / 2]
    }

    /// Trains `recipe` in a fresh folder alone (into `alone`) and on two ranks (into `spread`), with
    /// `environment` added.
    static func aloneAndSpread(_ name: String, recipe: String, environment: [String: String] = [:]) throws
        -> (folder: String, spread: CLITests.Run) {
        let folder = try Self.folder(name, recipe: recipe)
        let alone = try CLITests.run(Self.arguments(output: "alone"), in: folder, environment: environment)
        try #require(alone.status == 0, "\(alone.errors)")
        let spread = try Self.twoRanks(Self.arguments(output: "spread"), in: folder, environment: environment)
        try #require(spread.status == 0, "\(spread.errors)")
        return (folder, spread)
    }

    /// Trains one step of `recipe` alone and on two ranks and expects them within 1e-5 relative (as
    /// `oneStepOnTwoRanksEqualsOneProcessOnTheWholeBatch` argues), and that the feature under test
    /// matters: turned off by the `without` overrides, the same step lands more than 1e-3 away.
    /// - Returns: the last epoch's `column` in each run's metrics (NaN without a column).
    static func oneStepAgreesWithOneProcess(_ name: String, recipe: String, without: [String], column: String? = nil,
                                            environment: [String: String] = [:]) throws -> (alone: Double, spread: Double) {
        let (folder, _) = try aloneAndSpread(name, recipe: recipe, environment: environment)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let difference = try largestRelativeDifference(folder + "/spread/last.h5", folder + "/alone/last.h5")
        #expect(difference.value <= 1e-5, "\(name): \(difference.name) differs by \(difference.value) relative")
        let plain = try CLITests.run(arguments(output: "plain", without.flatMap { ["--set", $0] }), in: folder,
                                     environment: environment)
        try #require(plain.status == 0, "\(plain.errors)")
        let moved = try largestRelativeDifference(folder + "/alone/last.h5", folder + "/plain/last.h5")
        #expect(moved.value > 1e-3, "\(name): turning it off moved \(moved.name) by only \(moved.value)")
        func lastEpoch(_ run: String) throws -> Double {
            guard let column else { return .nan }
            let metrics = try #require(try Checkpoint.read(from: folder + "/\(run)/last.h5").training).metrics
            let index = try #require(metrics.columns.firstIndex(of: column), "\(metrics.columns)")
            return try #require(metrics.rows.last)[index]
        }
        return (try lastEpoch("alone"), try lastEpoch("spread"))
    }

    @Test func oneStepOnTwoRanksEqualsOneProcessOnTheWholeBatch() throws {
        let (folder, spread) = try Self.aloneAndSpread("mpi-one-step", recipe: Self.oneStepRecipe)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Batch statistics are summed in Double and gradients weighted by exactly ½ before an fp32 sum
        // of two terms: only summation order separates the two, ~1e-7 relative per value.
        let difference = try Self.largestRelativeDifference(folder + "/spread/last.h5", folder + "/alone/last.h5")
        #expect(difference.value <= 1e-5, "\(difference.name) differs by \(difference.value) relative")
        // The step itself moves the weights by far more than that: against a step of learning rate 0
        // (the initial weights, with the batch's running statistics).
        let still = try CLITests.run(Self.arguments(output: "still", ["--set", "knobs.learning_rate=0"]), in: folder)
        try #require(still.status == 0, "\(still.errors)")
        let moved = try Self.largestRelativeDifference(folder + "/alone/last.h5", folder + "/still/last.h5")
        #expect(moved.value > 1e-3, "the step moved \(moved.name) by only \(moved.value)")
        #expect(try Checkpoint.read(from: folder + "/alone/last.h5").training?.step == 1)
        // One set of files, written once.
        // (TensorBoard event files are named by the time and host that wrote them.)
        func files(_ run: String) throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: folder + "/" + run).filter { !$0.hasPrefix(".") }
                .map { $0.hasPrefix("events.out.tfevents.") ? "events.out.tfevents" : $0 }.sorted()
        }
        #expect(try files("spread") == files("alone"))
        #expect(spread.output.components(separatedBy: "test top-1").count == 2, "the summary is printed once: \(spread.output)")
    }

    @Test func dropoutOnTwoRanksDrawsTheMasksOfOneProcess() throws {
        // A wide ResNet with dropout between its convolutions; each row's mask is drawn from its place in
        // the global batch, so rank 1's rows 48…95 get the masks one process gives them. This step sits
        // near a kink: under the Winograd kernels one process's step lands 2.3e-3 from the direct
        // kernels' step and the two ranks' step does not (measured).
        let recipe = Self.oneStepRecipe.replacingOccurrences(of: "model: {architecture: resnet8}",
                                                             with: "model: {architecture: wrn-10-2, dropout: 0.3}")
        _ = try Self.oneStepAgreesWithOneProcess("mpi-dropout", recipe: recipe, without: ["model.dropout=0"],
                                                 environment: Self.directKernels)
    }

    @Test func dataSelectionOnTwoRanksSelectsOverTheWholeBatch() throws {
        // keep_fraction keeps the 72 easiest of all 96 images, whichever rank holds them; the threshold
        // and the clip act per image; the loss is divided by the whole batch's count of kept images.
        let recipe = Self.oneStepRecipe.replacingOccurrences(of: "  augmentation_strength: 1\n", with: """
              augmentation_strength: 1
              keep_fraction: 0.75
              sample_loss_threshold: 2.2
              sample_loss_clip: 1.8

            """)
        let share = try Self.oneStepAgreesWithOneProcess(
            "mpi-selection", recipe: recipe, without: ["knobs.keep_fraction=1", "knobs.sample_loss_threshold=1e6", "knobs.sample_loss_clip=1e6"],
            column: "dropped_share")
        // The same images were left out, and more than keep_fraction alone leaves out (24 of 96).
        #expect(share.spread == share.alone)
        #expect(share.alone > 0.25 && share.alone < 1, "dropped share \(share.alone)")
    }

    @Test func shortRunAgreesWithOneProcessAndResumesAfterARankIsKilled() throws {
        let (folder, _) = try Self.aloneAndSpread("mpi-short", recipe: Self.shortRecipe, environment: Self.directKernels)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Eight SGD steps (momentum 0.9) from the same start. Summation order alone separates the two
        // (after the first epoch's four steps the worst tensor differs by 4.5e-7 relative, measured),
        // but these early steps amplify any difference: one process whose learning rate differs by
        // 2 parts in 10⁵ ends eight steps later up to 4e-2 away (a batch-norm shift, measured). The
        // measured worst here is 2.3e-3 (a batch-norm shift, whose values are small) and the median
        // tensor 2.6e-5: 1e-2 and 1e-4 leave a margin of about four. (With the Winograd kernels the
        // eight steps land elsewhere, 5.9e-2 and 1.6e-3 apart, as a learning rate 2 parts in 10⁵ off does.)
        let difference = try Self.largestRelativeDifference(folder + "/spread/last.h5", folder + "/alone/last.h5")
        #expect(difference.value <= 1e-2, "\(difference.name) differs by \(difference.value) relative")
        let median = try Self.medianRelativeDifference(folder + "/spread/last.h5", folder + "/alone/last.h5")
        #expect(median <= 1e-4, "the median tensor differs by \(median) relative")
        let (a, e) = (try Checkpoint.read(from: folder + "/spread/last.h5").training!, try Checkpoint.read(from: folder + "/alone/last.h5").training!)
        #expect(a.step == e.step && a.epoch == e.epoch)
        let stepColumn = e.metrics.columns.firstIndex(of: "step")!
        #expect(a.metrics.rows.map { $0[stepColumn] } == e.metrics.rows.map { $0[stepColumn] })

        // Rank 1 is killed right after its fifth step (the second epoch's first): the launch ends with
        // an error instead of leaving rank 0 waiting, and last.h5 is the first epoch's, intact.
        let arguments = Self.arguments(output: "killed")
        let killed = try Self.launch([(arguments, Self.directKernels),
                                      (arguments, Self.directKernels.merging(["EPICYCLE_FAULT_KILL_AT": "step:5"]) { $1 })],
                                     in: folder, timeout: 120)
        #expect(killed.status != 0)
        #expect(killed.errors.contains("signal 9"), "\(killed.errors)")
        let interrupted = try Checkpoint.read(from: folder + "/killed/last.h5").training!
        #expect(interrupted.epoch == 1 && interrupted.step == 4)
        let resumed = try Self.twoRanks(Self.arguments(output: "killed", ["--resume"]), in: folder, environment: Self.directKernels)
        try #require(resumed.status == 0, "\(resumed.errors)")
        // The resumed run is the uninterrupted two-rank run, bit for bit but for wall-clock figures.
        for file in ["last.h5", "best.h5", "epoch-0001.h5", "epoch-0002.h5"] {
            let differences = checkpointDifferences(try Checkpoint.read(from: folder + "/killed/" + file),
                                                    try Checkpoint.read(from: folder + "/spread/" + file),
                                                    comparingCreated: false, ignoringColumns: ["seconds", "img_per_s", "train_seconds"])
            #expect(differences.isEmpty, "\(file): \(differences)")
        }
    }

    /// Two variants × two seeds of a tiny pretraining, the results folder named by `results`.
    static func experiment(results: String) -> String {
        """
        name: mpi-compare
        program: pretrain
        base:
          model: {architecture: plain-cnn}
          knobs: {batch_size: 50, learning_rate: 0.05}
          pretrain:
            epochs: 1
            data: {classes: [0, 1], first: 150, validation: 50}
        seeds: [0, 1]
        baseline: constant
        variants:
          constant: {}
          cyclical: {knobs.weight_decay: {cyclical: {easy: 1e-5, hard: 8e-4}}}
        results: \(results)
        """
    }

    /// table.md without its last column, the wall time, which no two runs share.
    static func table(_ path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { line in
            guard line.hasPrefix("|"), let last = line.dropLast().lastIndex(of: "|") else { return String(line) }
            return String(line[...last])
        }
    }

    /// runs.csv without its wall-time column, which no two runs share.
    static func scores(_ path: String) throws -> [[String]] {
        let rows = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        let wall = try #require(rows.first?.firstIndex(of: "wall_seconds"), "runs.csv has a wall_seconds column: \(rows.first ?? [])")
        return rows.map { row in row.enumerated().filter { $0.offset != wall }.map(\.element) }
    }

    /// A scratch folder holding the same experiment file in `alone/` and `spread/` (the tables name
    /// it), compared in `alone/` by one process.
    static func comparedAlone(_ name: String) throws -> String {
        let folder = CLITests.folder(name)
        for name in ["alone", "spread"] {
            try FileManager.default.createDirectory(atPath: folder + "/" + name, withIntermediateDirectories: true)
            try Self.experiment(results: "results").write(toFile: folder + "/\(name)/e.yaml", atomically: true, encoding: .utf8)
        }
        let alone = try CLITests.run(["compare", "e.yaml"], in: folder + "/alone")
        try #require(alone.status == 0, "\(alone.errors)")
        return folder
    }

    @Test func aComparisonSpreadOverRanksGivesTheSingleProcessResults() throws {
        let folder = try Self.comparedAlone("mpi-compare")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Process 0 hands the four runs to processes 1 and 2.
        let arguments = ["compare", "e.yaml"]
        let spread = try Self.launch([(arguments, [:]), (arguments, [:]), (arguments, [:])], in: folder + "/spread")
        try #require(spread.status == 0, "\(spread.errors)")
        #expect(spread.output.contains("(MPI process 1)") && spread.output.contains("(MPI process 2)"), "\(spread.output)")
        #expect(try Self.scores(folder + "/spread/results/runs.csv") == Self.scores(folder + "/alone/results/runs.csv"))
        #expect(try Self.table(folder + "/spread/results/table.md") == Self.table(folder + "/alone/results/table.md"))
        // Resumable as on one process: the finished runs are not repeated.
        let again = try Self.launch([(arguments, [:]), (arguments, [:])], in: folder + "/spread")
        try #require(again.status == 0, "\(again.errors)")
        #expect(again.output.contains("4 of 4 runs already finished"), "\(again.output)")
    }

    @Test func aComparisonOfDataParallelRunsGivesTheSingleProcessResults() throws {
        let folder = try Self.comparedAlone("mpi-compare-groups")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Process 0 schedules; processes 1 and 2 train every run together, 25 of each batch's 50 images each.
        let arguments = ["compare", "e.yaml", "--ranks-per-run", "2"]
        let spread = try Self.launch([(arguments, [:]), (arguments, [:]), (arguments, [:])], in: folder + "/spread")
        try #require(spread.status == 0, "\(spread.errors)")
        #expect(spread.output.components(separatedBy: "started (MPI processes 1–2)").count == 5, "\(spread.output)")
        // Three steps apart only by summation order: the weights agree within 1e-5 relative (measured:
        // 8.9e-7 at worst), far less than any of the 2000 test or 50 validation images needs to change
        // its prediction, so the scores are the single-process ones; a margin of one image per split
        // keeps the test honest on a machine that rounds one borderline image the other way.
        for run in ["constant/seed-0", "cyclical/seed-1"] {
            let path = "/results/runs/\(run)/last.h5"
            let difference = try Self.largestRelativeDifference(folder + "/spread" + path, folder + "/alone" + path)
            #expect(difference.value <= 1e-5, "\(run): \(difference.name) differs by \(difference.value) relative")
        }
        let (spreadRows, aloneRows) = (try Self.scores(folder + "/spread/results/runs.csv"), try Self.scores(folder + "/alone/results/runs.csv"))
        let columns = try #require(aloneRows.first)
        #expect(spreadRows.first == columns && spreadRows.count == aloneRows.count && aloneRows.count == 5)
        for (spreadRow, aloneRow) in zip(spreadRows.dropFirst(), aloneRows.dropFirst()) {
            for (column, (a, e)) in zip(columns, zip(spreadRow, aloneRow)) {
                if let a = Double(a), let e = Double(e), column.hasSuffix("top1") || column.hasPrefix("test_top1") {
                    let oneImage = column.hasPrefix("test") ? 100.0 / 2000 : 100.0 / 50
                    #expect(abs(a - e) <= oneImage, "\(column): \(a) against \(e) alone")
                } else {
                    #expect(a == e, "\(column): \(a) against \(e) alone")
                }
            }
        }
        // Process 1 alone writes a run's files: the run folders hold what a single-process run's do
        // (but the log.txt of a run in a child process: under mpirun a run's output is the launch's).
        let files = { (side: String) in
            try FileManager.default.contentsOfDirectory(atPath: folder + "/\(side)/results/runs/constant/seed-0")
                .filter { $0 != "log.txt" }.map { $0.hasPrefix("events.out.tfevents.") ? "events.out.tfevents" : $0 }.sorted()
        }
        #expect(try files("spread") == files("alone"))
    }

    @Test func ranksThatCannotFormWholeGroupsAreRefused() throws {
        let folder = CLITests.folder("mpi-compare-uneven")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try Self.experiment(results: "results").write(toFile: folder + "/e.yaml", atomically: true, encoding: .utf8)
        let arguments = ["compare", "e.yaml", "--ranks-per-run", "2"]
        let uneven = try Self.launch(Array(repeating: (arguments, [:]), count: 2), in: folder, timeout: 120)
        #expect(uneven.status != 0)
        #expect(uneven.errors.contains("error: --ranks-per-run 2 needs the 1 processes after process 0 (which schedules) to form whole groups of 2; launch 1 + a multiple of 2 processes (mpirun -np 3, 5, …)"),
                "\(uneven.errors)")
        #expect(!FileManager.default.fileExists(atPath: folder + "/results"))
        let alone = try CLITests.run(arguments, in: folder)
        #expect(alone.status != 0)
        #expect(alone.errors.contains("--ranks-per-run 2 needs an mpirun launch of 1 + a multiple of 2 processes"), "\(alone.errors)")
    }

    @Test func ranksWhoseParametersPartStopTogetherNamingTheStep() throws {
        let folder = try Self.folder("mpi-perturbed", recipe: Self.shortRecipe)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Rank 1 nudges one weight by one ulp after its third step, as a rank that rounds differently would.
        let arguments = Self.arguments(output: "out")
        let run = try Self.launch([(arguments, [:]), (arguments, ["EPICYCLE_FAULT_PERTURB_AT": "step:3"])], in: folder, timeout: 120)
        #expect(run.status != 0)
        #expect(run.errors.contains("fault injection: perturbing a parameter after step 3"), "\(run.errors)")
        #expect(run.errors.contains("error: the 2 MPI processes hold different parameters after step 3 (their checksums differ); stopped."),
                "\(run.errors)")
        #expect(!run.errors.contains("after step 4"), "\(run.errors)")
        // The first epoch (four steps) never finished: no checkpoint was written.
        #expect(!FileManager.default.fileExists(atPath: folder + "/out/last.h5"))
    }

    /// FixMatch on 96 labeled and 96 unlabeled images: one step, the labeled batch and both views in one forward.
    static let semiSupervisedRecipe = """
        name: semi
        seed: 11
        model: {architecture: resnet8}
        knobs: {learning_rate: 0.1, batch_size: 96, unlabeled_weight: 1, confidence_threshold: 0.25, augmentation_strength: 1}
        pretrain:
          data: {classes: [0, 1, 2, 3, 4], first: 96, validation: 32}
          unlabeled: {first: 96, ratio: 1}
          epochs: 1
        """

    @Test func semiSupervisedOneStepOnTwoRanksEqualsOneProcess() throws {
        // Rank 1 takes rows 48…95 of both the labeled and the unlabeled batch.
        let rate = try Self.oneStepAgreesWithOneProcess("mpi-semi", recipe: Self.semiSupervisedRecipe, without: ["knobs.unlabeled_weight=0"],
                                                        column: "unlabeled.mask_rate")
        // The logged share of confident pseudo-labels counts every rank's images, and some, not all, pass τ.
        #expect(rate.spread == rate.alone)
        #expect(rate.alone > 0 && rate.alone < 100, "mask rate \(rate.alone) %")
    }

    @Test func dropoutWithUnlabeledDataIsRefusedBeforeAnythingIsWritten() throws {
        let recipe = Self.semiSupervisedRecipe.replacingOccurrences(of: "model: {architecture: resnet8}",
                                                                    with: "model: {architecture: wrn-10-2, dropout: 0.3}")
        let folder = try Self.folder("mpi-semi-dropout", recipe: recipe)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let run = try Self.twoRanks(Self.arguments(output: "out"), in: folder)
        #expect(run.status != 0)
        #expect(run.errors.contains("error: model.dropout: dropout with pretrain.unlabeled data is not available in a data-parallel (mpirun) run yet; set it to 0 or run as one process"),
                "\(run.errors)")
        let written = (try? FileManager.default.contentsOfDirectory(atPath: folder + "/out")) ?? []
        #expect(written.filter { !$0.hasPrefix(".") }.isEmpty, "\(written)")
    }

    @Test func ranksGivenDifferentRecipesStopWithAnError() throws {
        let folder = try Self.folder("mpi-different", recipe: Self.oneStepRecipe)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let run = try Self.launch([(Self.arguments(output: "out"), [:]),
                                   (Self.arguments(output: "out", ["--set", "seed=12"]), [:])], in: folder, timeout: 120)
        #expect(run.status != 0)
        #expect(run.errors.contains("error: the 2 MPI processes were given different recipes or programs"), "\(run.errors)")
    }
}
