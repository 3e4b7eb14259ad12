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
// `auto` is the default. Its Winograd layers change the last bits of a network's numbers, which can
// move a training step by more than rounding where a value sits at a ReLU's kink: in a wide ResNet
// with dropout, a one-step gradient moves by 6.7e-3 relative whether the Winograd kernels replace the
// direct ones or the direct kernels get images one ulp apart (measured on wrn-10-2, dropout 0.3, batch
// 96). Tests that compare two summation orders through such a step (MPITests) pin `direct`; the
// Winograd kernels themselves give every image the same bits however a batch is split over threads
// or ranks (Conv2DWinogradTests.imagesGetTheSameBitsHoweverABatchIsSplit).
//
// `auto` is a fixed rule per geometry, read off measurements of both kernels on
// ResNet-20's layers (`epicycle bench --profile`, batch 128, 2 threads, AVX-512; README
// "Performance"): Winograd's transforms cost ∝ C + K per tile while its products save ∝ C·K, so it
// wins from 32 channels on. A rule rather than a timing keeps the project's promise that the same
// recipe and seed give the same numbers: a run resumed in a new process, or a second run, must make
// the same choice, and a timing made under other load need not (measured: two processes disagreed and
// a resumed run's checkpoint differed in the last bits: InterruptionTests, when `auto` timed).
//
// `measure` times instead, the first time a process meets a geometry: the direct and the Winograd
// kernels on scratch buffers of that geometry at the thread count then in force — forward, and for
// the backward the fused direct sweep against Winograd for either or both gradients — and keeps the
// faster for the rest of the process (at any thread count, so that results do not depend on it).
// Winograd must win by `winogradMargin`. It suits another machine's first look, not reproducible runs.
// Under both, layers below `minimumMultiplyAddsPerImage` stay direct: small layers gain little, and
// keeping them direct keeps small models' numbers as they were. The rule counts per image, not per
// batch, so that ranks that split a batch (MPI) choose as one process on the whole batch does.

/// The convolution algorithm for layers both kinds of kernels can take.
public enum Conv2DAlgorithm: String, CaseIterable, Sendable {
    /// Always the direct kernels.
    case direct
    /// Always Winograd F(2×2, 3×3) where it applies.
    case winograd
    /// Per geometry, the rule measured on ResNet-20's layers: Winograd's forward and input gradient
    /// where both channel counts are at least 32, direct otherwise (see above). The default.
    case auto
    /// Per geometry, whichever kernels time faster the first time this process meets it (see above):
    /// not reproducible across processes.
    case measure
}

// Read once from EPICYCLE_CONV_ALGORITHM (unset: auto); an unknown value is reported on stderr and
// `auto` used.
nonisolated(unsafe) private var algorithmSetting: Conv2DAlgorithm = {
    guard let raw = getenv("EPICYCLE_CONV_ALGORITHM") else { return .auto }
    let value = String(cString: raw)
    if let algorithm = Conv2DAlgorithm(rawValue: value) { return algorithm }
    let message = "epicycle: EPICYCLE_CONV_ALGORITHM=\(value) is not one of direct, winograd, auto, measure; using auto\n"
    _ = message.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    return .auto
}()

/// The algorithm in force: EPICYCLE_CONV_ALGORITHM (direct, winograd, auto or measure) unless set since.
public var conv2DAlgorithm: Conv2DAlgorithm { algorithmSetting }

/// Sets the algorithm from now on. - Precondition: not called while a kernel runs.
public func setConv2DAlgorithm(_ algorithm: Conv2DAlgorithm) {
    algorithmSetting = algorithm
}

/// What `measure` chose for one geometry, the thread count it measured at, and the timings (milliseconds,
/// the fastest of 5 after a warm-up: interference only ever adds time) it chose by.
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
private let measureRepetitions = 5
private let minimumMultiplyAddsPerImage = 1 << 20

private let decisions = Mutex<[[Int]: Conv2DAlgorithmDecision]>([:])

/// The choices `measure` has made in this process, the largest geometries first.
public func conv2DAlgorithmDecisions() -> [Conv2DAlgorithmDecision] {
    decisions.withLock { Array($0.values) }.sorted { $0.geometry.multiplyAddsPerImage * $0.geometry.batch > $1.geometry.multiplyAddsPerImage * $1.geometry.batch }
}

