import CHDF5
import EpicycleRuntime
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

extension Checkpoint {
    /// Writes the checkpoint to `path` atomically: everything goes to `<path>.tmp` in the same folder,
    /// which is flushed, fsynced and then renamed over `path`. A failure at any point removes the
    /// temporary file and leaves the previous file at `path` untouched; a crash leaves at most a stale
    /// `.tmp` beside it, which the next save overwrites.
    ///
    /// Names are checked as they are written: an empty name, one containing "/", a duplicate in its
    /// group, or metrics rows of the wrong length throw `CheckpointError.invalidRecord`.
    public func write(to path: String) throws {
        let temporaryPath = path + ".tmp"
        do {
            try withHDF5 {
                do {
                    try writeContents(to: temporaryPath, reportingAs: path)
                } catch let failure as HDF5Failure {
                    throw CheckpointError.writeFailed(file: path, action: failure.action, detail: failure.detail)
                }
            }
            try replaceFile(at: path, with: temporaryPath)
        } catch {
            unlink(temporaryPath)
            throw error
        }
    }

    private func writeContents(to temporaryPath: String, reportingAs path: String) throws {
        let action = "creating the temporary file '\(temporaryPath)'"
        // The HDF5 1.10 format exactly (readable by HDF5 ≥ 1.10, 2016, so by every h5py wheel):
        // checksummed metadata, and a chunk index without B-tree overhead for single-chunk datasets.
        let access = try HDF5Handle(H5Pcreate(epicycle_H5P_FILE_ACCESS()), closer: H5Pclose, action: action)
        try check(H5Pset_libver_bounds(access.id, H5F_LIBVER_V110, H5F_LIBVER_V110), action)
        let creation = try HDF5Handle(H5Pcreate(epicycle_H5P_FILE_CREATE()), closer: H5Pclose, action: action)
        try check(H5Pset_link_creation_order(creation.id, UInt32(H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED)), action)
        let file = try HDF5Handle(H5Fcreate(temporaryPath, epicycle_H5F_ACC_TRUNC(), creation.id, access.id),
                                  closer: H5Fclose, action: action)
        do {
            let root = HDF5Location(handle: try HDF5Handle(H5Gopen2(file.id, "/", hid_t(H5P_DEFAULT)), closer: H5Gclose,
                                                        action: action), path: "/")
            try RecordWriter(file: path).write(self, into: root)
        }
        // Flush explicitly: closing only flushes once the last open object of the file is gone.
        try check(H5Fflush(file.id, H5F_SCOPE_GLOBAL), "flushing the temporary file '\(temporaryPath)'")
        try file.close(action: "closing the temporary file '\(temporaryPath)'")
    }

    /// Makes the finished temporary file durable, then renames it over `path`.
    private func replaceFile(at path: String, with temporaryPath: String) throws {
        func failure(_ action: String) -> CheckpointError {
            .writeFailed(file: path, action: action, detail: String(cString: strerror(errno)))
        }
        let descriptor = open(temporaryPath, O_RDONLY)
        guard descriptor >= 0 else { throw failure("reopening '\(temporaryPath)' to sync it") }
        let synced = fsync(descriptor) == 0
        close(descriptor)
        guard synced else { throw failure("syncing '\(temporaryPath)' to disk") }
        guard rename(temporaryPath, path) == 0 else { throw failure("renaming '\(temporaryPath)' to '\(path)'") }
        // Syncing the folder makes the rename itself survive a power cut. It is best effort: the new
        // file is already in place, so a failure here must not be reported as a failed save.
        let folder = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let folderDescriptor = open(folder.isEmpty ? "/" : folder, O_RDONLY | O_DIRECTORY)
        if folderDescriptor >= 0 {
            _ = fsync(folderDescriptor)
            close(folderDescriptor)
        }
    }
}

/// Writes the sections of a checkpoint into an open file; `file` is the name used in errors.
private struct RecordWriter {
    let file: String

    func write(_ checkpoint: Checkpoint, into root: HDF5Location) throws {
        try root.writeAttribute("format", string: Checkpoint.formatName)
        try root.writeAttribute("format_version", int64: Int64(Checkpoint.formatVersion))
        try root.writeAttribute("created", string: checkpoint.created)
        try root.writeAttribute("software_version", string: checkpoint.softwareVersion)

        let model = try root.createGroup("model")
        try model.writeAttribute("architecture", string: checkpoint.architecture)
        try model.writeAttribute("num_classes", int64: Int64(checkpoint.numClasses))
        try write(checkpoint.model, into: model)
        if let input = checkpoint.input {
            if let problem = input.problem(numClasses: checkpoint.numClasses) {
                throw CheckpointError.invalidRecord(file: file, reason: "the input pipeline (/data) \(problem)")
            }
            try write(input, into: try root.createGroup("data"))
        }

        if let optimizer = checkpoint.optimizer {
            try write(optimizer, into: try root.createGroup("optimizer"))
        }
        if let training = checkpoint.training {
            try write(training, into: try root.createGroup("training"))
        }
        if let adapters = checkpoint.adapters {
            try write(adapters, into: try root.createGroup("adapters"))
        }
    }

    private func write(_ state: StateRecord, into group: HDF5Location) throws {
        try writeTensors(state.parameters, into: try group.createGroup("parameters"))
        let buffers = try group.createGroup("buffers")
        var names = Set<String>()
        for (name, value) in state.buffers {
            try checkName(name, in: buffers, unique: &names)
            switch value {
            case let .float32(tensor):
                try writeTensor(tensor, named: name, into: buffers)
            case var .int64(count):
                try buffers.writeDataset(name, shape: [], fileType: epicycle_H5T_STD_I64LE(),
                                         memoryType: epicycle_H5T_NATIVE_INT64(), data: &count)
            }
        }
    }

