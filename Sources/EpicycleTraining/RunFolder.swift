import EpicycleMPI
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a run folder cannot be written.
public enum RunFolderError: Error, Equatable, CustomStringConvertible, ErrorWithHint {
    /// Another process holds the folder's lock; `holder` is its process id, when it wrote one.
    case inUse(folder: String, holder: Int32?)
    /// The folder holds an earlier run (`file` is the evidence) and neither `--resume` nor `--overwrite` was given.
    case existingRun(folder: String, file: String)
    case resumeAndOverwrite
    case cannotOpen(folder: String, reason: String)

    public var description: String {
        switch self {
        case let .inUse(folder, holder):
            return "\(folder) is in use by \(holder.map { "process \($0)" } ?? "another process") (it holds \(folder)/.lock)"
        case let .existingRun(folder, file):
            return "\(folder) already holds a run (\(URL(fileURLWithPath: file).lastPathComponent))"
        case .resumeAndOverwrite:
            return "--resume and --overwrite exclude each other: continue the run, or start it afresh"
        case let .cannotOpen(folder, reason):
            return "cannot write \(folder): \(reason)"
        }
    }

    public var hint: String? {
        switch self {
        case .inUse: return "wait for that run to finish, or choose another --output"
        case .existingRun: return "add --resume to continue it, --overwrite to replace it, or choose another --output"
        case .resumeAndOverwrite, .cannotOpen: return nil
        }
    }
}

/// One writer per run folder: an advisory `flock` on `<folder>/.lock`, which holds the writer's
/// process id, for as long as this value lives. The kernel drops the lock when the process ends,
/// however it ends, so a killed run never leaves a stale lock behind.
public final class RunFolderLock {
    public let folder: String
    private let descriptor: Int32

    /// Creates `folder` if needed and takes its lock, or throws `RunFolderError.inUse` naming the holder.
    public init(_ folder: String) throws {
        self.folder = folder
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw RunFolderError.cannotOpen(folder: folder, reason: fileSystemReason(error))
        }
        // Close-on-exec: the child runs of a comparison must not inherit (and outlive us holding) the lock.
        let descriptor = open(folder + "/.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw RunFolderError.cannotOpen(folder: folder, reason: fileSystemReason(POSIXError(errno))) }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            var bytes = [UInt8](repeating: 0, count: 24)
            let count = pread(descriptor, &bytes, bytes.count, 0)
            close(descriptor)
            guard code == EWOULDBLOCK else { throw RunFolderError.cannotOpen(folder: folder, reason: fileSystemReason(POSIXError(code))) }
            let text = String(decoding: bytes.prefix(max(0, count)), as: UTF8.self)
            throw RunFolderError.inUse(folder: folder, holder: Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        let pid = Array("\(getpid())\n".utf8)
        guard ftruncate(descriptor, 0) == 0, pwrite(descriptor, pid, pid.count, 0) == pid.count else {
            let code = errno
            close(descriptor)
            throw RunFolderError.cannotOpen(folder: folder, reason: fileSystemReason(POSIXError(code)))
        }
        self.descriptor = descriptor
    }

    deinit {
        close(descriptor)
    }
}

extension POSIXError {
    init(_ code: Int32) {
        self.init(POSIXErrorCode(rawValue: code) ?? .EIO)
    }
}

/// Opens `folder` for one run: takes its lock and, unless resuming, refuses to write over an earlier
/// run there (a `last.h5` or `metrics.csv` in the folder or in one of `phases`, its phase
/// sub-folders), or with `options.overwrite` removes that run's files first.
///
/// In a data-parallel run (`options.communicator`) only process 0, the writer, does so, while the
/// others wait for it, so that none reads the folder before it is ready; they hold no lock.
/// - Parameter lockingPhases: also take each of the phase sub-folders' own locks.
/// - Returns: the locks, held for as long as the value lives.
public func openRunFolder(_ folder: String, options: RunOptions, phases: [String] = [],
                          lockingPhases: Bool = false) throws -> [RunFolderLock] {
    guard !(options.resume && options.overwrite) else { throw RunFolderError.resumeAndOverwrite }
    guard let communicator = options.communicator, communicator.size > 1 else {
        return try openRunFolderAlone(folder, options: options, phases: phases, lockingPhases: lockingPhases)
    }
    // Process 0 throwing ends the launch (see `Communicator.abort`), so the others never pass the barrier without it.
    let locks = communicator.rank == 0
        ? try openRunFolderAlone(folder, options: options, phases: phases, lockingPhases: lockingPhases) : []
    communicator.barrier()
    return locks
}

private func openRunFolderAlone(_ folder: String, options: RunOptions, phases: [String],
                                lockingPhases: Bool) throws -> [RunFolderLock] {
    let lock = try [RunFolderLock(folder)] + (lockingPhases ? phases.map { try RunFolderLock(folder + "/" + $0) } : [])
    guard !options.resume else { return lock }
    let fileManager = FileManager.default
    let folders = [folder] + phases.map { folder + "/" + $0 }
    let evidence = folders.lazy.flatMap { [$0 + "/last.h5", $0 + "/metrics.csv"] }.first(where: fileManager.fileExists)
    guard let evidence else { return lock }
    guard options.overwrite else { throw RunFolderError.existingRun(folder: folder, file: evidence) }
    for folder in folders {
        for name in (try? fileManager.contentsOfDirectory(atPath: folder)) ?? [] where isRunFile(name) {
            try fileManager.removeItem(atPath: folder + "/" + name)
        }
    }
    return lock
}

/// The files a run writes into its folder (and their temporary twins), which `--overwrite` removes;
/// anything else in the folder is left alone.
private func isRunFile(_ name: String) -> Bool {
    let base = name.hasSuffix(".tmp") ? String(name.dropLast(4)) : name
    if ["last.h5", "best.h5", "metrics.csv", "metrics.jsonl", "steps.jsonl"].contains(base) { return true }
    if base.hasPrefix("events.out.tfevents.") { return true }
    return base.hasPrefix("epoch-") && base.hasSuffix(".h5") && base.dropFirst(6).dropLast(3).allSatisfy(\.isNumber)
}

/// Whether `name` can be a folder name under the output root: letters, digits, '-', '_' and '.',
/// not starting with '.' (so never '..'), at most `RecipeLimits.nameLength` characters.
public func isSafeRunName(_ name: String) -> Bool {
    let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_."))
    return !name.isEmpty && name.count <= RecipeLimits.nameLength && !name.hasPrefix(".")
        && name.unicodeScalars.allSatisfy(allowed.contains)
}
