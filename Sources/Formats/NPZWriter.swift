// ADM evaluator sample file: a .npz (zip, stored entries) holding `arr_0.npy`, uint8 NHWC.
// Written streaming, so 50k samples never sit in memory; Zip64 records are used when the entry
// or the archive passes 4 GiB (or on request, for testing).

import Foundation

public final class NPZWriter {
    public let path: String
    public let shape: [Int]
    public let zip64: Bool
    private let entryName: String
    private var handle: FileHandle?
    private let tmpPath: String
    private var crc: UInt32 = 0
    private var written = 0
    private let header: [UInt8]
    private let dataSize: Int

    /// Begins `path` with one uint8 array of `shape` (e.g. [N, H, W, 3]) named `name`.
    public init(path: String, shape: [Int], name: String = "arr_0", forceZip64: Bool = false) throws {
        guard !shape.isEmpty, shape.allSatisfy({ $0 >= 0 }) else {
            throw PipelineError.invalidArgument("An .npz array needs a non-negative shape.")
        }
        self.path = path
        self.shape = shape
        self.entryName = name + ".npy"
        header = NPZWriter.npyHeader(shape: shape)
        dataSize = shape.reduce(1, *)
        let entrySize = header.count + dataSize
        zip64 = forceZip64 || entrySize >= 0xFFFF_FFFF || entrySize + 200 >= 0xFFFF_FFFF
        tmpPath = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: tmpPath, contents: nil),
              let h = FileHandle(forWritingAtPath: tmpPath) else {
            throw PipelineError.writeFailed(path: path, reason: "the file cannot be created")
        }
        handle = h
        try write(localHeader(crc: 0))
        try write(header)
        crc = crc32(header)
    }

    deinit {
        if handle != nil { try? handle?.close(); unlink(tmpPath) }
    }

    /// The .npy v1.0 header: magic, version, length, dict padded so data starts 64-aligned.
    static func npyHeader(shape: [Int]) -> [UInt8] {
        let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var dict = "{'descr': '|u1', 'fortran_order': False, 'shape': \(dims), }"
        let unpadded = 10 + dict.utf8.count + 1
        dict += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        let n = dict.utf8.count
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(n & 0xFF), UInt8(n >> 8)] + Array(dict.utf8)
    }

    private func write(_ bytes: [UInt8]) throws {
        do { try handle!.write(contentsOf: Data(bytes)) } catch {
            throw PipelineError.writeFailed(path: path, reason: "\(error.localizedDescription) (disk full?)")
        }
    }

    private var entrySize: Int { header.count + dataSize }

    private func localHeader(crc: UInt32) -> [UInt8] {
        var b = ZipBytes()
        b.u32(0x0403_4B50)
        b.u16(zip64 ? 45 : 20)          // version needed
        b.u16(0)                        // flags
        b.u16(0)                        // method: stored
        b.u16(0); b.u16(0x21)           // time, date: 1980-01-01 00:00
        b.u32(crc)
        b.u32(zip64 ? 0xFFFF_FFFF : UInt32(entrySize))
        b.u32(zip64 ? 0xFFFF_FFFF : UInt32(entrySize))
        b.u16(UInt16(entryName.utf8.count))
        b.u16(zip64 ? 20 : 0)
        b.bytes(Array(entryName.utf8))
        if zip64 {
            b.u16(0x0001); b.u16(16)
            b.u64(UInt64(entrySize)); b.u64(UInt64(entrySize))
        }
        return b.data
    }

    /// Appends raw uint8 NHWC data (any number of whole or partial samples, in order).
    public func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard handle != nil else { throw PipelineError.invalidArgument("The .npz writer is closed.") }
        guard written + bytes.count <= dataSize else {
            throw PipelineError.invalidArgument("More data than the declared shape \(shape) holds.")
        }
        do { try handle!.write(contentsOf: Data(bytes)) } catch {
            throw PipelineError.writeFailed(path: path, reason: "\(error.localizedDescription) (disk full?)")
        }
        crc = crc32(bytes, previous: crc)
        written += bytes.count
    }

    public func append(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try append($0) } }

    /// Appends `count` zero bytes by seeking past them (a hole in a sparse file), with their
    /// CRC folded in arithmetically: how a test makes an archive over 4 GiB cheaply.
    public func appendZeros(_ count: Int) throws {
        guard handle != nil else { throw PipelineError.invalidArgument("The .npz writer is closed.") }
        guard count >= 0, written + count <= dataSize else {
            throw PipelineError.invalidArgument("More data than the declared shape \(shape) holds.")
        }
        do { try handle!.seek(toOffset: try handle!.offset() + UInt64(count)) } catch {
            throw PipelineError.writeFailed(path: path, reason: error.localizedDescription)
        }
        crc = crc32Zeros(count, previous: crc)
        written += count
    }

    /// Writes the central directory, fixes the CRC in the local header, and renames into place.
    public func finish() throws {
        guard let h = handle else { throw PipelineError.invalidArgument("The .npz writer is closed.") }
        guard written == dataSize else {
            throw PipelineError.invalidArgument("The .npz array has \(written) of \(dataSize) bytes; it cannot be finished yet.")
        }
        let centralOffset = UInt64(localHeader(crc: 0).count + entrySize)
        var cd = ZipBytes()
        cd.u32(0x0201_4B50)
        cd.u16(zip64 ? 0x032D : 0x0314)  // made by: Unix, spec 4.5 / 2.0
        cd.u16(zip64 ? 45 : 20)
        cd.u16(0); cd.u16(0)
        cd.u16(0); cd.u16(0x21)
        cd.u32(crc)
        cd.u32(zip64 ? 0xFFFF_FFFF : UInt32(entrySize))
        cd.u32(zip64 ? 0xFFFF_FFFF : UInt32(entrySize))
        cd.u16(UInt16(entryName.utf8.count))
        cd.u16(zip64 ? 28 : 0)
        cd.u16(0)                       // comment length
        cd.u16(0)                       // disk number start
        cd.u16(0)                       // internal attributes
        cd.u32(0o100644 << 16)          // external attributes: regular file rw-r--r--
        cd.u32(zip64 ? 0xFFFF_FFFF : 0) // local header offset
        cd.bytes(Array(entryName.utf8))
        if zip64 {
            cd.u16(0x0001); cd.u16(24)
            cd.u64(UInt64(entrySize)); cd.u64(UInt64(entrySize)); cd.u64(0)
        }
        var end = ZipBytes()
        let cdSize = UInt64(cd.data.count)
        if zip64 {
            let zip64EndOffset = centralOffset + cdSize
            end.u32(0x0606_4B50)
            end.u64(44)                 // size of the rest of this record
            end.u16(0x032D); end.u16(45)
            end.u32(0); end.u32(0)
            end.u64(1); end.u64(1)
            end.u64(cdSize); end.u64(centralOffset)
            end.u32(0x0706_4B50)        // zip64 end of central directory locator
            end.u32(0)
            end.u64(zip64EndOffset)
            end.u32(1)
        }
        end.u32(0x0605_4B50)
        end.u16(0); end.u16(0)
        end.u16(zip64 ? 0xFFFF : 1); end.u16(zip64 ? 0xFFFF : 1)
        end.u32(zip64 ? 0xFFFF_FFFF : UInt32(cdSize))
        end.u32(zip64 ? 0xFFFF_FFFF : UInt32(centralOffset))
        end.u16(0)
        do {
            try h.write(contentsOf: Data(cd.data + end.data))
            try h.seek(toOffset: 0)
            try h.write(contentsOf: Data(localHeader(crc: crc)))
            try h.synchronize()
            try h.close()
        } catch {
            throw PipelineError.writeFailed(path: path, reason: "\(error.localizedDescription) (disk full?)")
        }
        handle = nil
        if rename(tmpPath, path) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(tmpPath)
            throw PipelineError.writeFailed(path: path, reason: reason)
        }
    }

    /// Writes a whole uint8 array at once.
    public static func write(path: String, array: [UInt8], shape: [Int], forceZip64: Bool = false) throws {
        guard array.count == shape.reduce(1, *) else {
            throw PipelineError.invalidArgument("The array has \(array.count) bytes but shape \(shape) needs \(shape.reduce(1, *)).")
        }
        let w = try NPZWriter(path: path, shape: shape, forceZip64: forceZip64)
        try w.append(array)
        try w.finish()
    }
}

/// Little-endian byte builder for zip records.
struct ZipBytes {
    var data: [UInt8] = []
    mutating func u16(_ v: UInt16) { data += [UInt8(v & 0xFF), UInt8(v >> 8)] }
    mutating func u32(_ v: UInt32) { for i in 0..<4 { data.append(UInt8((v >> (8 * UInt32(i))) & 0xFF)) } }
    mutating func u64(_ v: UInt64) { for i in 0..<8 { data.append(UInt8((v >> (8 * UInt64(i))) & 0xFF)) } }
    mutating func bytes(_ b: [UInt8]) { data += b }
}
