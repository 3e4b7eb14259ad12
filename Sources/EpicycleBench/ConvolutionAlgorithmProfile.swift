import Dispatch
import EpicycleRuntime

// Times the direct and the Winograd kernels on each 3×3 stride-1 geometry of the ResNet-20 training
// step (batch 128, 32×32 inputs): the figures `auto`'s rule is read off, and the choice `measure` makes.
func profileConvolutionAlgorithms(threads: Int, repeats: Int) -> String {
    setThreads(threads)
    var rows = [["layer (ResNet-20, batch 128)", "pass", "direct ms", "Winograd ms", "Winograd speed-up", "measure takes"]]
    for (size, channels) in [(32, 16), (16, 32), (8, 64)] {
        let g = Conv2DGeometry(batch: 128, inputHeight: size, inputWidth: size, inputChannels: channels,
                               outputChannels: channels, kernelHeight: 3, kernelWidth: 3, paddingHeight: 1, paddingWidth: 1)
        var generator = RandomGenerator(seed: UInt64(channels))
        func buffer(_ shape: [Int]) -> UnsafeMutablePointer<Float> {
            let count = shape.reduce(1, *), pointer = UnsafeMutablePointer<Float>.allocate(capacity: count)
            for i in 0..<count { pointer[i] = generator.nextNormal() }
            return pointer
        }
        let (x, w, dY) = (buffer(g.inputShape), buffer(g.weightShape), buffer(g.outputShape))
        let (y, dX, dW) = (buffer(g.outputShape), buffer(g.inputShape), buffer(g.weightShape))
        defer { [x, w, dY, y, dX, dW].forEach { $0.deallocate() } }
        let workspace = Conv2DWorkspace()
        func time(_ body: () -> Void) -> Double {
            body()
            return median((0..<repeats).map { _ in
                let start = DispatchTime.now().uptimeNanoseconds
                body()
                return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
            })
        }
        // Each pass through its own kernels; the choice `measure` makes, through the dispatcher.
        let passes: [(String, () -> Void, () -> Void)] = [
            ("forward",
             { conv2DForwardDirect(g, input: x, weight: w, bias: nil, output: y, workspace: workspace, threads: threads) },
             { conv2DForwardWinograd(g, input: x, weight: w, bias: nil, output: y, workspace: workspace, threads: threads) }),
            ("input gradient",
             { conv2DBackwardInputDirect(g, dOutput: dY, weight: w, dInput: dX, workspace: workspace, threads: threads) },
             { conv2DBackwardInputWinograd(g, dOutput: dY, weight: w, dInput: dX, workspace: workspace, threads: threads) }),
            ("weight gradient",
             { conv2DBackwardWeightDirect(g, input: x, dOutput: dY, dWeight: dW, dBias: nil, workspace: workspace, threads: threads) },
             { conv2DBackwardWeightWinograd(g, input: x, dOutput: dY, dWeight: dW, dBias: nil, workspace: workspace, threads: threads) }),
            ("both gradients (direct: one sweep)",
             { conv2DBackwardDirect(g, input: x, dOutput: dY, weight: w, dInput: dX, dWeight: dW, dBias: nil,
                                    workspace: workspace, threads: threads) },
             { conv2DBackwardWeightWinograd(g, input: x, dOutput: dY, dWeight: dW, dBias: nil, workspace: workspace, threads: threads)
               conv2DBackwardInputWinograd(g, dOutput: dY, weight: w, dInput: dX, workspace: workspace, threads: threads) }),
        ]
        let choice = Conv2DWorkspace()
        choice.algorithm = .measure
        conv2DForward(g, input: x, weight: w, bias: nil, output: y, workspace: choice)
        let decision = conv2DAlgorithmDecisions().first { $0.geometry == g }
        let taken = [decision?.forwardWinograd, decision?.backwardInputWinograd, decision?.backwardWeightWinograd,
                     decision.map { $0.backwardInputWinograd || $0.backwardWeightWinograd }]
        for ((pass, direct, winograd), winogradTaken) in zip(passes, taken) {
            let (directTime, winogradTime) = (time(direct), time(winograd))
            rows.append(["conv 3×3 \(channels)→\(channels) @\(size)²", pass, String(format: "%.2f", directTime),
                         String(format: "%.2f", winogradTime), String(format: "%.2f×", directTime / winogradTime),
                         winogradTaken.map { $0 ? "Winograd" : "direct" } ?? "—"])
        }
    }
    return "Convolution algorithms, \(threads) threads, medians of \(repeats) (measure: Winograd where ≥ 1.1× faster"
        + " in its own timing):\n" + formatTable(rows)
}
