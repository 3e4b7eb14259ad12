import CHDF5
import EpicycleRuntime
import Foundation

// A thin layer over the HDF5 C library: owned identifiers, the error stack turned into Swift errors,
// and typed reads and writes of the few shapes of data a checkpoint uses (scalar and string
// attributes, float32/float64/int64/uint64 datasets).

/// The serial HDF5 library is not thread-safe, so every use of it holds this lock.
private let hdf5Lock = NSLock()

/// Runs `body` holding the HDF5 lock, with HDF5's own error printing switched off: failures come
/// back as `HDF5Failure`s and are reported as `CheckpointError`s.
func withHDF5<Result>(_ body: () throws -> Result) rethrows -> Result {
    hdf5Lock.lock()
    defer { hdf5Lock.unlock() }
    _ = H5Eset_auto2(epicycle_H5E_DEFAULT(), nil, nil)
    return try body()
}

/// A failed HDF5 call: what was being done, and what HDF5's error stack said about it.
struct HDF5Failure: Error {
    /// What the caller was doing, e.g. "opening '/model/parameters'".
    let action: String
    /// The most specific message on HDF5's error stack, e.g. "incorrect metadata checksum".
    let detail: String
    /// HDF5 found the file shorter than its superblock says it is.
    let isTruncation: Bool

    /// Records the current HDF5 error stack under `action` and clears it.
    init(_ action: String) {
        self.action = action
        final class Collected { var descriptions: [String] = []; var minorNumbers: [hid_t] = [] }
        let collected = Collected()
        // Upward walks from the innermost failure, which carries the most specific description.
        _ = H5Ewalk2(epicycle_H5E_DEFAULT(), H5E_WALK_UPWARD, { _, error, clientData in
            guard let error, let clientData else { return 0 }
            let collected = Unmanaged<Collected>.fromOpaque(clientData).takeUnretainedValue()
            collected.minorNumbers.append(error.pointee.min_num)
            if let description = error.pointee.desc { collected.descriptions.append(String(cString: description)) }
            return 0
        }, Unmanaged.passUnretained(collected).toOpaque())
        _ = H5Eclear2(epicycle_H5E_DEFAULT())
        detail = collected.descriptions.first ?? "no details from HDF5"
        isTruncation = collected.minorNumbers.contains(epicycle_H5E_TRUNCATED())
    }
}

/// Something HDF5 would read but a checkpoint must not hold, found before anything is sized from
/// it: a link to another file, a size beyond the file's own, values stored compressed or elsewhere.
struct HDF5Refusal: Error {
    /// What is refused, e.g. "'/model/parameters/conv1.weight'" or "attribute 'epoch' of '/training'".
    let object: String
    let reason: String
}

/// The number of elements of `shape`, checked before any buffer is sized from it: no dimension may
/// push the count, with empty dimensions counted as 1, past what `fileSize` bytes hold at
/// `elementSize` bytes each (so strides and products never overflow either, even for empty shapes).
func checkedElementCount(_ shape: [Int], elementSize: Int, fileSize: Int, object: @autoclosure () -> String) throws -> Int {
    var extent = max(elementSize, 1)
    for dimension in shape {
        let (product, overflow) = extent.multipliedReportingOverflow(by: max(dimension, 1))
        guard !overflow, product <= fileSize else {
            throw HDF5Refusal(object: object(), reason: "has shape \(describeShape(shape)) of \(elementSize)-byte "
                              + "elements, more than the whole file (\(fileSize) bytes) holds")
        }
        extent = product
    }
    return shape.reduce(1, *)
}

/// One HDF5 identifier, closed exactly once: explicitly by `close()` or else when released.
final class HDF5Handle {
    let id: hid_t
    private let closer: (hid_t) -> herr_t
    private var isOpen = true

    /// Takes ownership of `id`, or throws the current HDF5 error if the call that made it failed.
    init(_ id: hid_t, closer: @escaping (hid_t) -> herr_t, action: @autoclosure () -> String) throws {
        guard id >= 0 else { throw HDF5Failure(action()) }
        self.id = id
        self.closer = closer
    }

    /// Closes now; for files this is where buffered data reaches the disk, so failures matter.
    func close(action: @autoclosure () -> String) throws {
        guard isOpen else { return }
        isOpen = false
        if closer(id) < 0 { throw HDF5Failure(action()) }
    }

    deinit {
        if isOpen { _ = closer(id) }
    }
}

