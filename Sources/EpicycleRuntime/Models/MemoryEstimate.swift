import Foundation

/// What training a model takes in memory, worked out from its spec without building it: the layer
/// walk of `resNetSteps`, `wideResNetSteps`, `plainCNNSteps`, `vggSteps` and `mobileNetV2Steps`,
/// counting sizes instead of allocating.
public struct MemoryEstimate: Equatable, Sendable {
    /// Trainable parameters (the same count as `Model.parameterCount`).
    public var parameters: Int
    /// Floats one image keeps for the backward pass: every layer's output in training mode.
    public var activationsPerImage: Int
    /// The largest single layer output of one image, the size of the gradients in flight at the peak.
    public var largestActivationPerImage: Int
    /// The whole estimate in bytes for `batchSize` images (saturating at `Int.max`).
    public var bytes: Int
}

extension ModelSpec {
    /// Estimates a training step's memory: parameters with their gradients and `optimizerSlots` tensors
    /// of optimizer state each (1 for SGD's momentum, 2 for AdamW), the activations `batchSize` images
    /// keep for the backward pass, two gradients of the largest activation, and the batch itself.
    /// Sizes saturate instead of overflowing, so an absurd spec gives a huge figure, never a trap.
    public func memoryEstimate(height: Int, width: Int, batchSize: Int, optimizerSlots: Int = 1) throws -> MemoryEstimate {
        try validate()
        var walk = SizeWalk(height: height, width: width, channels: inputChannels)
        switch try family() {
        case let .resNet(depth, widthMultiplier):
            walk.convolution(to: max(16, 8 * widthMultiplier), kernelSize: 3, stride: 1)
            walk.batchNorm()
            walk.stages(widths: [16, 32, 64].map { product($0, widthMultiplier) }, blocksPerStage: (depth - 2) / 6) { walk, output, stride in
                let changes = stride != 1 || walk.channels != output
                let input = walk
                walk.convolution(to: output, kernelSize: 3, stride: stride)
                walk.batchNorm()
                walk.convolution(to: output, kernelSize: 3, stride: 1)
                walk.batchNorm()
                guard changes else { return }
                if shortcut == .a {
                    walk.keep(walk.elements)
                } else {
                    var projection = input
                    projection.convolution(to: output, kernelSize: 1, stride: stride)
                    projection.batchNorm()
                    walk.absorb(projection, from: input)
                }
            }
        case let .wideResNet(depth, widen):
            walk.convolution(to: 16, kernelSize: 3, stride: 1)
            walk.stages(widths: [16, 32, 64].map { product($0, widen) }, blocksPerStage: (depth - 4) / 6) { walk, output, stride in
                walk.batchNorm()
                let activated = walk
                walk.convolution(to: output, kernelSize: 3, stride: stride)
                walk.batchNorm()
                if dropout > 0 { walk.keep(walk.elements) }
                walk.convolution(to: output, kernelSize: 3, stride: 1)
                if stride != 1 || activated.channels != output {
                    var projection = activated
                    projection.convolution(to: output, kernelSize: 1, stride: stride)
                    walk.absorb(projection, from: activated)
                }
                walk.keep(walk.elements)
            }
            walk.batchNorm()
        case let .plainCNN(widthMultiplier):
            for (index, channels) in [32, 64, 128].map({ product($0, widthMultiplier) }).enumerated() {
                walk.convolution(to: channels, kernelSize: 3, stride: 1)
                walk.batchNorm()
                if index < 2 { walk.maxPool() }
            }
        case let .vgg(depth, width):
            for (index, widths) in vggStages[depth]!.enumerated() {
                for channels in widths {
                    walk.convolution(to: scaledChannels(channels, width), kernelSize: 3, stride: 1, bias: true)
                    walk.batchNorm()
                }
                if index < 3 { walk.maxPool() }
            }
        case let .mobileNetV2(width):
            walk.convolution(to: scaledChannels(32, width), kernelSize: 3, stride: 2)
            walk.batchNorm()
            for setting in mobileNetV2Stages {
                for index in 0..<setting.blocks {
                    // The residual add happens in the projection's batch-norm output: nothing more to keep.
                    let hidden = product(walk.channels, setting.expansion)
                    walk.convolution(to: hidden, kernelSize: 1, stride: 1)
                    walk.batchNorm()
                    walk.convolution(to: hidden, kernelSize: 3, stride: index == 0 ? setting.stride : 1, groups: hidden)
                    walk.batchNorm()
                    walk.convolution(to: scaledChannels(setting.channels, width), kernelSize: 1, stride: 1)
                    walk.batchNorm()
                }
            }
            walk.convolution(to: mobileNetV2LastChannels(width), kernelSize: 1, stride: 1)
            walk.batchNorm()
        }
        walk.keep(walk.channels)  // the pooled vector
        walk.parameters = sum(walk.parameters, product(walk.channels, numClasses), numClasses)
        walk.keep(numClasses)

        let floats = sum(product(walk.parameters, 2 + optimizerSlots),
                         product(batchSize, walk.activations),
                         product(batchSize, walk.largest, 2),
                         product(batchSize, height, width, inputChannels, 2))
        return MemoryEstimate(parameters: walk.parameters, activationsPerImage: walk.activations,
                              largestActivationPerImage: walk.largest, bytes: product(floats, MemoryLayout<Float>.size))
    }
}

