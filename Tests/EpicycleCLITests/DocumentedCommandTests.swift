import Foundation
import Testing
import Yams

/// The commands the documentation shows (every `--help` example and the README's shell blocks) name
/// files that exist in the repository, or run folders that a recipe, an experiment or an earlier
/// command of the same text produces; and the command-line surface answers mistakes with a hint.
@Suite struct DocumentedCommandTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// Every command of the tool, as `--help` takes it.
    static let commands = ["demo", "pretrain", "finetune", "cycle", "distill", "compare", "eval", "predict", "export", "soup",
                           "schedule", "lr-range", "check", "inspect", "data", "data show", "data bench", "bench", "bench-mpi", "info"]

    /// The example commands of every `--help` text, each joined back into one line.
    static func helpExamples() throws -> [String] {
        let top = try CLITests.run(["--help"], in: repository)
        let listed = top.output.components(separatedBy: "SUBCOMMANDS:")[1].split(separator: "\n")
            .compactMap { line in line.hasPrefix("  ") && !line.hasPrefix("   ") ? line.split(separator: " ").first.map(String.init) : nil }
            .filter { $0 != "See" }
        #expect(Set(listed).isSubset(of: Set(commands)), "a new command must be added to this test's list: \(listed)")
        var examples: [String] = []
        for command in commands {
            let help = try CLITests.run(command.split(separator: " ").map(String.init) + ["--help"], in: repository)
            #expect(help.status == 0, "\(command) --help")
            // ArgumentParser wraps the discussion: an example runs to the next example or blank line.
            var current: String?
            for line in help.output.split(separator: "\n", omittingEmptySubsequences: false) {
                if line.hasPrefix("Example: ") {
                    if let current { examples.append(current) }
                    current = String(line.dropFirst("Example: ".count))
                } else if line.trimmingCharacters(in: .whitespaces).isEmpty || line.hasPrefix("USAGE:") {
                    if let current { examples.append(current) }
                    current = nil
                } else if let partial = current {
                    current = partial + " " + line.trimmingCharacters(in: .whitespaces)
                }
            }
            #expect(!examples.isEmpty)
        }
        return examples
    }

    /// The README's shell commands (```sh blocks), continuation lines joined, comments dropped.
    static func readmeCommands() throws -> [String] {
        let text = try String(contentsOfFile: repository + "/README.md", encoding: .utf8)
        var commands: [String] = [], inShell = false, pending = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") { inShell = line == "```sh"; continue }
            guard inShell else { continue }
            let code = line.components(separatedBy: " # ")[0].trimmingCharacters(in: .whitespaces)
            if code.hasSuffix("\\") { pending += code.dropLast() + " "; continue }
            commands.append(pending + code)
            pending = ""
        }
        return commands.filter { !$0.isEmpty }
    }

    /// `a/seed-{0,1}/x` → `a/seed-0/x`, `a/seed-1/x`, as the shell expands it.
    static func braceExpanded(_ word: String) -> [String] {
        guard let open = word.firstIndex(of: "{"), let close = word[open...].firstIndex(of: "}") else { return [word] }
        return word[word.index(after: open)..<close].split(separator: ",").flatMap { choice in
            braceExpanded(String(word[..<open]) + choice + String(word[word.index(after: close)...]))
        }
    }

    /// The run folders the repository's recipes and experiments write (relative to the repository),
    /// with the phase sub-folders a two-phase recipe gets.
    static func producedFolders() throws -> Set<String> {
        var folders: Set<String> = ["Checkpoints/demo"]
        let experiments = repository + "/Experiments"
        for file in try FileManager.default.contentsOfDirectory(atPath: experiments) where file.hasSuffix(".yaml") {
            guard let mapping = try Yams.compose(yaml: try String(contentsOfFile: experiments + "/" + file, encoding: .utf8))?.mapping else {
                continue
            }
            let stem = String(file.dropLast(".yaml".count))
            if mapping["program"] != nil {
                let results = "Experiments/" + (mapping["results"]?.string ?? "results/\(mapping["name"]?.string ?? stem)")
                for variant in mapping["variants"]?.mapping?.keys.compactMap(\.string) ?? [] {
                    for seed in mapping["seeds"]?.sequence?.compactMap(\.string) ?? [] {
                        folders.insert("\(results)/runs/\(variant)/seed-\(seed)")
                    }
                }
            } else {
                let run = "Checkpoints/" + (mapping["name"]?.string ?? stem)
                folders.insert(run)
                if mapping["pretrain"] != nil && mapping["finetune"] != nil { folders.formUnion([run + "/pretrain", run + "/finetune"]) }
            }
        }
        return folders
    }

    /// The files a list of commands names that are not there: inputs must exist in the repository;
    /// a checkpoint must sit in a folder that a recipe, an experiment or an earlier `--output` makes.
    static func missingFiles(in commands: [String]) throws -> [String] {
        var produced = try producedFolders(), missing: [String] = []
        for command in commands where command.contains("epicycle") || command.contains("scripts/") {
            let words = command.split(separator: " ").map(String.init)
            for (index, word) in words.enumerated() {
                let previous = index > 0 ? words[index - 1] : ""
                if ["--output", "--plot"].contains(previous) {
                    produced.insert(word)
                    continue
                }
                for path in braceExpanded(word.trimmingCharacters(in: CharacterSet(charactersIn: "\"()$"))) {
                    if path.hasSuffix(".h5") {
                        let folder = path.split(separator: "/").dropLast().joined(separator: "/")
                        if !produced.contains(folder) { missing.append("\(path) (in: \(command))") }
                    } else if path.hasSuffix(".yaml") || path.hasPrefix("scripts/") || path.hasPrefix("Experiments/") {
                        let matches = path.contains("*")
                            ? try FileManager.default.contentsOfDirectory(atPath: repository + "/Experiments").filter { $0.hasSuffix(".yaml") }
                            : [path].filter { FileManager.default.fileExists(atPath: repository + "/" + $0) }
                        if matches.isEmpty { missing.append("\(path) (in: \(command))") }
                    }
                }
            }
        }
        return missing
    }

    @Test func helpExamplesNameFilesThatExist() throws {
        let examples = try Self.helpExamples()
        #expect(examples.count >= Self.commands.count)
        #expect(try Self.missingFiles(in: examples) == [])
    }

    @Test func readmeCommandsNameFilesThatExist() throws {
        let commands = try Self.readmeCommands()
        #expect(commands.contains { $0.hasPrefix("epicycle compare") } && commands.contains { $0.contains("export PATH") })
        #expect(try Self.missingFiles(in: commands) == [])
    }

    /// The check itself catches what it is for: a recipe that is not there, a checkpoint of no run.
    @Test func theCheckFindsMissingFiles() throws {
        let missing = try Self.missingFiles(in: [
            "epicycle cycle --recipe Experiments/cycle-fmnist.yaml",
            "epicycle eval ft-seed0/last.h5",
            "epicycle finetune --from Checkpoints/cycle-fmnist-cyclical/pretrain/last.h5 --recipe Experiments/cycle-fmnist-cyclical.yaml --output Checkpoints/x",
            "epicycle soup Checkpoints/x/last.h5 Experiments/results/knobs-4k/runs/constant/seed-{0,9}/last.h5 --output s.h5",
        ])
        #expect(missing.map { $0.components(separatedBy: " (in:")[0] }
                == ["Experiments/cycle-fmnist.yaml", "ft-seed0/last.h5", "Experiments/results/knobs-4k/runs/constant/seed-9/last.h5"])
    }

    @Test func misspeltCommandsGetASuggestion() throws {
        let folder = CLITests.folder("misspelt")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let typo = try CLITests.run(["pretrian", "--recipe", "x.yaml"], in: folder)
        #expect(typo.status == 64 && typo.errors == "error: 'pretrian' is not an epicycle command\nhint: did you mean 'epicycle pretrain'?\n",
                "\(typo.errors)")
        let nested = try CLITests.run(["data", "shwo"], in: folder)
        #expect(nested.status == 64 && nested.errors.contains("hint: did you mean 'epicycle data show'?"), "\(nested.errors)")
        let help = try CLITests.run(["help", "nonexistent"], in: folder)
        #expect(help.status == 64 && help.output.isEmpty, "\(help.output)")
        #expect(help.errors.hasPrefix("error: 'nonexistent' is not an epicycle command\nhint: the commands are demo, pretrain,"),
                "\(help.errors)")
        #expect(!help.errors.contains("compare-run"), "the internal command is not offered")
        let helpOfOne = try CLITests.run(["help", "eval"], in: folder)
        #expect(helpOfOne.status == 0 && helpOfOne.output.contains("epicycle eval"))
    }

    @Test func infoNamesTheLibraryOnce() throws {
        let info = try CLITests.run(["info"], in: CLITests.folder("info"))
        #expect(info.status == 0 && info.output.hasPrefix("OpenBLAS ") && !info.output.contains("OpenBLAS OpenBLAS"), "\(info.output)")
    }
}
