import CHDF5
@testable import EpicycleCheckpoint
import EpicycleRuntime
import Foundation
import Testing
import TestSupport

// Builders for checkpoints and live model states, bitwise comparisons, and raw HDF5 edits that
// break files in specific ways.

/// A fresh empty folder under the system temporary directory.
func makeTemporaryFolder() throws -> String {
    let path = NSTemporaryDirectory() + "epicycle-checkpoint-tests-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// The parameter and buffer shapes of a CIFAR ResNet with `blocksPerStage` BasicBlocks per stage
/// (He et al. 2016, §4.2: 16/32/64 channels, identity shortcuts with zero padding, so no shortcut
/// parameters). `blocksPerStage` 9 is ResNet-56, 3 is ResNet-20.
func cifarResNetShapes(blocksPerStage: Int, classes: Int = 10) -> (parameters: [(String, [Int])], buffers: [(String, [Int]?)]) {
    var parameters: [(String, [Int])] = [], buffers: [(String, [Int]?)] = []
    func batchNorm(_ name: String, _ channels: Int) {
        parameters += [(name + ".weight", [channels]), (name + ".bias", [channels])]
        buffers += [(name + ".running_mean", [channels]), (name + ".running_var", [channels]),
                    (name + ".num_batches_tracked", nil)]
    }
    parameters.append(("conv1.weight", [16, 3, 3, 3]))
    batchNorm("bn1", 16)
    var inputs = 16
    for (stage, channels) in [16, 32, 64].enumerated() {
        for block in 0..<blocksPerStage {
            let prefix = "layer\(stage + 1).\(block)."
            parameters.append((prefix + "conv1.weight", [channels, inputs, 3, 3]))
            batchNorm(prefix + "bn1", channels)
            parameters.append((prefix + "conv2.weight", [channels, channels, 3, 3]))
            batchNorm(prefix + "bn2", channels)
            inputs = channels
        }
    }
    parameters += [("fc.weight", [classes, 64]), ("fc.bias", [classes])]
    return (parameters, buffers)
}

/// A live model state with the given shapes filled from `seed` (nil buffer shape: int64 counter).
func makeModelState(parameters: [(String, [Int])], buffers: [(String, [Int]?)] = [], seed: UInt64) -> ModuleState {
    var state = ModuleState()
    for (index, (name, shape)) in parameters.enumerated() {
        state.add(name, Parameter(randomTensor(shape, seed: seed &+ UInt64(index)), decays: shape.count > 1))
    }
    for (index, (name, shape)) in buffers.enumerated() {
        let value: Buffer.Value = shape.map { .float32(randomTensor($0, seed: seed &+ 1000 &+ UInt64(index))) }
            ?? .int64(Int64(seed) &* 7 &+ Int64(index))
        state.add(name, Buffer(value))
    }
    return state
}

func makeResNet20State(seed: UInt64) -> ModuleState {
    let shapes = cifarResNetShapes(blocksPerStage: 3)
    return makeModelState(parameters: shapes.parameters, buffers: shapes.buffers, seed: seed)
}

/// A checkpoint with every section filled, including values that only survive a bit-exact
/// round trip: NaN payloads, −0, infinities, subnormals, a 0-d and an empty tensor, extreme integers.
func makeFullCheckpoint(seed: UInt64 = 1) -> Checkpoint {
    var model = StateRecord(makeModelState(parameters: [("conv.weight", [4, 3, 3, 3]), ("conv.bias", [4]),
                                                        ("fc.weight", [2, 4]), ("fc.bias", [2])],
                                           buffers: [("bn.running_mean", [4]), ("bn.running_var", [4]),
                                                     ("bn.num_batches_tracked", nil)], seed: seed))
    model.parameters[1].tensor.scalars = [-0.0, .infinity, -.infinity, Float(bitPattern: 0x7FC0_1234)]
    model.parameters[3].tensor.scalars = [.leastNonzeroMagnitude, -.greatestFiniteMagnitude]
    model.buffers[2].value = .int64(.min)
    model.parameters.append(("scale", Tensor(shape: [], scalars: [0.5])))
    model.parameters.append(("empty.weight", Tensor(zeros: [0, 3])))

    var metrics = MetricsTable(columns: ["epoch", "train_loss", "val_top1", "lr"])
    metrics.append([1, 2.302_585_092_994_046, .nan, 0.1])
    metrics.append([2, 1.0 / 3.0, 45.25, -0.0])

    return Checkpoint(
        architecture: "model: resnet20\nnum_classes: 2\nwidth: 1.0\n",
        numClasses: 2,
        model: model,
        optimizer: OptimizerRecord(kind: "sgd", hyperparameters: ["lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4],
                                   counters: ["step": 4680],
                                   tensors: model.parameters.map { ($0.name + ".momentum_buffer",
                                                                    Tensor(shape: $0.tensor.shape,
                                                                           scalars: $0.tensor.scalars.map { $0 * 0.25 })) }),
        training: TrainingRecord(program: .pretrain, epoch: 2, step: 4680, cyclePosition: 12.0 / 7.0, seed: .max,
                                 rngState: [0x9E37_79B9_7F4A_7C15, 1, .max, 0x8000_0000_0000_0000],
                                 recipe: "program: pretrain\ntemperature: {cyclical: {easy: 0.5, hard: 2.0, factor: 1}}\n"
                                     + "note: \"τ — ünïcode\"\n",
                                 bestTop1: 91.2, metrics: metrics),
        adapters: StateRecord(parameters: [("regressors.0.conv.weight", randomTensor([8, 4, 1, 1], seed: seed + 50))],
                              buffers: [("regressors.0.bn.running_mean", .float32(randomTensor([8], seed: seed + 51))),
                                        ("regressors.0.bn.num_batches_tracked", .int64(3))]),
        input: makeInputPipeline(),
        created: "2026-05-14T09:30:12Z")
}

/// A two-class CIFAR-10 pipeline (cat and dog, the second without a name), as `makeFullCheckpoint` stores it.
func makeInputPipeline() -> InputPipeline {
    InputPipeline(dataset: "cifar10", height: 32, width: 32, channels: 3, mean: [0.4914, 0.4822, 0.4465],
                  standardDeviation: [0.2470, 0.2435, 0.2616], classes: [3, 5], classNames: ["cat", ""])
}

func expectIdentical(_ actual: Checkpoint, _ expected: Checkpoint, sourceLocation: SourceLocation = #_sourceLocation) {
    let found = checkpointDifferences(actual, expected)
    #expect(found.isEmpty, "checkpoints differ in \(found.joined(separator: "; "))", sourceLocation: sourceLocation)
}

/// The error a throwing call raises, as a `CheckpointError`; nil (with an issue) if it does not throw one.
func checkpointError(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) -> CheckpointError? {
    do {
        try body()
        Issue.record("expected a CheckpointError, nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as CheckpointError {
        return error
    } catch {
        Issue.record("expected a CheckpointError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

// MARK: Raw access

/// The HDF5 identifiers (files, groups, datasets, attributes, named types) still open on files in
/// `folder`, e.g. ["group /model in …/last.h5"]; empty unless some path leaked one. Identifiers of
/// other files are not counted, so suites writing checkpoints in parallel do not disturb the check.
func openHDF5Objects(in folder: String) -> [String] {
    withHDF5 {
        let everyFile = hid_t(epicycle_H5F_OBJ_ALL())
        let count = H5Fget_obj_count(everyFile, epicycle_H5F_OBJ_ALL())
        guard count > 0 else { return [] }
        var ids = [hid_t](repeating: 0, count: count)
        let listed = H5Fget_obj_ids(everyFile, epicycle_H5F_OBJ_ALL(), count, &ids)
        return ids.prefix(max(0, listed)).compactMap { id -> String? in
            let file = hdf5Name(id, H5Fget_name)
            guard file.hasPrefix(folder + "/") else { return nil }
            let kind = switch H5Iget_type(id) {
            case H5I_FILE: "file"
            case H5I_GROUP: "group"
            case H5I_DATASET: "dataset"
            case H5I_ATTR: "attribute"
            case H5I_DATATYPE: "named type"
            default: "object"
            }
            return "\(kind) \(hdf5Name(id, H5Iget_name)) in \(file)"
        }
    }
}

/// A name HDF5 reports through a (buffer, size) call: a file's path, an object's path in its file.
private func hdf5Name(_ id: hid_t, _ get: (hid_t, UnsafeMutablePointer<CChar>?, Int) -> Int) -> String {
    let length = get(id, nil, 0)
    guard length > 0 else { return "" }
    var bytes = [CChar](repeating: 0, count: length + 1)
    _ = get(id, &bytes, length + 1)
    return String(decoding: bytes.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Records an issue for every HDF5 identifier still open on a file in `folder`.
func expectNoOpenHDF5Objects(in folder: String, sourceLocation: SourceLocation = #_sourceLocation) {
    let open = openHDF5Objects(in: folder)
    #expect(open.isEmpty, "HDF5 identifiers left open: \(open.joined(separator: ", "))", sourceLocation: sourceLocation)
}

/// Opens `path` read-write with the HDF5 C API and runs `edit` on the file id, holding the library's
/// lock: the serial HDF5 library is not thread-safe, and other suites save checkpoints in parallel.
func editHDF5File(_ path: String, _ edit: (hid_t) throws -> Void) throws {
    try withHDF5 {
        let file = H5Fopen(path, epicycle_H5F_ACC_RDWR(), hid_t(H5P_DEFAULT))
        try #require(file >= 0, "opening \(path) for editing")
        defer { H5Fclose(file) }
        try edit(file)
    }
}

/// Replaces the dataset at `path` by a float64 one of `shape`.
func replaceWithFloat64Dataset(file: hid_t, path: String, shape: [Int]) throws {
    try #require(H5Ldelete(file, path, hid_t(H5P_DEFAULT)) >= 0)
    let space = H5Screate_simple(Int32(shape.count), shape.map { hsize_t($0) }, nil)
    defer { H5Sclose(space) }
    let dataset = H5Dcreate2(file, path, epicycle_H5T_NATIVE_DOUBLE(), space, hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT),
                             hid_t(H5P_DEFAULT))
    try #require(dataset >= 0)
    H5Dclose(dataset)
}

/// Replaces the root attribute `name` by a variable-length string or an int64.
func replaceRootAttribute(file: hid_t, name: String, string: String? = nil, integer: Int64? = nil) throws {
    let root = H5Gopen2(file, "/", hid_t(H5P_DEFAULT))
    defer { H5Gclose(root) }
    try #require(H5Adelete(root, name) >= 0)
    let space = H5Screate(H5S_SCALAR)
    defer { H5Sclose(space) }
    if let string {
        let type = H5Tcopy(epicycle_H5T_C_S1())
        defer { H5Tclose(type) }
        H5Tset_size(type, epicycle_H5T_VARIABLE())
        let attribute = H5Acreate2(root, name, type, space, hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT))
        defer { H5Aclose(attribute) }
        try string.withCString { text in
            var pointer: UnsafePointer<CChar>? = text
            try #require(H5Awrite(attribute, type, &pointer) >= 0)
        }
    } else if var integer {
        let attribute = H5Acreate2(root, name, epicycle_H5T_NATIVE_INT64(), space, hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT))
        defer { H5Aclose(attribute) }
        try #require(H5Awrite(attribute, epicycle_H5T_NATIVE_INT64(), &integer) >= 0)
    }
}

/// Byte-level access to a file, for truncation and bit flips.
func modifyBytes(_ path: String, _ change: (inout [UInt8]) throws -> Void) throws {
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    try change(&bytes)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// The offset of the first occurrence of `needle` in `bytes`.
func firstOffset(of needle: [UInt8], in bytes: [UInt8]) -> Int? {
    guard needle.count <= bytes.count else { return nil }
    return (0...(bytes.count - needle.count)).first { start in
        bytes[start] == needle[0] && bytes[start ..< start + needle.count].elementsEqual(needle)
    }
}