/// Sizes through the network for one image: the current feature map, and what has been counted.
private struct SizeWalk {
    var height: Int
    var width: Int
    var channels: Int
    var parameters = 0
    var activations = 0
    var largest = 0

    var elements: Int { product(height, width, channels) }

    /// Keeps a layer output of `count` floats for the backward pass.
    mutating func keep(_ count: Int) {
        activations = sum(activations, count)
        largest = max(largest, count)
    }

    /// A convolution with "same" padding (3×3 pads 1, 1×1 pads 0), as the model zoo's; `groups` divide
    /// its weight (depthwise: groups = channels).
    mutating func convolution(to outputChannels: Int, kernelSize: Int, stride: Int, groups: Int = 1, bias: Bool = false) {
        parameters = sum(parameters, product(channels / groups, outputChannels, kernelSize, kernelSize), bias ? outputChannels : 0)
        height = (height - 1) / stride + 1
        width = (width - 1) / stride + 1
        channels = outputChannels
        keep(elements)
    }

    /// Batch norm's weight and bias, and its output.
    mutating func batchNorm() {
        parameters = sum(parameters, product(2, channels))
        keep(elements)
    }

    /// 2×2 max-pooling with stride 2.
    mutating func maxPool() {
        height /= 2
        width /= 2
        keep(elements)
    }

    /// Adds what a side branch (a shortcut) started from `start` counted on its own.
    mutating func absorb(_ branch: SizeWalk, from start: SizeWalk) {
        parameters = sum(parameters, branch.parameters - start.parameters)
        activations = sum(activations, branch.activations - start.activations)
        largest = max(largest, branch.largest)
    }

    /// The three residual stages (stride 1, 2, 2) of `residualStages`, `block` walking one block.
    mutating func stages(widths: [Int], blocksPerStage: Int,
                         block: (_ walk: inout SizeWalk, _ outputChannels: Int, _ stride: Int) -> Void) {
        for (planes, stride) in zip(widths, [1, 2, 2]) {
            for index in 0..<blocksPerStage { block(&self, planes, index == 0 ? stride : 1) }
        }
    }
}

private func product(_ values: Int...) -> Int {
    values.reduce(1) { total, value in
        let (result, overflow) = total.multipliedReportingOverflow(by: value)
        return overflow ? .max : result
    }
}

private func sum(_ values: Int...) -> Int {
    values.reduce(0) { total, value in
        let (result, overflow) = total.addingReportingOverflow(value)
        return overflow ? .max : result
    }
}

/// The memory of this machine: what `/proc/meminfo` reports as available (free plus reclaimable
/// caches) and in all; elsewhere both are the physical memory.
public struct MachineMemory: Sendable {
    public var availableBytes: Int
    public var totalBytes: Int

    public static var current: MachineMemory {
        let physical = Int(clamping: ProcessInfo.processInfo.physicalMemory)
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else {
            return MachineMemory(availableBytes: physical, totalBytes: physical)
        }
        func field(_ name: String) -> Int? {
            guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }),
                  let kibibytes = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return nil }
            return product(kibibytes, 1024)
        }
        let total = field("MemTotal") ?? physical
        return MachineMemory(availableBytes: field("MemAvailable") ?? total, totalBytes: total)
    }
}

/// Bytes for people, in binary units: "512 MiB", "24 GiB", "1.3 PiB".
public func formatBytes(_ bytes: Int) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    var value = Double(bytes), unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 || value >= 10 ? String(format: "%.0f %@", value, units[unit]) : String(format: "%.1f %@", value, units[unit])
}
