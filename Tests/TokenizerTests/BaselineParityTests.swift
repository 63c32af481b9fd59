// Parity of the ablation's baseline posteriors with the official code (fixtures made by
// tools/fixtures/quantizers.py from modelling/quantizers/vq.py and kl.py): hard VQ's
// straight-through output, codebook / commitment / entropy losses, usage history and
// gradients; the Gaussian's mean, reparameterised sample, KL and gradient. Tolerances sit a
// little above the float32-vs-float64 differences recorded in scale.json.

import Foundation
import Tensor
import Tokenizer
import XCTest

final class BaselineParityTests: XCTestCase {
    static let folder = Fixtures.root.appendingPathComponent("quantizers").path

    func fixture(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: Self.folder + "/\(name).safetensors")
    }

    func testHardVQMatchesTheOfficialVectorQuantizer() throws {
        let f = try fixture("vq")
        var c = TokenizerConfig()
        c.quantizer = .vq; c.codebookSize = 64; c.codebookEmbedDim = 8; c.commitLossBeta = 0.25; c.entropyLossRatio = 0.1
        var factory = ParameterFactory(.zeros)
        let q = VectorQuantizer(c, &factory)
        q.codewords.assign(try f.tensor("embedding.weight"))
        q.codewords.requiresGrad = true
        let z = try f.tensor("z")
        z.requiresGrad = true
        var rng = RandomGenerator(seed: 0)
        let out = try q.forward(z, training: true, rng: &rng)
        let losses = Dictionary(uniqueKeysWithValues: out.losses.map { ($0.name, $0.value) })
        XCTAssertEqual(out.indices!.map(Float.init), try f.tensor("indices").scalars, "nearest codewords")
        XCTAssertLessThan(maxAbsDiff(out.zq.scalars, try f.tensor("zq").scalars), 1e-6)
        for (ours, theirs, tol) in [("codebook", "vq_loss", Float(1e-7)), ("commitment", "commit_loss", 1e-7), ("entropy", "entropy_loss", 1e-5)] {
            let a = losses[ours]!.item, b = try f.tensor(theirs).item
            XCTAssertEqual(a, b, accuracy: tol, "\(ours): \(a) vs official \(b)")
        }
        q.recordUsage(out)
        XCTAssertEqual(q.codebookUsed!.scalars, try f.tensor("codebook_used").scalars, "usage history")
        let r = try f.tensor("r")
        let total = (out.zq * r).sum() + losses["codebook"]! + losses["commitment"]! + losses["entropy"]!
        total.backward()
        let dz = maxAbsDiff(z.grad!.scalars, try f.tensor("grad_z").scalars)
        let de = maxAbsDiff(q.codewords.grad!.scalars, try f.tensor("grad_embedding").scalars)
        print(String(format: "hard VQ: max |d grad z| %.2e, |d grad codebook| %.2e", dz, de))
        XCTAssertLessThan(dz, 1e-5)
        XCTAssertLessThan(de, 1e-5)
    }

    func testGaussianMatchesTheOfficialDiagonalGaussian() throws {
        let f = try fixture("kl")
        var c = TokenizerConfig()
        c.quantizer = .kl; c.codebookEmbedDim = 8
        let posterior = GaussianPosterior(c)
        let h = try f.tensor("h")
        h.requiresGrad = true
        let mode = try posterior.latents(Autograd.noGrad { h.detached() })
        XCTAssertEqual(mode.scalars, try f.tensor("mode").scalars, "the mean")
        let (z, kl) = posterior.sample(h, noise: try f.tensor("noise"))
        XCTAssertLessThan(maxAbsDiff(z.scalars, try f.tensor("sample").scalars), 1e-5)
        XCTAssertEqual(kl.item, try f.tensor("kl_loss").item, accuracy: 2e-4 * max(1, abs(kl.item)) / 100)
        let total = (z * (try f.tensor("r"))).sum() + kl * 1e-2
        total.backward()
        let d = maxAbsDiff(h.grad!.scalars, try f.tensor("grad_h").scalars)
        print(String(format: "Gaussian: kl %.6f vs %.6f, max |d grad h| %.2e", kl.item, try f.tensor("kl_loss").item, d))
        XCTAssertLessThan(d, 1e-5)
    }

    /// Every posterior saves and loads under the official keys and reconstructs identically.
    func testBaselineTokenizersRoundTripInTheOfficialLayout() throws {
        for kind in QuantizerKind.allCases {
            var c = try TokenizerConfig.preset("fashion32-small")
            c.quantizer = kind
            c.encDepth = 1; c.decDepth = 1
            let model = try SoftVQModel(config: c, initialization: .random(seed: 3))
            let dir = Fixtures.tempDir("baseline-\(kind.rawValue)")
            try model.save(folder: dir)
            let keys = try SafeTensorsFile(path: dir + "/model.safetensors").names
            switch kind {
            case .softvq: XCTAssertTrue(keys.contains("quantize.embedding"))
            case .vq: XCTAssertTrue(keys.contains("quantize.embedding.weight")); XCTAssertTrue(keys.contains("quantize.codebook_used"))
            case .kl: XCTAssertFalse(keys.contains { $0.hasPrefix("quantize.") })
            }
            let back = try SoftVQModel.load(folder: dir, log: { _ in })
            XCTAssertEqual(back.config.quantizer, kind)
            let x = Tensor((0..<(2 * 3 * 32 * 32)).map { Float(sin(Double($0))) }, shape: [2, 3, 32, 32])
            try Autograd.noGrad {
                XCTAssertEqual(try back.reconstruct(x).0.scalars, try model.reconstruct(x).0.scalars, kind.rawValue)
            }
            XCTAssertEqual(Double(model.parameterCount), try c.parameterCount, "parameter count of \(kind.rawValue)")
        }
    }
}
