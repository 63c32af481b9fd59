// Determinism, batch independence, config and checkpoint round trips, clear errors.

import Foundation
import Tensor
import Tokenizer
import XCTest

final class BehaviourTests: XCTestCase {
    func testBatchIndependenceAndDeterminism() throws {
        let model = try Fixtures.tinyModel()
        var rng = RandomGenerator(seed: 5)
        let batch = rng.uniformTensor([16, 3, 32, 32], low: -1, high: 1)
        try Autograd.noGrad {
            let all = try model.latents(batch)
            let again = try model.latents(batch)
            XCTAssertEqual(all.scalars, again.scalars, "same batch twice must be bitwise identical")
            var worst: Float = 0, worstDec: Float = 0
            for i in [0, 7, 15] {
                let one = batch.slice(axis: 0, i..<(i + 1)).copy()
                let z1 = try model.latents(one)
                let zi = all.slice(axis: 0, i..<(i + 1))
                worst = max(worst, maxAbsDiff(z1.scalars, zi.scalars))
                let d1 = try model.decode(z1), di = try model.decode(zi.copy())
                worstDec = max(worstDec, maxAbsDiff(d1.scalars, di.scalars))
            }
            print("batch independence: max |z_q(alone) - z_q(in batch of 16)| = \(worst), decode \(worstDec)")
            XCTAssertLessThanOrEqual(worst, 1e-5)
            XCTAssertLessThanOrEqual(worstDec, 1e-5)
        }
    }

    func testBadImagesAreRejected() throws {
        let model = try Fixtures.tinyModel()
        for shape in [[2, 3, 16, 16], [2, 1, 32, 32], [3, 32, 32], [2, 4, 32, 32], [0, 3, 32, 32]] {
            XCTAssertThrowsError(try model.encode(Tensor(zeros: shape))) { e in
                XCTAssertTrue(e is TokenizerError)
                print("bad input \(shape): \(e)")
            }
        }
        XCTAssertThrowsError(try model.decode(Tensor(zeros: [1, 7, 8])))
    }

    func testConfigErrors() throws {
        var c = TokenizerConfig.fashion32
        c.numLatentTokens = 15
        XCTAssertThrowsError(try SoftVQModel(config: c)) { print("config: \($0)") }
        c = .fashion32
        c.encoderModel = "resnet50"
        XCTAssertThrowsError(try SoftVQModel(config: c)) { print("config: \($0)") }
        c = .fashion32
        c.decoderModel = "vit_giant_patch14_dinov2.lvd142m"
        XCTAssertThrowsError(try SoftVQModel(config: c)) { print("config: \($0)") }
        c = .fashion32
        c.imageSize = 30
        XCTAssertThrowsError(try SoftVQModel(config: c)) { print("config: \($0)") }
        XCTAssertThrowsError(try TokenizerConfig.preset("softvq-xl-64"))
        // The official config.json of the fixture without the ViT overrides contradicts its weights.
        XCTAssertThrowsError(try SoftVQModel.load(folder: Fixtures.tiny, log: { _ in })) { e in
            print("config vs weights: \(e)")
            XCTAssertTrue("\(e)".contains("wide"))
        }
    }

    func testConfigRoundTripKeepsUnknownFields() throws {
        let path = (Fixtures.tiny as NSString).appendingPathComponent("config.json")
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as! [String: Any]
        var c = try TokenizerConfig.load(path: path)
        XCTAssertEqual(c.imageSize, 32); XCTAssertEqual(c.numLatentTokens, 8); XCTAssertEqual(c.tau, 0.07)
        XCTAssertEqual(c.encoderModel, "vit_large_patch14_dinov2.lvd142m")
        c.raw["some_future_field"] = .array([.int(1), .string("x")])
        let data = try c.jsonData()
        let back = try JSONDecoder().decode(TokenizerConfig.self, from: data)
        XCTAssertEqual(back, c)
        let obj = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        XCTAssertEqual(Set(obj.keys), Set(original.keys).union(["some_future_field"]))
        XCTAssertNil(obj["enc_embed_dim"], "override keys are only written when set")
    }

    func testSaveLoadRoundTripAndStrictErrors() throws {
        let model = try Fixtures.tinyModel()
        let dir = Fixtures.tempDir("roundtrip")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try model.save(folder: dir)
        let back = try SoftVQModel.load(folder: dir, log: { _ in })
        XCTAssertEqual(back.config, model.config)
        let x = try Fixtures.io().tensor("x")
        try Autograd.noGrad {
            XCTAssertEqual(try back.reconstruct(x).0.scalars, try model.reconstruct(x).0.scalars)
        }
        // Loaded for decoding only (as gen sample does): decodes the same, refuses to encode.
        let decoderOnly = try SoftVQModel.load(folder: dir, decoderOnly: true, log: { _ in })
        XCTAssertFalse(decoderOnly.encoderLoaded)
        try Autograd.noGrad {
            let z = try model.latents(x)
            XCTAssertEqual(try decoderOnly.decode(z).scalars, try model.decode(z).scalars)
            XCTAssertThrowsError(try decoderOnly.encode(x))
        }
        // Extra REPA keys are skipped with a notice.
        var tensors = model.namedTensors()
        let proj = RepaProjector(inDim: 8, hidden: 16, outDim: 32)
        tensors += proj.namedTensors(prefix: "projection")
        try writeSafeTensors(tensors, to: dir + "/model.safetensors")
        var notes: [String] = []
        _ = try SoftVQModel.load(folder: dir, log: { notes.append($0) })
        XCTAssertEqual(notes.count, 1); print("notice: \(notes.first ?? "")")
        // Missing tensor.
        try writeSafeTensors(model.namedTensors().filter { $0.0 != "decoder.mask_token" }, to: dir + "/model.safetensors")
        XCTAssertThrowsError(try SoftVQModel.load(folder: dir, log: { _ in })) { e in
            print("missing: \(e)"); XCTAssertTrue("\(e)".contains("decoder.mask_token"))
        }
        // Misshapen tensor.
        try writeSafeTensors(model.namedTensors().map { $0.0 == "post_quant_conv.bias" ? ($0.0, Tensor(zeros: [63])) : $0 },
                             to: dir + "/model.safetensors")
        XCTAssertThrowsError(try SoftVQModel.load(folder: dir, log: { _ in })) { e in
            print("misshapen: \(e)"); XCTAssertTrue("\(e)".contains("post_quant_conv.bias"))
        }
        // Unknown extra tensor.
        try writeSafeTensors(model.namedTensors() + [("decoder.extra", Tensor(zeros: [2]))], to: dir + "/model.safetensors")
        XCTAssertThrowsError(try SoftVQModel.load(folder: dir, log: { _ in })) { e in
            print("unexpected: \(e)"); XCTAssertTrue("\(e)".contains("decoder.extra"))
        }
    }
}
