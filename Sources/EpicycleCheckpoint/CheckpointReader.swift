import CHDF5
import EpicycleRuntime
import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension Checkpoint {
    /// Reads a checkpoint and checks it against the layout: the format name and version, every
    /// required group and attribute, and every element type. Damage (a truncated file, a failed
    /// checksum) and files that are not checkpoints at all are reported by name; the first problem
    /// found is thrown as a `CheckpointError`.
    ///
    /// Nothing in the file is trusted: every size is checked against the file's own size and every
    /// value against its range before it sizes a buffer or a loop, and only regular files are opened
    /// (a FIFO or a device would hang or never end).
    public static func read(from path: String) throws -> Checkpoint {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw errno == ENOENT ? CheckpointError.fileNotFound(file: path) : CheckpointError.notReadable(file: path)
        }
        guard status.st_mode & S_IFMT == S_IFREG, access(path, R_OK) == 0 else {
            throw CheckpointError.notReadable(file: path)
        }
        let fileSize = Int(status.st_size)
        return try withHDF5 {
            do {
                guard H5Fis_hdf5(path) > 0 else { throw CheckpointError.notHDF5(file: path) }
                // H5F_CLOSE_STRONG: closing the file closes every identifier still open in it, so none
                // outlives the read however it ends, not even one the library itself might leave behind
                // when a damaged file makes it fail half-way. So the file stays open until the read ends.
                let access = try HDF5Handle(H5Pcreate(epicycle_H5P_FILE_ACCESS()), closer: H5Pclose,
                                            action: "opening the file")
                try check(H5Pset_fclose_degree(access.id, H5F_CLOSE_STRONG), "opening the file")
                let file = try HDF5Handle(H5Fopen(path, epicycle_H5F_ACC_RDONLY(), access.id), closer: H5Fclose,
                                          action: "opening the file")
                return try withExtendedLifetime(file) {
                    let root = HDF5Location(handle: try HDF5Handle(H5Gopen2(file.id, "/", hid_t(H5P_DEFAULT)),
                                                                   closer: H5Gclose, action: "opening '/'"), path: "/")
                    var checkpoint = try RecordReader(file: path, fileSize: fileSize).readCheckpoint(root)
                    checkpoint.source = path
                    return checkpoint
                }
            } catch let failure as HDF5Failure {
                if failure.isTruncation { throw CheckpointError.truncated(file: path, detail: failure.detail) }
                throw CheckpointError.damaged(file: path, action: failure.action, detail: failure.detail)
            } catch let refusal as HDF5Refusal {
                throw CheckpointError.invalidValue(file: path, object: refusal.object, reason: refusal.reason)
            }
        }
    }
}

/// Reads and checks the sections of an open checkpoint; `file` is the name used in errors and
/// `fileSize` bounds every size read from it.
private struct RecordReader {
    let file: String
    let fileSize: Int

    func readCheckpoint(_ root: HDF5Location) throws -> Checkpoint {
        guard try root.hasAttribute("format") else { throw CheckpointError.wrongFormat(file: file, found: nil) }
        let format = try string("format", of: root)
        guard format == Checkpoint.formatName else { throw CheckpointError.wrongFormat(file: file, found: format) }
        let version = try integer("format_version", of: root, in: Int.min...Int.max)
        guard version == Checkpoint.formatVersion else {
            throw CheckpointError.unsupportedVersion(file: file, found: version, supported: Checkpoint.formatVersion)
        }
        let created = try string("created", of: root)
        let softwareVersion = try string("software_version", of: root)

        let model = try requiredGroup("model", in: root)
        var checkpoint = Checkpoint(
            architecture: try string("architecture", of: model, maximumBytes: CheckpointLimits.architectureBytes),
            numClasses: try integer("num_classes", of: model, in: 2...CheckpointLimits.classes),
            model: try readState(model),
            created: created, softwareVersion: softwareVersion)
        if let data = try root.openGroup("data") {
            checkpoint.input = try readInput(data, numClasses: checkpoint.numClasses)
        }
        if let optimizer = try root.openGroup("optimizer") {
            checkpoint.optimizer = try readOptimizer(optimizer)
        }
        if let training = try root.openGroup("training") {
            checkpoint.training = try readTraining(training)
        }
        if let adapters = try root.openGroup("adapters") {
            checkpoint.adapters = try readState(adapters)
        }
        if let averaging = try root.openGroup("averaging") {
            checkpoint.averages = try linkNames(of: averaging).map { name in
                let group = try requiredGroup(name, in: averaging)
                return AveragedWeights(name: name, updates: try integer("updates", of: group, in: 0...Int(Int32.max)),
                                       model: try readState(group))
            }
        }
        return checkpoint
    }

