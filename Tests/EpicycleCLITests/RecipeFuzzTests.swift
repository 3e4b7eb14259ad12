import Foundation
import Testing
import Yams

/// Mutated copies of the committed recipes and experiments (`Experiments/`), each taken by the real
/// `epicycle check` exactly as far as its command goes before training (decode, `--set`, data,
/// knobs over the cycle, model bounds, memory, the teacher). Every input must end as "ok" or as one
/// error line that names a key path or the file; a trap, an abort or a hang is a failure. The inputs
/// run in child processes, 25 at a time, so a trap shows which input caused it.
///
/// `EPICYCLE_FUZZ_ITERATIONS` sets the number of inputs (default 100, about 60 s);
/// `EPICYCLE_FUZZ_SEED` the seed (default 13).
@Suite struct RecipeFuzzTests {
    /// SplitMix64 (Steele, Lea & Flood 2014): a seeded generator, so a failure can be replayed.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    enum Step: CustomStringConvertible {
        case key(Node)
        case index(Int)
        var description: String {
            switch self {
            case let .key(key): return key.string ?? "?"
            case let .index(index): return "[\(index)]"
            }
        }
    }

    struct Mutant {
        var text: Data
        /// What was done, for messages: "pretrain.epochs ← 1e19".
        var mutation: String
        /// The key path that was changed ("" for changes to the text as a whole).
        var path: String
    }

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Replacement values: huge, negative, not-a-number, wrong types, long, and path-like.
    static let values: [String] = [
        "1e19", "9223372036854775807", "-9223372036854775808", "2147483648", "1000000000000", "-1", "0", "1",
        "1e308", "-1e308", ".nan", ".inf", "-.inf", "5e-324", "0.5", "abc", "''", "[]", "{}", "[1, 2, 3]",
        "{a: 1}", "null", "true", "../../x", "/tmp", "resnet8x100000", "wrn-40-1000", "resnet8x64", "'é𝄞'",
        "{cyclical: {easy: 1, hard: 1e19}}", "{step: {initial: 0.1, milestones: [1, 1000000000000]}}",
        "{cosine: {peak: 0.1, warmup_epochs: 9223372036854775807}}", "[crop, crop]",
        // The later schedule kinds, optimizer wrapper and unlabeled section, out of bounds.
        "{cyclical: {easy: 0, hard: 1, factor: 2, cycles: 1000000000000}}", "{rampup: {value: 1e308, epochs: 1e19}}",
        "{kind: sgd, lookahead: {k: 1e19, alpha: .nan}}", "{first: 1e19, ratio: 9223372036854775807}",
        "crop,randaugment,randaugment",
        // This session's keys: a teacher for unlabeled data, averaging, a knob name (cycle_ends_of).
        "{first: 10, teacher: /no/such/teacher.h5, temperature: 1e19}", "{swa: {start: 1e19, lr: .nan}, ema: {decay: 2}}",
        "learning_rate",
    ]

    static func paths(in node: Node, prefix: [Step] = []) -> [[Step]] {
        switch node {
        case let .mapping(mapping):
            return mapping.flatMap { key, value in [prefix + [.key(key)]] + paths(in: value, prefix: prefix + [.key(key)]) }
        case let .sequence(sequence):
            return sequence.enumerated().flatMap { index, value in
                [prefix + [.index(index)]] + paths(in: value, prefix: prefix + [.index(index)])
            }
        default:
            return []
        }
    }

    /// The document with the value at `path` replaced by `change(old)` (nil deletes it).
    static func changing(_ node: Node, at path: ArraySlice<Step>, _ change: (Node) -> Node?) -> Node? {
        guard let step = path.first else { return change(node) }
        switch (step, node) {
        case let (.key(key), .mapping(mapping)):
            var pairs: [(Node, Node)] = []
            for (existing, value) in mapping {
                guard existing == key else { pairs.append((existing, value)); continue }
                if let changed = changing(value, at: path.dropFirst(), change) { pairs.append((existing, changed)) }
            }
            return .mapping(Node.Mapping(pairs))
        case let (.index(index), .sequence(sequence)):
            var elements = Array(sequence)
            if let changed = changing(elements[index], at: path.dropFirst(), change) {
                elements[index] = changed
            } else {
                elements.remove(at: index)
            }
            return .sequence(Node.Sequence(elements))
        default:
            return node
        }
    }

    static func mutate(_ text: String, generator: inout Generator) -> Mutant {
        let bytes = Data(text.utf8)
        switch Int.random(in: 0..<100, using: &generator) {
        case 0..<4:
            // Invalid UTF-8 somewhere.
            var data = bytes
            let offset = Int.random(in: 0...data.count, using: &generator)
            data.insert(contentsOf: [0xFF, 0xC3], at: offset)
            return Mutant(text: data, mutation: "0xFF 0xC3 inserted at byte \(offset)", path: "")
        case 4..<8:
            let cut = Int.random(in: 0...bytes.count, using: &generator)
            return Mutant(text: bytes.prefix(cut), mutation: "cut after byte \(cut)", path: "")
        case 8..<12:
            // A top-level key written twice.
            let lines = text.split(separator: "\n").filter { $0.first?.isLetter == true && $0.contains(":") }
            guard let line = lines.randomElement(using: &generator) else { break }
            return Mutant(text: Data((text + "\n" + line + "\n").utf8), mutation: "duplicated '\(line.prefix(40))'", path: "")
        case 12..<13:
            // Larger than any recipe may be.
            return Mutant(text: Data((text + "\n# " + String(repeating: "x", count: 5 << 20) + "\n").utf8),
                          mutation: "5 MB comment appended", path: "")
        default:
            break
        }
        guard let root = try? Yams.compose(yaml: text) else {
            return Mutant(text: bytes, mutation: "unchanged (not YAML)", path: "")
        }
        let all = paths(in: root)
        guard let path = all.randomElement(using: &generator) else { return Mutant(text: bytes, mutation: "unchanged", path: "") }
        let name = path.map(\.description).joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
        let mutation: String
        let mutated: Node?
        switch Int.random(in: 0..<100, using: &generator) {
        case 0..<55:
            let value = values.randomElement(using: &generator)!
            mutation = "\(name) ← \(value)"
            mutated = changing(root, at: path[...]) { _ in (try? Yams.compose(yaml: value)) ?? Node("") }
        case 55..<63:
            let length = [61, 5_000, 100_000].randomElement(using: &generator)!
            mutation = "\(name) ← \(length) characters"
            mutated = changing(root, at: path[...]) { _ in Node(String(repeating: "crop,", count: length / 5 + 1)) }
        case 63..<78:
            mutation = "\(name) deleted"
            mutated = changing(root, at: path[...]) { _ in nil }
        case 78..<88:
            // Structure: a mapping becomes the list of its values, anything else is wrapped in a list.
            mutation = "\(name) restructured"
            mutated = changing(root, at: path[...]) { old in
                if let mapping = old.mapping { return .sequence(Node.Sequence(Array(mapping.values))) }
                return .sequence(Node.Sequence([old]))
            }
        case 88..<94:
            mutation = "\(name) gains an unknown key"
            mutated = changing(root, at: path[...]) { old in
                guard var mapping = old.mapping else { return .mapping(Node.Mapping([(Node("extra"), old)])) }
                mapping[Node("wieght_decay")] = Node("1")
                return .mapping(mapping)
            }
        default:
            let count = [1001, 100_000].randomElement(using: &generator)!
            mutation = "\(name) ← a list of \(count) numbers"
            mutated = changing(root, at: path[...]) { _ in .sequence(Node.Sequence((0..<count).map { Node(String($0)) })) }
        }
        guard let mutated, let serialized = try? Yams.serialize(node: mutated) else {
            return Mutant(text: bytes, mutation: "unchanged (\(mutation) did not serialize)", path: "")
        }
        return Mutant(text: Data(serialized.utf8), mutation: mutation, path: name)
    }

    /// Whether a message points at where the problem is: a key path first
    /// (`pretrain.data.classes[2]: …`), or the file, or the teacher checkpoint, or a quoted recipe key.
    static func namesWhere(_ message: String, file: String) -> Bool {
        if message.range(of: #"^[A-Za-z_][A-Za-z0-9_.\-]*(\[[0-9]+\])*(\.[^ :]+)*: "#, options: .regularExpression) != nil {
            return true
        }
        return message.contains(file) || message.hasPrefix("teacher ")
            || ["'pretrain'", "'finetune'", "'distill'", "'recipe:", "'base:'"].contains { message.contains($0) }
    }

    struct Outcome {
        var lines: [String: String] = [:]
        var signal: Int32?
        var timedOut = false
    }

    /// Runs `epicycle check` on `files` in `folder`, killing it after `timeout` seconds.
    static func check(_ files: [String], in folder: String, timeout: Double) throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLITests.executable)
        process.arguments = ["check"] + files
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        let outputPath = folder + "/check-output.txt"
        try #require(FileManager.default.createFile(atPath: outputPath, contents: nil), "cannot create \(outputPath)")
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        var outcome = Outcome()
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            outcome.timedOut = true
            kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
        try output.close()
        if process.terminationReason == .uncaughtSignal && !outcome.timedOut { outcome.signal = process.terminationStatus }
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        for line in text.split(separator: "\n") {
            guard let file = files.first(where: { line.hasPrefix($0 + ": ") }) else { continue }
            outcome.lines[file] = String(line.dropFirst(file.count + 2))
        }
        return outcome
    }

    @Test(.timeLimit(.minutes(60))) func mutatedRecipesAreAcceptedOrRejectedByKeyPath() throws {
        let environment = ProcessInfo.processInfo.environment
        let iterations = min(100_000, Int(environment["EPICYCLE_FUZZ_ITERATIONS"] ?? "") ?? 100)
        var generator = Generator(state: UInt64(environment["EPICYCLE_FUZZ_SEED"] ?? "") ?? 13)
        let began = Date()

        // The committed recipes, in a scratch copy of the repository's layout (experiments name their
        // recipes, and recipes their teachers, relative to their files), with the teachers the
        // distillation recipes expect trained briefly in place.
        let scratch = CLITests.folder("fuzz"), folder = scratch + "/Experiments"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let experiments = Self.repository.appendingPathComponent("Experiments").path
        try FileManager.default.createDirectory(atPath: folder + "/base", withIntermediateDirectories: true)
        var originals: [(name: String, text: String)] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: experiments).sorted() where name.hasSuffix(".yaml") {
            originals.append((name, try String(contentsOfFile: experiments + "/" + name, encoding: .utf8)))
        }
        for name in try FileManager.default.contentsOfDirectory(atPath: experiments + "/base").sorted() where name.hasSuffix(".yaml") {
            originals.append(("base/" + name, try String(contentsOfFile: experiments + "/base/" + name, encoding: .utf8)))
        }
        for (name, text) in originals { try text.write(toFile: folder + "/" + name, atomically: true, encoding: .utf8) }
        #expect(originals.count >= 10)
        // The wide teachers are narrowed: a student's check needs only the teacher's feature names
        // (the same in a narrower network of the family) and a checkpoint.
        for (recipe, narrower) in [("distill-teacher-resnet20.yaml", nil), ("distill-teacher-vgg13.yaml", "vgg13x0.0625"),
                                   ("distill-teacher-resnet32x4.yaml", "resnet8")] {
            let narrowing = narrower.map { ["--set", "model.architecture=\($0)"] } ?? []
            let teacher = try CLITests.run(["pretrain", "--recipe", "Experiments/" + recipe, "--quiet", "--set", "pretrain.epochs=1",
                                            "--set", "pretrain.data.first=200", "--set", "pretrain.data.validation=100"] + narrowing,
                                           in: scratch)
            try #require(teacher.status == 0, "\(recipe): \(teacher.errors)")
        }

        // Unchanged, every committed file passes: the mutants below then reach the deepest checks.
        let baseline = try Self.check(originals.map(\.name), in: folder, timeout: 300)
        for (name, _) in originals { #expect(baseline.lines[name]?.hasPrefix("ok") == true, "\(name): \(baseline.lines[name] ?? "no line")") }

        var mutants: [String: Mutant] = [:]
        var accepted = 0, rejected = 0, namingTheMutatedKey = 0, valueMutations = 0
        var problems: [String] = []
        var batch: [String] = []
        func runBatch() throws {
            defer { batch.removeAll() }
            let outcome = try Self.check(batch, in: folder, timeout: 600)
            var suspects = batch
            if outcome.signal != nil || outcome.timedOut {
                // Find the input(s): each alone, with its own time limit.
                suspects = []
                for file in batch {
                    let alone = try Self.check([file], in: folder, timeout: 120)
                    if let signal = alone.signal { problems.append("\(file) (\(mutants[file]!.mutation)): killed by signal \(signal)") }
                    if alone.timedOut { problems.append("\(file) (\(mutants[file]!.mutation)): no answer within 120 s") }
                    if alone.signal == nil && !alone.timedOut, let line = alone.lines[file] {
                        suspects.append(file)
                        tally(file, line)
                    }
                }
                return
            }
            for file in suspects {
                guard let line = outcome.lines[file] else {
                    problems.append("\(file) (\(mutants[file]!.mutation)): no output line")
                    continue
                }
                tally(file, line)
            }
        }
        func tally(_ file: String, _ line: String) {
            let mutant = mutants[file]!
            if line.hasPrefix("ok") {
                accepted += 1
                return
            }
            rejected += 1
            let message = line.hasPrefix("error: ") ? String(line.dropFirst(7)) : line
            let firstKey = mutant.path.split(separator: ".").first.map { String($0.prefix { $0 != "[" }) } ?? ""
            if !firstKey.isEmpty {
                valueMutations += 1
                if message.hasPrefix(firstKey) || message.contains(": \(firstKey)") { namingTheMutatedKey += 1 }
            }
            for banned in ["Fatal error", "NSCocoaErrorDomain", "Usage:", "Swift/", "Error Domain"] where message.contains(banned) {
                problems.append("\(file) (\(mutant.mutation)): message contains '\(banned)': \(message.prefix(200))")
            }
            if message.count > 600 { problems.append("\(file) (\(mutant.mutation)): \(message.count)-character message") }
            if !Self.namesWhere(message, file: file) {
                problems.append("\(file) (\(mutant.mutation)): names neither a key path nor the file: \(message.prefix(200))")
            }
        }

        for index in 0..<iterations {
            let (name, text) = originals.randomElement(using: &generator)!
            var mutant = Self.mutate(text, generator: &generator)
            // A second mutation now and then, on top of the first.
            if Int.random(in: 0..<4, using: &generator) == 0, let again = String(data: mutant.text, encoding: .utf8) {
                let second = Self.mutate(again, generator: &generator)
                mutant = Mutant(text: second.text, mutation: mutant.mutation + "; " + second.mutation,
                                path: second.path.isEmpty ? mutant.path : second.path)
            }
            // Beside its original, so that an experiment's relative `recipe:` still resolves.
            let file = (name.hasPrefix("base/") ? "base/" : "") + String(format: "m%05d.yaml", index)
            try mutant.text.write(to: URL(fileURLWithPath: folder + "/" + file))
            mutants[file] = Mutant(text: Data(), mutation: "\(name): \(mutant.mutation)", path: mutant.path)
            batch.append(file)
            if batch.count == 25 { try runBatch() }
        }
        if !batch.isEmpty { try runBatch() }

        let seconds = Date().timeIntervalSince(began)
        print(String(format: "recipe fuzz: %d inputs in %.0f s: %d accepted, %d rejected, %d problems; %d of %d rejected key mutations named the key",
                     iterations, seconds, accepted, rejected, problems.count, namingTheMutatedKey, valueMutations))
        #expect(accepted + rejected + problems.count >= iterations, "every input is answered")
        #expect(problems.isEmpty, "\(problems.count) problems:\n\(problems.prefix(30).joined(separator: "\n"))")
    }
}
