import ArgumentParser
import EpicycleCheckpoint
import EpicycleRuntime
import Foundation

@main
struct Epicycle: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "epicycle",
        abstract: "Cyclical pretraining, fine-tuning and knowledge distillation of CNNs.",
        discussion: """
            Every knob that usually stays constant can follow one cyclical schedule: easy → hard → easy \
            (Smith, "General Cyclical Training of Neural Networks", 2022). Recipes are YAML; see Experiments/.
            """,
        version: epicycleSoftwareVersion,
        subcommands: [DemoCommand.self, Pretrain.self, Finetune.self, Cycle.self, Distill.self, Compare.self, CompareRun.self,
                      Evaluate.self, Predict.self, Export.self, Soup.self, ScheduleCommand.self, LRRange.self, Check.self, Inspect.self, DataCommand.self, Bench.self, BenchMPI.self, Info.self]
    )

    /// Checks the subcommand names first, so that a misspelt one (or `help` of an unknown one) is an
    /// error with a suggestion instead of ArgumentParser's generic usage text.
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if let unknown = unknownSubcommand(in: arguments) {
            let command = (["epicycle"] + (unknown.parent.isEmpty ? [] : [unknown.parent])).joined(separator: " ")
            let hint = closestName(to: unknown.name, among: unknown.known).map { "did you mean '\(command) \($0)'?" }
                ?? "the commands are \(unknown.known.joined(separator: ", ")); see '\(command) --help'"
            FileHandle.standardError.write(Data("error: '\(unknown.name)' is not an \(command) command\nhint: \(hint)\n".utf8))
            Foundation.exit(ExitCode.validationFailure.rawValue)
        }
        main(arguments)
    }
}

/// The first word of `arguments` that stands where a subcommand must be (`help` names a command
/// path too) but names none; `parent` is the command path above it and `known` its visible subcommands.
func unknownSubcommand(in arguments: [String]) -> (name: String, parent: String, known: [String])? {
    var words = arguments
    if words.first == "help" { words.removeFirst() }
    var command: any ParsableCommand.Type = Epicycle.self
    var path: [String] = []
    for word in words {
        let subcommands = command.configuration.subcommands
        guard !subcommands.isEmpty, !word.hasPrefix("-") else { return nil }
        guard let next = subcommands.first(where: { $0._commandName == word || $0.configuration.aliases.contains(word) }) else {
            return (word, path.joined(separator: " "),
                    subcommands.filter { $0.configuration.shouldDisplay }.map { $0._commandName })
        }
        command = next
        path.append(word)
    }
    return nil
}

/// The known name within a small edit distance of `name` (a typo, a swapped pair of letters), if any.
func closestName(to name: String, among names: [String]) -> String? {
    let scored = names.map { ($0, editDistance(name.lowercased(), $0)) }.filter { $0.1 <= max(1, $0.0.count / 3) }
    return scored.min { $0.1 < $1.1 }?.0
}

/// Optimal string alignment distance: insertions, deletions, substitutions and adjacent
/// transpositions each cost 1 ("pretrian" → "pretrain" is 1).
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
    var table = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
    for i in 0...a.count { table[i][0] = i }
    for j in 0...b.count { table[0][j] = j }
    for i in 1...a.count {
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            table[i][j] = min(table[i - 1][j] + 1, table[i][j - 1] + 1, table[i - 1][j - 1] + cost)
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                table[i][j] = min(table[i][j], table[i - 2][j - 2] + 1)
            }
        }
    }
    return table[a.count][b.count]
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the BLAS library and the kernel set it selected on this machine.",
        discussion: "Example: epicycle info")

    func run() throws {
        print(blasDescription)
    }
}
