// LPIPSTimm against the official lpips_timm.py (tools/fixtures/lpips_timm.py). timm is not
// installed here, so the fixture's ViT is a stand-in written in torch with timm's semantics
// (width 64, 1 head, depth 2, MLP ratio 1, patch 8, 32 px, random weights): the test checks the
// official loss composition; the ViT itself is checked against the official tokenizer by
// FixtureParityTests. References are float64 runs of the float32 weights and inputs.

import Foundation
import Tensor
import Tokenizer
import XCTest

final class LPIPSTimmTests: XCTestCase {
    static var dir: URL { Fixtures.root.appendingPathComponent("lpips_timm") }
    static var vitPath: String { dir.appendingPathComponent("vit.safetensors").path }
    static var headsPath: String { dir.appendingPathComponent("heads.safetensors").path }

    func testParityWithOfficial() throws {
        let io = try SafeTensorsFile(path: Self.dir.appendingPathComponent("io.safetensors").path)
        let x = try io.tensor("x")
        let modes: [(String, LPIPSTimm)] = [
            ("identity", try LPIPSTimm(path: Self.vitPath, depths: [0, 1])),
            ("heads", try LPIPSTimm(path: Self.vitPath, depths: [0, 1], headsPath: Self.headsPath)),
            ("logit", try LPIPSTimm(path: Self.vitPath, logit: true)),
        ]
        for (mode, loss) in modes {
            XCTAssertEqual(loss.vit.spec, ViTSpec(width: 64, depth: 2, heads: 1, mlpRatio: 1, layerScale: true, patchSize: 8, imageSize: 32))
            let xHat = try io.tensor("x_hat")
            xHat.requiresGrad = true
            let value = loss(x, xHat)                   // official order (inputs, reconstructions)
            value.backward()
            let refValue = try io.tensor("value_\(mode)").item, refGrad = try io.tensor("grad_\(mode)").scalars
            let dv = abs(value.item - refValue), dg = maxAbsDiff(xHat.grad!.scalars, refGrad)
            let gScale = refGrad.map(abs).max()!
            print("LPIPSTimm parity \(mode): value \(value.item) |diff| \(dv), grad max|diff| \(dg) (scale \(gScale))")
            XCTAssertLessThan(dv, 1e-5 * abs(refValue), mode)
            XCTAssertLessThan(dg, 1e-4 * gScale, mode)
            XCTAssertTrue(loss.vit.trainableParameters().isEmpty)
        }
    }

    /// Directional derivative along the gradient against central finite differences.
    func testGradient() throws {
        let loss = try LPIPSTimm(path: Self.vitPath, depths: [1, 0], headsPath: Self.headsPath)
        var rng = RandomGenerator(seed: 3)
        let target = rng.uniformTensor([2, 3, 32, 32], low: -1, high: 1), x = rng.uniformTensor([2, 3, 32, 32], low: -1, high: 1)
        x.requiresGrad = true
        loss(x, target).backward()
        let g = x.grad!
        x.requiresGrad = false
        let gmax = g.scalars.map(abs).max()!
        XCTAssertGreaterThan(gmax, 0)
        let analytic = g.scalars.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(gmax)
        for eps: Float in [3e-3, 1e-3] {
            let plus = x.copy(), minus = x.copy()
            for i in 0..<x.count { plus.pointer[i] += eps * g.pointer[i] / gmax; minus.pointer[i] -= eps * g.pointer[i] / gmax }
            let f = { (t: Tensor) in Autograd.noGrad { Double(loss.distance(t, target).scalars.reduce(0, +)) / 2 } }
            let numeric = (f(plus) - f(minus)) / (2 * Double(eps))
            print("LPIPSTimm eps \(eps): analytic \(analytic) numeric \(numeric)")
            XCTAssertEqual(analytic, numeric, accuracy: 1e-2 * abs(numeric))
        }
    }

    func testWrongInputsFailWithOneSentence() throws {
        XCTAssertThrowsError(try LPIPSTimm(path: LPIPSParityTests.weights())) { e in
            XCTAssertTrue("\(e)".contains("does not hold a ViT"), "\(e)")
        }
        XCTAssertThrowsError(try LPIPSTimm(path: Self.vitPath, depths: [0], logit: true)) { e in
            XCTAssertTrue("\(e)".contains("exclusive"), "\(e)")
        }
        XCTAssertThrowsError(try LPIPSTimm(path: Self.vitPath, depths: [0, 2])) { e in
            XCTAssertTrue("\(e)".contains("outside the ViT's 2 blocks"), "\(e)")
        }
        // Three depths but two heads in the file.
        XCTAssertThrowsError(try LPIPSTimm(path: Self.vitPath, depths: [0, 1, 1], headsPath: Self.headsPath)) { e in
            XCTAssertTrue("\(e)".contains("missing tensor 'lins.2.model.1.weight'"), "\(e)")
        }
        // A header that promises a 4096-wide ViT without its weights: refused before allocating.
        let path = Fixtures.tempDir("lpips-timm-huge") + "/vit.safetensors"
        try writeSafeTensors([("cls_token", Tensor(zeros: [1, 1, 4096])), ("pos_embed", Tensor(zeros: [1, 5, 4096])),
                              ("patch_embed.proj.weight", Tensor(zeros: [1, 3, 16, 16])),
                              ("blocks.0.norm1.weight", Tensor(zeros: [1]))], to: path)
        XCTAssertThrowsError(try LPIPSTimm(path: path)) { e in
            XCTAssertTrue("\(e)".contains("larger than the values the file holds"), "\(e)")
        }
        XCTAssertEqual(LPIPSTimm.officialDepths("depth4"), [2, 5, 8, 11])
    }
}
