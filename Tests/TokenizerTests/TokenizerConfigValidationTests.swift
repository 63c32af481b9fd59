// Tokenizer config.json validation (issue 17): absurd sizes are refused with one sentence
// naming the field before anything is allocated; unreadable files name themselves.

import Foundation
import Tensor
@testable import Tokenizer
import XCTest

final class TokenizerConfigValidationTests: XCTestCase {
    static let shipped = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Checkpoints/fashion-tokenizer").path
    var dir = ""

    override func setUp() {
        dir = NSTemporaryDirectory() + "tok-config-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// The shipped tokenizer's config.json with `changes` (raw JSON values) written over it.
    func config(_ changes: [String: String]) throws -> String {
        // Drop the changed keys first: a JSON object must not repeat a key.
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.shipped + "/config.json"))
        var object = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        // A field the config keeps inside its softvq_swift block (ViT width, depth, heads) is
        // replaced there: a placeholder string, swapped for the raw value after serialization.
        var block = object["softvq_swift"] as? [String: Any] ?? [:]
        let nested = changes.filter { block[$0.key] != nil }, top = changes.filter { block[$0.key] == nil }
        for (i, k) in nested.keys.sorted().enumerated() { block[k] = "@@RAW\(i)@@" }
        if !nested.isEmpty { object["softvq_swift"] = block }
        for k in top.keys { object[k] = nil }
        var text = String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
        for (i, k) in nested.keys.sorted().enumerated() { text = text.replacingOccurrences(of: "\"@@RAW\(i)@@\"", with: nested[k]!) }
        text.removeLast() // "}"
        for (k, v) in top.sorted(by: { $0.key < $1.key }) { text += ", \"\(k)\": \(v)" }
        return text + "}"
    }

    /// Refused by load (a parse error naming the file) or by the model constructor (a limit
    /// naming the field), never by a trap or an allocation.
    func refuse(_ contents: String?, _ pieces: String..., namesFile: Bool = false,
                file: StaticString = #filePath, line: UInt = #line) {
        let folder = dir + "/t\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = folder + "/config.json"
        if let contents { _ = FileManager.default.createFile(atPath: path, contents: Data(contents.utf8)) }
        try? FileManager.default.copyItem(atPath: Self.shipped + "/model.safetensors", toPath: folder + "/model.safetensors")
        XCTAssertThrowsError(try SoftVQModel.load(folder: folder, decoderOnly: true, log: { _ in }), file: file, line: line) { error in
            let text = "\(error)"
            print("refused: \(text)")
            if namesFile { XCTAssertTrue(text.contains(path), "'\(text)' does not name the file", file: file, line: line) }
            for p in pieces { XCTAssertTrue(text.contains(p), "'\(text)' lacks '\(p)'", file: file, line: line) }
            XCTAssertFalse(text.contains("NSCocoaErrorDomain") || text.contains("Code="), text, file: file, line: line)
        }
    }

    func testAbsurdSizesAreRefusedBeforeAllocation() throws {
        refuse(try config(["image_size": "1099511627776"]), "image_size 1099511627776", namesFile: true)
        refuse(try config(["enc_embed_dim": "1000000000"]), "width 1000000000")
        refuse(try config(["dec_embed_dim": "4611686018427387904"]), "width 4611686018427387904")
        refuse(try config(["enc_depth": "1000000000"]), "depth 1000000000")
        refuse(try config(["dec_mlp_ratio": "1e12"]), "mlp_ratio")
        refuse(try config(["enc_mlp_ratio": "-1"]), "mlp_ratio")
        refuse(try config(["codebook_size": "4611686018427387904"]), "codebook_size 4611686018427387904")
        refuse(try config(["codebook_embed_dim": "1099511627776"]), "codebook_embed_dim")
        refuse(try config(["num_latent_tokens": "1099511627776", "num_codebooks": "1"]), "num_latent_tokens 1099511627776")
        refuse(try config(["num_codebooks": "3"]), "num_codebooks")
        refuse(try config(["enc_patch_size": "1099511627776"]), "patch size")
        refuse(try config(["enc_patch_size": "0"]), "patch size")
        refuse(try config(["vq_std": "0"]), "vq_std")
        refuse(try config(["enc_num_heads": "3"]), "heads")
        // Each within its limit, together far too large.
        refuse(try config(["enc_embed_dim": "16384", "enc_num_heads": "128", "enc_depth": "256"]), "parameters")
        refuse(try config(["image_size": "4096", "enc_patch_size": "1", "dec_patch_size": "1"]), "position table")
        // Within every limit and matching every checked shape, but far larger than the weights.
        refuse(try config(["enc_mlp_ratio": "64", "dec_mlp_ratio": "64"]), "do not belong together")
    }

    func testFieldsOfTheWrongKindAreNamed() throws {
        refuse(try config(["image_size": "256.5"]), "'image_size' must be a whole number, got 256.5", namesFile: true)
        refuse(try config(["image_size": "1e23"]), "'image_size'", namesFile: true)
        refuse(try config(["codebook_size": "18446744073709551616"]), "'codebook_size'", namesFile: true)
        refuse(try config(["enc_depth": "2.5"]), "'enc_depth' must be a whole number", namesFile: true)
        refuse(try config(["tau": "\"hot\""]), "'tau' must be a number", namesFile: true)
        refuse(try config(["repa": "3"]), "'repa' must be true or false", namesFile: true)
    }

    func testUnreadableFilesSayWhatIsWrong() {
        refuse(nil, "does not exist", namesFile: true)
        refuse("", "is empty", namesFile: true)
        refuse("[{\"image_size\": 32}]", "is not a JSON object", namesFile: true)
        refuse("\u{1}\u{2}garbage", "is not valid JSON", namesFile: true)
    }

    func testValidConfigsAreUnchanged() throws {
        let c = try TokenizerConfig.load(path: Self.shipped + "/config.json")
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.shipped + "/config.json"))
        XCTAssertEqual(c, try JSONDecoder().decode(TokenizerConfig.self, from: data))
        XCTAssertNoThrow(try c.validate())
        for name in TokenizerConfig.presetNames {
            let p = try TokenizerConfig.preset(name)
            XCTAssertNoThrow(try p.validate(), name)
            XCTAssertLessThan(try p.parameterCount, 2e9, name)
        }
        // Integral floats are integers, as before.
        let f = try TokenizerConfig(json: ["image_size": .double(32), "enc_type": .string("vit")])
        XCTAssertEqual(f.imageSize, 32)
        // The count is exact for the built models.
        let model = try Fixtures.tinyModel()
        XCTAssertEqual(try model.config.parameterCount, Double(model.namedTensors().reduce(0) { $0 + $1.1.count }))
        var small = try TokenizerConfig.preset("fashion32-small")
        small.encTokenDrop = 0.5; small.codebookShowUsage = false; small.encMlpRatio = 2.5
        let built = try SoftVQModel(config: small, initialization: .uninitialized)
        XCTAssertEqual(try small.parameterCount, Double(built.namedTensors().reduce(0) { $0 + $1.1.count }))
    }
}
