import EpicycleCheckpoint
import EpicycleData
import EpicycleMPI
import EpicycleRuntime
import Foundation

/// Data-parallel training over the processes of an MPI launch (`mpirun -np N epicycle pretrain …`).
///
/// Every process builds the same global batch (the loader's batches are pure functions of the seed,
/// epoch and index, and building one costs little next to the step) and trains on its own contiguous
/// block of rows of it. With n_r of the batch's B rows on process r and each objective's loss a mean
/// over its rows, the whole batch's loss is Σ_r (n_r/B)·L_r, so each process weighs its gradient by its
/// share w_r = n_r/B and one sum all-reduce over a single buffer (all gradients, model and adapters,
/// with the loss and two flags) gives every process the gradient one process would compute on the
/// whole batch, up to summation order. Batch norm is synchronised: the forward sums Σx, Σx² and the
/// row count, and the backward sums Σg, Σg·(x − μ) weighted by w_r, are all-reduced per layer, so every
/// process normalises with the whole batch's statistics (`BatchStatisticsReducer`). Data selection
/// ranks and normalises over every process's per-sample losses, all-gathered (`BatchRowGatherer`).
///
/// Every process then takes the same optimizer step; their parameters stay bit-identical, which
/// `checkAgreement` verifies after every step. Process 0 alone writes checkpoints, metrics, progress
/// and test scores.
public final class DataParallel: BatchStatisticsReducer, BatchRowGatherer {
    public let communicator: Communicator
    /// This process's share w_r = n_r/B of the rows of the batch being trained on.
    private var share = 1.0
    /// Wall time spent in all-reduces (waiting for the slowest process included), for `epicycle bench-mpi`.
    public private(set) var communicationSeconds = 0.0

    public init(_ communicator: Communicator) {
        self.communicator = communicator
    }

    var isWriter: Bool { communicator.rank == 0 }

    /// Runs `body` (a collective), adding its wall time to `communicationSeconds`.
    private func communicating<Result>(_ body: () -> Result) -> Result {
        let began = DispatchTime.now().uptimeNanoseconds
        defer { communicationSeconds += Double(DispatchTime.now().uptimeNanoseconds - began) * 1e-9 }
        return body()
    }

    /// The rows of a global batch of `count` rows that this process trains on.
    func rows(ofBatch count: Int) -> Range<Int> {
        let rank = communicator.rank, size = communicator.size
        return (count * rank / size)..<(count * (rank + 1) / size)
    }

    /// This process's block of `batch`, and its share of the batch set for the step's reductions.
    public func shard(_ batch: Batch) -> Batch {
        let rows = rows(ofBatch: batch.count)
        share = Double(rows.count) / Double(batch.count)
        let imageSize = batch.images.count / max(1, batch.count)
        var shape = batch.images.shape
        shape[0] = rows.count
        var shard = batch
        shard.images = Tensor(shape: shape, scalars: Array(batch.images.scalars[(rows.lowerBound * imageSize)..<(rows.upperBound * imageSize)]))
        shard.labels = Array(batch.labels[rows])
        shard.partnerLabels = batch.partnerLabels.map { Array($0[rows]) }
        shard.sampleIndices = Array(batch.sampleIndices[rows])
        shard.block = BatchBlock(rows: rows, wholeCount: batch.count)
        return shard
    }

    public func gatherRows(_ values: [Double]) -> (all: [Double], rows: Range<Int>) {
        let all = communicating { communicator.gather(values) }
        return (all, rows(ofBatch: all.count))
    }

    public func sum(_ values: [Double]) -> [Double] {
        communicating { communicator.sum(values) }
    }

    public func sumStatistics(_ sums: UnsafeMutableBufferPointer<Double>) {
        communicating { communicator.sum(sums) }
    }

    // Each process's g is the gradient of its own loss L_r, which is w_r times less than the whole
    // batch's loss's: weighted by w_r before the sum and unweighted after, the totals are the whole
    // batch's in this process's units, which is what its backward pass continues with.
    public func sumGradientStatistics(_ sums: UnsafeMutableBufferPointer<Double>) {
        for i in sums.indices { sums[i] *= share }
        communicating { communicator.sum(sums) }
        for i in sums.indices { sums[i] /= share }
    }

    /// What the processes agreed on after a step's all-reduce.
    public struct StepOutcome {
        /// The whole batch's loss, Σ_r w_r·L_r.
        public var loss: Float
        /// Every process's logits were finite.
        public var logitsFinite: Bool
        /// Some process was asked to stop (Ctrl-C).
        public var interrupted: Bool
    }