    private func readState(_ group: HDF5Location) throws -> StateRecord {
        let parameters = try readTensors(try requiredGroup("parameters", in: group))
        let buffersGroup = try requiredGroup("buffers", in: group)
        let buffers: [(name: String, value: Buffer.Value)] = try linkNames(of: buffersGroup).map { name in
            let (dataset, type, shape) = try openTensor(name, in: buffersGroup)
            if type.isFloat32 {
                let scalars = try buffersGroup.readDataset(dataset, name: name, shape: shape, type: type,
                                                           memoryType: epicycle_H5T_NATIVE_FLOAT(), as: Float.self,
                                                           fileSize: fileSize)
                return (name, .float32(Tensor(shape: shape, scalars: scalars)))
            }
            guard type.isInt64 else {
                throw CheckpointError.dtypeMismatch(file: file, object: tensorName(name, in: buffersGroup), found: type.name,
                                                    expected: "float32 or int64")
            }
            guard shape.isEmpty else {
                throw CheckpointError.invalidValue(file: file, object: tensorName(name, in: buffersGroup),
                                                   reason: "is int64 with shape \(describeShape(shape)); int64 buffers "
                                                       + "(num_batches_tracked) are 0-d")
            }
            let count = try buffersGroup.readDataset(dataset, name: name, shape: [], type: type,
                                                     memoryType: epicycle_H5T_NATIVE_INT64(), as: Int64.self, fileSize: fileSize)
            return (name, .int64(count[0]))
        }
        return StateRecord(parameters: parameters, buffers: buffers)
    }

    private func readInput(_ group: HDF5Location, numClasses: Int) throws -> InputPipeline {
        func vector(_ name: String, float: Bool) throws -> (HDF5Handle, HDF5ElementType, [Int]) {
            let (dataset, type, shape) = try requiredDataset(name, in: group)
            guard float ? type.isFloat : type.isInteger && type.size <= 8, shape.count == 1 else {
                throw CheckpointError.dtypeMismatch(file: file, object: "'\(group.childPath(name))'",
                                                    found: "\(type.name) \(describeShape(shape))",
                                                    expected: float ? "float32 [channels]" : "int64 [classes]")
            }
            return (dataset, type, shape)
        }
        func floats(_ name: String) throws -> [Float] {
            let (dataset, type, shape) = try vector(name, float: true)
            return try group.readDataset(dataset, name: name, shape: shape, type: type,
                                         memoryType: epicycle_H5T_NATIVE_FLOAT(), as: Float.self, fileSize: fileSize)
        }
        let (classesDataset, classesType, classesShape) = try vector("classes", float: false)
        // Ranges here only keep the numbers in `Int`; `problem(numClasses:)` holds the real bounds.
        let input = InputPipeline(
            dataset: try string("dataset", of: group),
            height: try integer("height", of: group, in: Int.min...Int.max),
            width: try integer("width", of: group, in: Int.min...Int.max),
            channels: try integer("channels", of: group, in: Int.min...Int.max),
            mean: try floats("mean"), standardDeviation: try floats("std"),
            classes: try group.readDataset(classesDataset, name: "classes", shape: classesShape, type: classesType,
                                           memoryType: epicycle_H5T_NATIVE_INT64(), as: Int64.self, fileSize: fileSize)
                .map { Int($0) },
            classNames: try strings("class_names", of: group))
        if let problem = input.problem(numClasses: numClasses) {
            throw CheckpointError.invalidValue(file: file, object: "the input pipeline '/data'", reason: problem)
        }
        return input
    }

