// Parity with the official SoftVQModel on the tiny random fixture (Tests/Fixtures/tokenizer_tiny).

import Foundation
import Tensor
import Tokenizer
import XCTest

final class FixtureParityTests: XCTestCase {
    func testForwardMatchesOfficialOutputs() throws {
        let model = try Fixtures.tinyModel()
        let io = try Fixtures.io()
        let x = try io.tensor("x")
        try Autograd.noGrad {
            let encOut = model.encoder(x)
            let h = try model.encode(x)
            let q = try model.quantize(h)
            let post = model.postQuantConv(q.zq)
            let dec = try model.decode(q.zq)
            let entropy = model.quantizer.weightedEntropyLoss(q)
            let entropyRaw = SoftVectorQuantizer.entropyLoss(logits: q.logits)
            let checks: [(String, Tensor, Float)] = [
                ("encoder_out", encOut, 1e-4), ("h", h, 1e-4), ("logits", q.logits, 1e-4), ("probs", q.probs, 1e-4),
                ("z_q", q.zq, 1e-4), ("post_quant", post, 1e-4), ("dec", dec, 1e-4),
                ("entropy_loss", entropy, 1e-5), ("entropy_loss_raw", entropyRaw, 1e-3),
            ]
            for (name, ours, tol) in checks {
                let ref = try io.tensor(name)
                XCTAssertEqual(ours.count, ref.count, name)
                let d = maxAbsDiff(ours.scalars, ref.scalars)
                print(String(format: "parity %-16@ max |diff| %.3e  (tol %.0e) %@", name, d, tol, d <= tol ? "OK" : "NOT OK"))
                XCTAssertLessThanOrEqual(d, tol, name)
            }
            // float32 rounding scale: official f32 vs official f64, and ours vs f64.
            for (name, ours) in [("z_q", q.zq), ("dec", dec)] {
                let f32 = try io.tensor(name).scalars, f64 = try io.doubles(name + "_f64")
                print(String(format: "parity %-16@ ours-f64 %.3e, official f32-f64 %.3e", name, maxAbsDiff(ours.scalars, f64), maxAbsDiff(f32, f64)))
            }
            let idx = try io.integers("indices")
            XCTAssertEqual(q.indices, idx)
            XCTAssertEqual(q.logits.shape, [1, 16, 64])
            XCTAssertEqual(dec.shape, [2, 3, 32, 32])
        }
    }

    func testUnusedDecoderPatchEmbedIsInStateDict() throws {
        let model = try Fixtures.tinyModel()
        let names = Set(model.namedTensors().map(\.0))
        XCTAssertTrue(names.contains("decoder.model.patch_embed.proj.weight"))
        XCTAssertTrue(names.contains("quantize.codebook_used"))
        XCTAssertFalse(model.quantizer.codebookUsed!.requiresGrad)
        XCTAssertFalse(model.trainableParameters().contains { $0.0 == "quantize.codebook_used" })
    }
}
