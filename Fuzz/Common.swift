// Shared by every fuzz target (compiled into each by scripts/fuzz.sh).

import Foundation

/// A property the parser promises; a violation is reported by libFuzzer as a crash.
@inline(never)
func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("property violated: \(message())") }
}

/// Errors must describe themselves as one line without trapping.
func describe(_ error: Error) {
    let text = "\(error)"
    require(!text.isEmpty && !text.contains("\n"), "error text '\(text)' is not one line")
}

/// Writes `seeds` (name -> bytes) into $FUZZ_SEED_DIR when set (scripts/fuzz.sh asks each
/// target for the synthetic seeds it knows how to make, then starts fuzzing).
func writeSeeds(_ seeds: () -> [(String, Data)]) {
    guard let dir = ProcessInfo.processInfo.environment["FUZZ_SEED_DIR"] else { return }
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    for (name, data) in seeds() { try? data.write(to: URL(fileURLWithPath: dir + "/" + name)) }
}

/// Reads little-endian integers from the fuzz input (zero past its end).
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var offset = 0
    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }
    mutating func u8() -> UInt8 {
        defer { offset += 1 }
        return offset < bytes.count ? bytes[offset] : 0
    }
    mutating func i64() -> Int64 {
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(u8()) << (8 * UInt64(k)) }
        return Int64(bitPattern: v)
    }
    mutating func f64() -> Double { Double(bitPattern: UInt64(bitPattern: i64())) }
    /// A count: mostly small (the first byte picks the scale), sometimes any 64-bit value.
    mutating func count() -> Int {
        let scale = u8()
        switch scale % 4 {
        case 0: return Int(u8())
        case 1: return Int(u8()) | Int(u8()) << 8
        case 2: return Int(Int32(truncatingIfNeeded: i64()))
        default: return Int(i64())
        }
    }
    var rest: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[min(offset, bytes.count)...]) }
}

/// Runs every file of `<repository>/Fuzz/regressions/<target>/` through `run` (the test suite
/// replays the inputs that once crashed this way; Tests/*/Fuzz link to these files). Returns
/// how many inputs ran.
func replayRegressions(_ target: String, repository: URL, _ run: (UnsafePointer<UInt8>?, Int) -> CInt) throws -> Int {
    let dir = repository.appendingPathComponent("Fuzz/regressions/\(target)")
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path))?.filter { !$0.hasPrefix(".") }.sorted() ?? []
    for name in names {
        let data = try Data(contentsOf: dir.appendingPathComponent(name))
        _ = data.withUnsafeBytes { run($0.bindMemory(to: UInt8.self).baseAddress, $0.count) }
    }
    return names.count
}