    private func readOptimizer(_ group: HDF5Location) throws -> OptimizerRecord {
        // The kind is matched against the running optimizer on resume, which names both.
        var record = OptimizerRecord(kind: try string("kind", of: group))
        for name in try group.attributeNames() where name != "kind" {
            let (_, type, _) = try group.openAttribute(name)
            if type.isFloat {
                let value = try double(name, of: group)
                guard value.isFinite else {
                    throw CheckpointError.invalidValue(file: file, object: attributeName(name, of: group),
                                                       reason: "is \(value), expected a finite number")
                }
                record.hyperparameters[name] = value
            } else if type.isInteger {
                record.counters[name] = Int64(try integer(name, of: group, in: 0...CheckpointLimits.steps))
            } else {
                throw CheckpointError.dtypeMismatch(file: file, object: attributeName(name, of: group), found: type.name,
                                                    expected: "a float (hyper-parameter) or an integer (counter)")
            }
        }
        record.tensors = try readTensors(try requiredGroup("state", in: group))
        return record
    }

    private func readTraining(_ group: HDF5Location) throws -> TrainingRecord {
        let programName = try string("program", of: group)
        guard let program = TrainingRecord.Program(rawValue: programName) else {
            let valid = TrainingRecord.Program.allCases.map(\.rawValue).joined(separator: ", ")
            throw CheckpointError.invalidValue(file: file, object: attributeName("program", of: group),
                                               reason: "is '\(programName)', expected one of \(valid)")
        }
        // Ranges here only keep the numbers in `Int`; `problem()` holds the real bounds.
        var record = TrainingRecord(
            program: program,
            epoch: try integer("epoch", of: group, in: Int.min...Int.max),
            step: try integer("step", of: group, in: Int.min...Int.max),
            cyclePosition: try double("cycle_position", of: group),
            seed: try unsignedInteger("seed", of: group),
            rngState: [],
            recipe: try string("recipe", of: group, maximumBytes: CheckpointLimits.recipeBytes),
            bestTop1: try group.hasAttribute("best_top1") ? try double("best_top1", of: group) : nil)
        if try group.hasAttribute("test_top1") {
            let images = try integer("test_images", of: group, in: 0...Int(Int32.max))
            let bestEpoch = try integer("test_best_epoch", of: group, in: 1...CheckpointLimits.epochs)
            func score(_ prefix: String) throws -> SplitScore {
                SplitScore(images: images, loss: try double(prefix + "_loss", of: group),
                           top1: try double(prefix + "_top1", of: group), top5: try double(prefix + "_top5", of: group))
            }
            var test = TestScores(last: try score("test"), best: try score("test_best"), bestEpoch: bestEpoch)
            for (name, keyPath) in TestScores.optionalScoreNames where try group.hasAttribute("test_\(name)_top1") {
                test[keyPath: keyPath] = try score("test_" + name)
            }
            if try group.hasAttribute("test_snapshots") {
                test.snapshots = try integer("test_snapshots", of: group, in: 1...CheckpointLimits.epochs)
            }
            record.test = test
        }
        if try group.hasAttribute("epoch_images") {
            record.epochProgress = try epochProgress(group)
        }

        let (rngDataset, rngType, rngShape) = try requiredDataset("rng_state", in: group)
        guard rngType.isUInt64, rngShape.count == 1 else {
            throw CheckpointError.dtypeMismatch(file: file, object: "'\(group.childPath("rng_state"))'",
                                                found: "\(rngType.name) \(describeShape(rngShape))",
                                                expected: "uint64 [words]")
        }
        record.rngState = try group.readDataset(rngDataset, name: "rng_state", shape: rngShape, type: rngType,
                                                memoryType: epicycle_H5T_NATIVE_UINT64(), as: UInt64.self, fileSize: fileSize)

        let (metricsDataset, metricsType, metricsShape) = try requiredDataset("metrics", in: group)
        guard metricsType.isFloat, metricsShape.count == 2 else {
            throw CheckpointError.dtypeMismatch(file: file, object: "'\(group.childPath("metrics"))'",
                                                found: "\(metricsType.name) \(describeShape(metricsShape))",
                                                expected: "float64 [rows, columns]")
        }
        let table = HDF5Location(handle: metricsDataset, path: group.childPath("metrics"))
        let columns = try strings("columns", of: table)
        guard columns.count == metricsShape[1] else {
            throw CheckpointError.invalidValue(file: file, object: "'\(table.path)'",
                                               reason: "has \(metricsShape[1]) columns but \(columns.count) column names")
        }
        let values = try group.readDataset(metricsDataset, name: "metrics", shape: metricsShape, type: metricsType,
                                           memoryType: epicycle_H5T_NATIVE_DOUBLE(), as: Double.self, fileSize: fileSize)
        let width = metricsShape[1]
        record.metrics = MetricsTable(columns: columns,
                                      rows: (0..<metricsShape[0]).map { Array(values[$0 * width ..< ($0 + 1) * width]) })
        if let (object, reason) = record.problem() {
            throw CheckpointError.invalidValue(file: file, object: object, reason: reason)
        }
        return record
    }

