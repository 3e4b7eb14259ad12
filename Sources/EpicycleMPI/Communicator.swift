import CMPI
import Foundation

/// The processes of one MPI launch (`mpirun -np N …`, `srun …`) and the collective operations
/// Epicycle uses over them: a thin layer over Open MPI, which does the communication.
///
/// MPI is initialised only when the process was started by a launcher (`Communicator.world`); a
/// plain `epicycle …` never touches MPI. Errors keep MPI's default handler, `MPI_ERRORS_ARE_FATAL`:
/// a failed call, or a peer process that died, ends every process of the launch (the launcher kills
/// the others), so no call here returns an error code. Calls come from one thread at a time (the
/// training thread), as `MPI_THREAD_SERIALIZED` allows.
public final class Communicator: @unchecked Sendable {
    /// This process's index, 0 ..< size.
    public let rank: Int
    /// How many processes the launch has.
    public let size: Int
    /// How many of them run on this machine (Open MPI's `OMPI_COMM_WORLD_LOCAL_SIZE`; `size` when unknown).
    public let localSize: Int
    private let handle: MPI_Comm

    private init() {
        var provided: Int32 = 0
        MPI_Init_thread(nil, nil, Int32(MPI_THREAD_SERIALIZED), &provided)
        handle = epicycle_mpi_comm_world()
        var rank: Int32 = 0, size: Int32 = 0
        MPI_Comm_rank(handle, &rank)
        MPI_Comm_size(handle, &size)
        self.rank = Int(rank)
        self.size = Int(size)
        let environment = ProcessInfo.processInfo.environment
        localSize = (environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? environment["SLURM_NTASKS_PER_NODE"]).flatMap { Int($0) } ?? Int(size)
        // A process that returns from main without MPI_Finalize makes the launcher report a failure.
        atexit { Communicator.finalize() }
    }

    private init(handle: MPI_Comm, localSize: Int) {
        self.handle = handle
        var rank: Int32 = 0, size: Int32 = 0
        MPI_Comm_rank(handle, &rank)
        MPI_Comm_size(handle, &size)
        self.rank = Int(rank)
        self.size = Int(size)
        self.localSize = localSize
    }

