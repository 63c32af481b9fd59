// Bounded parsing of safetensors headers and JSON config files (issue 17): every case that
// crashed the process (arithmetic overflow, traps on huge numbers) or was silently accepted
// (overlaps, fractions, wrapping offsets) is refused with one sentence naming file and tensor.

import Foundation
import XCTest
@testable import Tensor

/// A safetensors file from a header text and `payload` zero bytes of data.
func safetensorsBytes(_ json: String, payload: Int) -> Data {
    var d = Data()
    var j = Data(json.utf8)
    while j.count % 8 != 0 { j.append(0x20) }
    d.append(contentsOf: withUnsafeBytes(of: UInt64(j.count).littleEndian) { Data($0) })
    d.append(j)
    d.append(Data(count: payload))
    return d
}

/// Parses `data` as a whole file (the pure entry point the fuzzer drives too).
func parseHeader(_ data: Data, name: String = "t.safetensors") throws -> SafeTensorsHeader {
    try data.withUnsafeBytes { try SafeTensorsHeader.parse($0, fileSize: data.count, name: name) }
}

final class BoundedParsingTests: XCTestCase {
    /// Asserts that the header is refused (from the file too) with a message holding every piece.
    func refuse(_ json: String, payload: Int = 16, _ pieces: String..., file: StaticString = #filePath, line: UInt = #line) {
        let data = safetensorsBytes(json, payload: payload)
        XCTAssertThrowsError(try parseHeader(data), file: file, line: line) { error in
            let text = "\(error)"
            print("refused: \(text)")
            for p in pieces { XCTAssertTrue(text.contains(p), "'\(text)' lacks '\(p)'", file: file, line: line) }
            XCTAssertFalse(text.contains("NSCocoaErrorDomain"), text, file: file, line: line)
        }
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("t.safetensors").path
        _ = FileManager.default.createFile(atPath: path, contents: data)
        XCTAssertThrowsError(try SafeTensorsFile(path: path), file: file, line: line)
    }

