import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

// Which kernels run a convolution that both the direct kernels (Conv2DDirectKernels.swift) and the
// Winograd kernels (Conv2DWinogradKernels.swift) can take: ungrouped 3×3 stride-1 with 16·n channels.
//
// `auto` (the default) measures, the first time a process meets a geometry at a thread count, the
// direct and the Winograd kernels on scratch buffers of that geometry — forward, and for the backward
// the fused direct sweep against Winograd for either or both gradients — and keeps the faster for the
// rest of the process. Winograd must win by `winogradMargin`, so that a close call does not flip
// between runs. The choice is made once per process and geometry, so one process's steps all use the
// same kernels; two processes can in principle choose differently and then differ in the last bits
// (the algorithms round differently), which is why `EPICYCLE_CONV_ALGORITHM=direct` (or
// `setConv2DAlgorithm(.direct)`, or a workspace's `algorithm`) forces the direct kernels for bit-exact comparisons across
// processes, and layers below `autoMinimumMultiplyAdds` — where either takes well under a tenth of a
// millisecond and a timing is noise — always stay direct.

/// The convolution algorithm for layers both kinds of kernels can take.
public enum Conv2DAlgorithm: String, CaseIterable, Sendable {
    /// Always the direct kernels.
    case direct
    /// Always Winograd F(2×2, 3×3) where it applies.
    case winograd
    /// Per geometry, whichever measured faster in this process (see above).
    case auto
}

// Read once from EPICYCLE_CONV_ALGORITHM; an unknown value is reported on stderr and `auto` used.
nonisolated(unsafe) private var algorithmSetting: Conv2DAlgorithm = {
    guard let raw = getenv("EPICYCLE_CONV_ALGORITHM") else { return .auto }
    let value = String(cString: raw)
    if let algorithm = Conv2DAlgorithm(rawValue: value) { return algorithm }
    let message = "epicycle: EPICYCLE_CONV_ALGORITHM=\(value) is not one of direct, winograd, auto; using auto\n"
    _ = message.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    return .auto
}()

/// The algorithm in force: EPICYCLE_CONV_ALGORITHM (direct, winograd or auto) unless set since.
public var conv2DAlgorithm: Conv2DAlgorithm { algorithmSetting }

/// Sets the algorithm from now on. - Precondition: not called while a kernel runs.
public func setConv2DAlgorithm(_ algorithm: Conv2DAlgorithm) {
    algorithmSetting = algorithm
}

/// What `auto` chose for one geometry at one thread count, and the timings (milliseconds, the
/// fastest of `autoRepetitions` after a warm-up: interference only ever adds time) it chose by.
public struct Conv2DAlgorithmDecision: Sendable {
    public var geometry: Conv2DGeometry
    public var threads: Int
    public var forwardWinograd: Bool
    public var backwardInputWinograd: Bool
    public var backwardWeightWinograd: Bool
    public var forward: (direct: Double, winograd: Double)
    /// The fused direct sweep over both gradients.
    public var backwardDirect: Double
    public var backwardInput: (direct: Double, winograd: Double)
    public var backwardWeight: (direct: Double, winograd: Double)
}

// Winograd is taken where it is at least this much faster.
private let winogradMargin = 1.1
private let autoRepetitions = 3
private let autoMinimumMultiplyAdds = 1 << 24

private let decisions = Mutex<[[Int]: Conv2DAlgorithmDecision]>([:])

/// The choices `auto` has made in this process, by geometry.
public func conv2DAlgorithmDecisions() -> [Conv2DAlgorithmDecision] {
    decisions.withLock { Array($0.values) }.sorted { $0.geometry.multiplyAdds > $1.geometry.multiplyAdds }
}

// The pass of a convolution a dispatch is for.
enum Conv2DPass { case forward, backwardInput, backwardWeight }

extension Conv2DGeometry {
    var multiplyAdds: Int { batch * outputHeight * outputWidth * outputChannels * inputChannels / groups * kernelHeight * kernelWidth }

    // Whether `pass` of this convolution, run with `workspace`, takes the Winograd kernels.
    func usesWinograd(_ pass: Conv2DPass, _ workspace: Conv2DWorkspace) -> Bool {
        guard supportsWinograd else { return false }
        switch workspace.algorithm ?? conv2DAlgorithm {
        case .direct: return false
        case .winograd: return true
        case .auto:
            guard multiplyAdds >= autoMinimumMultiplyAdds else { return false }
            let decision = autoDecision(self, threads: kernelThreads)
            switch pass {
            case .forward: return decision.forwardWinograd
            case .backwardInput: return decision.backwardInputWinograd
            case .backwardWeight: return decision.backwardWeightWinograd
            }
        }
    }
}