/// Throws the current HDF5 error when a status-returning call failed.
func check(_ status: herr_t, _ action: @autoclosure () -> String) throws {
    if status < 0 { throw HDF5Failure(action()) }
}

/// The element type of a dataset or attribute, as far as a checkpoint cares.
struct HDF5ElementType: Equatable {
    let typeClass: H5T_class_t
    let size: Int
    let isSigned: Bool
    let isVariableString: Bool

    /// A NumPy-style name: "float32", "int64", "uint64", "string", …
    var name: String {
        switch typeClass {
        case H5T_FLOAT: return "float\(size * 8)"
        case H5T_INTEGER: return (isSigned ? "int" : "uint") + "\(size * 8)"
        case H5T_STRING: return "string"
        case H5T_COMPOUND: return "compound"
        case H5T_ENUM: return "enum"
        case H5T_ARRAY: return "array"
        case H5T_VLEN: return "variable-length sequence"
        case H5T_OPAQUE: return "opaque"
        case H5T_REFERENCE: return "reference"
        case H5T_BITFIELD: return "bitfield"
        default: return "unknown type"
        }
    }

    var isFloat32: Bool { typeClass == H5T_FLOAT && size == 4 }
    var isInt64: Bool { typeClass == H5T_INTEGER && size == 8 && isSigned }
    var isUInt64: Bool { typeClass == H5T_INTEGER && size == 8 && !isSigned }
    var isFloat: Bool { typeClass == H5T_FLOAT }
    var isInteger: Bool { typeClass == H5T_INTEGER }
    var isString: Bool { typeClass == H5T_STRING }

    init(_ type: hid_t) {
        typeClass = H5Tget_class(type)
        size = H5Tget_size(type)
        isSigned = typeClass == H5T_INTEGER && H5Tget_sign(type) == H5T_SGN_2
        isVariableString = typeClass == H5T_STRING && H5Tis_variable_str(type) > 0
    }
}

/// A variable-length string type (h5py writes `str` attributes so), for reading such strings.
func variableStringType() throws -> HDF5Handle {
    let type = try HDF5Handle(H5Tcopy(epicycle_H5T_C_S1()), closer: H5Tclose, action: "creating a string type")
    try check(H5Tset_size(type.id, epicycle_H5T_VARIABLE()), "creating a string type")
    return type
}

/// A dataspace for `shape`: scalar for `[]`, simple otherwise.
func makeDataspace(_ shape: [Int]) throws -> HDF5Handle {
    if shape.isEmpty {
        return try HDF5Handle(H5Screate(H5S_SCALAR), closer: H5Sclose, action: "creating a dataspace")
    }
    let dimensions = shape.map { hsize_t($0) }
    return try HDF5Handle(H5Screate_simple(Int32(shape.count), dimensions, nil), closer: H5Sclose,
                          action: "creating a dataspace")
}

/// The shape of a dataspace (`[]` for scalar) of `object`.
func shapeOf(dataspace: hid_t, object: @autoclosure () -> String) throws -> [Int] {
    let rank = H5Sget_simple_extent_ndims(dataspace)
    guard rank >= 0 else { throw HDF5Failure("reading \(object())") }
    var dimensions = [hsize_t](repeating: 0, count: Int(rank))
    guard H5Sget_simple_extent_dims(dataspace, &dimensions, nil) >= 0 else { throw HDF5Failure("reading \(object())") }
    return try dimensions.map { dimension in
        guard let value = Int(exactly: dimension) else {
            throw HDF5Refusal(object: object(), reason: "has a dimension of \(dimension), more than any file holds")
        }
        return value
    }
}

// MARK: Groups and links

/// An open group or dataset (HDF5's "location"): groups hold links, both hold attributes.
struct HDF5Location {
    let handle: HDF5Handle
    /// The absolute path, for messages.
    let path: String

    /// Creates a child group that remembers link creation order, so readers (ours and h5py) list
    /// tensors in the order they were written, which is the model's `state_dict` order.
    func createGroup(_ name: String) throws -> HDF5Location {
        let groupPath = childPath(name)
        let properties = try HDF5Handle(H5Pcreate(epicycle_H5P_GROUP_CREATE()), closer: H5Pclose,
                                        action: "creating '\(groupPath)'")
        try check(H5Pset_link_creation_order(properties.id, UInt32(H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED)),
                  "creating '\(groupPath)'")
        // No modification times in object headers: the same state writes the same bytes.
        try check(H5Pset_obj_track_times(properties.id, false), "creating '\(groupPath)'")
        let group = try HDF5Handle(H5Gcreate2(handle.id, name, hid_t(H5P_DEFAULT), properties.id, hid_t(H5P_DEFAULT)),
                                   closer: H5Gclose, action: "creating '\(groupPath)'")
        return HDF5Location(handle: group, path: groupPath)
    }

