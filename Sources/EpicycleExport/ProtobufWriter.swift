/// A Protocol Buffers message in the wire format (encoding only), built field by field.
///
/// The format (protobuf.dev, "Encoding"): each field is a key varint, (field number << 3) | wire type,
/// then its payload: a varint (type 0), 8 little-endian bytes (type 1), a varint length and that many
/// bytes (type 2: strings, bytes, nested messages) or 4 little-endian bytes (type 5). Repeated scalars
/// are written one field each (proto2's unpacked form, which every parser reads).
///
/// Two formats need it, for a handful of messages each (ONNX's model, TensorBoard's event), so it is
/// written here rather than generated with swift-protobuf: the field numbers are cited at each message.
struct ProtobufMessage {
    private(set) var bytes: [UInt8] = []

    private enum WireType: UInt64 {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, fixed32 = 5
    }

    private mutating func key(_ field: Int, _ type: WireType) {
        appendVarint(UInt64(field) << 3 | type.rawValue)
    }

    private mutating func appendVarint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    /// An int32, int64 or enum field; a negative value takes ten bytes (its 64-bit two's complement).
    mutating func int(_ field: Int, _ value: Int) {
        key(field, .varint)
        appendVarint(UInt64(bitPattern: Int64(value)))
    }

    mutating func ints(_ field: Int, _ values: [Int]) {
        for value in values { int(field, value) }
    }

    mutating func double(_ field: Int, _ value: Double) {
        key(field, .fixed64)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func float(_ field: Int, _ value: Float) {
        key(field, .fixed32)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func bytes(_ field: Int, _ value: [UInt8]) {
        key(field, .lengthDelimited)
        appendVarint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    mutating func string(_ field: Int, _ value: String) {
        bytes(field, Array(value.utf8))
    }

    mutating func strings(_ field: Int, _ values: [String]) {
        for value in values { string(field, value) }
    }

    mutating func message(_ field: Int, _ value: ProtobufMessage) {
        bytes(field, value.bytes)
    }

    mutating func messages(_ field: Int, _ values: [ProtobufMessage]) {
        for value in values { message(field, value) }
    }
}

extension ProtobufMessage {
    /// A message built by `body`.
    init(_ body: (inout ProtobufMessage) -> Void) {
        self.init()
        body(&self)
    }
}