private func autoDecision(_ geometry: Conv2DGeometry, threads: Int) -> Conv2DAlgorithmDecision {
    let key = [geometry.batch, geometry.inputHeight, geometry.inputWidth, geometry.inputChannels, geometry.outputChannels,
               geometry.paddingHeight, geometry.paddingWidth, threads]
    return decisions.withLock { known in
        if let decision = known[key] { return decision }
        let decision = measureAlgorithms(geometry, threads: threads)
        known[key] = decision
        return decision
    }
}

// Times both kinds of kernels on scratch buffers of the geometry's sizes.
private func measureAlgorithms(_ geometry: Conv2DGeometry, threads: Int) -> Conv2DAlgorithmDecision {
    func buffer(_ count: Int) -> UnsafeMutablePointer<Float> {
        let pointer = UnsafeMutablePointer<Float>.allocate(capacity: count)
        // Values in [−0.5, 0.5), so that no denormals or infinities slow either side.
        for i in 0..<count { pointer[i] = Float((i &* 2_654_435_761) % 1024) / 1024 - 0.5 }
        return pointer
    }
    let (inputCount, outputCount) = (geometry.inputShape.reduce(1, *), geometry.outputShape.reduce(1, *))
    let weightCount = geometry.weightShape.reduce(1, *), K = geometry.outputChannels
    let (input, output, dOutput, dInput) = (buffer(inputCount), buffer(outputCount), buffer(outputCount), buffer(inputCount))
    let (weight, dWeight, bias, dBias) = (buffer(weightCount), buffer(weightCount), buffer(K), buffer(K))
    defer { [input, output, dOutput, dInput, weight, dWeight, bias, dBias].forEach { $0.deallocate() } }
    let workspace = Conv2DWorkspace()

    func time(_ body: () -> Void) -> Double {
        body()
        var fastest = Double.infinity
        for _ in 0..<autoRepetitions {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            fastest = min(fastest, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
        }
        return fastest
    }
    let forward = (
        direct: time { conv2DForwardDirect(geometry, input: input, weight: weight, bias: bias, output: output,
                                           workspace: workspace, threads: threads) },
        winograd: time { conv2DForwardWinograd(geometry, input: input, weight: weight, bias: bias, output: output,
                                               workspace: workspace, threads: threads) })
    let backwardDirect = time {
        conv2DBackwardDirect(geometry, input: input, dOutput: dOutput, weight: weight, dInput: dInput, dWeight: dWeight,
                             dBias: dBias, workspace: workspace, threads: threads)
    }
    let backwardInput = (
        direct: time { conv2DBackwardInputDirect(geometry, dOutput: dOutput, weight: weight, dInput: dInput,
                                                 workspace: workspace, threads: threads) },
        winograd: time { conv2DBackwardInputWinograd(geometry, dOutput: dOutput, weight: weight, dInput: dInput,
                                                     workspace: workspace, threads: threads) })
    let backwardWeight = (
        direct: time { conv2DBackwardWeightDirect(geometry, input: input, dOutput: dOutput, dWeight: dWeight, dBias: dBias,
                                                  workspace: workspace, threads: threads) },
        winograd: time { conv2DBackwardWeightWinograd(geometry, input: input, dOutput: dOutput, dWeight: dWeight,
                                                      dBias: dBias, workspace: workspace, threads: threads) })
    // The backward runs Winograd for one or both gradients only if that beats the fused direct sweep.
    let combinations = [
        (input: true, weight: false, time: backwardInput.winograd + backwardWeight.direct),
        (input: false, weight: true, time: backwardInput.direct + backwardWeight.winograd),
        (input: true, weight: true, time: backwardInput.winograd + backwardWeight.winograd),
    ]
    let best = combinations.min { $0.time < $1.time }!
    let backwardWinograd = best.time * winogradMargin <= backwardDirect
    return Conv2DAlgorithmDecision(
        geometry: geometry, threads: threads, forwardWinograd: forward.winograd * winogradMargin <= forward.direct,
        backwardInputWinograd: backwardWinograd && best.input, backwardWeightWinograd: backwardWinograd && best.weight,
        forward: forward, backwardDirect: backwardDirect, backwardInput: backwardInput, backwardWeight: backwardWeight)
}