    /// Opens a child group, or returns nil when there is no link of that name.
    func openGroup(_ name: String) throws -> HDF5Location? {
        let groupPath = childPath(name)
        guard try hasLink(name) else { return nil }
        try checkHardLink(name)
        let group = try HDF5Handle(H5Gopen2(handle.id, name, hid_t(H5P_DEFAULT)), closer: H5Gclose,
                                   action: "opening '\(groupPath)'")
        return HDF5Location(handle: group, path: groupPath)
    }

    func hasLink(_ name: String) throws -> Bool {
        let exists = H5Lexists(handle.id, name, hid_t(H5P_DEFAULT))
        guard exists >= 0 else { throw HDF5Failure("looking up '\(name)' in '\(path)'") }
        return exists > 0
    }

    /// Refuses soft and external links: following them could open another file (a FIFO or a device
    /// would hang the read) or loop; a checkpoint only holds its own objects.
    func checkHardLink(_ name: String) throws {
        var info = H5L_info_t()
        try check(H5Lget_info(handle.id, name, &info, hid_t(H5P_DEFAULT)), "looking up '\(childPath(name))'")
        guard info.type == H5L_TYPE_HARD else {
            throw HDF5Refusal(object: "'\(childPath(name))'",
                              reason: "is a soft or external link; a checkpoint holds its own objects only")
        }
    }

    func childPath(_ name: String) -> String { path == "/" ? "/" + name : path + "/" + name }

    /// The names of the group's links, in creation order when the group tracks it (ours do),
    /// otherwise in name order (e.g. groups written by h5py without `track_order`). A group cannot
    /// hold more links than its file has bytes, and a name has at most `maximumNameBytes` bytes.
    func linkNames(fileSize: Int, maximumNameBytes: Int) throws -> [String] {
        var info = H5G_info_t()
        try check(H5Gget_info(handle.id, &info), "listing '\(path)'")
        guard info.nlinks <= UInt64(fileSize) else {
            throw HDF5Refusal(object: "'\(path)'", reason: "claims \(info.nlinks) links, more than the file (\(fileSize) bytes) holds")
        }
        let properties = try HDF5Handle(H5Gget_create_plist(handle.id), closer: H5Pclose, action: "listing '\(path)'")
        var orderFlags: UInt32 = 0
        try check(H5Pget_link_creation_order(properties.id, &orderFlags), "listing '\(path)'")
        let index = orderFlags & UInt32(H5P_CRT_ORDER_TRACKED) != 0 ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME
        return try (0..<info.nlinks).map { position in
            let length = H5Lget_name_by_idx(handle.id, ".", index, H5_ITER_INC, position, nil, 0, hid_t(H5P_DEFAULT))
            guard length >= 0 else { throw HDF5Failure("listing '\(path)'") }
            guard length <= maximumNameBytes else {
                throw HDF5Refusal(object: "'\(path)'", reason: "has a link name of \(length) bytes, expected at most \(maximumNameBytes)")
            }
            var bytes = [CChar](repeating: 0, count: length + 1)
            guard H5Lget_name_by_idx(handle.id, ".", index, H5_ITER_INC, position, &bytes, length + 1,
                                     hid_t(H5P_DEFAULT)) >= 0 else { throw HDF5Failure("listing '\(path)'") }
            let name = String(decoding: bytes.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            // Such a name, looked up, would resolve to another object than the link itself.
            guard !name.isEmpty, name != ".", !name.contains("/") else {
                throw HDF5Refusal(object: "'\(path)'", reason: "has a link named '\(name)', which is not a valid name")
            }
            return name
        }
    }

    /// The names of the attributes attached to this group, in HDF5's name order.
    func attributeNames() throws -> [String] {
        final class Names { var values: [String] = [] }
        let names = Names()
        var position: hsize_t = 0
        let status = H5Aiterate2(handle.id, H5_INDEX_NAME, H5_ITER_INC, &position, { _, name, _, clientData in
            guard let name, let clientData else { return -1 }
            Unmanaged<Names>.fromOpaque(clientData).takeUnretainedValue().values.append(String(cString: name))
            return 0
        }, Unmanaged.passUnretained(names).toOpaque())
        try check(status, "listing the attributes of '\(path)'")
        return names.values
    }
}

// MARK: Attributes

extension HDF5Location {
    func hasAttribute(_ name: String) throws -> Bool {
        let exists = H5Aexists(handle.id, name)
        guard exists >= 0 else { throw HDF5Failure("looking up attribute '\(name)' of '\(path)'") }
        return exists > 0
    }

