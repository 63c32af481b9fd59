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
        case let .io(file, why): return "cannot read \(file.oneLine(limit: 400)): \(why)"
        case let .truncated(file, why): return "\(file.oneLine()) is truncated: \(why.oneLine(limit: 400))"
        case let .corruptHeader(file, why): return "\(file.oneLine()) has a corrupt safetensors header: \(why.oneLine(limit: 400))"
        case let .unknownDType(file, key, dtype): return "\(file.oneLine()): tensor '\(key.oneLine())' has unsupported dtype \(dtype.oneLine())"
        case let .badOffsets(file, key, why): return "\(file.oneLine()): tensor '\(key.oneLine())' has bad data offsets: \(why.oneLine(limit: 400))"
        case let .missingKey(file, key): return "\(file.oneLine()) is missing tensor '\(key.oneLine())'"
        case let .unexpectedKeys(file, keys):
            let shown = keys.prefix(5).map { $0.oneLine() }.joined(separator: "', '")
            return "\(file) has \(keys.count) tensor(s) the model does not use: '\(shown)'\(keys.count > 5 ? ", ..." : "")"
        case let .shapeMismatch(key, expected, found, file):
            return "\(file): tensor '\(key)' has shape \(found) but the model expects \(expected)"
        case let .config(why): return why.oneLine(limit: 600)
        }
    }
}

