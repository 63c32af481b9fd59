import Formats
import Foundation
import XCTest

/// An .npz past 4 GiB, made cheaply: the middle of the array is a hole of a sparse file (its CRC
/// folded in arithmetically), so the test writes a few KB and reads them back through the
/// Zip64 records.
final class NPZLargeTests: XCTestCase {
    func testArchiveOver4GiBUsesZip64AndReadsBack() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("npz-large-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/big.npz"
        let n = 1_400_000, image = 32 * 32 * 3                    // 4.30e9 bytes of samples
        XCTAssertGreaterThan(n * image, 1 << 32)
        let first = (0..<image).map { UInt8($0 % 251) }, last = (0..<image).map { UInt8(255 - $0 % 253) }
        let w = try NPZWriter(path: path, shape: [n, 32, 32, 3])
        XCTAssertTrue(w.zip64)
        try w.append(first)
        try w.appendZeros((n - 2) * image)
        try w.append(last)
        try w.finish()

        let z = try NPZArchive(path: path)
        XCTAssertTrue(z.zip64)
        XCTAssertGreaterThan(z.fileSize, 1 << 32)
        XCTAssertEqual(z.arrays.count, 1)
        let a = try XCTUnwrap(z.arrays.first)
        XCTAssertEqual(a.name, "arr_0")
        XCTAssertEqual(a.descr, "|u1")
        XCTAssertEqual(a.shape, [n, 32, 32, 3])
        XCTAssertEqual(a.compression, 0)
        let offset = try XCTUnwrap(a.dataOffset)
        // The entry is the .npy header (under 256 bytes) followed by the samples.
        let headerSize = a.uncompressedSize - UInt64(n * image)
        XCTAssertTrue(a.uncompressedSize > UInt64(n * image) && headerSize < 256, "entry size \(a.uncompressedSize)")
        XCTAssertEqual(a.compressedSize, a.uncompressedSize)
        let h = try XCTUnwrap(FileHandle(forReadingAtPath: path))
        defer { try? h.close() }
        try h.seek(toOffset: offset)
        XCTAssertEqual([UInt8](try h.read(upToCount: image) ?? Data()), first)
        try h.seek(toOffset: offset + UInt64((n - 1) * image))
        XCTAssertEqual([UInt8](try h.read(upToCount: image) ?? Data()), last)
        // The CRC of the whole entry, computed the slow way over the stored bytes, matches the
        // directory (reads 4.3 GB, mostly holes).
        try h.seek(toOffset: offset - headerSize)
        var crc: UInt32 = 0
        var remaining = Int(a.uncompressedSize)
        while remaining > 0 {
            let chunk = try h.read(upToCount: min(remaining, 64 << 20)) ?? Data()
            XCTAssertFalse(chunk.isEmpty)
            crc = chunk.withUnsafeBytes { crc32($0, previous: crc) }
            remaining -= chunk.count
        }
        XCTAssertEqual(crc, a.crc32)
    }
}
