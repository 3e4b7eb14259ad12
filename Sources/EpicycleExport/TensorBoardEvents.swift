import Foundation

/// A TensorBoard event file, `events.out.tfevents.<seconds>.<host>` in a run's folder: scalars by tag
/// and step, as TensorBoard and its `EventAccumulator` read them.
///
/// The file is a TFRecord stream of `tensorboard.Event` messages (tensorboard/compat/proto/event.proto:
/// wall_time = 1 (double), step = 2 (int64), file_version = 3 (string), summary = 5, session_log = 7;
/// summary.proto: Summary.value = 1, Value.tag = 1, Value.simple_value = 2 (float); SessionLog.status = 1,
/// START = 1). The first event names the format version, "brain.Event:2", which makes readers honour
/// `sessionStart`. Each event is appended with one write, so a reader (or a kill) sees whole records
/// but at worst the last one.
public final class TensorBoardEventWriter {
    public let path: String
    private let handle: FileHandle

    /// Creates a new event file in `folder` (a second one started in the same second gets `.1`, `.2`…).
    public init(folder: String, host: String = ProcessInfo.processInfo.hostName, now: Date = Date()) throws {
        let base = folder + "/events.out.tfevents.\(Int(now.timeIntervalSince1970)).\(host)"
        var path = base
        var suffix = 0
        while FileManager.default.fileExists(atPath: path) {
            suffix += 1
            path = base + ".\(suffix)"
        }
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path,
                                                           NSLocalizedDescriptionKey: "cannot create the TensorBoard event file \(path)"])
        }
        self.path = path
        handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try write(event(wallTime: now, step: 0) { $0.string(3, "brain.Event:2") })
    }

    deinit {
        try? handle.close()
    }

    /// Marks a (re)start at `step`: TensorBoard then drops the events at `step` and later that earlier
    /// files of the folder hold (a run killed after its last checkpoint and resumed from it).
    public func sessionStart(step: Int, now: Date = Date()) throws {
        try write(event(wallTime: now, step: step) { $0.message(7, ProtobufMessage { $0.int(1, 1) }) })
    }

    /// One event holding `values` (tag → value, written as float32 in tag order) at `step`.
    public func scalars(_ values: [String: Double], step: Int, now: Date = Date()) throws {
        let summary = ProtobufMessage { summary in
            for tag in values.keys.sorted() {
                summary.message(1, ProtobufMessage { value in
                    value.string(1, tag)
                    value.float(2, Float(values[tag]!))
                })
            }
        }
        try write(event(wallTime: now, step: step) { $0.message(5, summary) })
    }

    private func event(wallTime: Date, step: Int, _ body: (inout ProtobufMessage) -> Void) -> ProtobufMessage {
        ProtobufMessage { event in
            event.double(1, wallTime.timeIntervalSince1970)
            event.int(2, step)
            body(&event)
        }
    }

    private func write(_ event: ProtobufMessage) throws {
        try handle.write(contentsOf: tfRecord(event.bytes))
    }
}

/// One TFRecord: the payload's length (uint64), its masked CRC32C, the payload, the payload's masked
/// CRC32C, little-endian (tensorflow/core/lib/io/record_writer.h).
func tfRecord(_ payload: [UInt8]) -> Data {
    var length = [UInt8]()
    withUnsafeBytes(of: UInt64(payload.count).littleEndian) { length.append(contentsOf: $0) }
    var record = Data(length)
    withUnsafeBytes(of: maskedCRC32C(length).littleEndian) { record.append(contentsOf: $0) }
    record.append(contentsOf: payload)
    withUnsafeBytes(of: maskedCRC32C(payload).littleEndian) { record.append(contentsOf: $0) }
    return record
}

/// TFRecord's masked checksum: the CRC rotated right by 15 bits plus a constant, so that a CRC of data
/// holding CRCs stays strong (tensorflow/core/lib/hash/crc32c.h, `Mask`).
func maskedCRC32C(_ bytes: [UInt8]) -> UInt32 {
    let crc = crc32c(bytes)
    return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
}

/// CRC-32C (Castagnoli; reflected polynomial 0x82F63B78, initial and final XOR 0xFFFFFFFF), a byte at
/// a time through a 256-entry table.
func crc32c(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes { crc = crc32cTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
    return crc ^ 0xFFFF_FFFF
}

private let crc32cTable: [UInt32] = (0..<256).map { index in
    var entry = UInt32(index)
    for _ in 0..<8 { entry = entry & 1 != 0 ? (entry >> 1) ^ 0x82F6_3B78 : entry >> 1 }
    return entry
}