extension String {
    /// The text with control characters escaped and cut to `limit` characters, so that a name
    /// read from a file keeps an error message on one line.
    public func oneLine(limit: Int = 120) -> String {
        var out = ""
        for c in unicodeScalars.prefix(limit) {
            if c.value < 0x20 || c.value == 0x7F { out += "\\u{\(String(c.value, radix: 16))}" } else { out.unicodeScalars.append(c) }
        }
        return unicodeScalars.count > limit ? out + "..." : out
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

/// The validated header of a safetensors file: every shape product and byte count is computed
/// with overflow checks, every offset is a whole number inside the data section, sizes match
/// the dtype, and no two tensors overlap. Nothing is allocated from a header number before
/// it has been checked against the file's own size.
public struct SafeTensorsHeader: Sendable {
    public let entries: [String: TensorInfo]
    public let metadata: [String: String]
    /// Names in file order (by data offset).
    public let names: [String]
    /// Offset of the data section (8 + header length).
    public let dataStart: Int
    /// Bytes of the data section.
    public let dataSize: Int

    /// The largest header accepted (the format's own reference reader uses the same bound).
    public static let maxHeaderLength = 100_000_000

    /// Parses the start of a file of `fileSize` bytes; `bytes` holds at least the 8-byte length
    /// and the header (the whole file is fine). `name` is used in the error messages.
    public static func parse(_ bytes: UnsafeRawBufferPointer, fileSize: Int, name: String) throws -> SafeTensorsHeader {
        guard fileSize >= 8, bytes.count >= 8 else {
            throw CheckpointError.truncated(name, "\(fileSize) bytes, shorter than the 8-byte header length")
        }
        let headerLength = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        guard headerLength <= UInt64(maxHeaderLength) else {
            throw CheckpointError.corruptHeader(name, "header length \(headerLength) is implausibly large")
        }
        let length = Int(headerLength)
        guard 8 + length <= fileSize, 8 + length <= bytes.count else {
            throw CheckpointError.truncated(name, "header of \(headerLength) bytes but the file has \(fileSize)")
        }
        let dataStart = 8 + length
        let available = fileSize - dataStart
        let headerData = Data(bytes: bytes.baseAddress! + 8, count: length)
        let root: JSONValue
        do {
            root = try JSONDecoder().decode(JSONValue.self, from: headerData)
        } catch {
            throw CheckpointError.corruptHeader(name, "not a JSON object (\(JSONFile.reason(error, data: headerData)))")
        }
        guard case let .object(dict) = root else { throw CheckpointError.corruptHeader(name, "not a JSON object") }

        /// A whole non-negative number that fits an Int, or nil (fractions, 1e23, negatives, strings).
        func count(_ v: JSONValue) -> Int? {
            if case let .int(i) = v, i >= 0 { return i }
            return nil
        }
        var entries: [String: TensorInfo] = [:]
        var meta: [String: String] = [:]
        for key in dict.keys.sorted() {
            let value = dict[key]!
            if key == "__metadata__" {
                if case let .object(m) = value {
                    for (k, v) in m { meta[k] = v.stringValue ?? JSONFile.text(v) }
                }
                continue
            }
            guard case let .object(e) = value, let dt = e["dtype"]?.stringValue,
                  case let .array(shapeValues)? = e["shape"], case let .array(offs)? = e["data_offsets"] else {
                throw CheckpointError.corruptHeader(name, "entry '\(key)' lacks dtype, shape or data_offsets")
            }
            guard let dtype = DType(rawValue: dt) else { throw CheckpointError.unknownDType(name, key, dt) }
            var shape: [Int] = []
            shape.reserveCapacity(min(shapeValues.count, 64))
            for v in shapeValues {
                guard let d = count(v) else {
                    throw CheckpointError.corruptHeader(name, "entry '\(key)' has an invalid shape: \(JSONFile.text(v)) is not a whole non-negative number")
                }
                shape.append(d)
            }
            guard offs.count == 2 else {
                throw CheckpointError.badOffsets(name, key, "data_offsets must be a [begin, end] pair, got \(offs.count) numbers")
            }
            guard let b = count(offs[0]), let en = count(offs[1]) else {
                throw CheckpointError.badOffsets(name, key, "[\(JSONFile.text(offs[0])), \(JSONFile.text(offs[1]))] are not whole non-negative numbers")
            }
            guard en >= b else { throw CheckpointError.badOffsets(name, key, "not a valid [begin, end] pair (end \(en) < begin \(b))") }
            var n = 1, overflow = false
            for d in shape {
                let (p, o) = n.multipliedReportingOverflow(by: d)
                n = p; overflow = overflow || o
            }
            let (bytesNeeded, o2) = n.multipliedReportingOverflow(by: dtype.size)
            guard !overflow, !o2 else {
                throw CheckpointError.badOffsets(name, key, "shape \(shape) of \(dt) has more bytes than any file can hold")
            }
            guard bytesNeeded == en - b else {
                throw CheckpointError.badOffsets(name, key, "\(en - b) bytes for shape \(shape) of \(dt), which needs \(bytesNeeded)")
            }
            guard en <= available else {
                throw CheckpointError.truncated(name, "tensor '\(key)' ends at byte \(en) of a \(available)-byte data section")
            }
            entries[key] = TensorInfo(name: key, dtype: dtype, shape: shape, begin: b, end: en)
        }
        let ordered = entries.values.sorted { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        for (a, b) in zip(ordered, ordered.dropFirst()) where b.begin < a.end {
            throw CheckpointError.badOffsets(name, b.name, "bytes \(b.begin)..<\(b.end) overlap tensor '\(a.name)' (bytes \(a.begin)..<\(a.end))")
        }
        let names = entries.values.sorted { ($0.begin, $0.name) < ($1.begin, $1.name) }.map(\.name)
        return SafeTensorsHeader(entries: entries, metadata: meta, names: names,
                                 dataStart: dataStart, dataSize: available)
    }

    /// Converts the values of `info` (validated by `parse`) from `data` (the data section) to float32.
    public static func convert(_ info: TensorInfo, data: UnsafeRawBufferPointer, into dst: UnsafeMutablePointer<Float>) {
        precondition(info.begin >= 0 && info.begin <= info.end && info.end <= data.count, "tensor outside the data section")
        let n = (info.end - info.begin) / info.dtype.size
        guard n > 0, let base = data.baseAddress else { return }
        let src = base + info.begin
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
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw CheckpointError.io(path, "no such file") }
        guard !isDir.boolValue else { throw CheckpointError.io(path, "it is a folder, not a file") }
        let mapped = try MappedFile(path: path)
        data = mapped
        let header = try mapped.withUnsafeBytes { try SafeTensorsHeader.parse($0, fileSize: mapped.count, name: name) }
        dataStart = header.dataStart
        entries = header.entries
        metadata = header.metadata
        names = header.names
    }

    private var name: String { (path as NSString).lastPathComponent }

    /// The entry `key`, checked to belong to this file.
    private func entry(_ key: String) throws -> TensorInfo {
        guard let info = entries[key] else { throw CheckpointError.missingKey(name, key) }
        return info
    }

    /// Reads a tensor as float32 (integers and float64 are converted too).
    public func tensor(_ key: String) throws -> Tensor {
        let info = try entry(key)
        let out = Tensor(uninitialized: info.shape)
        try read(info, into: out.pointer)
        return out
    }

    /// Converts an entry into float32 at `dst` (count = product of its shape).
    public func read(_ info: TensorInfo, into dst: UnsafeMutablePointer<Float>) throws {
        guard let own = entries[info.name], own.begin == info.begin, own.end == info.end, own.dtype == info.dtype else {
            throw CheckpointError.missingKey(name, info.name)
        }
        data.withUnsafeBytes { raw in
            SafeTensorsHeader.convert(info, data: UnsafeRawBufferPointer(rebasing: raw[dataStart...]), into: dst)
        }
        // The values now live in the tensor; let the kernel reclaim the mapped pages.
        data.release((dataStart + info.begin)..<(dataStart + info.end))
    }

    /// Reads an integer tensor exactly (I64 / I32; float values must be whole numbers).
    public func integers(_ key: String) throws -> [Int] {
        let info = try entry(key)
        let n = info.shape.reduce(1, *)
        switch info.dtype {
        case .i64, .i32:
            return data.withUnsafeBytes { raw in
                let src = raw.baseAddress! + dataStart + info.begin
                if info.dtype == .i64 { return (0..<n).map { Int(src.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self)) } }
                return (0..<n).map { Int(src.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self)) }
            }
        default:
            var tmp = [Float](repeating: 0, count: n)
            try tmp.withUnsafeMutableBufferPointer { try read(info, into: $0.baseAddress!) }
            return try tmp.map { v in
                // Int(Float) traps outside Int's range and for NaN; refuse those values instead.
                guard v.isFinite, abs(v) < 9.2e18 else {
                    throw CheckpointError.badOffsets(name, key, "holds \(v), which is not an integer")
                }
                return Int(v)
            }
        }
    }

