// zlib helpers: gzip/zlib inflation of whole files, deflate, and CRC-32.

import CZlib
import Foundation

public enum Gzip {
    /// Inflates gzip (or zlib) data completely. Throws if the stream is truncated or corrupt, or
    /// (with `limit`) as soon as the output would exceed `limit` bytes (a bounded inflate, so a
    /// small compressed bomb cannot exhaust memory).
    public static func inflate(_ input: Data, name: String = "data", limit: Int? = nil) throws -> Data {
        var stream = z_stream()
        // 15 window bits + 32: detect a gzip or zlib header automatically.
        guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw PipelineError.corruptFile(path: name, reason: "zlib could not be initialized")
        }
        defer { inflateEnd(&stream) }
        var output = Data()
        let chunk = 1 << 20
        var outBuffer = [UInt8](repeating: 0, count: chunk)
        var status: Int32 = Z_OK
        try input.withUnsafeBytes { (inPtr: UnsafeRawBufferPointer) in
            stream.next_in = UnsafeMutablePointer(mutating: inPtr.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(input.count)
            repeat {
                try outBuffer.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress
                    stream.avail_out = uInt(chunk)
                    status = CZlib.inflate(&stream, Z_NO_FLUSH)
                    if status != Z_OK && status != Z_STREAM_END {
                        let detail = stream.msg.map { String(cString: $0) } ?? "code \(status)"
                        throw PipelineError.corruptFile(path: name, reason: status == Z_BUF_ERROR
                            ? "the compressed stream is truncated" : "the compressed stream is corrupt (\(detail))")
                    }
                    let produced = chunk - Int(stream.avail_out)
                    if let limit, output.count + produced > limit {
                        throw PipelineError.corruptFile(path: name, reason: "it inflates to more than \(limit) bytes")
                    }
                    output.append(out.baseAddress!, count: produced)
                }
            } while status != Z_STREAM_END
        }
        return output
    }

    /// Reads and inflates a .gz file.
    public static func inflateFile(_ path: String, limit: Int? = nil) throws -> Data {
        guard FileManager.default.fileExists(atPath: path) else { throw PipelineError.missingFile(path) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PipelineError.corruptFile(path: path, reason: "it cannot be read")
        }
        return try inflate(data, name: path, limit: limit)
    }

    /// zlib-format deflate (used to build PNG streams in tests and tools).
    public static func deflate(_ input: [UInt8], level: Int32 = 6) -> [UInt8] {
        var size = compressBound(uLong(input.count))
        var out = [UInt8](repeating: 0, count: Int(size))
        let status = compress2(&out, &size, input, uLong(input.count), level)
        precondition(status == Z_OK, "zlib compress2 failed with code \(status)")
        return Array(out[0..<Int(size)])
    }
}

/// CRC-32 (the zip/PNG/gzip polynomial), continuable from a previous value.
public func crc32(_ bytes: UnsafeRawBufferPointer, previous: UInt32 = 0) -> UInt32 {
    var crc = uLong(previous)
    var p = bytes.bindMemory(to: Bytef.self).baseAddress
    var remaining = bytes.count
    while remaining > 0 {
        let n = min(remaining, Int(Int32.max))
        crc = CZlib.crc32(crc, p, uInt(n))
        p = p.map { $0 + n }
        remaining -= n
    }
    return UInt32(crc)
}

public func crc32(_ bytes: [UInt8], previous: UInt32 = 0) -> UInt32 {
    bytes.withUnsafeBytes { crc32($0, previous: previous) }
}

/// CRC-32 continued over `count` zero bytes, without touching them (zlib's crc32_combine over
/// doubling blocks of zeros).
public func crc32Zeros(_ count: Int, previous: UInt32 = 0) -> UInt32 {
    var crc = uLong(previous)
    var block = [UInt8](repeating: 0, count: 1 << 20)
    var blockCRC = CZlib.crc32(0, &block, uInt(block.count))
    var blockLength = block.count
    var remaining = count
    // Binary decomposition of count into blocks of 2^k MiB, plus a tail shorter than 1 MiB.
    let tail = remaining % block.count
    remaining -= tail
    var blocks = remaining / block.count
    while blocks > 0 {
        if blocks & 1 == 1 { crc = crc32_combine(crc, blockCRC, off_t(blockLength)) }
        blockCRC = crc32_combine(blockCRC, blockCRC, off_t(blockLength))
        blockLength *= 2
        blocks >>= 1
    }
    if tail > 0 { crc = CZlib.crc32(crc, &block, uInt(tail)) }
    return UInt32(crc)
}
