// SiT config.json validation (issue 17): absurd sizes are refused with one sentence naming the
// file and the field before anything is allocated (they used to allocate or overflow, so even
// `gen info` died), and unreadable files say what is wrong with them.

import Foundation
import XCTest
import Tensor
@testable import SiT

final class SiTConfigValidationTests: XCTestCase {
    var dir = ""

    override func setUp() {
        dir = NSTemporaryDirectory() + "sit-config-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// The fixture's config.json with `changes` (raw JSON values) written over it.
    func config(_ changes: [String: String]) throws -> String {
        // Drop the changed keys first: a JSON object must not repeat a key.
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("sit_tiny_1d", "config.json")))
        var object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        for k in changes.keys { object[k] = nil }
        var text = String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
        text.removeLast() // "}"
        for (k, v) in changes.sorted(by: { $0.key < $1.key }) { text += ", \"\(k)\": \(v)" }
        return text + "}"
    }

    func refuse(_ contents: String?, _ pieces: String..., file: StaticString = #filePath, line: UInt = #line) {
        let folder = dir + "/m\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = folder + "/config.json"
        if let contents { _ = FileManager.default.createFile(atPath: path, contents: Data(contents.utf8)) }
        // The weights exist, so the only failure can be the config.
        try? FileManager.default.copyItem(atPath: Fixtures.path("sit_tiny_1d", "model.safetensors"), toPath: folder + "/model.safetensors")
        for attempt in [{ _ = try SiTConfig.read(from: path) }, { _ = try SiT.load(folder: folder, warn: { _ in }) }] {
            XCTAssertThrowsError(try attempt(), file: file, line: line) { error in
                let text = "\(error)"
                print("refused: \(text)")
                XCTAssertTrue(text.contains(path), "'\(text)' does not name the file", file: file, line: line)
                for p in pieces { XCTAssertTrue(text.contains(p), "'\(text)' lacks '\(p)'", file: file, line: line) }
                XCTAssertFalse(text.contains("NSCocoaErrorDomain") || text.contains("Code="), text, file: file, line: line)
            }
        }
    }

    func testAbsurdSizesAreRefusedBeforeAllocation() throws {
        refuse(try config(["hidden_size": "1000000000", "decoder_hidden_size": "1000000000"]), "hidden_size 1000000000")
        refuse(try config(["hidden_size": "1e9", "decoder_hidden_size": "1e9"]), "hidden_size")
        refuse(try config(["hidden_size": "4611686018427387904", "decoder_hidden_size": "4611686018427387904"]), "hidden_size 4611686018427387904")
        refuse(try config(["mlp_ratio": "1e12"]), "mlp_ratio")
        refuse(try config(["mlp_ratio": "1e308"]), "mlp_ratio")
        refuse(try config(["input_size": "1099511627776"]), "input_size 1099511627776")
        refuse(try config(["in_channels": "1099511627776"]), "in_channels 1099511627776")
        refuse(try config(["depth": "1000000000"]), "depth 1000000000")
        refuse(try config(["depth": "1e9"]), "depth")
        refuse(try config(["num_classes": "4611686018427387904"]), "num_classes 4611686018427387904")
        refuse(try config(["num_heads": "-4"]), "positive")
        refuse(try config(["vae_1d": "false", "patch_size": "1099511627776"]), "patch_size")
        // Each within its own limit, together far too large.
        refuse(try config(["hidden_size": "16384", "decoder_hidden_size": "16384", "num_heads": "128", "depth": "256"]), "parameters")
        refuse(try config(["vae_1d": "false", "input_size": "4096", "patch_size": "1", "hidden_size": "64", "decoder_hidden_size": "64"]), "tokens")
    }

    func testFieldsOfTheWrongKindAreNamed() throws {
        refuse(try config(["hidden_size": "256.5"]), "'hidden_size' must be a whole number, got 256.5")
        refuse(try config(["depth": "1e23"]), "'depth'")
        refuse(try config(["num_classes": "18446744073709551616"]), "'num_classes'")
        refuse(try config(["depth": "\"six\""]), "'depth' must be an integer")
        refuse(try config(["vae_1d": "1"]), "'vae_1d' must be true or false")
        refuse(try config(["mlp_ratio": "\"4\""]), "'mlp_ratio' must be a number")
    }

    func testUnreadableFilesSayWhatIsWrong() {
        refuse(nil, "does not exist")
        refuse("", "is empty")
        refuse("[1, 2, 3]", "is not a JSON object")
        refuse("not json at all", "is not valid JSON")
        refuse("{\"hidden_size\": 64", "is not valid JSON")
    }

    func testValidConfigsAreUnchanged() throws {
        let path = Fixtures.path("sit_tiny_1d", "config.json")
        let read = try SiTConfig.read(from: path)
        let decoded = try JSONDecoder().decode(SiTConfig.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(read, decoded)
        // Integral floats are integers, null takes the default, unknown fields are kept.
        let c = try JSONDecoder().decode(SiTConfig.self, from: Data(#"{"hidden_size": 64.0, "depth": null, "num_heads": 4, "vae_1d": true, "input_size": 8, "in_channels": 4, "note": [1, "x"]}"#.utf8))
        XCTAssertEqual(c.hiddenSize, 64)
        XCTAssertEqual(c.depth, 28)
        XCTAssertEqual(c.extra["note"], .array([.int(1), .string("x")]))
        // Every released shape passes the limits.
        for config in [SiTConfig.xl1SoftVQ(tokens: 64), .xl1SoftVQ(tokens: 32), .xl(patch: 2, inputSize: 32, inChannels: 4, vae1D: false),
                       .xl(patch: 1, inputSize: 64, inChannels: 4, vae1D: false), .b(patch: 1, inputSize: 64, inChannels: 32, vae1D: true)] {
            XCTAssertNoThrow(try config.validate())
            XCTAssertLessThan(config.parameterCount, 1e9)
        }
        // The parameter count is exact for the built model.
        var small = SiTConfig.s(patch: 2, inputSize: 8, inChannels: 4, numClasses: 3, vae1D: false)
        small.depth = 2
        let model = try SiT(config: small)
        XCTAssertEqual(small.parameterCount, Double(model.namedTensors().reduce(0) { $0 + $1.1.count }))
        let tiny = try SiT.load(folder: Fixtures.path("sit_tiny_1d"), warn: { _ in })
        XCTAssertEqual(tiny.config.parameterCount, Double(tiny.namedTensors().reduce(0) { $0 + $1.1.count }))
    }

    func testModelConstructorValidatesFirst() {
        var c = SiTConfig.xl1SoftVQ(tokens: 64)
        c.hiddenSize = 1 << 62; c.decoderHiddenSize = 1 << 62
        XCTAssertThrowsError(try SiT(config: c))
        c = .xl1SoftVQ(tokens: 64)
        c.mlpRatio = 1e12
        XCTAssertThrowsError(try SiT(config: c))
        c = .xl1SoftVQ(tokens: 64)
        c.numClasses = 1 << 62
        XCTAssertThrowsError(try SiT(config: c))
        c = .xl1SoftVQ(tokens: 64)
        c.depth = 1_000_000_000
        XCTAssertThrowsError(try SiT(config: c))
        c = .xl1SoftVQ(tokens: 64)
        c.mlpRatio = .nan
        XCTAssertThrowsError(try SiT(config: c))
    }
}
