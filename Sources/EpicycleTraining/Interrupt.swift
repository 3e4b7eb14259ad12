import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// Turns the first Ctrl-C during training into a request to stop at the next safe point (after the
/// step in progress, or after an epoch's saves); a second Ctrl-C ends the process at once, as users
/// expect — like a kill, which the checkpoint order makes safe (see `CheckpointKeeper`).
///
/// A plain signal handler records the request before the interrupted code goes on, so a check right
/// after the signal sees it. It only touches atomics and calls `write` and `_exit`, which are safe in
/// a signal handler; `SA_RESTART` keeps the file writes in progress from failing with EINTR.
/// Arming nests: `cycle` arms around both phases, so a Ctrl-C between them is kept for its check
/// instead of being cleared when the fine-tune arms.
final class InterruptFlag: Sendable {
    static let shared = InterruptFlag()

    private let requested = Atomic<Bool>(false)
    // Changed only by arm/disarm, which the training loop calls from one thread.
    private let depth = Atomic<Int>(0)

    var isSet: Bool { requested.load(ordering: .relaxed) }

    func arm() {
        guard depth.add(1, ordering: .relaxed).oldValue == 0 else { return }
        requested.store(false, ordering: .relaxed)
        var action = sigaction()
        #if canImport(Glibc)
        action.__sigaction_handler.sa_handler = { _ in InterruptFlag.shared.received() }
        #else
        action.__sigaction_u.__sa_handler = { _ in InterruptFlag.shared.received() }
        #endif
        action.sa_flags = SA_RESTART
        sigemptyset(&action.sa_mask)
        sigaction(SIGINT, &action, nil)
        // A parent may start this process with SIGINT blocked (Foundation's `Process` does); unblocked
        // here, the training thread takes every Ctrl-C.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &signals, nil)
    }

    func disarm() {
        guard depth.subtract(1, ordering: .relaxed).newValue == 0 else { return }
        signal(SIGINT, SIG_DFL)
    }

    private func received() {
        if requested.exchange(true, ordering: .relaxed) { _exit(130) }
        let message: StaticString = "\ninterrupt: finishing the step and saving (Ctrl-C again to quit now)\n"
        _ = write(STDERR_FILENO, message.utf8Start, message.utf8CodeUnitCount)
    }
}
