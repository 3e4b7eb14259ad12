import CHDF5
import EpicycleRuntime
#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

extension Checkpoint {
    /// Writes the checkpoint to `path` atomically: the file is built in memory, written to
    /// `<path>.tmp` in the same folder, fsynced and then renamed over `path`. A failure at any point
    /// (a full disk, a file-size limit) removes the temporary file and leaves the previous file at
    /// `path` untouched; a crash leaves at most a stale `.tmp` beside it, which the next save overwrites.
    ///
    /// Names are checked as they are written: an empty name, one containing "/", a duplicate in its
    /// group, or metrics rows of the wrong length throw `CheckpointError.invalidRecord`.
    public func write(to path: String) throws {
        let temporaryPath = path + ".tmp"
        do {
            let image = try withHDF5 {
                do {
                    return try fileImage(named: temporaryPath, reportingAs: path)
                } catch let failure as HDF5Failure {
                    throw CheckpointError.writeFailed(file: path, action: failure.action, detail: failure.detail)
                }
            }
            try replaceFile(at: path, with: temporaryPath, contents: image)
        } catch {
            unlink(temporaryPath)
            throw error
        }
    }

    /// The bytes of the checkpoint file, built by HDF5 in memory (the core driver without a backing
    /// store). HDF5 itself never writes to disk: when one of its writes failed (a full disk), the
    /// failed `H5Fclose` left the file's identifier registered over a half-destroyed file, and HDF5's
    /// own cleanup at exit (`H5close` from `atexit`, `H5F__close_cb`) then crashed with SIGSEGV.
    private func fileImage(named temporaryPath: String, reportingAs path: String) throws -> [UInt8] {
        let action = "creating the checkpoint in memory"
        // The HDF5 1.10 format exactly (readable by HDF5 ≥ 1.10, 2016, so by every h5py wheel):
        // checksummed metadata, and a chunk index without B-tree overhead for single-chunk datasets.
        let access = try HDF5Handle(H5Pcreate(epicycle_H5P_FILE_ACCESS()), closer: H5Pclose, action: action)
        try check(H5Pset_libver_bounds(access.id, H5F_LIBVER_V110, H5F_LIBVER_V110), action)
        try check(H5Pset_fapl_core(access.id, 1 << 20, false), action)
        let creation = try HDF5Handle(H5Pcreate(epicycle_H5P_FILE_CREATE()), closer: H5Pclose, action: action)
        try check(H5Pset_link_creation_order(creation.id, UInt32(H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED)), action)
        let file = try HDF5Handle(H5Fcreate(temporaryPath, epicycle_H5F_ACC_TRUNC(), creation.id, access.id),
                                  closer: H5Fclose, action: action)
        do {
            let root = HDF5Location(handle: try HDF5Handle(H5Gopen2(file.id, "/", hid_t(H5P_DEFAULT)), closer: H5Gclose,
                                                        action: action), path: "/")
            try RecordWriter(file: path).write(self, into: root)
        }
        // Flush explicitly: the image holds only what has been flushed.
        try check(H5Fflush(file.id, H5F_SCOPE_GLOBAL), "flushing the checkpoint in memory")
        let size = H5Fget_file_image(file.id, nil, 0)
        guard size > 0 else { throw HDF5Failure("taking the checkpoint's bytes from memory") }
        var image = [UInt8](repeating: 0, count: size)
        guard H5Fget_file_image(file.id, &image, size) == size else { throw HDF5Failure("taking the checkpoint's bytes from memory") }
        try file.close(action: "closing the checkpoint in memory")
        try resealSuperblock(&image)
        return image
    }

    /// HDF5 1.10 clears the "file open" flags of the superblock in the image it hands out without
    /// recomputing the superblock's checksum, so the file would not open again. The superblock of the
    /// 1.10 format (version 3) is the signature, four bytes of versions, sizes and flags, four 8-byte
    /// addresses, then the Jenkins lookup3 checksum of those 44 bytes, computed here by HDF5's own
    /// function. Recomputing is harmless where HDF5 got it right.
    private func resealSuperblock(_ image: inout [UInt8]) throws {
        let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]
        guard image.count > 48, Array(image[0..<8]) == signature, image[8] == 3, image[9] == 8 else {
            throw HDF5Failure("taking the checkpoint's bytes from memory: not the expected superblock")
        }
        let checksum = image.withUnsafeBytes { H5_checksum_metadata($0.baseAddress, 44, 0) }.littleEndian
        withUnsafeBytes(of: checksum) { image.replaceSubrange(44..<48, with: $0) }
    }

    /// Writes `contents` to `temporaryPath`, makes it durable, then renames it over `path`.
    private func replaceFile(at path: String, with temporaryPath: String, contents: [UInt8]) throws {
        func failure(_ action: String) -> CheckpointError {
            .writeFailed(file: path, action: action, detail: String(cString: strerror(errno)))
        }
        let descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw failure("creating the temporary file '\(temporaryPath)'") }
        var written = 0
        while written < contents.count {
            let count = contents.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + written, $0.count - written) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else {
                let error = failure("writing the temporary file '\(temporaryPath)'")
                close(descriptor)
                throw error
            }
            written += count
        }
        guard fsync(descriptor) == 0 else {
            let error = failure("syncing '\(temporaryPath)' to disk")
            close(descriptor)
            throw error
        }
        // Some file systems (NFS) report a failed write only when the file is closed.
        guard close(descriptor) == 0 else { throw failure("closing '\(temporaryPath)'") }
        FaultInjection.reached(.tmp)
        guard rename(temporaryPath, path) == 0 else { throw failure("renaming '\(temporaryPath)' to '\(path)'") }
        FaultInjection.reached(.rename)
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
        if !checkpoint.averages.isEmpty {
            let averaging = try root.createGroup("averaging")
            var names = Set<String>()
            for average in checkpoint.averages {
                try checkName(average.name, in: averaging, unique: &names)
                guard average.updates >= 0 else {
                    throw CheckpointError.invalidRecord(file: file, reason: "the average '\(average.name)' has \(average.updates) updates")
                }
                let group = try averaging.createGroup(average.name)
                try group.writeAttribute("updates", int64: Int64(average.updates))
                try write(average.model, into: group)
            }
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
        if let test = training.test {
            try group.writeAttribute("test_images", int64: Int64(test.last.images))
            try group.writeAttribute("test_best_epoch", int64: Int64(test.bestEpoch))
            let optional = TestScores.optionalScoreNames.compactMap { name, score in test[keyPath: score].map { ("test_" + name, $0) } }
            if let snapshots = test.snapshots { try group.writeAttribute("test_snapshots", int64: Int64(snapshots)) }
            for (prefix, score) in [("test", test.last), ("test_best", test.best)] + optional {
                try group.writeAttribute(prefix + "_loss", double: score.loss)
                try group.writeAttribute(prefix + "_top1", double: score.top1)
                try group.writeAttribute(prefix + "_top5", double: score.top5)
            }
        }
        if let progress = training.epochProgress {
            try group.writeAttribute("epoch_images", int64: Int64(progress.images))
            try group.writeAttribute("epoch_loss_sum", double: progress.lossSum)
            try group.writeAttribute("epoch_top1_correct", int64: Int64(progress.top1Correct))
            try group.writeAttribute("epoch_top5_correct", int64: Int64(progress.top5Correct))
            try group.writeAttribute("epoch_dropped", int64: Int64(progress.droppedSamples))
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