    private func write(_ input: InputPipeline, into group: HDF5Location) throws {
        try group.writeAttribute("dataset", string: input.dataset)
        try group.writeAttribute("height", int64: Int64(input.height))
        try group.writeAttribute("width", int64: Int64(input.width))
        try group.writeAttribute("channels", int64: Int64(input.channels))
        try group.writeAttribute("class_names", strings: input.classNames)
        for (name, values) in [("mean", input.mean), ("std", input.standardDeviation)] {
            _ = try values.withUnsafeBytes {
                try group.writeDataset(name, shape: [values.count], fileType: epicycle_H5T_IEEE_F32LE(),
                                       memoryType: epicycle_H5T_NATIVE_FLOAT(), data: $0.baseAddress)
            }
        }
        let classes = input.classes.map(Int64.init)  // [K]
        _ = try classes.withUnsafeBytes {
            try group.writeDataset("classes", shape: [classes.count], fileType: epicycle_H5T_STD_I64LE(),
                                   memoryType: epicycle_H5T_NATIVE_INT64(), data: $0.baseAddress)
        }
    }

    private func write(_ optimizer: OptimizerRecord, into group: HDF5Location) throws {
        try group.writeAttribute("kind", string: optimizer.kind)
        for (name, value) in optimizer.hyperparameters.sorted(by: { $0.key < $1.key }) {
            try checkAttributeName(name, of: group)
            try group.writeAttribute(name, double: value)
        }
        for (name, value) in optimizer.counters.sorted(by: { $0.key < $1.key }) {
            try checkAttributeName(name, of: group)
            guard optimizer.hyperparameters[name] == nil else {
                throw CheckpointError.invalidRecord(file: file, reason: "optimizer '\(name)' is both a hyper-parameter and a counter")
            }
            try group.writeAttribute(name, int64: value)
        }
        try writeTensors(optimizer.tensors, into: try group.createGroup("state"))
    }

    private func write(_ training: TrainingRecord, into group: HDF5Location) throws {
        try group.writeAttribute("program", string: training.program.rawValue)
        try group.writeAttribute("epoch", int64: Int64(training.epoch))
        try group.writeAttribute("step", int64: Int64(training.step))
        try group.writeAttribute("cycle_position", double: training.cyclePosition)
        try group.writeAttribute("seed", uint64: training.seed)
        try group.writeAttribute("recipe", string: training.recipe)
        if let bestTop1 = training.bestTop1 {
            try group.writeAttribute("best_top1", double: bestTop1)
        }
        _ = try training.rngState.withUnsafeBytes {
            try group.writeDataset("rng_state", shape: [training.rngState.count], fileType: epicycle_H5T_STD_U64LE(),
                                   memoryType: epicycle_H5T_NATIVE_UINT64(), data: $0.baseAddress)
        }

        let metrics = training.metrics
        if let ragged = metrics.rows.firstIndex(where: { $0.count != metrics.columns.count }) {
            throw CheckpointError.invalidRecord(file: file, reason: "metrics row \(ragged) has \(metrics.rows[ragged].count) "
                                                + "values for \(metrics.columns.count) columns")
        }
        if let (object, reason) = training.problem() {
            throw CheckpointError.invalidRecord(file: file, reason: "\(object) \(reason)")
        }
        let values = metrics.rows.flatMap { $0 }  // [rows, columns]
        let table = try values.withUnsafeBytes {
            try group.writeDataset("metrics", shape: [metrics.rows.count, metrics.columns.count],
                                   fileType: epicycle_H5T_IEEE_F64LE(), memoryType: epicycle_H5T_NATIVE_DOUBLE(),
                                   data: $0.baseAddress)
        }
        try table.writeAttribute("columns", strings: metrics.columns)
    }

    private func writeTensors(_ tensors: [(name: String, tensor: Tensor)], into group: HDF5Location) throws {
        var names = Set<String>()
        for (name, tensor) in tensors {
            try checkName(name, in: group, unique: &names)
            try writeTensor(tensor, named: name, into: group)
        }
    }

    private func writeTensor(_ tensor: Tensor, named name: String, into group: HDF5Location) throws {
        _ = try tensor.scalars.withUnsafeBytes {
            try group.writeDataset(name, shape: tensor.shape, fileType: epicycle_H5T_IEEE_F32LE(),
                                   memoryType: epicycle_H5T_NATIVE_FLOAT(), data: $0.baseAddress)
        }
    }

    /// HDF5 link names cannot be empty, contain "/" or be "."; dots elsewhere are fine and kept, so
    /// `f["model/parameters"]` lists state_dict keys directly.
    private func checkName(_ name: String, in group: HDF5Location, unique names: inout Set<String>) throws {
        guard !name.isEmpty, name != ".", !name.contains("/") else {
            throw CheckpointError.invalidRecord(file: file, reason: "tensor name '\(name)' in \(group.path) is empty, "
                                                + "'.' or contains '/'")
        }
        guard names.insert(name).inserted else {
            throw CheckpointError.invalidRecord(file: file, reason: "tensor name '\(name)' appears twice in \(group.path)")
        }
    }

    private func checkAttributeName(_ name: String, of group: HDF5Location) throws {
        guard !name.isEmpty, name != "kind" else {
            throw CheckpointError.invalidRecord(file: file, reason: "'\(name)' cannot name a value in \(group.path)")
        }
    }
}