    /// Reads a float64 tensor exactly.
    public func doubles(_ key: String) throws -> [Double] {
        let info = try entry(key)
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

// MARK: - JSON files (config.json) with one-sentence errors

/// Reads JSON object files (config.json) so that every failure is one sentence naming the file:
/// "<path> does not exist", "<path> is empty", "<path> is not valid JSON: ...", "<path> is not
/// a JSON object". Errors are `CheckpointError.config` (its description is the sentence).
public enum JSONFile {
    /// config.json files are small; anything larger is refused before it is read.
    public static let maxSize = 64 << 20

    public static func readObject(at path: String) throws -> [String: JSONValue] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw CheckpointError.config("\(path) does not exist")
        }
        guard !isDir.boolValue else { throw CheckpointError.config("\(path) is a folder, not a JSON file") }
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber,
           size.int64Value > Int64(maxSize) {
            throw CheckpointError.config("\(path) is \(size.int64Value) bytes, too large for a JSON config file")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckpointError.config("\(path) cannot be read")
        }
        return try parseObject(data, path: path)
    }

    /// Parses the bytes of a JSON object file (`path` names it in the messages).
    public static func parseObject(_ data: Data, path: String) throws -> [String: JSONValue] {
        guard data.count <= maxSize else {
            throw CheckpointError.config("\(path) is \(data.count) bytes, too large for a JSON config file")
        }
        if data.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            throw CheckpointError.config("\(path) is empty")
        }
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw CheckpointError.config("\(path) is not valid JSON: \(reason(error, data: data))")
        }
        guard case let .object(object) = value else {
            throw CheckpointError.config("\(path) is not a JSON object (it holds \(kind(value)))")
        }
        return object
    }

    /// A short reason from a JSONDecoder / JSONSerialization error (no NSError dump); with
    /// `data`, JSONSerialization is asked where the text goes wrong ("Invalid value around
    /// character 1").
    public static func reason(_ error: Error, data: Data? = nil) -> String {
        if let data {
            do { _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) } catch {
                if let d = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String, !d.isEmpty {
                    return d.hasSuffix(".") ? String(d.dropLast()) : d
                }
            }
        }
        var current: Error? = error
        var text = "the data is not in JSON format"
        for _ in 0..<4 {
            guard let e = current else { break }
            if case let DecodingError.dataCorrupted(context) = e {
                if !context.debugDescription.isEmpty { text = context.debugDescription }
                current = context.underlyingError
                continue
            }
            let ns = e as NSError
            if let d = ns.userInfo[NSDebugDescriptionErrorKey] as? String, !d.isEmpty { text = d }
            current = ns.userInfo[NSUnderlyingErrorKey] as? Error
        }
        if text.hasSuffix(".") { text.removeLast() }
        return text
    }

    static func kind(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case .bool: return "a boolean"
        case .int, .double: return "a number"
        case .string: return "a string"
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    /// Compact JSON text of a value (for messages and metadata).
    public static func text(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case let .bool(b): return b ? "true" : "false"
        case let .int(i): return String(i)
        case let .double(d): return d.isFinite && d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : "\(d)"
        case let .string(s): return "\"" + s.oneLine(limit: 60) + "\""
        case let .array(a): return "[" + a.prefix(8).map(text).joined(separator: ", ") + (a.count > 8 ? ", ..." : "") + "]"
        case let .object(o): return "{" + o.keys.sorted().prefix(8).map { "\"\($0)\": \(text(o[$0]!))" }.joined(separator: ", ") + (o.count > 8 ? ", ..." : "") + "}"
        }
    }
}

