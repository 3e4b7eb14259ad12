import Dispatch
import Foundation
import Synchronization

/// Turns the first Ctrl-C during training into a request to stop after the current step; a second
/// Ctrl-C ends the process at once, as users expect.
final class InterruptFlag: @unchecked Sendable {
    static let shared = InterruptFlag()

    private let requested = Atomic<Bool>(false)
    // Touched only by arm/disarm, which the training loop calls from one thread.
    private var source: (any DispatchSourceSignal)?

    var isSet: Bool { requested.load(ordering: .relaxed) }

    func arm() {
        requested.store(false, ordering: .relaxed)
        signal(SIGINT, SIG_IGN)
        let signalSource = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        signalSource.setEventHandler { [self] in
            if requested.exchange(true, ordering: .relaxed) { exit(130) }
            FileHandle.standardError.write(Data("\ninterrupt: finishing the step and saving (Ctrl-C again to quit now)\n".utf8))
        }
        signalSource.resume()
        source = signalSource
    }

    func disarm() {
        source?.cancel()
        source = nil
        signal(SIGINT, SIG_DFL)
    }
}