    /// A mid-epoch save's running sums: all four attributes (and `epoch_dropped`, which files written
    /// before data selection lack: 0), counts between 0 and the images seen.
    private func epochProgress(_ group: HDF5Location) throws -> EpochProgress {
        let images = try integer("epoch_images", of: group, in: 0...Int(Int32.max))
        var counts: [Int] = []
        let names = ["epoch_top1_correct", "epoch_top5_correct"] + (try group.hasAttribute("epoch_dropped") ? ["epoch_dropped"] : [])
        for name in names {
            let count = try integer(name, of: group, in: 0...Int.max)
            guard (0...images).contains(count) else {
                throw CheckpointError.invalidValue(file: file, object: attributeName(name, of: group),
                                                   reason: "is \(count), expected 0…\(images) (epoch_images)")
            }
            counts.append(count)
        }
        return EpochProgress(images: Int(images), lossSum: try double("epoch_loss_sum", of: group),
                             top1Correct: Int(counts[0]), top5Correct: Int(counts[1]), droppedSamples: counts.count > 2 ? counts[2] : 0)
    }

    // MARK: Tensors

    /// Reads every float32 tensor of a group, in the order it was written.
    private func readTensors(_ group: HDF5Location) throws -> [(name: String, tensor: Tensor)] {
        try linkNames(of: group).map { name in
            let (dataset, type, shape) = try openTensor(name, in: group)
            guard type.isFloat32 else {
                throw CheckpointError.dtypeMismatch(file: file, object: tensorName(name, in: group), found: type.name,
                                                    expected: "float32")
            }
            let scalars = try group.readDataset(dataset, name: name, shape: shape, type: type,
                                                memoryType: epicycle_H5T_NATIVE_FLOAT(), as: Float.self, fileSize: fileSize)
            return (name, Tensor(shape: shape, scalars: scalars))
        }
    }

    /// A group's link names, each once: a damaged link index could list one twice, and names key
    /// the tensors everywhere after reading.
    private func linkNames(of group: HDF5Location) throws -> [String] {
        let names = try group.linkNames(fileSize: fileSize, maximumNameBytes: CheckpointLimits.textBytes)
        var seen = Set<String>()
        if let repeated = names.first(where: { !seen.insert($0).inserted }) {
            throw CheckpointError.invalidValue(file: file, object: "'\(group.path)'", reason: "lists '\(repeated)' twice")
        }
        return names
    }

    private func openTensor(_ name: String, in group: HDF5Location) throws -> (HDF5Handle, HDF5ElementType, [Int]) {
        let (dataset, type, shape) = try group.openDataset(name)
        guard let type else {
            throw CheckpointError.invalidValue(file: file, object: tensorName(name, in: group),
                                               reason: "is a group, expected a dataset")
        }
        return (dataset, type, shape)
    }

    private func tensorName(_ name: String, in group: HDF5Location) -> String {
        "tensor '\(name)' in \(group.path)"
    }

    // MARK: Groups, datasets and attributes the layout requires

    private func requiredGroup(_ name: String, in parent: HDF5Location) throws -> HDF5Location {
        guard let group = try parent.openGroup(name) else {
            throw CheckpointError.missingEntry(file: file, object: "'\(parent.childPath(name))' group")
        }
        return group
    }

    private func requiredDataset(_ name: String, in group: HDF5Location) throws -> (HDF5Handle, HDF5ElementType, [Int]) {
        guard try group.hasLink(name) else {
            throw CheckpointError.missingEntry(file: file, object: "'\(group.childPath(name))' dataset")
        }
        let (dataset, type, shape) = try group.openDataset(name)
        guard let type else {
            throw CheckpointError.invalidValue(file: file, object: "'\(group.childPath(name))'",
                                               reason: "is a group, expected a dataset")
        }
        return (dataset, type, shape)
    }

