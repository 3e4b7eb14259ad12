import Foundation
import Testing

/// Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN), tried once on a scratch folder.
private let canMountTmpfs: Bool = {
    guard getuid() == 0 else { return false }
    let probe = FileManager.default.temporaryDirectory.appendingPathComponent("epicycle-tmpfs-probe-\(UUID().uuidString)").path
    try? FileManager.default.createDirectory(atPath: probe, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: probe) }
    guard mount("tmpfs", probe, "tmpfs", 0, "size=64k") == 0 else { return false }
    umount(probe)
    return true
}()

extension CLITests {
    /// A save that fails for lack of space ends the run with an error exit and a message naming the
    /// file; the previous checkpoint stays byte for byte and no `.tmp` is left. (HDF5 used to keep
    /// the failed file open and crash with SIGSEGV when closing it at exit.)
    @Suite(.serialized) struct DiskFull {
        static let recipe = """
            name: tiny
            seed: 3
            model: {architecture: resnet8}
            knobs: {learning_rate: 0.05, batch_size: 64}
            checkpoint_every: 1
            pretrain:
              data: {classes: [0, 1], first: 256, validation: 64}
              epochs: 2
            """

        /// A run folder whose `last.h5` is the checkpoint after epoch 1 of 2 (so `--resume` trains one
        /// more epoch and saves), and the bytes of that file.
        static func interruptedRun(in folder: String) throws -> [UInt8] {
            try recipe.write(toFile: folder + "/tiny.yaml", atomically: true, encoding: .utf8)
            let first = try CLITests.run(["pretrain", "--recipe", "tiny.yaml", "--output", "run", "--quiet"], in: folder)
            try #require(first.status == 0, "\(first.errors)")
            let run = folder + "/run"
            let previous = try Data(contentsOf: URL(fileURLWithPath: run + "/epoch-0001.h5"))
            for name in try FileManager.default.contentsOfDirectory(atPath: run) where name.hasSuffix(".h5") {
                try FileManager.default.removeItem(atPath: run + "/" + name)
            }
            try previous.write(to: URL(fileURLWithPath: run + "/last.h5"))
            return [UInt8](previous)
        }

        /// Runs `epicycle` through bash with `setup` before it (a file-size limit, SIGXFSZ ignored).
        static func resume(in folder: String, output: String, setup: String) throws -> (reason: Process.TerminationReason, status: Int32, errors: String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            process.arguments = ["-c", setup + "; exec \"$0\" \"$@\"", CLITests.executable,
                                 "pretrain", "--recipe", "tiny.yaml", "--output", output, "--resume", "--quiet"]
            process.currentDirectoryURL = URL(fileURLWithPath: folder)
            let errors = Pipe()
            process.standardOutput = FileHandle.nullDevice
            process.standardError = errors
            try process.run()
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return (process.terminationReason, process.terminationStatus, text)
        }

        static func expectCleanFailure(_ result: (reason: Process.TerminationReason, status: Int32, errors: String),
                                       in folder: String, run: String, previous: [UInt8], cause: String,
                                       sourceLocation: SourceLocation = #_sourceLocation) throws {
            #expect(result.reason == .exit && result.status != 0,
                    "ended by \(result.reason == .exit ? "exit" : "signal") \(result.status): \(result.errors)",
                    sourceLocation: sourceLocation)
            // best.h5 and epoch files are written before last.h5, so the first failed save may be any of them.
            #expect(result.errors.contains(".h5: saving failed while writing the temporary file") && result.errors.contains(run + "/"),
                    "\(result.errors)", sourceLocation: sourceLocation)
            #expect(result.errors.contains(cause), "\(result.errors)", sourceLocation: sourceLocation)
            #expect(!result.errors.contains("crashed"), sourceLocation: sourceLocation)
            #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: folder + "/" + run + "/last.h5"))) == previous,
                    "the previous last.h5 changed", sourceLocation: sourceLocation)
            #expect(!FileManager.default.fileExists(atPath: folder + "/" + run + "/last.h5.tmp"), sourceLocation: sourceLocation)
        }

        @Test func fileSizeLimitEndsWithAnErrorAndKeepsThePreviousCheckpoint() throws {
            let folder = CLITests.folder("file-size-limit")
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let previous = try Self.interruptedRun(in: folder)
            // 64 KiB per file: metrics files fit, a ResNet-8 checkpoint (~630 KB) does not.
            let result = try Self.resume(in: folder, output: "run", setup: "trap '' XFSZ; ulimit -f 64")
            try Self.expectCleanFailure(result, in: folder, run: "run", previous: previous, cause: "File too large")
        }

        @Test(.enabled(if: canMountTmpfs, "needs root with CAP_SYS_ADMIN to mount a 1 MiB tmpfs"))
        func fullDiskEndsWithAnErrorAndKeepsThePreviousCheckpoint() throws {
            let folder = CLITests.folder("disk-full")
            defer { try? FileManager.default.removeItem(atPath: folder) }
            let previous = try Self.interruptedRun(in: folder)
            let disk = folder + "/disk"
            try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
            try #require(mount("tmpfs", disk, "tmpfs", 0, "size=1m") == 0)
            defer { umount(disk) }
            try FileManager.default.createDirectory(atPath: disk + "/run", withIntermediateDirectories: true)
            for name in try FileManager.default.contentsOfDirectory(atPath: folder + "/run") {
                try FileManager.default.copyItem(atPath: folder + "/run/" + name, toPath: disk + "/run/" + name)
            }
            // The previous last.h5 takes ~630 KB of the 1 MiB, so the next one cannot be written beside it.
            let result = try Self.resume(in: folder, output: "disk/run", setup: "true")
            try Self.expectCleanFailure(result, in: folder, run: "disk/run", previous: previous, cause: "No space left on device")
        }
    }
}
