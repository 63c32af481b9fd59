// LPIPSTimm (the ViT branch of the official lpips_timm.py) over a tiny random ViT saved in
// safetensors, against the formula written out in Double from the ViT's public pieces. (No
// official fixture: timm is not installed here; the ViT itself is checked against the official
// tokenizer by FixtureParityTests.)

import Foundation
import Tensor
import Tokenizer
import XCTest

final class LPIPSTimmTests: XCTestCase {
    /// heads = width / 64, as the loader assumes.
    static let spec = ViTSpec(width: 128, depth: 3, heads: 2, layerScale: true, patchSize: 8, imageSize: 32)

    /// A random ViT whose attention is far from uniform (timm's init, std 0.02, makes every
    /// token's attention nearly the mean of all, and the class token nearly image-independent).
    static func savedViT(weightScale: Float = 25) throws -> (VisionTransformer, String) {
        let vit = VisionTransformer(spec: spec, initialization: .random(seed: 21))
        for b in vit.blocks {
            for w in [b.attn.qkv.weight, b.attn.proj.weight, b.mlp.fc1.weight, b.mlp.fc2.weight] {
                for i in 0..<w.count { w.pointer[i] *= weightScale }
                w.markModified()
            }
            for ls in [b.ls1!, b.ls2!] { ls.gamma.fill(0.5) }
        }
        let path = Fixtures.tempDir("lpips-timm") + "/vit.safetensors"
        try writeSafeTensors(vit.namedTensors() + [("head.weight", Tensor(zeros: [10, 128]))], to: path)
        return (vit, path)
    }

    static func images(_ seed: UInt64) -> Tensor {
        var rng = RandomGenerator(seed: seed)
        return rng.uniformTensor([2, 3, 32, 32], low: -1, high: 1)
    }

    /// sum over `depths` of mean_{D,T} (nt(f_a) - nt(f_b))^2 plus, with the logit term,
    /// mean_D (cls_a - cls_b)^2 of the final norm; per sample, in Double.
    static func reference(_ vit: VisionTransformer, _ a: Tensor, _ b: Tensor, depths: [Int], logit: Bool) -> [Double] {
        Autograd.noGrad {
            func prepare(_ x: Tensor) -> Tensor { vit.withClassAndPositions(vit.patchEmbed(prepareImages(x))) }
            var xa = prepare(a), xb = prepare(b)
            var out = [Double](repeating: 0, count: 2)
            let (t, d) = (16, 128)
            for (i, block) in vit.blocks.enumerated() {
                xa = block(xa); xb = block(xb)
                guard depths.contains(i) else { continue }
                for n in 0..<2 { for p in 1...t {
                    let va = (0..<d).map { Double(xa.pointer[(n * (t + 1) + p) * d + $0]) }
                    let vb = (0..<d).map { Double(xb.pointer[(n * (t + 1) + p) * d + $0]) }
                    let na = va.map { $0 * $0 }.reduce(0, +).squareRoot() + 1e-10
                    let nb = vb.map { $0 * $0 }.reduce(0, +).squareRoot() + 1e-10
                    out[n] += zip(va, vb).map { ($0 / na - $1 / nb) * ($0 / na - $1 / nb) }.reduce(0, +) / Double(d * t)
                } }
            }
            if logit {
                let fa = vit.forwardFeatures(prepareImages(a)), fb = vit.forwardFeatures(prepareImages(b))
                for n in 0..<2 {
                    for c in 0..<d {
                        let diff = Double(fa.pointer[n * (t + 1) * d + c]) - Double(fb.pointer[n * (t + 1) * d + c])
                        out[n] += diff * diff / Double(d)
                    }
                }
            }
            return out
        }
    }

    /// [-1, 1] -> [0, 1] -> ImageNet mean / std, element by element.
    static func prepareImages(_ x: Tensor) -> Tensor {
        let y = x.copy()
        let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
        for i in 0..<y.count { let c = (i / 1024) % 3; y.pointer[i] = ((y.pointer[i] + 1) / 2 - mean[c]) / std[c] }
        return y
    }

    func testValueMatchesFormula() throws {
        let (vit, path) = try Self.savedViT()
        let a = Self.images(1), b = Self.images(2)
        for (depths, logit) in [([0, 1, 2], false), ([1], true), ([Int](), true)] {
            let loss = try LPIPSTimm(path: path, depths: depths, logitLoss: logit)
            XCTAssertEqual(loss.vit.spec, Self.spec)
            XCTAssertTrue(loss.vit.trainableParameters().isEmpty)
            let ours = Autograd.noGrad { loss.distance(a, b).scalars }
            let ref = Self.reference(vit, a, b, depths: depths, logit: logit)
            for n in 0..<2 { XCTAssertEqual(Double(ours[n]), ref[n], accuracy: 1e-5 * ref[n], "depths \(depths) logit \(logit)") }
            XCTAssertGreaterThan(ref[0], 1e-4)
            XCTAssertEqual(Autograd.noGrad { loss(a, a).item }, 0, accuracy: 1e-9)
        }
    }

    /// Directional derivative along the gradient against central finite differences (weights
    /// scaled less than above, so that the loss is smooth at the step sizes).
    func testGradient() throws {
        let (vit, _) = try Self.savedViT(weightScale: 4)
        let loss = LPIPSTimm(vit: vit, depths: [0, 2], logitLoss: true)
        let target = Self.images(3), x = Self.images(4)
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

    func testNotAViT() throws {
        XCTAssertThrowsError(try LPIPSTimm(path: LPIPSParityTests.weights())) { e in
            XCTAssertTrue("\(e)".contains("does not hold a ViT"), "\(e)")
        }
        // A header that promises a 4096-wide ViT without its weights: refused before allocating.
        let path = Fixtures.tempDir("lpips-timm-huge") + "/vit.safetensors"
        try writeSafeTensors([("cls_token", Tensor(zeros: [1, 1, 4096])), ("pos_embed", Tensor(zeros: [1, 5, 4096])),
                              ("patch_embed.proj.weight", Tensor(zeros: [1, 3, 16, 16])),
                              ("blocks.0.norm1.weight", Tensor(zeros: [1]))], to: path)
        XCTAssertThrowsError(try LPIPSTimm(path: path)) { e in
            XCTAssertTrue("\(e)".contains("larger than the values the file holds"), "\(e)")
        }
    }
}
