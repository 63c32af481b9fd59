// The trainer's recipe machinery: the baseline posteriors train, the image-space terms
// evaluated on a probe of the reconstruction give exactly the gradients of the direct loss, and
// the last-layer gradient used by the adaptive weight equals autograd's.

import Foundation
@testable import Tensor
@testable import Tokenizer
import XCTest

final class RecipeTrainingTests: XCTestCase {
    func config(_ kind: QuantizerKind) -> TokenizerConfig {
        var c = TrainingTests.tinyConfig()
        c.quantizer = kind
        c.commitLossBeta = 0.25
        c.klLossWeight = 1e-4
        return c
    }

    /// Hard VQ and the Gaussian learn to reconstruct with their own loss terms.
    func testBaselinePosteriorsLearnToReconstruct() throws {
        for kind in [QuantizerKind.vq, .kl] {
            let model = try SoftVQModel(config: config(kind), initialization: .random(seed: 3))
            let images = structuredImages(count: 8, size: 16, seed: 11)
            func mse() throws -> Float {
                try Autograd.noGrad { TokenizerTrainer.reconstruction(try model.reconstruct(images).0, images, .l2).item }
            }
            let before = try mse()
            let trainer = try TokenizerTrainer(model: model, lr: 2e-3, weightDecay: 0, schedule: .warmup(lr: 2e-3, warmup: 20),
                                               maxGradNorm: 1, ema: nil)
            var last = TokenizerLosses()
            for _ in 0..<150 { last = try trainer.trainStep(images) }
            let after = try mse()
            print(String(format: "%@: mse %.5f -> %.5f; %@", kind.rawValue, before, after, last.description))
            XCTAssertLessThan(after * 3, before, kind.rawValue)
            switch kind {
            case .vq:
                XCTAssertNotNil(last.extra["codebook"]); XCTAssertNotNil(last.extra["commitment"])
                XCTAssertNotNil(trainer.lastUsage)
            case .kl:
                XCTAssertGreaterThan(last.extra["kl"] ?? 0, 0)
                XCTAssertNil(trainer.lastUsage)
            case .softvq: break
            }
        }
    }

    /// With only the reconstruction and the entropy term, the probe path's gradients equal
    /// those of backward through (rec - x)^2 mean + entropy directly.
    func testProbeGradientsEqualTheDirectLoss() throws {
        let images = structuredImages(count: 4, size: 16, seed: 5)
        let a = try SoftVQModel(config: config(.softvq), initialization: .random(seed: 9))
        let b = try SoftVQModel(config: config(.softvq), initialization: .random(seed: 9))
        let trainer = try TokenizerTrainer(model: a, ema: nil)
        _ = try trainer.backward(images)
        var rng = trainer.stepGenerator
        let (rec, q) = try b.reconstruct(images, training: true, rng: &rng)
        let direct = TokenizerTrainer.reconstruction(rec, images, .l2) + q.losses.map(\.value).reduce(Tensor(scalar: 0), +)
        direct.backward()
        var worst: Float = 0
        for ((k, p), (_, r)) in zip(a.trainableParameters(), b.trainableParameters()) {
            XCTAssertEqual(p.grad == nil, r.grad == nil, k)
            guard let g1 = p.grad, let g2 = r.grad else { continue }   // unused (the decoder's patch_embed)
            for i in 0..<g1.count { worst = max(worst, abs(g1.pointer[i] - g2.pointer[i]) / max(1e-3, abs(g2.pointer[i]))) }
        }
        print("probe vs direct: worst relative gradient difference \(worst)")
        XCTAssertLessThan(worst, 1e-4)
    }

