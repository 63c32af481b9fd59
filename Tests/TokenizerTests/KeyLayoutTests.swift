// Every released architecture enumerates exactly the official state-dict keys and shapes
// (Tests/Fixtures/keys/softvq-*.tsv), built without touching memory (.uninitialized).

import Foundation
import Tensor
import Tokenizer
import XCTest

final class KeyLayoutTests: XCTestCase {
    func readTSV(_ name: String) throws -> [(String, [Int])] {
        let text = try String(contentsOf: Fixtures.keys.appendingPathComponent(name), encoding: .utf8)
        return text.split(separator: "\n").map { line in
            let f = line.split(separator: "\t")
            let shape = f[1].dropFirst().dropLast().split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces))! }
            return (String(f[0]), shape)
        }
    }

    func testPresetsMatchOfficialKeyLists() throws {
        let cases: [(String, TokenizerConfig)] = [
            ("softvq-b-64.tsv", .softvqB64), ("softvq-bl-64.tsv", .softvqBL64),
            ("softvq-l-64.tsv", .softvqL64), ("softvq-l-32.tsv", .softvqL32),
        ]
        for (file, config) in cases {
            let expected = try readTSV(file)
            // One model at a time; freed at the end of the iteration.
            let got: [(String, [Int])] = try { () throws -> [(String, [Int])] in
                let m = try SoftVQModel(config: config, initialization: .uninitialized)
                return m.namedTensors().map { ($0.0, $0.1.shape) }
            }()
            XCTAssertEqual(got.count, expected.count, file)
            XCTAssertEqual(got.map(\.0), expected.map(\.0), "\(file): names / order")
            for ((k, s), (_, e)) in zip(got, expected) where s != e {
                XCTFail("\(file): \(k) has shape \(s), official \(e)")
            }
            print("keys \(file): \(got.count) tensors, \(got.reduce(0) { $0 + $1.1.reduce(1, *) }) elements OK")
        }
    }

    func testRepaExtraKeysAreSkippedAndProjectorMatches() throws {
        let extra = try readTSV("softvq-l-64.repa_extra.tsv")
        XCTAssertTrue(extra.allSatisfy { SoftVQModel.isTrainingOnlyKey($0.0) })
        let proj = RepaProjector(inDim: 32, hidden: 1024, outDim: 1024)
        let projKeys = extra.filter { $0.0.hasPrefix("projection.") }
        let ours = proj.namedTensors(prefix: "projection").map { ($0.0, $0.1.shape) }
        XCTAssertEqual(ours.map(\.0), projKeys.map(\.0))
        XCTAssertEqual(ours.map(\.1), projKeys.map(\.1))
        // The frozen teacher's keys are a plain ViT-L under repa_model.
        let teacherKeys = extra.filter { $0.0.hasPrefix("repa_model.") }
        let spec = ViTSpec(width: 1024, depth: 24, heads: 16, layerScale: true, patchSize: 16, imageSize: 256)
        let vit = VisionTransformer(spec: spec, initialization: .uninitialized)
        XCTAssertEqual(vit.namedTensors(prefix: "repa_model").map(\.0), teacherKeys.map(\.0))
        XCTAssertEqual(vit.namedTensors(prefix: "repa_model").map(\.1.shape), teacherKeys.map(\.1))
    }

    func testOtherPresetsBuild() throws {
        for name in TokenizerConfig.presetNames {
            let c = try TokenizerConfig.preset(name)
            try c.validate()
            let m = try SoftVQModel(config: c, initialization: .uninitialized)
            XCTAssertEqual(m.encoder.latentTokens.shape, [1, c.numLatentTokens, try c.encoderSpec.width], name)
            if name.hasPrefix("fashion") { print("preset \(name): \(m.parameterCount) tensor elements") }
        }
    }
}
