import CZlib
import EpicycleData
import Testing

/// The chunks of a PNG file as (type, data), checking each chunk's CRC on the way.
private func chunks(_ file: [UInt8]) -> [(type: String, data: [UInt8])] {
    func word(_ offset: Int) -> Int { file[offset..<(offset + 4)].reduce(0) { $0 << 8 | Int($1) } }
    var result = [(type: String, data: [UInt8])](), offset = 8
    while offset + 12 <= file.count {
        let length = word(offset)
        let typeAndData = Array(file[(offset + 4)..<(offset + 8 + length)])
        #expect(word(offset + 8 + length) == Int(crc32(0, typeAndData, uInt(typeAndData.count))), "bad CRC")
        result.append((String(decoding: typeAndData.prefix(4), as: UTF8.self), Array(typeAndData.dropFirst(4))))
        offset += 12 + length
    }
    #expect(offset == file.count)
    return result
}

@Suite struct PNGTests {
    @Test(arguments: [1, 3])
    func encodesSignatureHeaderPixelsAndEnd(channels: Int) {
        let (width, height) = (3, 2)
        let pixels = (0..<(width * height * channels)).map { UInt8(40 * $0 % 256) }
        let file = encodePNG(pixels: pixels, width: width, height: height, channels: channels)
        #expect(Array(file.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        let parts = chunks(file)
        #expect(parts.map(\.type) == ["IHDR", "IDAT", "IEND"])
        #expect(parts[0].data == [0, 0, 0, 3, 0, 0, 0, 2, 8, channels == 1 ? 0 : 2, 0, 0, 0])
        #expect(parts[2].data.isEmpty)
        // The IDAT stream inflates to each row behind a filter byte 0.
        let rowLength = width * channels
        var inflated = [UInt8](repeating: 0, count: height * (rowLength + 1))
        var inflatedLength = uLongf(inflated.count)
        #expect(uncompress(&inflated, &inflatedLength, parts[1].data, uLong(parts[1].data.count)) == Z_OK)
        #expect(Int(inflatedLength) == inflated.count)
        let firstRow: [UInt8] = [0] + pixels[0..<rowLength]
        let secondRow: [UInt8] = [0] + pixels[rowLength...]
        #expect(inflated == firstRow + secondRow)
    }
}