    func testHugeShapesAreRefusedWithoutOverflow() {
        // [2^62] and [2^31, 2^31]: n * dtype.size overflowed and trapped.
        refuse(#"{"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,16]}}"#, "t.safetensors", "'w'", "more bytes")
        refuse(#"{"w":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,16]}}"#, "'w'", "more bytes")
        refuse(#"{"w":{"dtype":"F64","shape":[3037000500,3037000500],"data_offsets":[0,16]}}"#, "'w'")
        // 2^63 - 1 anywhere.
        refuse(#"{"w":{"dtype":"F32","shape":[9223372036854775807],"data_offsets":[0,16]}}"#, "'w'")
        refuse(#"{"w":{"dtype":"I64","shape":[2],"data_offsets":[0,9223372036854775807]}}"#, "'w'")
        refuse(#"{"w":{"dtype":"F32","shape":[0],"data_offsets":[9223372036854775807,9223372036854775807]}}"#, "'w'")
        refuse(#"{"w":{"dtype":"F32","shape":[1,9223372036854775807,4],"data_offsets":[0,16]}}"#, "'w'")
    }

    func testNumbersThatAreNotWholeCountsAreRefused() {
        // 1e23, fractions, negatives, values past 2^64 that used to wrap, strings, booleans.
        refuse(#"{"w":{"dtype":"F32","shape":[1e23],"data_offsets":[0,16]}}"#, "'w'", "1e+23")
        refuse(#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,1e23]}}"#, "'w'", "whole")
        refuse(#"{"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,10]}}"#, "'w'", "2.5")
        refuse(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0.5,8.5]}}"#, "'w'", "whole")
        refuse(#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, "'w'", "shape")
        refuse(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}"#, "'w'")
        refuse(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,0]}}"#, "'w'")
        refuse(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551615,7]}}"#, "'w'")
        refuse(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551624]}}"#, "'w'")
        refuse(#"{"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[18446744073709551600,16]}}"#, "'w'")
        refuse(#"{"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}"#, "'w'")
        refuse(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[true,8]}}"#, "'w'")
        refuse(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,16]}}"#, "'w'", "pair")
        refuse(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, "'w'", "bad data offsets")
    }

    func testOverlappingAndOutOfRangeTensorsAreRefused() {
        refuse(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
               payload: 16, "overlap", "'a'", "'b'")
        refuse(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
               payload: 16, "overlap")
        refuse(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#, payload: 16, "truncated", "'a'")
        refuse(#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#, payload: 16, "'a'", "12")
        // Zero-size tensors may share an offset; adjacent tensors are fine.
        XCTAssertNoThrow(try parseHeader(safetensorsBytes(
            #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},"b":{"dtype":"F32","shape":[2,0],"data_offsets":[8,8]},"c":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"d":{"dtype":"BF16","shape":[4],"data_offsets":[8,16]}}"#,
            payload: 16)))
    }

    func testHeaderLengthIsBoundedByTheFile() throws {
        var data = safetensorsBytes(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, payload: 8)
        XCTAssertNoThrow(try parseHeader(data))
        for length: UInt64 in [UInt64(data.count - 7), UInt64(Int32.max), UInt64.max, 1 << 63, UInt64(Int.max)] {
            data.replaceSubrange(0..<8, with: withUnsafeBytes(of: length.littleEndian) { Data($0) })
            XCTAssertThrowsError(try parseHeader(data)) { print("length \(length): \($0)") }
        }
        XCTAssertThrowsError(try parseHeader(Data([1, 2, 3])))
        for bad in ["[]", "[1,2]", "7", "\"x\"", "null", "{", "{\"a\":", "{\"a\":{\"dtype\":\"F32\"}}", "{\"a\":3}"] {
            XCTAssertThrowsError(try parseHeader(safetensorsBytes(bad, payload: 0))) { e in
                XCTAssertFalse("\(e)".contains("NSCocoaErrorDomain"), "\(e)")
            }
        }
    }

    func testValidFilesParseAsBefore() throws {
        let h = try parseHeader(safetensorsBytes(
            #"{"__metadata__":{"format":"pt","n":3},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#,
            payload: 16))
        XCTAssertEqual(h.names, ["a", "b"])
        XCTAssertEqual(h.entries["b"]?.shape, [2])
        XCTAssertEqual(h.metadata, ["format": "pt", "n": "3"])
        // The shipped fixtures and checkpoints keep every key, shape and offset.
        for name in ["sit_tiny_1d", "sit_tiny_2d", "tokenizer_tiny"] {
            let f = try SafeTensorsFile(path: fixtures.appendingPathComponent("\(name)/model.safetensors").path)
            XCTAssertFalse(f.names.isEmpty)
            for key in f.names { XCTAssertEqual(try f.tensor(key).count, f.entries[key]!.shape.reduce(1, *)) }
        }
        // integers() of float values that are not integers is refused instead of trapping.
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("f.safetensors").path
        try writeSafeTensors([("x", Tensor([1, .nan, 2e30], shape: [3]))], to: path)
        XCTAssertThrowsError(try SafeTensorsFile(path: path).integers("x")) { print("integers: \($0)") }
        try writeSafeTensors([("x", Tensor([3, -4], shape: [2]))], to: path)
        XCTAssertEqual(try SafeTensorsFile(path: path).integers("x"), [3, -4])
        XCTAssertThrowsError(try SafeTensorsFile(path: dir.path)) { XCTAssertTrue("\($0)".contains("folder"), "\($0)") }
    }

    func testJSONFilesFailWithOneSentenceNamingTheFile() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func check(_ contents: String?, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
            let path = dir.appendingPathComponent("c\(UUID().uuidString.prefix(6)).json").path
            if let contents { _ = FileManager.default.createFile(atPath: path, contents: Data(contents.utf8)) }
            XCTAssertThrowsError(try JSONFile.readObject(at: path), file: file, line: line) { e in
                let text = "\(e)"
                print(text)
                XCTAssertTrue(text.hasPrefix(path) && text.contains(expected), "'\(text)' lacks '\(expected)'", file: file, line: line)
                XCTAssertFalse(text.contains("NSCocoaErrorDomain") || text.contains("Code="), text, file: file, line: line)
            }
        }
        check(nil, "does not exist")
        check("", "is empty")
        check("  \n", "is empty")
        check("[1, 2]", "is not a JSON object (it holds an array)")
        check("\"text\"", "is not a JSON object")
        check("hello", "is not valid JSON")
        check("{\"a\": 1,", "is not valid JSON")
        XCTAssertThrowsError(try JSONFile.readObject(at: dir.path)) { XCTAssertTrue("\($0)".contains("folder"), "\($0)") }
        let fields = JSONFields(try JSONFile.parseObject(Data(#"{"a": 256.5, "b": 1e23, "c": "x", "d": 7, "e": null}"#.utf8), path: "p.json"), file: "p.json")
        XCTAssertThrowsError(try fields.int("a", 0)) { XCTAssertEqual("\($0)", "p.json: 'a' must be a whole number, got 256.5") }
        XCTAssertThrowsError(try fields.int("b", 0)) { XCTAssertTrue("\($0)".contains("'b'"), "\($0)") }
        XCTAssertThrowsError(try fields.int("c", 0)) { XCTAssertTrue("\($0)".contains("'c' must be an integer"), "\($0)") }
        XCTAssertEqual(try fields.int("d", 0), 7)
        XCTAssertEqual(try fields.int("e", 5), 5)
        XCTAssertEqual(try fields.int("missing", 5), 5)
        XCTAssertEqual(try fields.double("d", 0), 7)
    }
}