    /// Whether a launcher started this process: Open MPI's `mpirun` sets `OMPI_COMM_WORLD_SIZE`, a
    /// PMIx launcher such as `srun --mpi=pmix` sets `PMIX_RANK`.
    public static var isLaunched: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["PMIX_RANK"] != nil
    }

    /// The launch's processes, MPI initialised on first use; nil when no launcher started this process.
    public static let world: Communicator? = isLaunched ? Communicator() : nil

    /// The variables a launcher sets, which a child process started by a rank must not inherit (it would
    /// take itself for a rank of the launch).
    public static func environmentWithoutLauncher(_ environment: [String: String]) -> [String: String] {
        environment.filter { key, _ in !["OMPI_", "PMIX_", "PMI_", "OPAL_", "ORTE_"].contains { key.hasPrefix($0) } }
    }

    private static func finalize() {
        var finalized: Int32 = 0
        MPI_Finalized(&finalized)
        if finalized == 0 { MPI_Finalize() }
    }

    /// The processes that pass the same `color`, ranked by `key` (ties by rank here): every process
    /// calls it (`MPI_Comm_split`), each gets its own part. Its `localSize` is this one's, the processes
    /// on this machine that share its cores. A part lives until MPI is finalized.
    public func split(color: Int, key: Int) -> Communicator {
        var part: MPI_Comm?
        MPI_Comm_split(handle, Int32(color), Int32(key), &part)
        return Communicator(handle: part!, localSize: localSize)
    }

    /// Replaces every element of `values` by its sum over all processes.
    public func sum(_ values: UnsafeMutableBufferPointer<Float>) {
        guard size > 1, !values.isEmpty else { return }
        MPI_Allreduce(epicycle_mpi_in_place(), values.baseAddress, Int32(values.count), epicycle_mpi_float(), epicycle_mpi_sum(), handle)
    }

    /// Replaces every element of `values` by its sum over all processes.
    public func sum(_ values: UnsafeMutableBufferPointer<Double>) {
        guard size > 1, !values.isEmpty else { return }
        MPI_Allreduce(epicycle_mpi_in_place(), values.baseAddress, Int32(values.count), epicycle_mpi_double(), epicycle_mpi_sum(), handle)
    }

    /// The sum of `values` over all processes.
    public func sum(_ values: [Double]) -> [Double] {
        var result = values
        result.withUnsafeMutableBufferPointer { sum($0) }
        return result
    }

    /// Every process's `values` (their counts may differ), process 0's first.
    public func gather(_ values: [Double]) -> [Double] {
        guard size > 1 else { return values }
        var count = Int32(values.count)
        var counts = [Int32](repeating: 0, count: size)
        MPI_Allgather(&count, 1, epicycle_mpi_int32(), &counts, 1, epicycle_mpi_int32(), handle)
        var offsets = [Int32](repeating: 0, count: size)
        for rank in 1..<size { offsets[rank] = offsets[rank - 1] + counts[rank - 1] }
        var all = [Double](repeating: 0, count: Int(offsets[size - 1] + counts[size - 1]))
        var values = values
        MPI_Allgatherv(&values, count, epicycle_mpi_double(), &all, &counts, &offsets, epicycle_mpi_double(), handle)
        return all
    }

    /// The smallest and the largest of every process's `value`.
    public func range(_ value: UInt64) -> (minimum: UInt64, maximum: UInt64) {
        guard size > 1 else { return (value, value) }
        var minimum = value, maximum = value
        MPI_Allreduce(epicycle_mpi_in_place(), &minimum, 1, epicycle_mpi_uint64(), epicycle_mpi_min(), handle)
        MPI_Allreduce(epicycle_mpi_in_place(), &maximum, 1, epicycle_mpi_uint64(), epicycle_mpi_max(), handle)
        return (minimum, maximum)
    }

    /// `bytes` of process `root`, on every process.
    public func broadcast(_ bytes: [UInt8], from root: Int = 0) -> [UInt8] {
        guard size > 1 else { return bytes }
        var count = UInt64(bytes.count)
        MPI_Bcast(&count, 1, epicycle_mpi_uint64(), Int32(root), handle)
        var result = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count))
        if count > 0 { MPI_Bcast(&result, Int32(count), epicycle_mpi_byte(), Int32(root), handle) }
        return result
    }

    /// `value` of process `root`, on every process.
    public func broadcast(_ value: Int64, from root: Int = 0) -> Int64 {
        guard size > 1 else { return value }
        var value = value
        MPI_Bcast(&value, 1, epicycle_mpi_int64(), Int32(root), handle)
        return value
    }

    /// Returns once every process has called it.
    public func barrier() {
        guard size > 1 else { return }
        MPI_Barrier(handle)
    }

    /// Ends every process of the launch with `code` (the launcher kills the others).
    public func abort(code: Int32) -> Never {
        MPI_Abort(handle, code)
        exit(code)
    }

    /// Sends `values` to process `destination` under `tag`.
    public func send(_ values: [Int64], to destination: Int, tag: Int32) {
        var values = values
        MPI_Send(&values, Int32(values.count), epicycle_mpi_int64(), Int32(destination), tag, handle)
    }

    /// Receives `count` values sent under `tag` from process `source` (any process when nil), waiting
    /// in naps of `poll` seconds rather than spinning, so a waiting process leaves its core to the others.
    /// - Returns: the values and the process that sent them.
    public func receive(count: Int, tag: Int32, from source: Int? = nil, poll: Double = 0.02) -> (values: [Int64], source: Int) {
        // MPI writes the message after MPI_Irecv returns: the buffer must outlive that call.
        let buffer = UnsafeMutablePointer<Int64>.allocate(capacity: max(1, count))
        defer { buffer.deallocate() }
        var request: MPI_Request?
        MPI_Irecv(buffer, Int32(count), epicycle_mpi_int64(), source.map(Int32.init) ?? epicycle_mpi_any_source(), tag, handle, &request)
        var done: Int32 = 0
        var status = MPI_Status()
        while true {
            MPI_Test(&request, &done, &status)
            if done != 0 { break }
            usleep(UInt32(poll * 1e6))
        }
        return (Array(UnsafeBufferPointer(start: buffer, count: count)), Int(status.MPI_SOURCE))
    }
}
