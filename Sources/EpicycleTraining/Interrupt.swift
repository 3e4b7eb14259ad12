import Dispatch
import Foundation
import Synchronization

/// Turns the first Ctrl-C during training into a request to stop after the current step; a second
/// Ctrl-C ends the process at once, as users expect.
final class InterruptFlag: Sendable {
    static let shared = InterruptFlag()

    private let requested = Atomic<Bool>(false)
    private let source = Mutex<(any DispatchSourceSignal)?>(nil)

    var isSet: Bool { requested.load(ordering: .relaxed) }

    func arm() {
        requested.store(false, ordering: .relaxed)
        signal(SIGINT, SIG_IGN)
        let signalSource = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        signalSource.setEventHandler { [requested] in
            if requested.exchange(true, ordering: .relaxed) { exit(130) }
            FileHandle.standardError.write(Data("\ninterrupt: finishing the step and saving (Ctrl-C again to quit now)\n".utf8))
        }
        signalSource.resume()
        source.withLock { $0 = signalSource }
    }

    func disarm() {
        source.withLock {
            $0?.cancel()
            $0 = nil
        }
        signal(SIGINT, SIG_DFL)
    }
}
