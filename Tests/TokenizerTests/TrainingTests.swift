// A tiny tokenizer learns to reconstruct a handful of structured images; REPA alignment math
// against a tiny random frozen ViT.

import Foundation
import Tensor
import Tokenizer
import XCTest

final class TrainingTests: XCTestCase {
    static func tinyConfig() -> TokenizerConfig {
        var c = TokenizerConfig.fashion32
        c.imageSize = 16; c.baseImageSize = 16
        c.encPatchSize = 4; c.decPatchSize = 4
        c.encEmbedDim = 64; c.encDepth = 2; c.encNumHeads = 4
        c.decEmbedDim = 64; c.decDepth = 2; c.decNumHeads = 4
        c.numLatentTokens = 8; c.numCodebooks = 1; c.codebookSize = 64; c.codebookEmbedDim = 8
        return c
    }

    func testTinyTokenizerLearnsToReconstruct() throws {
        let model = try SoftVQModel(config: Self.tinyConfig(), initialization: .random(seed: 3))
        let images = structuredImages(count: 8, size: 16, seed: 11)
        func mse() throws -> Float {
            try Autograd.noGrad { TokenizerTrainer.reconstruction(try model.reconstruct(images).0, images, .l2).item }
        }
        let before = try mse()
        let trainer = try TokenizerTrainer(model: model, lr: 2e-3, weightDecay: 0,
                                           schedule: .warmup(lr: 2e-3, warmup: 20), maxGradNorm: 1, ema: 0.99)
        let start = Date()
        var last = TokenizerLosses()
        for step in 0..<300 {
            last = try trainer.trainStep(images)
            if step % 100 == 0 { print("train step \(step): \(last)") }
        }
        let after = try mse()
        let q = try Autograd.noGrad { try model.quantize(try model.encode(images)) }
        print(String(format: "train: mse %.5f -> %.5f (%.1fx) in %.1f s; %@", before, after, before / after,
                     Date().timeIntervalSince(start), model.quantizer.stats(q).description))
        XCTAssertLessThan(after * 5, before)
        XCTAssertTrue(last.total.isFinite)
        XCTAssertGreaterThan(model.quantizer.stats(q).historyUsage, 0)
        // EMA weights moved towards the model and still decode.
        let emaRec = try Autograd.noGrad { try trainer.ema!.reconstruct(images).0 }
        XCTAssertTrue(emaRec.scalars.allSatisfy { $0.isFinite })
    }

    func testL1LossAndExtraTermsHook() throws {
        let model = try SoftVQModel(config: Self.tinyConfig(), initialization: .random(seed: 4))
        let images = structuredImages(count: 2, size: 16, seed: 12)
        let trainer = try TokenizerTrainer(model: model, ema: nil, reconstructionLoss: .l1)
        trainer.extraLosses.append((name: "zq_l2", weight: 0.5, term: { f in f.quantized.zq.square().mean() }))
        var called = false
        trainer.afterBackward = { _ in called = true }
        let s = try trainer.trainStep(images)
        XCTAssertTrue(called)
        XCTAssertNotNil(s.extra["zq_l2"])
        XCTAssertEqual(s.total, s.reconstruction + s.entropy + s.extra["zq_l2"]!, accuracy: 1e-5)
    }

    func testRepaAlignmentLoss() throws {
        var config = Self.tinyConfig()
        config.repaProjDim = 24
        config.repaAlign = "repeat"
        config.repaLossWeight = 0.5
        let model = try SoftVQModel(config: config, initialization: .random(seed: 5))
        // A tiny random frozen "DINOv2": width 64 (1 head of 64), depth 1, patch 4 -> 16 patches,
        // saved under the official repa_model. prefix, with an extra head tensor to be ignored.
        let spec = ViTSpec(width: 64, depth: 1, heads: 1, layerScale: true, patchSize: 4, imageSize: 16)
        let vit = VisionTransformer(spec: spec, initialization: .random(seed: 9))
        let dir = Fixtures.tempDir("repa")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/teacher.safetensors"
        try writeSafeTensors(vit.namedTensors(prefix: "repa_model") + [("head.weight", Tensor(zeros: [10, 64]))], to: path)
        let repa = try RepaAligner.load(teacher: path, prefix: "repa_model.", config: config)
        XCTAssertEqual((repa.teacher as! ViTTeacher).model.spec.depth, 1)
        XCTAssertTrue((repa.teacher as! ViTTeacher).model.spec.layerScale)

        let images = structuredImages(count: 2, size: 16, seed: 13)
        let zq = try Autograd.noGrad { try model.latents(images) }       // (2, 8, 8)
        let loss = try Autograd.noGrad { try repa.loss(images: images, zq: zq).item }
        // Reference: features of the original ViT on normalised images, projector, each token
        // repeated 16 / 8 = 2 times, mean negative cosine, times the weight.
        let ref: Double = Autograd.noGrad {
            let x = images.copy()
            let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
            for i in 0..<x.count { let c = (i / 256) % 3; x.pointer[i] = ((x.pointer[i] + 1) / 2 - mean[c]) / std[c] }
            let f = vit.forwardFeatures(x)                                 // (2, 17, 64)
            let p = repa.projection(zq)                                    // (2, 8, 64)
            var total = 0.0
            for n in 0..<2 {
                for t in 0..<16 {
                    let a = (0..<64).map { Double(f.pointer[(n * 17 + 1 + t) * 64 + $0]) }
                    let b = (0..<64).map { Double(p.pointer[(n * 8 + t / 2) * 64 + $0]) }
                    let dot = zip(a, b).map { $0 * $1 }.reduce(0, +)
                    let na = a.map { $0 * $0 }.reduce(0, +).squareRoot(), nb = b.map { $0 * $0 }.reduce(0, +).squareRoot()
                    total += -dot / (na * nb)
                }
            }
            return 0.5 * total / 32
        }
        print("repa loss \(loss), reference \(ref)")
        XCTAssertEqual(Double(loss), ref, accuracy: 1e-5)

        // A training step with REPA reaches the projector and the encoder, not the teacher.
        let trainer = try TokenizerTrainer(model: model, ema: nil, repa: repa)
        let s = try trainer.trainStep(images)
        XCTAssertNotEqual(s.repa, 0)
        XCTAssertNotNil(repa.projection.l0.weight.grad)
        XCTAssertNotNil(model.encoder.latentTokens.grad)
        XCTAssertTrue((repa.teacher as! ViTTeacher).model.namedTensors().allSatisfy { $0.1.grad == nil })

        // Teacher size mismatch is a clear error.
        var wrong = config
        wrong.imageSize = 32
        XCTAssertThrowsError(try RepaAligner.load(teacher: path, prefix: "repa_model.", config: wrong)) { print("repa: \($0)") }
    }
}