    /// ToPixel.weightGradient (the adaptive weight's dL/dW at the decoder's last layer) equals
    /// the gradient autograd gives the weight.
    func testLastLayerGradientMatchesAutograd() throws {
        let model = try SoftVQModel(config: config(.softvq), initialization: .random(seed: 2))
        var rng = RandomGenerator(seed: 4)
        let features = Tensor((0..<(2 * 16 * 64)).map { _ in Float(rng.normal()) }, shape: [2, 16, 64])
        let g = Tensor((0..<(2 * 3 * 16 * 16)).map { _ in Float(rng.normal()) }, shape: [2, 3, 16, 16])
        let w = model.decoder.toPixel.model.weight
        w.grad = nil
        (model.decoder.toPixel(features) * g).sum().backward()
        let ours = model.decoder.toPixel.weightGradient(input: features, imageGradient: g)
        XCTAssertEqual(ours.shape, w.shape)
        XCTAssertLessThan(maxAbsDiff(ours.scalars, w.grad!.scalars), 1e-4)
        // The adaptive weight is the clamped norm ratio.
        XCTAssertEqual(AdversarialLoss.adaptiveWeight(nllGradient: ours, generatorGradient: ours * 2), 0.5, accuracy: 1e-4)
        XCTAssertEqual(AdversarialLoss.adaptiveWeight(nllGradient: ours, generatorGradient: ours * 0), 1e4)
    }
}

/// A tiny tokenizer with every recipe term on (LPIPS over a narrow random VGG, PatchGAN with
/// LeCAM, consistency regularization, DiffAugment and the adaptive weight) learns to
/// reconstruct while its discriminator keeps real and reconstructed images apart, the same way
/// for the same seed.
final class FullRecipeTrainingTests: XCTestCase {
    func train(steps: Int) throws -> (before: Float, after: Float, last: TokenizerLosses, margin: Float) {
        let model = try SoftVQModel(config: TrainingTests.tinyConfig(), initialization: .random(seed: 3))
        let images = structuredImages(count: 8, size: 16, seed: 11)
        func mse() throws -> Float {
            try Autograd.noGrad { TokenizerTrainer.reconstruction(try model.reconstruct(images).0, images, .l2).item }
        }
        let before = try mse()
        let trainer = try TokenizerTrainer(model: model, lr: 2e-3, weightDecay: 0, schedule: .warmup(lr: 2e-3, warmup: 20),
                                           maxGradNorm: 1, ema: nil)
        let lpips = LPIPS(widths: [[4, 4], [8, 8], [8, 8, 8], [8, 8, 8], [8, 8, 8]], initialization: .random(seed: 5))
        lpips.freeze()
        trainer.perceptual = PerceptualTerm(name: "lpips", weight: 0.5, warmup: 20) { lpips($0, $1) }
        var a = AdversarialOptions()
        a.discriminator = PatchGANDiscriminator.Config(inputChannels: 3, ndf: 8, nLayers: 2)
        a.discStart = 40; a.discWeight = 0.1; a.lecamWeight = 0.001; a.crWeight = 0.1; a.diffAugment = true
        a.weightDecay = 0; a.seed = 7; a.stepBeforeStart = false
        trainer.adversarial = AdversarialTraining(a)
        var last = TokenizerLosses()
        var margin: Float = 0   // mean of logits_real - logits_fake over the last 50 steps
        for step in 0..<steps {
            last = try trainer.trainStep(images)
            if step >= steps - 50 { margin += ((last.extra["disc_logits_real"] ?? 0) - (last.extra["disc_logits_fake"] ?? 0)) / 50 }
        }
        return (before, try mse(), last, margin)
    }

    func testAllLossesOnLearnsAndSeparatesRealFromFake() throws {
        let (before, after, last, margin) = try train(steps: 200)
        print(String(format: "full recipe: mse %.5f -> %.5f, mean logit margin (real - fake, last 50 steps) %.4f; %@", before, after, margin, last.description))
        XCTAssertLessThan(after * 3, before)
        XCTAssertNotNil(last.extra["disc_logits_real"])
        XCTAssertGreaterThan(margin, 0.05, "the discriminator no longer tells real from reconstructed")
        XCTAssertNotNil(last.extra["adaptive_weight"])
        XCTAssertNotNil(last.extra["lpips"])
        XCTAssertNotNil(last.extra["generator_adv"])
        let again = try train(steps: 50)
        let twice = try train(steps: 50)
        XCTAssertEqual(again.after, twice.after, "not deterministic by seed")
        XCTAssertEqual(again.last.total, twice.last.total)
    }
}