    func writeAttribute(_ name: String, string value: String) throws {
        try writeStringAttribute(name, [value], shape: [])
    }

    func writeAttribute(_ name: String, strings values: [String]) throws {
        try writeStringAttribute(name, values, shape: [values.count])
    }

    /// Writes fixed-length UTF-8 strings, null-padded to the longest value (NumPy's "S" dtype). They
    /// sit inside the checksummed object header; variable-length strings would put their bytes in
    /// HDF5's global heap, which has no checksum and which HDF5 parses unsafely when it is damaged.
    /// h5py reads them as `bytes` (`.decode()` gives `str`).
    private func writeStringAttribute(_ name: String, _ values: [String], shape: [Int]) throws {
        let action = "writing attribute '\(name)' of '\(path)'"
        let encoded = values.map { Array($0.utf8) }
        let width = max(1, encoded.map(\.count).max() ?? 0)
        let type = try HDF5Handle(H5Tcopy(epicycle_H5T_C_S1()), closer: H5Tclose, action: action)
        try check(H5Tset_size(type.id, width), action)
        try check(H5Tset_cset(type.id, H5T_CSET_UTF8), action)
        try check(H5Tset_strpad(type.id, H5T_STR_NULLPAD), action)
        let space = try makeDataspace(shape)
        let attribute = try HDF5Handle(H5Acreate2(handle.id, name, type.id, space.id, hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT)),
                                       closer: H5Aclose, action: action)
        guard !values.isEmpty else { return }
        var bytes = [UInt8](repeating: 0, count: width * values.count)
        for (index, value) in encoded.enumerated() {
            bytes.replaceSubrange(index * width ..< index * width + value.count, with: value)
        }
        try check(H5Awrite(attribute.id, type.id, bytes), action)
    }

    func writeAttribute(_ name: String, double value: Double) throws {
        var value = value
        try writeScalarAttribute(name, fileType: epicycle_H5T_IEEE_F64LE(), memoryType: epicycle_H5T_NATIVE_DOUBLE(), &value)
    }

    func writeAttribute(_ name: String, int64 value: Int64) throws {
        var value = value
        try writeScalarAttribute(name, fileType: epicycle_H5T_STD_I64LE(), memoryType: epicycle_H5T_NATIVE_INT64(), &value)
    }

    func writeAttribute(_ name: String, uint64 value: UInt64) throws {
        var value = value
        try writeScalarAttribute(name, fileType: epicycle_H5T_STD_U64LE(), memoryType: epicycle_H5T_NATIVE_UINT64(), &value)
    }

    private func writeScalarAttribute(_ name: String, fileType: hid_t, memoryType: hid_t,
                                      _ value: UnsafeRawPointer) throws {
        let action = "writing attribute '\(name)' of '\(path)'"
        let space = try makeDataspace([])
        let attribute = try HDF5Handle(H5Acreate2(handle.id, name, fileType, space.id, hid_t(H5P_DEFAULT), hid_t(H5P_DEFAULT)),
                                       closer: H5Aclose, action: action)
        try check(H5Awrite(attribute.id, memoryType, value), action)
    }

    /// An attribute opened for reading, with its element type and shape.
    func openAttribute(_ name: String) throws -> (handle: HDF5Handle, type: HDF5ElementType, shape: [Int]) {
        let action = "reading attribute '\(name)' of '\(path)'"
        let attribute = try HDF5Handle(H5Aopen(handle.id, name, hid_t(H5P_DEFAULT)), closer: H5Aclose, action: action)
        let type = try HDF5Handle(H5Aget_type(attribute.id), closer: H5Tclose, action: action)
        let space = try HDF5Handle(H5Aget_space(attribute.id), closer: H5Sclose, action: action)
        return (attribute, HDF5ElementType(type.id), try shapeOf(dataspace: space.id, object: "attribute '\(name)' of '\(path)'"))
    }

