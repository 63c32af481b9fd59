import Foundation
@testable import Formats
@testable import Pipeline

/// A fresh temporary folder, removed by the caller's defer.
func makeTempDir(_ name: String = #function) -> String {
    let safe = name.filter { $0.isLetter || $0.isNumber }
    let path = NSTemporaryDirectory() + "pipeline-tests-\(safe)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A minimal PNG built by hand (for formats our writer does not produce, e.g. 16-bit).
/// `colorType` 0 = gray, 2 = RGB, 6 = RGBA; `samples` are big-endian packed rows without filter bytes.
func handMadePNG(width: Int, height: Int, bitDepth: UInt8, colorType: UInt8, rows: [[UInt8]]) -> Data {
    func chunk(_ type: String, _ body: [UInt8]) -> [UInt8] {
        var out = ZipBytes()
        let n = UInt32(body.count)
        out.bytes([UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)])
        let typed = Array(type.utf8) + body
        out.bytes(typed)
        let c = crc32(typed)
        out.bytes([UInt8(c >> 24), UInt8((c >> 16) & 0xFF), UInt8((c >> 8) & 0xFF), UInt8(c & 0xFF)])
        return out.data
    }
    func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
    let ihdr = be32(width) + be32(height) + [bitDepth, colorType, 0, 0, 0]
    var raw: [UInt8] = []
    for r in rows { raw.append(0); raw += r }
    let bytes = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", ihdr)
        + chunk("IDAT", Gzip.deflate(raw)) + chunk("IEND", [])
    return Data(bytes)
}
