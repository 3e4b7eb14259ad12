import EpicycleData
import EpicycleMPI
import EpicycleRuntime
import EpicycleTraining
import Foundation

// `mpirun -np 2 epicycle bench-mpi`: what data-parallel training costs in communication.
// 1. An all-reduce sweep over message sizes (fp32 sums, as the gradient all-reduce does). With the
//    ring model below at P = 2, an all-reduce of n bytes takes 2α + n·β: α is half the time of the
//    smallest message, β the slope between the two largest.
// 2. The data-parallel training step of ResNet-20 and ResNet-56 at 128 images per process through the
//    product's `DataParallel` (sharding, synchronised batch norm, one fused gradient all-reduce), split
//    into communication (wall time inside all-reduces, waiting for the slower process included) and
//    compute (the rest); and the same step alone on process 0 with all of its machine's cores: the
//    compute of one machine of a cluster.
// 3. The α–β estimate of that step on P machines, one process each: the ring all-reduce of the n
//    gradient bytes costs 2(P − 1)·α + 2(P − 1)/P·n·β (Thakur, Rabenseifner & Gropp 2005,
//    "Optimization of Collective Communication Operations in MPICH"), and every batch norm adds two
//    small all-reduces (forward and backward) by recursive doubling, ⌈log₂ P⌉·α each. Communication
//    does not overlap compute (the gradient all-reduce follows the backward pass), so they add.

/// The median time of one all-reduce size.
public struct AllreduceTiming: Sendable {
    public var bytes: Int
    public var seconds: Double
}

/// One model's data-parallel step on the launch, and alone.
public struct StepSplit: Sendable {
    public var architecture: String
    public var parameters: Int
    public var batchNorms: Int
    /// Median seconds per step on the launch, and of it inside all-reduces.
    public var stepSeconds: Double
    public var communicationSeconds: Double
    /// Median seconds per step of process 0 alone, same images per process, with `aloneThreads` threads.
    public var aloneSeconds: Double
    public var aloneThreads: Int

    public var computeSeconds: Double { stepSeconds - communicationSeconds }
}

/// A network's latency α and inverse bandwidth β.
public struct LinkModel: Sendable {
    public var name: String
    public var latency: Double
    public var secondsPerByte: Double

    /// Communication seconds of one step on `machines` processes (see the file's comment).
    public func communicationSeconds(parameters: Int, batchNorms: Int, machines: Int) -> Double {
        let p = Double(machines)
        let gradient = 2 * (p - 1) * latency + 2 * (p - 1) / p * Double(4 * parameters) * secondsPerByte
        return gradient + Double(2 * batchNorms) * log2(p).rounded(.up) * latency
    }
}

/// The figures of `epicycle bench-mpi`.
public struct CommunicationReport: Sendable {
    public var processes: Int
    public var threadsPerProcess: Int
    public var imagesPerProcess: Int
    public var sweep: [AllreduceTiming]
    public var steps: [StepSplit]
    /// α and β fitted to the sweep.
    public var measured: LinkModel
    /// Networks a cluster might have, with typical figures (assumed, not measured here).
    public static let assumedNetworks = [
        LinkModel(name: "10 GbE TCP (assumed α = 25 µs, 1.1 GB/s)", latency: 25e-6, secondsPerByte: 1 / 1.1e9),
        LinkModel(name: "1 GbE TCP (assumed α = 50 µs, 0.11 GB/s)", latency: 50e-6, secondsPerByte: 1 / 0.11e9),
    ]
    public static let machineCounts = [8, 32]

    public var text: String {
        var lines = ["all-reduce (fp32 sum) over \(processes) processes on this machine:",
                     "       bytes     µs/op   bus GB/s"]
        for timing in sweep {
            let bus = 2 * Double(processes - 1) / Double(processes) * Double(timing.bytes) / timing.seconds / 1e9
            lines.append(String(format: "%12d  %8.1f  %9.3f", timing.bytes, timing.seconds * 1e6, bus))
        }
        lines.append(String(format: "α = %.1f µs, β = %.3f ns/byte (%.2f GB/s)", measured.latency * 1e6,
                            measured.secondsPerByte * 1e9, 1 / measured.secondsPerByte / 1e9))
        lines += ["", "data-parallel step, \(imagesPerProcess) images per process, \(processes) processes × \(threadsPerProcess) thread(s):",
                  "model      parameters  BN  step ms  compute ms  communication ms       alone ms (threads)"]
        for step in steps {
            lines.append(padded(step.architecture, 9) + String(format: "  %10d  %2d  %7.1f  %10.1f  %8.1f (%4.1f %%)  %8.1f (%d)", step.parameters,
                                step.batchNorms, step.stepSeconds * 1e3, step.computeSeconds * 1e3, step.communicationSeconds * 1e3,
                                100 * step.communicationSeconds / step.stepSeconds, step.aloneSeconds * 1e3, step.aloneThreads))
        }
        lines += ["", "estimate on P machines, one process each at \(imagesPerProcess) images, compute = the alone step:",
                  "network                                     model      P  communication ms  step ms  efficiency  images/s"]
        for network in [measured] + Self.assumedNetworks {
            for step in steps {
                for machines in Self.machineCounts {
                    let communication = network.communicationSeconds(parameters: step.parameters, batchNorms: step.batchNorms, machines: machines)
                    let total = step.aloneSeconds + communication
                    lines.append(padded(network.name, 42) + "  " + padded(step.architecture, 9) + String(format: " %2d  %16.2f  %7.1f  %9.1f %%  %8.0f", machines,
                                        communication * 1e3, total * 1e3, 100 * step.aloneSeconds / total,
                                        Double(machines * imagesPerProcess) / total))
                }
            }
        }
        return lines.joined(separator: "\n")
    }
}

