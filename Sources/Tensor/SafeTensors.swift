// safetensors reading (memory-mapped; F32, F16, BF16, F64, I64 converted) and writing.
//
// Layout: 8-byte little-endian header length, a JSON header mapping names to
// {dtype, shape, data_offsets: [begin, end]} (offsets relative to the byte after the header),
// optional "__metadata__", then the data.

import Foundation

public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    case io(String, String)
    case truncated(String, String)
    case corruptHeader(String, String)
    case unknownDType(String, String, String)
    case badOffsets(String, String, String)
    case missingKey(String, String)
    case unexpectedKeys(String, [String])
    case shapeMismatch(String, expected: [Int], found: [Int], file: String)
    case config(String)

    public var description: String {
        switch self {
        case let .io(file, why): return "cannot read \(file): \(why)"
        case let .truncated(file, why): return "\(file) is truncated: \(why)"
        case let .corruptHeader(file, why): return "\(file) has a corrupt safetensors header: \(why)"
        case let .unknownDType(file, key, dtype): return "\(file): tensor '\(key)' has unsupported dtype \(dtype)"
        case let .badOffsets(file, key, why): return "\(file): tensor '\(key)' has bad data offsets: \(why)"
        case let .missingKey(file, key): return "\(file) is missing tensor '\(key)'"
        case let .unexpectedKeys(file, keys):
            let shown = keys.prefix(5).joined(separator: "', '")
            return "\(file) has \(keys.count) tensor(s) the model does not use: '\(shown)'\(keys.count > 5 ? ", ..." : "")"
        case let .shapeMismatch(key, expected, found, file):
            return "\(file): tensor '\(key)' has shape \(found) but the model expects \(expected)"
        case let .config(why): return why
        }
    }
}

public enum DType: String, Sendable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64", i64 = "I64", i32 = "I32"
    public var size: Int {
        switch self {
        case .f32, .i32: return 4
        case .f16, .bf16: return 2
        case .f64, .i64: return 8
        }
    }
}

/// One entry of a safetensors file.
public struct TensorInfo: Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let begin: Int
    public let end: Int
}

/// A read-only memory mapping of a whole file. Pages that have been consumed can be handed
/// back (`release`) so that loading a large checkpoint does not keep a second copy resident.
final class MappedFile {
    let base: UnsafeRawPointer?
    let count: Int

    init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw CheckpointError.io(path, String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw CheckpointError.io(path, String(cString: strerror(errno))) }
        count = Int(st.st_size)
        if count == 0 { base = nil; return }
        guard let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw CheckpointError.io(path, "cannot map the file: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
    }

    deinit { if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) } }

    func withUnsafeBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    func subdata(in range: Range<Int>) -> Data { Data(bytes: base! + range.lowerBound, count: range.count) }

    /// Drops the resident pages wholly inside `range` (they are re-read from disk if touched again).
    func release(_ range: Range<Int>) {
        guard let base else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = (range.lowerBound + page - 1) / page * page, hi = range.upperBound / page * page
        if hi > lo { madvise(UnsafeMutableRawPointer(mutating: base + lo), hi - lo, Int32(MADV_DONTNEED)) }
    }
}

/// A safetensors file opened read-only and memory-mapped.
public final class SafeTensorsFile {
    public let path: String
    public let entries: [String: TensorInfo]
    public let metadata: [String: String]
    /// Names in file order (by data offset).
    public let names: [String]
    private let data: MappedFile
    private let dataStart: Int