    /// Reads a string attribute of `shape`, fixed-length (as Epicycle writes them) or variable-length
    /// (as h5py writes `str`); each value may have at most `maximumBytes` bytes, and all of them
    /// together no more than the file has (`fileSize`).
    func readStringAttribute(_ attribute: HDF5Handle, shape: [Int], type: HDF5ElementType, name: String,
                             fileSize: Int, maximumBytes: Int) throws -> [String] {
        let action = "reading attribute '\(name)' of '\(path)'"
        let object = "attribute '\(name)' of '\(path)'"
        let count = try checkedElementCount(shape, elementSize: type.size, fileSize: fileSize, object: object)
        let tooLong = HDF5Refusal(object: object, reason: "holds a text of more than \(maximumBytes) bytes")
        guard count > 0 else { return [] }
        if type.isVariableString {
            // HDF5 does not convert between character sets, so read in the stored one (ASCII or UTF-8).
            let storedType = try HDF5Handle(H5Aget_type(attribute.id), closer: H5Tclose, action: action)
            let memoryType = try variableStringType()
            try check(H5Tset_cset(memoryType.id, H5Tget_cset(storedType.id)), action)
            var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            try check(H5Aread(attribute.id, memoryType.id, &pointers), action)
            defer { pointers.forEach { H5free_memory($0) } }
            return try pointers.map { pointer in
                guard let pointer else { return "" }
                guard strnlen(pointer, maximumBytes + 1) <= maximumBytes else { throw tooLong }
                return String(cString: pointer)
            }
        }
        guard type.size <= maximumBytes else { throw tooLong }
        // Fixed-length: read the raw bytes in the stored type (HDF5 converts between character sets
        // not at all), then cut each value at its first NUL (null-padded or null-terminated).
        let memoryType = try HDF5Handle(H5Aget_type(attribute.id), closer: H5Tclose, action: action)
        var bytes = [UInt8](repeating: 0, count: type.size * count)
        try check(H5Aread(attribute.id, memoryType.id, &bytes), action)
        return (0..<count).map { index in
            let field = bytes[index * type.size ..< (index + 1) * type.size]
            return String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    func readScalarAttribute<Value: BitwiseCopyable>(_ attribute: HDF5Handle, memoryType: hid_t, name: String,
                                                     initial: Value) throws -> Value {
        var value = initial
        try check(H5Aread(attribute.id, memoryType, &value), "reading attribute '\(name)' of '\(path)'")
        return value
    }
}

// MARK: Datasets

extension HDF5Location {
    /// Writes a dataset of `shape` from `data` so that every stored byte is checksummed and damage is
    /// caught on reading instead of loaded: non-empty arrays as one chunk with a Fletcher-32 checksum
    /// (a filter h5py and every HDF5 reader handle natively); scalars, which cannot be chunked, and
    /// empty arrays in compact layout, inside their checksummed object header.
    @discardableResult
    func writeDataset(_ name: String, shape: [Int], fileType: hid_t, memoryType: hid_t,
                      data: UnsafeRawPointer?) throws -> HDF5Location {
        let action = "writing '\(childPath(name))'"
        let space = try makeDataspace(shape)
        let properties = try HDF5Handle(H5Pcreate(epicycle_H5P_DATASET_CREATE()), closer: H5Pclose, action: action)
        try check(H5Pset_obj_track_times(properties.id, false), action)
        let count = shape.reduce(1, *)
        if !shape.isEmpty && count > 0 {
            try check(H5Pset_chunk(properties.id, Int32(shape.count), shape.map { hsize_t($0) }), action)
            try check(H5Pset_fletcher32(properties.id), action)
        } else {
            try check(H5Pset_layout(properties.id, H5D_COMPACT), action)
        }
        let dataset = try HDF5Handle(H5Dcreate2(handle.id, name, fileType, space.id, hid_t(H5P_DEFAULT), properties.id,
                                                hid_t(H5P_DEFAULT)), closer: H5Dclose, action: action)
        if count > 0, let data {
            try check(H5Dwrite(dataset.id, memoryType, epicycle_H5S_ALL(), epicycle_H5S_ALL(), hid_t(H5P_DEFAULT), data),
                      action)
        }
        return HDF5Location(handle: dataset, path: childPath(name))
    }

    /// Opens a dataset with its element type and shape; nil type when the link is not a dataset.
    func openDataset(_ name: String) throws -> (handle: HDF5Handle, type: HDF5ElementType?, shape: [Int]) {
        let action = "reading '\(childPath(name))'"
        try checkHardLink(name)
        let object = try HDF5Handle(H5Oopen(handle.id, name, hid_t(H5P_DEFAULT)), closer: H5Oclose, action: action)
        guard H5Iget_type(object.id) == H5I_DATASET else { return (object, nil, []) }
        let type = try HDF5Handle(H5Dget_type(object.id), closer: H5Tclose, action: action)
        let space = try HDF5Handle(H5Dget_space(object.id), closer: H5Sclose, action: action)
        return (object, HDF5ElementType(type.id), try shapeOf(dataspace: space.id, object: "'\(childPath(name))'"))
    }

    /// Reads a whole dataset of `shape` and element type `type` in the file, converted to
    /// `memoryType`. Before a buffer is sized, the shape is checked against the file size, and the
    /// values must be stored in this file, uncompressed (Fletcher-32 is the one filter allowed) and
    /// complete: a dataset declared far larger than its storage (unwritten chunks that HDF5 would fill)
    /// or than the file is refused, as are external files and virtual datasets.
    func readDataset<Element: BitwiseCopyable>(_ dataset: HDF5Handle, name: String, shape: [Int], type: HDF5ElementType,
                                               memoryType: hid_t, as element: Element.Type, fileSize: Int) throws -> [Element] {
        let object = "'\(childPath(name))'"
        let count = try checkedElementCount(shape, elementSize: type.size, fileSize: fileSize, object: object)
        if count > 0 {
            try checkStorage(dataset, object: object, bytes: count * type.size, elementSize: type.size, fileSize: fileSize)
        }
        var status: herr_t = 0
        let values = [Element](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 {
                status = H5Dread(dataset.id, memoryType, epicycle_H5S_ALL(), epicycle_H5S_ALL(), hid_t(H5P_DEFAULT),
                                 buffer.baseAddress)
            }
            initialized = count
        }
        try check(status, "reading '\(childPath(name))'")
        return values
    }

    private func checkStorage(_ dataset: HDF5Handle, object: String, bytes: Int, elementSize: Int, fileSize: Int) throws {
        let action = "reading \(object)"
        let properties = try HDF5Handle(H5Dget_create_plist(dataset.id), closer: H5Pclose, action: action)
        func refuse(_ reason: String) -> HDF5Refusal { HDF5Refusal(object: object, reason: reason) }
        let layout = H5Pget_layout(properties.id)
        guard layout == H5D_COMPACT || layout == H5D_CONTIGUOUS || layout == H5D_CHUNKED else {
            throw refuse("is a virtual dataset or has an unknown layout; a checkpoint stores its values itself")
        }
        guard H5Pget_external_count(properties.id) == 0 else {
            throw refuse("keeps its values in an external file; a checkpoint stores its values itself")
        }
        let filters = H5Pget_nfilters(properties.id)
        guard filters >= 0 else { throw HDF5Failure(action) }
        for index in 0..<UInt32(filters) {
            var flags: UInt32 = 0, parameterCount = 0, configuration: UInt32 = 0
            let filter = H5Pget_filter2(properties.id, index, &flags, &parameterCount, nil, 0, nil, &configuration)
            guard filter == H5Z_FILTER_FLETCHER32 else {
                throw refuse("is stored through HDF5 filter \(filter) (compression); Epicycle reads uncompressed values "
                             + "(h5py: create_dataset without compression=)")
            }
        }
        if layout == H5D_CHUNKED {
            // HDF5 allocates a whole chunk to read one; uncompressed chunks are stored whole, so no
            // chunk of a sound file is larger than the file.
            var chunk = [hsize_t](repeating: 0, count: 32)
            let rank = H5Pget_chunk(properties.id, 32, &chunk)
            guard rank > 0 else { throw HDF5Failure(action) }
            var chunkBytes = elementSize
            for dimension in chunk.prefix(Int(rank)) {
                let (product, overflow) = chunkBytes.multipliedReportingOverflow(by: Int(exactly: dimension) ?? .max)
                guard !overflow, product <= fileSize else {
                    throw refuse("has chunks of \(describeShape(chunk.prefix(Int(rank)).map { Int(clamping: $0) })), larger "
                                 + "than the whole file (\(fileSize) bytes)")
                }
                chunkBytes = product
            }
        }
        let stored = H5Dget_storage_size(dataset.id)
        guard stored >= UInt64(bytes), stored <= UInt64(fileSize) else {
            throw refuse("has \(bytes) bytes of values but \(stored) bytes stored in a file of \(fileSize) bytes "
                         + "(never written, or its storage records are damaged)")
        }
    }
}
