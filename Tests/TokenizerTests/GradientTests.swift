// Finite-difference checks of the backward pass through decoder, soft quantizer and encoder, on
// the tiny official fixture (every parameter perturbed, so every path carries signal).

import Foundation
import Tensor
import Tokenizer
import XCTest

final class GradientTests: XCTestCase {
    func testFiniteDifferencesThroughWholeTokenizer() throws {
        let model = try Fixtures.tinyModel()
        let x = try Fixtures.io().tensor("x")
        func loss() throws -> Tensor {
            let (rec, out) = try model.reconstruct(x); let q = out.soft!
            let r = (rec - x).square().mean()
            return r + SoftVectorQuantizer.entropyLoss(logits: q.logits) * 0.05
        }
        model.zeroGrad()
        let l = try loss()
        l.backward()
        let params = Dictionary(uniqueKeysWithValues: model.namedTensors())
        let names = [
            "decoder.to_pixel.model.weight", "decoder.model.blocks.1.mlp.fc1.weight", "decoder.model.pos_embed",
            "decoder.mask_token", "decoder.latent_pos_embed", "post_quant_conv.bias",
            "quant_conv.weight", "encoder.model.norm.weight", "encoder.model.blocks.1.ls2.gamma",
            "encoder.model.blocks.0.attn.qkv.weight", "encoder.latent_tokens", "encoder.model.cls_token",
            "encoder.model.patch_embed.proj.weight",
        ]
        var worst: Float = 0
        for name in names {
            let p = params[name]!
            let g = try XCTUnwrap(p.grad, "no gradient for \(name)")
            // The element with the largest gradient and one other.
            var best = 0
            for i in 0..<g.count where abs(g.pointer[i]) > abs(g.pointer[best]) { best = i }
            for i in [best, (best * 7 + 3) % g.count] {
                let old = p.pointer[i]
                let eps: Float = 1e-2 * max(1, abs(old))
                p.pointer[i] = old + eps
                let lp = try Autograd.noGrad { try loss().item }
                p.pointer[i] = old - eps
                let lm = try Autograd.noGrad { try loss().item }
                p.pointer[i] = old
                let fd = (lp - lm) / (2 * eps)
                let an = g.pointer[i]
                let rel = abs(fd - an) / max(abs(fd), abs(an), 2e-4)
                worst = max(worst, i == best ? rel : 0)
                print(String(format: "grad %@[%d]: analytic %.6e, finite diff %.6e, rel %.2e", name, i, an, fd, rel))
                if i == best {
                    XCTAssertLessThan(rel, 5e-2, "\(name)[\(i)]")
                } else {
                    XCTAssertLessThan(abs(fd - an), 5e-2 * max(abs(fd), abs(an)) + 2e-4, "\(name)[\(i)]")
                }
            }
        }
        // The codebook: its gradient deliberately ignores the logits path (detached codebook), so
        // the finite difference holds the soft assignment fixed: L(E) = rec(decode(P . norm(E))).
        let e = model.quantizer.embedding
        let ge = try XCTUnwrap(e.grad)
        let q = try Autograd.noGrad { try model.quantize(try model.encode(x)) }
        let probs = q.probs.copy()                                   // (1, N*S, K), fixed
        func codebookLoss() throws -> Float {
            try Autograd.noGrad {
                let zq = matmul(probs, e.l2Normalized()).reshaped([2, 8, 8])
                return (try model.decode(zq) - x).square().mean().item
            }
        }
        var best = 0
        for i in 0..<ge.count where abs(ge.pointer[i]) > abs(ge.pointer[best]) { best = i }
        for i in [best, (best * 7 + 3) % ge.count] {
            let old = e.pointer[i]
            let eps: Float = 1e-2 * max(1, abs(old))
            e.pointer[i] = old + eps
            let lp = try codebookLoss()
            e.pointer[i] = old - eps
            let lm = try codebookLoss()
            e.pointer[i] = old
            let fd = (lp - lm) / (2 * eps), an = ge.pointer[i]
            print(String(format: "grad quantize.embedding[%d] (assignment fixed): analytic %.6e, finite diff %.6e", i, an, fd))
            XCTAssertLessThan(abs(fd - an), 5e-2 * max(abs(fd), abs(an)) + 2e-4)
        }
        print("grad worst relative error at the largest-gradient elements: \(worst)")
        // The unused decoder patch embedding gets no gradient.
        XCTAssertNil(params["decoder.model.patch_embed.proj.weight"]!.grad)
    }

    func testLogitsUseDetachedCodebook() throws {
        // Entropy loss alone must not reach the codebook (official: logits use embedding.detach()).
        let model = try Fixtures.tinyModel()
        let x = try Fixtures.io().tensor("x")
        model.zeroGrad()
        let q = try model.quantize(try model.encode(x))
        SoftVectorQuantizer.entropyLoss(logits: q.logits).backward()
        XCTAssertNil(model.quantizer.embedding.grad)
        XCTAssertNotNil(model.quantConv.weight.grad)
    }
}
