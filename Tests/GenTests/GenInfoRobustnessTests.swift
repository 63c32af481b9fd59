// `gen info` on broken checkpoints (issue 17): absurd config sizes and huge safetensors shapes
// used to kill the process (allocation or arithmetic overflow); now each is an error line and
// exit status 1, never a signal.

import Foundation
import XCTest

final class GenInfoRobustnessTests: XCTestCase {
    static let checkpoints = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Checkpoints").path

    /// A copy of a shipped checkpoint with config.json fields replaced (raw JSON values), or the
    /// whole config.json replaced by `config`.
    func folder(_ source: String, _ changes: [String: String] = [:], config: String? = nil, weights: Data? = nil) throws -> String {
        let d = tempDir("info")
        let src = Self.checkpoints + "/" + source
        var text: String
        if let config {
            text = config
        } else {
            var object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: src + "/config.json"))) as! [String: Any]
            // A field that the config keeps inside its softvq_swift block is replaced there (a
            // placeholder string, swapped for the raw value after serialization); the rest at the top.
            var block = object["softvq_swift"] as? [String: Any] ?? [:]
            let nested = changes.filter { block[$0.key] != nil }, top = changes.filter { block[$0.key] == nil }
            for (i, k) in nested.keys.sorted().enumerated() { block[k] = "@@RAW\(i)@@" }
            if !nested.isEmpty { object["softvq_swift"] = block }
            for k in top.keys { object[k] = nil }
            text = String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
            for (i, k) in nested.keys.sorted().enumerated() { text = text.replacingOccurrences(of: "\"@@RAW\(i)@@\"", with: nested[k]!) }
            text.removeLast()
            for (k, v) in top.sorted(by: { $0.key < $1.key }) { text += ", \"\(k)\": \(v)" }
            text += "}"
        }
        try Data(text.utf8).write(to: URL(fileURLWithPath: d + "/config.json"))
        if let weights {
            try weights.write(to: URL(fileURLWithPath: d + "/model.safetensors"))
        } else {
            try FileManager.default.copyItem(atPath: src + "/model.safetensors", toPath: d + "/model.safetensors")
        }
        return d
    }

    func refused(_ dir: String, _ pieces: String..., file: StaticString = #filePath, line: UInt = #line) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: genPath)
        p.arguments = ["info", dir]
        let err = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        try p.run()
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        print("gen info: \(e)", terminator: "")
        XCTAssertEqual(p.terminationReason, .exit, "gen info died of a signal: \(e)", file: file, line: line)
        XCTAssertEqual(p.terminationStatus, 1, e, file: file, line: line)
        XCTAssertTrue(e.hasPrefix("error: "), e, file: file, line: line)
        XCTAssertEqual(e.split(separator: "\n").count, 1, e, file: file, line: line)
        for piece in pieces { XCTAssertTrue(e.contains(piece), "'\(e)' lacks '\(piece)'", file: file, line: line) }
    }

    func testAbsurdConfigsAndHeadersAreErrorsNotCrashes() throws {
        XCTAssertTrue(FileManager.default.fileExists(atPath: genPath), "gen not built at \(genPath)")
        try refused(try folder("fashion-sit", ["hidden_size": "1000000000", "decoder_hidden_size": "1000000000"]), "hidden_size")
        try refused(try folder("fashion-sit", ["hidden_size": "4611686018427387904"]), "hidden_size")
        try refused(try folder("fashion-sit", ["mlp_ratio": "1e12"]), "mlp_ratio")
        try refused(try folder("fashion-sit", ["input_size": "1099511627776"]), "input_size")
        try refused(try folder("fashion-sit", ["in_channels": "1099511627776"]), "in_channels")
        try refused(try folder("fashion-sit", ["depth": "1000000000"]), "depth")
        try refused(try folder("fashion-sit", ["num_classes": "4611686018427387904"]), "num_classes")
        try refused(try folder("fashion-sit", ["hidden_size": "256.5"]), "'hidden_size' must be a whole number")
        try refused(try folder("fashion-sit", ["depth": "200"]), "do not belong together")
        try refused(try folder("fashion-tokenizer", ["image_size": "1099511627776"]), "image_size")
        try refused(try folder("fashion-tokenizer", ["image_size": "1e23"]), "'image_size'")
        try refused(try folder("fashion-tokenizer", ["enc_embed_dim": "1000000000"]), "width")
        try refused(try folder("fashion-tokenizer", ["dec_mlp_ratio": "1e12"]), "mlp_ratio")
        try refused(try folder("fashion-tokenizer", ["codebook_size": "4611686018427387904"]), "codebook_size")
        for shape in ["[4611686018427387904]", "[2147483648,2147483648]", "[9223372036854775807]", "[1e23]", "[2.5]"] {
            let header = #"{"pos_embed":{"dtype":"F32","shape":\#(shape),"data_offsets":[0,16]}}"#
            try refused(try folder("fashion-sit", weights: safetensors(header, payload: 16)), "model.safetensors", "'pos_embed'")
        }
        try refused(try folder("fashion-sit", weights: safetensors(
            #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, payload: 16)), "overlap")
        // Unreadable config files are errors too (the wording is the CLI's).
        for text in ["", "[1, 2]", "not json"] { try refused(try folder("fashion-sit", config: text)) }
    }

    func safetensors(_ json: String, payload: Int) -> Data {
        var j = Data(json.utf8)
        while j.count % 8 != 0 { j.append(0x20) }
        var d = Data(withUnsafeBytes(of: UInt64(j.count).littleEndian) { Data($0) })
        d.append(j)
        d.append(Data(count: payload))
        return d
    }
}