/// Typed fields of a JSON object read with one-sentence errors naming the file and the field.
/// A missing field takes the default (so does `null` when `nullIsMissing`; the optional readers
/// always read `null` as absent); integers must be whole numbers that fit an Int (256.5 and 1e23
/// are refused by name, never truncated or trapped on).
public struct JSONFields {
    public let json: [String: JSONValue]
    public let file: String
    public let nullIsMissing: Bool
    let error: (String) -> Error

    public init(_ json: [String: JSONValue], file: String, nullIsMissing: Bool = true,
                error: @escaping (String) -> Error = { CheckpointError.config($0) }) {
        self.json = json
        self.file = file
        self.nullIsMissing = nullIsMissing
        self.error = error
    }

    private func value(_ key: String, optional: Bool = true) -> JSONValue? {
        guard let v = json[key] else { return nil }
        if case .null = v, optional || nullIsMissing { return nil }
        return v
    }

    public func fail(_ key: String, _ why: String) -> Error { error("\(file): '\(key)' \(why)") }

    public func int(_ key: String, _ fallback: Int) throws -> Int { try integer(key, optional: false) ?? fallback }

    public func optionalInt(_ key: String) throws -> Int? { try integer(key, optional: true) }

    private func integer(_ key: String, optional: Bool) throws -> Int? {
        guard let v = value(key, optional: optional) else { return nil }
        switch v {
        case let .int(i): return i
        case let .double(d):
            if d.isFinite && d == d.rounded() {
                // Whole numbers written with a fraction or exponent (32.0, 1e3) are integers.
                if abs(d) < 9.2e18 { return Int(d) }
                throw fail(key, "is \(d), too large for an integer")
            }
            throw fail(key, "must be a whole number, got \(d)")
        default: throw fail(key, "must be an integer, got \(JSONFile.text(v))")
        }
    }

    public func double(_ key: String, _ fallback: Double) throws -> Double { try number(key, optional: false) ?? fallback }

    public func optionalDouble(_ key: String) throws -> Double? { try number(key, optional: true) }

    private func number(_ key: String, optional: Bool) throws -> Double? {
        guard let v = value(key, optional: optional) else { return nil }
        guard let d = v.doubleValue else { throw fail(key, "must be a number, got \(JSONFile.text(v))") }
        guard d.isFinite else { throw fail(key, "must be a finite number, got \(d)") }
        return d
    }

    public func bool(_ key: String, _ fallback: Bool) throws -> Bool {
        guard let v = value(key, optional: false) else { return fallback }
        guard let b = v.boolValue else { throw fail(key, "must be true or false, got \(JSONFile.text(v))") }
        return b
    }

    public func string(_ key: String, _ fallback: String) throws -> String {
        guard let v = value(key, optional: false) else { return fallback }
        guard let s = v.stringValue else { throw fail(key, "must be a string, got \(JSONFile.text(v))") }
        return s
    }
}
