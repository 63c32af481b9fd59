// The whole flow-matching loss differentiated by the tape against central finite differences,
// for parameters of every kind, on the tiny official model (all parameters non-zero).

import Foundation
import XCTest
import Tensor
@testable import SiT

final class SiTGradientTests: XCTestCase {
    func testLossGradientsMatchFiniteDifferences() throws {
        for fixture in ["sit_tiny_1d", "sit_tiny_2d"] {
            let model = try SiT.load(folder: Fixtures.path(fixture))
            let io = try Fixtures.io(fixture)
            let x0 = try io.tensor("x")
            var rng = RandomGenerator(seed: 11)
            let noise = rng.normalTensor(x0.shape)
            let t: [Float] = [0.15, 0.5, 0.85]
            let y = [1, 7, model.nullLabel]
            let objective = FlowMatchingObjective(for: model.config)
            func loss() throws -> Tensor {
                try objective.perSampleLoss(model: model, x0: x0, noise: noise, t: t, labels: y).sum()
            }
            model.zeroGrad()
            try loss().backward()

            let kinds = [model.config.vae1D ? "x_embedder.weight" : "x_embedder.proj.weight",
                         model.config.vae1D ? "x_embedder.bias" : "x_embedder.proj.bias",
                         "t_embedder.mlp.0.weight", "t_embedder.mlp.2.bias", "y_embedder.embedding_table.weight",
                         "blocks.0.attn.qkv.weight", "blocks.1.attn.qkv.bias", "blocks.1.attn.proj.weight",
                         "blocks.0.mlp.fc1.weight", "blocks.1.mlp.fc2.weight",
                         "blocks.0.adaLN_modulation.1.weight", "blocks.1.adaLN_modulation.1.bias",
                         "final_layer.linear.weight", "final_layer.adaLN_modulation.1.weight"]
            let tensors = Dictionary(uniqueKeysWithValues: model.namedTensors())
            XCTAssertNil(tensors["pos_embed"]!.grad, "pos_embed is frozen")
            var worst: Float = 0
            for key in kinds {
                let p = try XCTUnwrap(tensors[key], key)
                let g = try XCTUnwrap(p.grad, "\(key) has no gradient")
                // The three largest gradient entries and two fixed ones.
                let order = (0..<g.count).sorted { abs(g.pointer[$0]) > abs(g.pointer[$1]) }
                let picks = Array(order.prefix(3)) + [g.count / 3, (2 * g.count) / 3]
                for i in picks {
                    let h: Float = 1e-2
                    let w = p.pointer[i]
                    p.pointer[i] = w + h
                    let up = try Autograd.noGrad { try loss().item }
                    p.pointer[i] = w - h
                    let down = try Autograd.noGrad { try loss().item }
                    p.pointer[i] = w
                    let fd = (up - down) / (2 * h), an = g.pointer[i]
                    let err = abs(fd - an) / (abs(fd) + abs(an) + 1e-2)
                    worst = max(worst, err)
                    XCTAssertLessThan(err, 1e-2, "\(fixture) \(key)[\(i)]: tape \(an), finite difference \(fd)")
                }
            }
            print("\(fixture): worst relative gradient error \(worst) over \(kinds.count) tensors")
        }
    }
}