    /// Replaces every gradient of `parameters` by the whole batch's (Σ_r w_r·∇L_r), and agrees on the
    /// loss and on the flags, in one all-reduce.
    public func reduceStep(_ parameters: [Parameter], loss: Float, logitsFinite: Bool, interrupted: Bool) -> StepOutcome {
        let count = parameters.reduce(0) { $0 + $1.gradient.count }
        var buffer = [Float](repeating: 0, count: count + 3)
        let weight = Float(share)
        var offset = 0
        for parameter in parameters {
            parameter.gradient.scalars.withUnsafeBufferPointer { gradient in
                for i in gradient.indices { buffer[offset + i] = gradient[i] * weight }
            }
            offset += parameter.gradient.count
        }
        buffer[count] = loss * weight
        buffer[count + 1] = logitsFinite ? 0 : 1
        buffer[count + 2] = interrupted ? 1 : 0
        buffer.withUnsafeMutableBufferPointer { buffer in communicating { communicator.sum(buffer) } }
        offset = 0
        for parameter in parameters {
            parameter.gradient.scalars.withUnsafeMutableBufferPointer { gradient in
                for i in gradient.indices { gradient[i] = buffer[offset + i] }
            }
            offset += parameter.gradient.count
        }
        return StepOutcome(loss: buffer[count], logitsFinite: buffer[count + 1] == 0, interrupted: buffer[count + 2] > 0)
    }

    /// An epoch's sums over every process's rows.
    func reduce(_ progress: EpochProgress) -> EpochProgress {
        let sums = communicator.sum([Double(progress.images), progress.lossSum, Double(progress.top1Correct),
                                     Double(progress.top5Correct), Double(progress.droppedSamples)])
        return EpochProgress(images: Int(sums[0]), lossSum: sums[1], top1Correct: Int(sums[2]), top5Correct: Int(sums[3]),
                             droppedSamples: Int(sums[4]))
    }

    /// The part of a saved epoch's sums this process continues with: process 0 carries them, the others
    /// start from zero, so that `reduce` counts them once.
    func localShare(of progress: EpochProgress?) -> EpochProgress? {
        isWriter ? progress : nil
    }

    /// Throws unless every process holds bit-identical parameters and buffers in `states`; every
    /// process throws together, since all see the same checksums.
    func checkAgreement(_ states: [ModuleState], step: Int) throws {
        let (minimum, maximum) = communicator.range(checksum(states))
        guard minimum == maximum else {
            throw DataParallelError.parametersDiverged(step: step, ranks: communicator.size)
        }
    }

    /// Throws unless every process runs the same program on the same recipe text, which a launch
    /// with per-process arguments could break.
    func checkSameRun(program: String, recipeText: String) throws {
        var hash = FNV1a()
        hash.add(Array((program + "\u{0}" + recipeText).utf8))
        let (minimum, maximum) = communicator.range(hash.value)
        guard minimum == maximum else { throw DataParallelError.differentRecipes(ranks: communicator.size) }
    }

    /// Throws unless every batch of every epoch has at least one row per process.
    func checkBatchesCoverProcesses(samples: Int, batchSizes: [Int], path: String) throws {
        let size = communicator.size
        for (epoch, batchSize) in batchSizes.enumerated() {
            let last = samples % batchSize == 0 ? batchSize : samples % batchSize
            guard min(batchSize, last) >= size else {
                throw RecipeError(path: path, problem: "epoch \(epoch + 1) has a batch of \(min(batchSize, last)) images (batch size \(batchSize) over \(samples) images), fewer than the \(size) processes sharing it; use a batch size and image count whose every batch has at least \(size) images, or fewer processes")
            }
        }
    }
}

/// Why the processes of a data-parallel run stopped together.
enum DataParallelError: Error, CustomStringConvertible {
    case parametersDiverged(step: Int, ranks: Int)
    case differentRecipes(ranks: Int)

    var description: String {
        switch self {
        case let .parametersDiverged(step, ranks):
            return "the \(ranks) MPI processes hold different parameters after step \(step) (their checksums differ); stopped. "
                + "The processes must run the same build on the same kind of CPU with the same thread count; the last checkpoint is unchanged"
        case let .differentRecipes(ranks):
            return "the \(ranks) MPI processes were given different recipes or programs; launch every process with the same arguments"
        }
    }
}

/// A 64-bit FNV-1a hash, fed 32-bit words (parameters' bit patterns) or bytes.
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(_ word: UInt32) {
        value = (value ^ UInt64(word)) &* 0x0000_0100_0000_01b3
    }

    mutating func add(_ bytes: [UInt8]) {
        for byte in bytes { add(UInt32(byte)) }
    }
}

/// The bit patterns of every parameter and float buffer of `states`, hashed in order.
func checksum(_ states: [ModuleState]) -> UInt64 {
    var hash = FNV1a()
    func add(_ tensor: Tensor) {
        tensor.scalars.withUnsafeBufferPointer { for value in $0 { hash.add(value.bitPattern) } }
    }
    for state in states {
        for (_, parameter) in state.parameters { add(parameter.value) }
        for (_, buffer) in state.buffers {
            switch buffer.value {
            case let .float32(tensor): add(tensor)
            case let .int64(count): hash.add(UInt32(truncatingIfNeeded: count))
            }
        }
    }
    return hash.value
}
