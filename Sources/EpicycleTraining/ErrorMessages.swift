import EpicycleSchedules
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An error that can suggest what to do about it, shown on a second line (`hint: …`).
public protocol ErrorWithHint: Error {
    var hint: String? { get }
}

/// One line for any error, as the command line and `run.json` show it: the library's own messages as
/// they are, file-system errors as "cannot write Checkpoints/x/last.h5: permission denied" instead
/// of Foundation's NSCocoaErrorDomain dump.
public func errorMessage(_ error: any Error) -> String {
    if let cocoa = error as? CocoaError {
        let code = cocoa.code.rawValue
        let action = (256..<512).contains(code) ? "read" : (512..<768).contains(code) ? "write" : "access"
        let path = cocoa.filePath ?? cocoa.url?.path
        return (path.map { "cannot \(action) \($0)" } ?? "file system error") + ": " + fileSystemReason(error)
    }
    if let posix = error as? POSIXError { return fileSystemReason(posix) }
    let text = "\(error)"
    return text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init) ?? text
}

/// Why a file operation failed, in the words of the system's error text ("permission denied",
/// "read-only file system", "no such file or directory").
public func fileSystemReason(_ error: any Error) -> String {
    func systemText(_ code: Int32) -> String {
        let text = String(cString: strerror(code))
        return text.prefix(1).lowercased() + text.dropFirst()
    }
    if let posix = error as? POSIXError { return systemText(posix.code.rawValue) }
    if let cocoa = error as? CocoaError {
        if let posix = cocoa.underlying as? POSIXError { return systemText(posix.code.rawValue) }
        switch cocoa.code {
        case .fileNoSuchFile, .fileReadNoSuchFile: return systemText(ENOENT)
        case .fileReadNoPermission, .fileWriteNoPermission: return systemText(EACCES)
        case .fileWriteVolumeReadOnly: return systemText(EROFS)
        case .fileWriteOutOfSpace: return systemText(ENOSPC)
        case .fileWriteFileExists: return systemText(EEXIST)
        case .fileReadInapplicableStringEncoding, .fileReadCorruptFile: return "not readable as UTF-8 text"
        default: return "error \(cocoa.code.rawValue)"
        }
    }
    return shortenedForMessage(error.localizedDescription)
}