// The pass of a convolution a dispatch is for.
enum Conv2DPass { case forward, backwardInput, backwardWeight }

extension Conv2DGeometry {
    var multiplyAddsPerImage: Int { outputHeight * outputWidth * outputChannels * inputChannels / groups * kernelHeight * kernelWidth }

    // Whether `pass` of this convolution, run with `workspace`, takes the Winograd kernels.
    func usesWinograd(_ pass: Conv2DPass, _ workspace: Conv2DWorkspace) -> Bool {
        guard supportsWinograd else { return false }
        switch workspace.algorithm ?? conv2DAlgorithm {
        case .direct: return false
        case .winograd: return true
        case .auto:
            guard multiplyAddsPerImage >= minimumMultiplyAddsPerImage else { return false }
            switch pass {
            case .forward: return min(inputChannels, outputChannels) >= 32
            case .backwardInput: return min(inputChannels, outputChannels) >= 64
            case .backwardWeight: return false
            }
        case .measure:
            guard multiplyAddsPerImage >= minimumMultiplyAddsPerImage else { return false }
            let decision = measuredDecision(self, threads: kernelThreads)
            switch pass {
            case .forward: return decision.forwardWinograd
            case .backwardInput: return decision.backwardInputWinograd
            case .backwardWeight: return decision.backwardWeightWinograd
            }
        }
    }
}

// The decision for a geometry, measured at the thread count in force when the process first meets it
// and kept at every thread count after, so that results do not depend on the thread count (the
// kernels' own results do not, up to the core count).
private func measuredDecision(_ geometry: Conv2DGeometry, threads: Int) -> Conv2DAlgorithmDecision {
    let key = [geometry.batch, geometry.inputHeight, geometry.inputWidth, geometry.inputChannels, geometry.outputChannels,
               geometry.paddingHeight, geometry.paddingWidth]
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

    // The fastest of `measureRepetitions` runs of each body after one warm-up, the bodies taking turns so
    // that a burst of other load falls on all of them rather than on one.
    func fastest(_ bodies: [() -> Void]) -> [Double] {
        bodies.forEach { $0() }
        var times = [Double](repeating: .infinity, count: bodies.count)
        for _ in 0..<measureRepetitions {
            for (i, body) in bodies.enumerated() {
                let start = DispatchTime.now().uptimeNanoseconds
                body()
                times[i] = min(times[i], Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
            }
        }
        return times
    }
    let forwardTimes = fastest([
        { conv2DForwardDirect(geometry, input: input, weight: weight, bias: bias, output: output, workspace: workspace,
                              threads: threads) },
        { conv2DForwardWinograd(geometry, input: input, weight: weight, bias: bias, output: output, workspace: workspace,
                                threads: threads) },
    ])
    let backwardTimes = fastest([
        { conv2DBackwardDirect(geometry, input: input, dOutput: dOutput, weight: weight, dInput: dInput, dWeight: dWeight,
                               dBias: dBias, workspace: workspace, threads: threads) },
        { conv2DBackwardInputDirect(geometry, dOutput: dOutput, weight: weight, dInput: dInput, workspace: workspace,
                                    threads: threads) },
        { conv2DBackwardInputWinograd(geometry, dOutput: dOutput, weight: weight, dInput: dInput, workspace: workspace,
                                      threads: threads) },
        { conv2DBackwardWeightDirect(geometry, input: input, dOutput: dOutput, dWeight: dWeight, dBias: dBias,
                                     workspace: workspace, threads: threads) },
        { conv2DBackwardWeightWinograd(geometry, input: input, dOutput: dOutput, dWeight: dWeight, dBias: dBias,
                                       workspace: workspace, threads: threads) },
    ])
    let forward = (direct: forwardTimes[0], winograd: forwardTimes[1]), backwardDirect = backwardTimes[0]
    let backwardInput = (direct: backwardTimes[1], winograd: backwardTimes[2])
    let backwardWeight = (direct: backwardTimes[3], winograd: backwardTimes[4])
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