    public init(path: String) throws {
        self.path = path
        let name = (path as NSString).lastPathComponent
        guard FileManager.default.fileExists(atPath: path) else { throw CheckpointError.io(path, "no such file") }
        data = try MappedFile(path: path)
        guard data.count >= 8 else { throw CheckpointError.truncated(name, "\(data.count) bytes, shorter than the 8-byte header length") }
        let headerLength = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) }
        guard headerLength <= 100_000_000 else {
            throw CheckpointError.corruptHeader(name, "header length \(headerLength) is implausibly large")
        }
        guard 8 + Int(headerLength) <= data.count else {
            throw CheckpointError.truncated(name, "header of \(headerLength) bytes but the file has \(data.count)")
        }
        dataStart = 8 + Int(headerLength)
        let headerData = data.subdata(in: 8..<dataStart)
        guard let json = try? JSONSerialization.jsonObject(with: headerData), let dict = json as? [String: Any] else {
            throw CheckpointError.corruptHeader(name, "not a JSON object")
        }
        var entries: [String: TensorInfo] = [:]
        var meta: [String: String] = [:]
        let available = data.count - dataStart
        for (key, value) in dict {
            if key == "__metadata__" {
                if let m = value as? [String: Any] { for (k, v) in m { meta[k] = "\(v)" } }
                continue
            }
            guard let e = value as? [String: Any], let dt = e["dtype"] as? String,
                  let shapeAny = e["shape"] as? [Any], let offs = e["data_offsets"] as? [Any], offs.count == 2 else {
                throw CheckpointError.corruptHeader(name, "entry '\(key)' lacks dtype, shape or data_offsets")
            }
            guard let dtype = DType(rawValue: dt) else { throw CheckpointError.unknownDType(name, key, dt) }
            let shape = shapeAny.compactMap { ($0 as? NSNumber)?.intValue }
            guard shape.count == shapeAny.count, shape.allSatisfy({ $0 >= 0 }) else {
                throw CheckpointError.corruptHeader(name, "entry '\(key)' has an invalid shape")
            }
            guard let b = (offs[0] as? NSNumber)?.intValue, let en = (offs[1] as? NSNumber)?.intValue, b >= 0, en >= b else {
                throw CheckpointError.badOffsets(name, key, "not a valid [begin, end] pair")
            }
            let (n, overflow) = shape.reduce((1, false)) { acc, d in
                let (p, o) = acc.0.multipliedReportingOverflow(by: d); return (p, acc.1 || o)
            }
            guard !overflow, n * dtype.size == en - b else {
                throw CheckpointError.badOffsets(name, key, "\(en - b) bytes for shape \(shape) of \(dt)")
            }
            guard en <= available else {
                throw CheckpointError.truncated(name, "tensor '\(key)' ends at byte \(en) of a \(available)-byte data section")
            }
            entries[key] = TensorInfo(name: key, dtype: dtype, shape: shape, begin: b, end: en)
        }
        self.entries = entries
        metadata = meta
        names = entries.values.sorted { ($0.begin, $0.name) < ($1.begin, $1.name) }.map(\.name)
    }

    /// Reads a tensor as float32 (integers and float64 are converted too).
    public func tensor(_ key: String) throws -> Tensor {
        guard let info = entries[key] else { throw CheckpointError.missingKey((path as NSString).lastPathComponent, key) }
        let out = Tensor(uninitialized: info.shape)
        try read(info, into: out.pointer)
        return out
    }

    /// Converts an entry into float32 at `dst` (count = product of its shape).
    public func read(_ info: TensorInfo, into dst: UnsafeMutablePointer<Float>) throws {
        let n = info.shape.reduce(1, *)
        data.withUnsafeBytes { raw in
            let src = raw.baseAddress! + dataStart + info.begin
            switch info.dtype {
            case .f32: memcpy(dst, src, n * 4)
            case .f16:
                for i in 0..<n { dst[i] = HalfPrecision.f16ToF32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
            case .bf16:
                for i in 0..<n { dst[i] = HalfPrecision.bf16ToF32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
            case .f64:
                for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
            case .i64:
                for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
            case .i32:
                for i in 0..<n { dst[i] = Float(src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
            }
        }
        // The values now live in the tensor; let the kernel reclaim the mapped pages.
        data.release((dataStart + info.begin)..<(dataStart + info.end))
    }

    /// Reads an integer tensor exactly (I64 / I32).
    public func integers(_ key: String) throws -> [Int] {
        guard let info = entries[key] else { throw CheckpointError.missingKey((path as NSString).lastPathComponent, key) }
        let n = info.shape.reduce(1, *)
        return data.withUnsafeBytes { raw in
            let src = raw.baseAddress! + dataStart + info.begin
            switch info.dtype {
            case .i64: return (0..<n).map { Int(src.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) }
            case .i32: return (0..<n).map { Int(src.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
            default:
                var tmp = [Float](repeating: 0, count: n)
                tmp.withUnsafeMutableBufferPointer { try? read(info, into: $0.baseAddress!) }
                return tmp.map { Int($0) }
            }
        }
    }

    /// Reads a float64 tensor exactly.
    public func doubles(_ key: String) throws -> [Double] {
        guard let info = entries[key] else { throw CheckpointError.missingKey((path as NSString).lastPathComponent, key) }
        let n = info.shape.reduce(1, *)
        if info.dtype == .f64 {
            return data.withUnsafeBytes { raw in
                let src = raw.baseAddress! + dataStart + info.begin
                return (0..<n).map { src.loadUnaligned(fromByteOffset: 8 * $0, as: Double.self) }
            }
        }
        return try tensor(key).scalars.map(Double.init)
    }
}

/// Writes tensors to a safetensors file atomically (temporary file, then rename).
/// `dtype` may be F32, F16 or BF16 (the values are rounded to nearest even).
public func writeSafeTensors(_ tensors: [(String, Tensor)], to path: String, dtype: DType = .f32,
                             metadata: [String: String] = [:]) throws {
    precondition([.f32, .f16, .bf16].contains(dtype), "writeSafeTensors: dtype \(dtype) not supported for writing")
    var header: [String: Any] = [:]
    if !metadata.isEmpty { header["__metadata__"] = metadata }
    var offset = 0
    for (name, t) in tensors {
        let bytes = t.count * dtype.size
        header[name] = ["dtype": dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
        offset += bytes
    }
    var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    while json.count % 8 != 0 { json.append(0x20) }
    var out = Data(capacity: 8 + json.count + offset)
    var len = UInt64(json.count).littleEndian
    withUnsafeBytes(of: &len) { out.append(contentsOf: $0) }
    out.append(json)
    for (_, t) in tensors {
        switch dtype {
        case .f32:
            out.append(UnsafeBufferPointer(start: t.pointer, count: t.count))
        case .f16:
            let bits = (0..<t.count).map { HalfPrecision.f32ToF16(t.pointer[$0]).littleEndian }
            bits.withUnsafeBufferPointer { out.append($0) }
        case .bf16:
            let bits = (0..<t.count).map { HalfPrecision.f32ToBF16(t.pointer[$0]).littleEndian }
            bits.withUnsafeBufferPointer { out.append($0) }
        default: break
        }
    }
    try atomicWrite(out, to: path)
}

/// Writes data to `path` through a temporary file in the same folder and a rename, so a crash
/// or a full disk never leaves a partial file under the final name.
public func atomicWrite(_ data: Data, to path: String) throws {
    let tmp = path + ".tmp-\(getpid())"
    do {
        try data.write(to: URL(fileURLWithPath: tmp))
        let fd = open(tmp, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
        if rename(tmp, path) != 0 { throw CheckpointError.io(path, String(cString: strerror(errno))) }
    } catch {
        unlink(tmp)
        if let e = error as? CheckpointError { throw e }
        throw CheckpointError.io(path, "write failed: \(error.localizedDescription)")
    }
}
