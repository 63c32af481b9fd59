// Reads the directory of a .npz (zip of .npy arrays, stored or deflated, Zip64 or not) and
// each array's header, without reading the data: what `gen info` reports and what tests check
// the writer against.

import Foundation

public struct NPZArrayInfo: Sendable, Equatable {
    /// Array name (the entry name without ".npy").
    public var name: String
    /// numpy dtype string, e.g. "|u1", "<f4".
    public var descr: String
    public var shape: [Int]
    public var fortranOrder: Bool
    /// 0 stored, 8 deflated.
    public var compression: Int
    public var compressedSize: UInt64
    public var uncompressedSize: UInt64
    /// Byte offset of the array data in the file (stored entries only).
    public var dataOffset: UInt64?
    public var crc32: UInt32
}

public struct NPZArchive: Sendable {
    public let path: String
    public let arrays: [NPZArrayInfo]
    public let zip64: Bool
    public let fileSize: UInt64

    public init(path: String) throws {
        self.path = path
        guard let h = FileHandle(forReadingAtPath: path) else { throw PipelineError.missingFile(path) }
        defer { try? h.close() }
        let bad = { (why: String) in PipelineError.corruptFile(path: path, reason: why) }
        func read(_ offset: UInt64, _ count: Int) throws -> [UInt8] {
            try h.seek(toOffset: offset)
            let d = try h.read(upToCount: count) ?? Data()
            guard d.count == count else { throw bad("it ends early (a truncated .npz?)") }
            return [UInt8](d)
        }
        let size = try h.seekToEnd()
        fileSize = size
        /// Whether `count` bytes at `offset` lie inside the file (no overflow on absurd values).
        func fits(_ offset: UInt64, _ count: UInt64) -> Bool { offset <= size && count <= size - offset }
        guard size >= 22 else { throw bad("it is too short for a zip archive") }
        // End of central directory: the last signature within the final 64 KiB + 22 bytes.
        let tailLength = Int(min(size, 65_557))
        let tail = try read(size - UInt64(tailLength), tailLength)
        guard let eocd = stride(from: tailLength - 22, through: 0, by: -1).first(where: {
            tail[$0] == 0x50 && tail[$0 + 1] == 0x4B && tail[$0 + 2] == 0x05 && tail[$0 + 3] == 0x06
        }) else { throw bad("it is not a zip archive (no end of central directory)") }
        let eocdOffset = size - UInt64(tailLength) + UInt64(eocd)
        var entries = UInt64(le16(tail, eocd + 10)), cdSize = UInt64(le32(tail, eocd + 12)), cdOffset = UInt64(le32(tail, eocd + 16))
        var isZip64 = false
        if eocdOffset >= 20 {
            let loc = try read(eocdOffset - 20, 20)
            if le32(loc, 0) == 0x0706_4B50 {
                let recordOffset = le64(loc, 8)
                guard fits(recordOffset, 56) else { throw bad("its Zip64 locator points outside the file") }
                let rec = try read(recordOffset, 56)
                guard le32(rec, 0) == 0x0606_4B50 else { throw bad("its Zip64 end record is missing") }
                entries = le64(rec, 32); cdSize = le64(rec, 40); cdOffset = le64(rec, 48)
                isZip64 = true
            }
        }
        zip64 = isZip64
        guard entries <= 100_000, cdSize <= 64 << 20, fits(cdOffset, cdSize) else {
            throw bad("its central directory (\(entries) entries, \(cdSize) bytes at \(cdOffset)) does not fit the file")
        }
        let cd = try read(cdOffset, Int(cdSize))
        var arrays: [NPZArrayInfo] = []
        var p = 0
        for _ in 0..<entries {
            guard p + 46 <= cd.count, le32(cd, p) == 0x0201_4B50 else { throw bad("its central directory is corrupt") }
            let method = Int(le16(cd, p + 10)), crc = le32(cd, p + 16)
            var csize = UInt64(le32(cd, p + 20)), usize = UInt64(le32(cd, p + 24))
            let nameLength = Int(le16(cd, p + 28)), extraLength = Int(le16(cd, p + 30)), commentLength = Int(le16(cd, p + 32))
            var local = UInt64(le32(cd, p + 42))
            guard p + 46 + nameLength + extraLength <= cd.count else { throw bad("its central directory is corrupt") }
            let name = String(decoding: cd[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
            // Zip64 extra field: the 64-bit values of the fields set to 0xFFFFFFFF, in order.
            var e = p + 46 + nameLength
            let extraEnd = e + extraLength
            while e + 4 <= extraEnd {
                let id = le16(cd, e), n = Int(le16(cd, e + 2))
                if id == 1 {
                    var q = e + 4
                    func next() -> UInt64 { defer { q += 8 }; return q + 8 <= e + 4 + n ? le64(cd, q) : 0 }
                    if usize == 0xFFFF_FFFF { usize = next() }
                    if csize == 0xFFFF_FFFF { csize = next() }
                    if local == 0xFFFF_FFFF { local = next() }
                }
                e += 4 + n
            }
            p = extraEnd + commentLength
            guard name.hasSuffix(".npy") else { continue }
            guard fits(local, 30) else { throw bad("entry \(name) points outside the file") }
            let lh = try read(local, 30)
            guard le32(lh, 0) == 0x0403_4B50 else { throw bad("entry \(name) has no local header") }
            let start = local + 30 + UInt64(le16(lh, 26)) + UInt64(le16(lh, 28))   // <= size + 2^17: no overflow
            var info = NPZArrayInfo(name: String(name.dropLast(4)), descr: "?", shape: [], fortranOrder: false,
                                    compression: method, compressedSize: csize, uncompressedSize: usize, dataOffset: nil, crc32: crc)
            if method == 0 {
                guard fits(start, 12) else { throw bad("entry \(name) ends early") }
                let magic = try read(start, 10)
                guard magic[0] == 0x93, Array(magic[1...5]) == Array("NUMPY".utf8) else { throw bad("entry \(name) is not a .npy array") }
                let headerLength = magic[6] == 1 ? Int(le16(magic, 8)) : Int(le32(try read(start + 8, 4), 0))

                let headerStart = start + (magic[6] == 1 ? 10 : 12)
                guard headerLength <= 1 << 20, fits(headerStart, UInt64(headerLength)) else { throw bad("entry \(name) has a bad .npy header") }
                let dict = String(decoding: try read(headerStart, headerLength), as: UTF8.self)
                info.descr = Self.field(dict, "descr") ?? "?"
                info.fortranOrder = Self.field(dict, "fortran_order") == "True"
                if let s = Self.field(dict, "shape") {
                    info.shape = s.split(whereSeparator: { ",() ".contains($0) }).compactMap { Int($0) }
                }
                info.dataOffset = headerStart + UInt64(headerLength)
            }
            arrays.append(info)
        }
        self.arrays = arrays
    }

    /// The value of `key` in a .npy header dict ("{'descr': '|u1', 'shape': (2, 3), }").
    static func field(_ dict: String, _ key: String) -> String? {
        guard let r = dict.range(of: "'\(key)':") else { return nil }
        var rest = dict[r.upperBound...].drop(while: { $0 == " " })
        if rest.first == "(" { return rest.firstIndex(of: ")").map { String(rest[...$0]) } }
        if rest.first == "'" { rest = rest.dropFirst(); return rest.firstIndex(of: "'").map { String(rest[..<$0]) } }
        return rest.firstIndex(where: { $0 == "," || $0 == "}" }).map { String(rest[..<$0]).trimmingCharacters(in: .whitespaces) }
    }
}

private func le16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
private func le32(_ b: [UInt8], _ i: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[i + $1]) << (8 * UInt32($1)) } }
private func le64(_ b: [UInt8], _ i: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[i + $1]) << (8 * UInt64($1)) } }
