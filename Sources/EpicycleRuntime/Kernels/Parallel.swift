import Dispatch
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

// Splitting work across threads. Kernels split a batch into one contiguous range of images per thread
// (each thread with its own scratch), which keeps every product single-threaded and cache-local; on
// ResNet-20's 16-channel layers that beats threading inside each product. Memory-bound passes split
// only above `parallelElementThreshold` elements, below which waking a second core costs more than
// it saves.

/// The online CPUs, read once when the runtime loads.
public let onlineProcessorCount = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))

nonisolated(unsafe) private var threadCount = onlineProcessorCount

/// How many threads the runtime's own kernels split work across (default: the online CPUs). OpenBLAS
/// has its own count (`setBLASThreads`); `setThreads` sets both.
public var kernelThreads: Int { threadCount }

/// Sets how many threads the runtime's own kernels use from now on.
/// - Precondition: not called while a kernel runs.
public func setKernelThreads(_ count: Int) {
    threadCount = max(1, count)
}

/// Sets every thread pool of the runtime, the kernels' and OpenBLAS's, to `count` threads.
/// - Precondition: not called while a kernel runs.
public func setThreads(_ count: Int) {
    setKernelThreads(count)
    setBLASThreads(count)
}

// Reductions over a batch (weight gradients, batch-norm sums) add one partial sum per part, in part
// order. The parts follow the core count, not the thread count, so the sums come out bit for bit the
// same with any number of threads up to the cores (a comparison's run with `--jobs 2` gets the numbers
// it gets alone); at the default thread count each thread has exactly one part, as before parts existed.
func reductionParts(_ items: Int, threads: Int) -> Int {
    max(1, min(max(onlineProcessorCount, threads), items))
}

// Runs body(thread, part) for every part in 0 ..< parts, each of min(threads, parts) threads taking a
// contiguous run of parts in order.
func parallelParts(_ parts: Int, threads: Int, _ body: (_ thread: Int, _ part: Int) -> Void) {
    let threads = max(1, min(threads, parts))
    parallelFor(threads) { t in
        for part in partition(parts, parts: threads, index: t) { body(t, part) }
    }
}

/// Elements below which memory-bound passes stay on one thread.
let parallelElementThreshold = 1 << 20

// A closure shared by the worker threads; it only touches disjoint memory per index.
private struct SharedBody: @unchecked Sendable {
    let body: (Int) -> Void
}

// Runs body(0 ..< count) concurrently, returning when all are done; inline when count is 1.
func parallelFor(_ count: Int, _ body: (Int) -> Void) {
    if count <= 1 {
        if count == 1 { body(0) }
        return
    }
    withoutActuallyEscaping(body) { body in
        let shared = SharedBody(body: body)
        DispatchQueue.concurrentPerform(iterations: count) { shared.body($0) }
    }
}

// The index range part `index` of `parts` gets when `total` items are split as evenly as possible.
func partition(_ total: Int, parts: Int, index: Int) -> Range<Int> {
    let base = total / parts, extra = total % parts
    let start = index * base + min(index, extra)
    return start..<(start + base + (index < extra ? 1 : 0))
}
