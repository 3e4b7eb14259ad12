@testable import EpicycleExport
import Foundation
import Testing

@Suite struct ProtobufTests {
    /// The encoding guide's examples: field 1 = 150 is 08 96 01; field 2 = "testing" is 12 07 + the
    /// bytes; −1 takes ten bytes.
    @Test func fieldsEncodeAsTheWireFormatSays() {
        #expect(ProtobufMessage { $0.int(1, 150) }.bytes == [0x08, 0x96, 0x01])
        #expect(ProtobufMessage { $0.string(2, "testing") }.bytes == [0x12, 0x07] + Array("testing".utf8))
        #expect(ProtobufMessage { $0.int(1, -1) }.bytes == [0x08] + [UInt8](repeating: 0xFF, count: 9) + [0x01])
        #expect(ProtobufMessage { $0.float(2, 1) }.bytes == [0x15, 0x00, 0x00, 0x80, 0x3F])
        #expect(ProtobufMessage { $0.double(1, 1) }.bytes == [0x09, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F])
        let inner = ProtobufMessage { $0.int(1, 150) }
        #expect(ProtobufMessage { $0.message(3, inner) }.bytes == [0x1A, 0x03, 0x08, 0x96, 0x01])
    }

    /// CRC-32C check values: "123456789" (the catalogue's check value) and 32 zero bytes (RFC 3720, B.4).
    @Test func crc32cMatchesPublishedCheckValues() {
        #expect(crc32c(Array("123456789".utf8)) == 0xE306_9283)
        #expect(crc32c([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(crc32c([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
    }

    @Test func aTFRecordFramesItsPayloadWithMaskedChecksums() {
        let payload = Array("event".utf8)
        let record = [UInt8](tfRecord(payload))
        #expect(record.count == 8 + 4 + payload.count + 4)
        #expect(Array(record[0..<8]) == [5, 0, 0, 0, 0, 0, 0, 0])
        func littleEndian(_ bytes: ArraySlice<UInt8>) -> UInt32 { bytes.reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        #expect(littleEndian(record[8..<12]) == maskedCRC32C(Array(record[0..<8])))
        #expect(Array(record[12..<17]) == payload)
        #expect(littleEndian(record[17..<21]) == maskedCRC32C(payload))
        let crc = crc32c(payload)
        #expect(maskedCRC32C(payload) == ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8)
    }
}