private let releaseTag: Int32 = 73

/// Runs the benchmark on every process of `communicator` (at least two).
/// - Returns: the report on process 0, nil on the others.
public func runCommunicationBenchmark(communicator: Communicator, repeats: Int = 5, steps: Int = 3,
                                      imagesPerProcess: Int = 128) throws -> CommunicationReport? {
    let threads = kernelThreads
    let sweep = (0...11).map { power in
        let count = 1 << (2 * power)
        return AllreduceTiming(bytes: 4 * count, seconds: timeAllreduce(count: count, communicator: communicator, repeats: repeats))
    }
    let (small, large) = (sweep[0], sweep[sweep.count - 1])
    let previous = sweep[sweep.count - 2]
    let measured = LinkModel(name: "this machine (measured)", latency: small.seconds / 2,
                             secondsPerByte: (large.seconds - previous.seconds) / Double(large.bytes - previous.bytes))
    var splits: [StepSplit] = []
    for architecture in ["resnet20", "resnet56"] {
        let model = try cifarModel(architecture)
        let (step, communication) = try timeDataParallelStep(model, communicator: communicator, imagesPerProcess: imagesPerProcess,
                                                             repeats: repeats, steps: steps)
        // Process 0 alone with every core while the others nap (not spin) waiting for it.
        var alone = 0.0
        if communicator.rank == 0 {
            setThreads(onlineProcessorCount)
            let batch = syntheticBatch(imagesPerProcess), optimizer = benchSGD(model.state.parameters)
            alone = try medianSeconds(repeats: repeats, steps: steps) { try trainingStep(model, optimizer, batch) }
            setThreads(threads)
            for other in 1..<communicator.size { communicator.send([1], to: other, tag: releaseTag) }
        } else {
            _ = communicator.receive(count: 1, tag: releaseTag, from: 0)
        }
        splits.append(StepSplit(architecture: architecture, parameters: model.parameterCount, batchNorms: model.batchNorms.count,
                                stepSeconds: step, communicationSeconds: communication, aloneSeconds: alone,
                                aloneThreads: onlineProcessorCount))
    }
    guard communicator.rank == 0 else { return nil }
    return CommunicationReport(processes: communicator.size, threadsPerProcess: threads, imagesPerProcess: imagesPerProcess,
                               sweep: sweep, steps: splits, measured: measured)
}

/// Median seconds of one all-reduce of `count` floats, each timing a loop of all-reduces long enough
/// to read a clock over.
private func timeAllreduce(count: Int, communicator: Communicator, repeats: Int) -> Double {
    var buffer = [Float](repeating: 0, count: count)
    let iterations = max(2, min(1000, (1 << 22) / count))
    var timings: [Double] = []
    buffer.withUnsafeMutableBufferPointer { buffer in
        for _ in 0..<2 { communicator.sum(buffer) }
        for _ in 0..<repeats {
            communicator.barrier()
            let began = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<iterations { communicator.sum(buffer) }
            timings.append(Double(DispatchTime.now().uptimeNanoseconds - began) * 1e-9 / Double(iterations))
        }
    }
    return median(timings)
}

/// Median seconds per data-parallel step of `model`, and of it inside all-reduces.
private func timeDataParallelStep(_ model: Model, communicator: Communicator, imagesPerProcess: Int, repeats: Int,
                                  steps: Int) throws -> (step: Double, communication: Double) {
    let dataParallel = DataParallel(communicator)
    for norm in model.batchNorms { norm.statisticsReducer = dataParallel }
    defer { for norm in model.batchNorms { norm.statisticsReducer = nil } }
    let batch = dataParallel.shard(syntheticBatch(imagesPerProcess * communicator.size))
    let optimizer = benchSGD(model.state.parameters), parameters = model.state.parameters.map(\.parameter)
    var communication: [Double] = []
    let step = try medianSeconds(repeats: repeats, steps: steps, before: { communicator.barrier() }) {
        let before = dataParallel.communicationSeconds
        try trainingStep(model, optimizer, batch) { loss in
            _ = dataParallel.reduceStep(parameters, loss: loss, logitsFinite: true, interrupted: false)
        }
        communication.append(dataParallel.communicationSeconds - before)
    }
    return (step, median(Array(communication.suffix(repeats * steps))))
}

/// Median over `repeats` timings of `steps` calls of `body` (per call), after two untimed calls.
private func medianSeconds(repeats: Int, steps: Int, before: () -> Void = {}, _ body: () throws -> Void) throws -> Double {
    for _ in 0..<2 { try body() }
    var timings: [Double] = []
    for _ in 0..<repeats {
        before()
        let began = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<steps { try body() }
        timings.append(Double(DispatchTime.now().uptimeNanoseconds - began) * 1e-9 / Double(steps))
    }
    return median(timings)
}

private func padded(_ text: String, _ width: Int) -> String {
    text.padding(toLength: max(width, text.count), withPad: " ", startingAt: 0)
}
