// State-dict names and shapes of full-size SiT models against the official key lists.
// The models are built without random initialization (zero-filled), one at a time.

import Foundation
import XCTest
import Tensor
@testable import SiT

final class SiTKeyTests: XCTestCase {
    func readKeys(_ file: String) throws -> [String: [Int]] {
        let text = try String(contentsOfFile: Fixtures.path("keys", file), encoding: .utf8)
        var out: [String: [Int]] = [:]
        for line in text.split(separator: "\n") where !line.isEmpty {
            let cols = line.split(separator: "\t")
            let dims = cols[1].trimmingCharacters(in: CharacterSet(charactersIn: "[]")).split(separator: ",")
            out[String(cols[0])] = dims.map { Int($0.trimmingCharacters(in: .whitespaces))! }
        }
        return out
    }

    func check(_ config: SiTConfig, _ file: String, parameters: Int, trainable: Int) throws {
        let expected = try readKeys(file)
        do {
            let model = try SiT(config: config)
            var ours: [String: [Int]] = [:]
            for (k, t) in model.namedTensors() { ours[k] = t.shape }
            XCTAssertEqual(Set(ours.keys), Set(expected.keys), file)
            for (k, s) in expected where ours[k] != s { XCTFail("\(file): \(k) has shape \(ours[k] ?? []) expected \(s)") }
            XCTAssertEqual(model.parameterCount, parameters)
            XCTAssertEqual(model.trainableParameters().reduce(0) { $0 + $1.1.count }, trainable)
            XCTAssertFalse(model.posEmbed.requiresGrad)
        }
    }

    func testXL1SoftVQ64() throws {
        try check(.xl1SoftVQ(tokens: 64), "sit-xl-1_softvq-64tok.tsv", parameters: 674_926_880, trainable: 674_853_152)
    }

    func testXL1SoftVQ32() throws {
        try check(.xl1SoftVQ(tokens: 32), "sit-xl-1_softvq-32tok.tsv", parameters: 674_890_016, trainable: 674_853_152)
    }

    func testXL2Latent32x32x4() throws {
        try check(.xl(patch: 2, inputSize: 32, inChannels: 4, vae1D: false), "sit-xl-2_32x32x4.tsv",
                  parameters: 675_111_184, trainable: 674_816_272)
    }

    func testPresetsAndConfigFile() throws {
        for size in SiTSize.allCases {
            for p in [1, 2, 4, 8] {
                let c = SiTConfig.preset(size, patch: p, inputSize: 32, inChannels: 4, vae1D: false)
                XCTAssertNoThrow(try c.validate(), "\(size)/\(p)")
                XCTAssertEqual(c.decoderHiddenSize, c.hiddenSize)
            }
        }
        // The released SiT-XL/1 config.json decodes to the XL/1 preset (extra fields kept).
        let json = """
        {"class_dropout_prob": 0.1, "decoder_hidden_size": 1152, "depth": 28, "flash_attn": true, "fused_attn": false,
         "hidden_size": 1152, "in_channels": 32, "input_size": 64, "license": "apache-2.0", "mlp_ratio": 4.0,
         "num_classes": 1000, "num_heads": 16, "patch_size": 1, "path_type": "edm", "qk_norm": false,
         "repo_url": "https://github.com/Hhhhhhao/continuous_tokenizer", "tags": ["arxiv:2412.10958", "image-generation", "32 tokens", "SiT"],
         "use_cfg": true, "vae_1d": true, "z_dims": [0]}
        """
        let c = try JSONDecoder().decode(SiTConfig.self, from: Data(json.utf8))
        XCTAssertEqual(c, SiTConfig.xl1SoftVQ(tokens: 64))
        XCTAssertEqual(c.extra["path_type"], .string("edm"))
        // A tiny S-width model runs (final layer width = hidden size).
        var rng = RandomGenerator(seed: 1)
        var small = SiTConfig.s(patch: 2, inputSize: 8, inChannels: 4, numClasses: 3, vae1D: false)
        small.depth = 1
        let m = try SiT(config: small, rng: &rng)
        let v = try Autograd.noGrad { try m(Tensor(zeros: [1, 4, 8, 8]), t: [0.3], y: [3]) }
        XCTAssertEqual(v.shape, [1, 4, 8, 8])
        // Bad config.
        var bad = small
        bad.decoderHiddenSize = 768
        XCTAssertThrowsError(try SiT(config: bad))
    }
}
