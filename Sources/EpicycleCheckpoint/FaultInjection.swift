import Foundation
import Synchronization

/// A test hook that stops the process at an exact moment of a run, so tests can check what a kill or
/// a Ctrl-C at that moment leaves behind.
///
/// `EPICYCLE_FAULT_KILL_AT=<event>:<n>` raises SIGKILL, and `EPICYCLE_FAULT_INTERRUPT_AT=<event>:<n>`
/// raises SIGINT (a Ctrl-C), right after the n-th (from 1) event of that kind in the process:
/// - `step`: an optimizer step finished;
/// - `tmp`: a checkpoint's temporary file is complete and synced, not yet renamed over the file;
/// - `rename`: a checkpoint file was renamed into place;
/// - `metrics`: a record was appended to `metrics.csv` or to `metrics.jsonl` (each counts).
///
/// `EPICYCLE_FAULT_PERTURB_AT=step:<n>` raises no signal: `reached` returns true once, at the n-th
/// step, and the training loop then nudges one parameter of this process by one ulp, so a test can
/// check that processes of a data-parallel run whose parameters part are stopped (its checksum).
///
/// The hook announces itself on standard error before it strikes. The variables are read once. When neither is set, a hook costs one load and one comparison.
public enum FaultInjection {
    public enum Event: String, CaseIterable, Sendable {
        case step, tmp, rename, metrics
    }

    private struct Plan: Sendable {
        var signal: Int32?  // nil: a perturbation
        var event: Event
        var count: Int
    }

    private static let plan: Plan? = {
        let environment = ProcessInfo.processInfo.environment
        let plans: [(String, Int32?)] = [("EPICYCLE_FAULT_KILL_AT", SIGKILL), ("EPICYCLE_FAULT_INTERRUPT_AT", SIGINT),
                                         ("EPICYCLE_FAULT_PERTURB_AT", nil)]
        for (variable, signal) in plans {
            guard let value = environment[variable] else { continue }
            let parts = value.split(separator: ":", omittingEmptySubsequences: false)
            if parts.count == 2, let event = Event(rawValue: String(parts[0])), let count = Int(parts[1]), count >= 1 {
                return Plan(signal: signal, event: event, count: count)
            }
            let events = Event.allCases.map(\.rawValue).joined(separator: "|")
            FileHandle.standardError.write(Data("\(variable): expected <\(events)>:<n ≥ 1>, got '\(value)'; ignored\n".utf8))
        }
        return nil
    }()

    private static let seen = Atomic<Int>(0)

    /// Marks that `event` just happened; raises the planned signal when it is the planned one.
    /// - Returns: whether the planned perturbation is due now.
    @discardableResult
    public static func reached(_ event: Event) -> Bool {
        guard let plan, plan.event == event else { return false }
        guard seen.add(1, ordering: .relaxed).newValue == plan.count else { return false }
        // Announced, so a test can tell a fault that struck from a run that had fewer events.
        guard let signal = plan.signal else {
            FileHandle.standardError.write(Data("fault injection: perturbing a parameter after \(event.rawValue) \(plan.count)\n".utf8))
            return true
        }
        FileHandle.standardError.write(Data("fault injection: signal \(signal) after \(event.rawValue) \(plan.count)\n".utf8))
        raise(signal)
        return false
    }
}
