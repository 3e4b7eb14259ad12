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

nonisolated(unsafe) private var threadCount = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))

/// How many threads the runtime's own kernels split work across (default: the online CPUs). OpenBLAS
/// has its own count (`setBLASThreads`).
public var kernelThreads: Int { threadCount }

/// Sets how many threads the runtime's own kernels use from now on.
/// - Precondition: not called while a kernel runs.
public func setKernelThreads(_ count: Int) {
    threadCount = max(1, count)
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