    private func attributeName(_ name: String, of location: HDF5Location) -> String {
        "attribute '\(name)' of '\(location.path)'"
    }

    /// Opens a required scalar attribute and checks its element type with `accepts`.
    private func scalarAttribute(_ name: String, of location: HDF5Location, expected: String,
                                 accepts: (HDF5ElementType) -> Bool) throws -> (HDF5Handle, HDF5ElementType) {
        guard try location.hasAttribute(name) else {
            throw CheckpointError.missingEntry(file: file, object: attributeName(name, of: location))
        }
        let (attribute, type, shape) = try location.openAttribute(name)
        guard accepts(type) else {
            throw CheckpointError.dtypeMismatch(file: file, object: attributeName(name, of: location), found: type.name,
                                                expected: expected)
        }
        guard shape.isEmpty else {
            throw CheckpointError.invalidValue(file: file, object: attributeName(name, of: location),
                                               reason: "has shape \(describeShape(shape)), expected a scalar")
        }
        return (attribute, type)
    }

    private func string(_ name: String, of location: HDF5Location,
                        maximumBytes: Int = CheckpointLimits.textBytes) throws -> String {
        let (attribute, type) = try scalarAttribute(name, of: location, expected: "string", accepts: \.isString)
        return try location.readStringAttribute(attribute, shape: [], type: type, name: name, fileSize: fileSize,
                                                maximumBytes: maximumBytes)[0]
    }

    private func strings(_ name: String, of location: HDF5Location) throws -> [String] {
        guard try location.hasAttribute(name) else {
            throw CheckpointError.missingEntry(file: file, object: attributeName(name, of: location))
        }
        let (attribute, type, shape) = try location.openAttribute(name)
        guard type.isString, shape.count == 1 else {
            throw CheckpointError.dtypeMismatch(file: file, object: attributeName(name, of: location),
                                                found: "\(type.name) \(describeShape(shape))", expected: "string [count]")
        }
        return try location.readStringAttribute(attribute, shape: shape, type: type, name: name, fileSize: fileSize,
                                                maximumBytes: CheckpointLimits.textBytes)
    }

    /// An integer attribute of at most 64 bits (HDF5 would clip wider ones silently) within `range`.
    private func integer(_ name: String, of location: HDF5Location, in range: ClosedRange<Int>) throws -> Int {
        let (attribute, type) = try scalarAttribute(name, of: location, expected: "an integer of at most 64 bits") {
            $0.isInteger && $0.size <= 8
        }
        // An unsigned value above Int64.max would clip to Int64.max in the conversion below.
        let value = type.isSigned
            ? try location.readScalarAttribute(attribute, memoryType: epicycle_H5T_NATIVE_INT64(), name: name, initial: Int64.zero)
            : Int64(clamping: try location.readScalarAttribute(attribute, memoryType: epicycle_H5T_NATIVE_UINT64(), name: name,
                                                               initial: UInt64.zero))
        guard let integer = Int(exactly: value), range.contains(integer) else {
            throw CheckpointError.invalidValue(file: file, object: attributeName(name, of: location),
                                               reason: "is \(value), expected a whole number in \(range.lowerBound)…\(range.upperBound)")
        }
        return integer
    }

    /// An unsigned 64-bit value such as a seed: negative stored values are refused, not wrapped.
    private func unsignedInteger(_ name: String, of location: HDF5Location) throws -> UInt64 {
        let (attribute, type) = try scalarAttribute(name, of: location, expected: "an integer of at most 64 bits") {
            $0.isInteger && $0.size <= 8
        }
        if type.isSigned {
            return UInt64(try integer(name, of: location, in: 0...Int.max))
        }
        return try location.readScalarAttribute(attribute, memoryType: epicycle_H5T_NATIVE_UINT64(), name: name,
                                                initial: UInt64.zero)
    }

    private func double(_ name: String, of location: HDF5Location) throws -> Double {
        let (attribute, _) = try scalarAttribute(name, of: location, expected: "a float", accepts: \.isFloat)
        return try location.readScalarAttribute(attribute, memoryType: epicycle_H5T_NATIVE_DOUBLE(), name: name,
                                                initial: Double.zero)
    }
}
