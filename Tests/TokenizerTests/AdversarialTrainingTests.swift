// Behaviour of the adversarial training pieces: the discriminator learns to tell real from
// noisy images, the generator term reaches only the reconstruction, the weight-0 steps before
// disc_start only decay the weights, and save/restore continues bit-identically.

import Foundation
import Tensor
@testable import Tokenizer
import XCTest

final class AdversarialTrainingTests: XCTestCase {
    /// A tiny discriminator on 16 x 16 images (patch logits 2 x 2).
    func options(seed: UInt64 = 7, everything: Bool = false) -> AdversarialOptions {
        var o = AdversarialOptions()
        o.discriminator = .init(inputChannels: 3, ndf: 8, nLayers: 2)
        o.discStart = 0
        o.seed = seed
        if everything {
            o.diffAugment = true
            o.lecamWeight = 0.001
            o.crWeight = 4
        }
        return o
    }

    func batches() -> (Tensor, Tensor) {
        let real = structuredImages(count: 4, size: 16, seed: 3)
        var rng = RandomGenerator(seed: 4)
        let fake = Autograd.noGrad { real + rng.normalTensor(real.shape, std: 0.6) }
        return (real, fake)
    }

    func testDiscriminatorSeparatesRealFromNoisyFakes() throws {
        let (real, fake) = batches()
        for everything in [false, true] {
            let adv = AdversarialTraining(options(everything: everything))
            var first: DiscriminatorStats?, last: DiscriminatorStats?
            // Consistency regularization (weight 4, as the official config) slows the separation
            // down: with it, 100 steps at 1e-3 separate about as far as 40 at 2e-4 without.
            for step in 0..<(everything ? 100 : 40) {
                last = try adv.discriminatorStep(real: real, fake: fake, step: step, lr: everything ? 1e-3 : 2e-4)
                if first == nil { first = last }
            }
            let (a, b) = (first!, last!)
            print("D (augment/LeCAM/CR \(everything)): loss \(a.discriminatorLoss) -> \(b.discriminatorLoss), logits real \(b.logitsRealMean) fake \(b.logitsFakeMean)")
            XCTAssertGreaterThan(b.logitsRealMean, b.logitsFakeMean + (everything ? 0.2 : 1))
            XCTAssertLessThan(b.discriminatorLoss, a.discriminatorLoss)
            if everything {
                XCTAssertGreaterThan(b.consistency, 0)
                XCTAssertGreaterThan(b.lecam, 0)
            }
            XCTAssertEqual(b.weight, 0.5)
        }
        // Deterministic by seed; another seed draws another discriminator.
        let s1 = try AdversarialTraining(options(everything: true)).discriminatorStep(real: real, fake: fake, step: 5, lr: 1e-4)
        let s2 = try AdversarialTraining(options(everything: true)).discriminatorStep(real: real, fake: fake, step: 5, lr: 1e-4)
        let s3 = try AdversarialTraining(options(seed: 8, everything: true)).discriminatorStep(real: real, fake: fake, step: 5, lr: 1e-4)
        XCTAssertEqual(s1, s2)
        XCTAssertNotEqual(s1, s3)
    }

    func testGeneratorLossReachesOnlyTheReconstruction() throws {
        var o = options(everything: true)
        o.discStart = 10
        let adv = AdversarialTraining(o)
        let (_, fake) = batches()
        let recon = fake.copy()
        recon.requiresGrad = true
        XCTAssertNil(adv.generatorLoss(reconstruction: recon, step: 9))
        let loss = try XCTUnwrap(adv.generatorLoss(reconstruction: recon, step: 10))
        XCTAssertEqual(loss.shape, [])
        loss.backward()
        let g = try XCTUnwrap(recon.grad)
        XCTAssertGreaterThan(g.scalars.map { abs($0) }.max()!, 0)
        XCTAssertTrue(adv.discriminator.parameters.allSatisfy { $0.1.grad == nil }, "no gradient may reach the discriminator")
    }

    /// Before disc_start the official step runs with weight 0: zero gradients, so AdamW only
    /// applies weight decay, and only to the ndim >= 2 non-bias parameters.
    func testStepsBeforeStartOnlyDecayWeights() throws {
        var o = options()
        o.discStart = 100
        o.weightDecay = 0.1   // a visible decay: factor 0.99 at lr 0.1
        let adv = AdversarialTraining(o)
        XCTAssertTrue(adv.decayed.parameters.allSatisfy { $0.1.rank >= 2 && !$0.0.hasSuffix(".bias") })
        XCTAssertEqual(Set(adv.undecayed.parameters.map(\.0)),
                       ["main.0.bias", "main.3.weight", "main.3.bias", "main.6.weight", "main.6.bias", "main.8.bias"])
        let before = adv.discriminator.parameters.map { ($0.0, $0.1.copy()) }
        let (real, fake) = batches()
        let stats = try XCTUnwrap(adv.discriminatorStep(real: real, fake: fake, step: 3, lr: 0.1))
        XCTAssertEqual(stats.weight, 0)
        XCTAssertEqual(stats.loss, 0)
        let after = Dictionary(uniqueKeysWithValues: adv.discriminator.parameters)
        for (key, old) in before {
            let decay: Float = adv.decayed.parameters.contains { $0.0 == key } ? 1 - 0.1 * o.weightDecay : 1
            XCTAssertLessThanOrEqual(maxAbsDiff(after[key]!.scalars, old.scalars.map { $0 * decay }), 1e-7, key)
        }
        o.stepBeforeStart = false
        XCTAssertNil(try AdversarialTraining(o).discriminatorStep(real: real, fake: fake, step: 3, lr: 0.1))
    }

    func testSaveRestoreContinuesBitIdentically() throws {
        let (real, fake) = batches()
        let o = options(everything: true)
        let a = AdversarialTraining(o)
        let folder = Fixtures.tempDir("adversarial-resume")
        var statsA: [DiscriminatorStats] = []
        for step in 0..<6 {
            if step == 3 { try a.save(into: folder) }
            statsA.append(try XCTUnwrap(a.discriminatorStep(real: real, fake: fake, step: step, lr: 1e-3)))
        }
        let b = AdversarialTraining(options(seed: 7, everything: true))
        for step in 0..<2 { _ = try b.discriminatorStep(real: fake, fake: real, step: step + 50, lr: 1e-2) }   // move b away first
        try b.restore(from: folder)
        var statsB: [DiscriminatorStats] = []
        for step in 3..<6 { statsB.append(try XCTUnwrap(b.discriminatorStep(real: real, fake: fake, step: step, lr: 1e-3))) }
        XCTAssertEqual(Array(statsA[3...]), statsB)
        XCTAssertEqual(a.lecam, b.lecam)
        for ((ka, ta), (kb, tb)) in zip(a.discriminator.namedTensors(), b.discriminator.namedTensors()) {
            XCTAssertEqual(ka, kb)
            XCTAssertEqual(ta.scalars.map(\.bitPattern), tb.scalars.map(\.bitPattern), ka)
        }
        XCTAssertEqual(a.decayed.step, b.decayed.step)
        for ((_, ma), (_, mb)) in zip(a.decayed.stateTensors + a.undecayed.stateTensors, b.decayed.stateTensors + b.undecayed.stateTensors) {
            XCTAssertEqual(ma.scalars.map(\.bitPattern), mb.scalars.map(\.bitPattern))
        }
        let json = try String(contentsOfFile: folder + "/adversarial.json", encoding: .utf8)
        XCTAssertTrue(json.contains("lecam_logits_real_ema_bits"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder + "/discriminator.safetensors"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder + "/discriminator-optimizer.safetensors"))
    }

    /// Options read with the official argument names; missing fields take the defaults.
    func testOptionsUseOfficialNamesAndDefaults() throws {
        let json = #"{"disc_start": 5, "disc_loss": "non-saturating", "lecam_loss_weight": 0.001, "use_diff_aug": true, "discriminator": {"ndf": 8}}"#
        let o = try JSONDecoder().decode(AdversarialOptions.self, from: Data(json.utf8))
        XCTAssertEqual(o.discStart, 5)
        XCTAssertEqual(o.discLoss, .nonSaturating)
        XCTAssertEqual(o.lecamWeight, 0.001)
        XCTAssertTrue(o.diffAugment)
        XCTAssertEqual(o.discriminator, .init(inputChannels: 3, ndf: 8, nLayers: 3, useActNorm: false))
        XCTAssertEqual(o.discWeight, AdversarialOptions().discWeight)
        XCTAssertNil(try JSONDecoder().decode(AdversarialOptions.self, from: Data("{}".utf8)).lecamWeight)
        let again = try JSONDecoder().decode(AdversarialOptions.self, from: JSONEncoder().encode(o))
        XCTAssertEqual(again, o)
        XCTAssertThrowsError(try JSONDecoder().decode(AdversarialOptions.self, from: Data(#"{"disc_loss": "wasserstein"}"#.utf8)))
    }

    func testBadBatchesAndDivergenceThrowWithoutUpdating() throws {
        let adv = AdversarialTraining(options())
        let (real, fake) = batches()
        let before = adv.discriminator.parameters.map { $0.1.copy() }
        XCTAssertThrowsError(try adv.discriminatorStep(real: real, fake: fake.slice(axis: 0, 0..<2), step: 0, lr: 1e-3))
        let poisoned = real.copy()
        poisoned.pointer[5] = .nan
        XCTAssertThrowsError(try adv.discriminatorStep(real: poisoned, fake: fake, step: 0, lr: 1e-3)) { error in
            XCTAssertTrue("\(error)".contains("gradient norm is nan"), "\(error)")
        }
        for ((key, t), old) in zip(adv.discriminator.parameters, before) {
            XCTAssertEqual(t.scalars.map(\.bitPattern), old.scalars.map(\.bitPattern), key)
            XCTAssertNil(t.grad, key)
        }
        XCTAssertThrowsError(try adv.restore(from: Fixtures.tempDir("adversarial-empty")))
    }

    /// DiffAugment.apply is a pure function of (images, policies, probability, generator state),
    /// skips everything at probability 0 and is differentiable with respect to the images.
    func testDiffAugmentIsPureAndDifferentiable() throws {
        let x = structuredImages(count: 3, size: 16, seed: 9)
        var g0 = RandomGenerator(seed: 1, stream: 2)
        XCTAssertEqual(DiffAugment.apply(x, policies: DiffAugment.standard, probability: 0, rng: &g0).scalars, x.scalars)
        var g1 = RandomGenerator(seed: 1, stream: 2), g2 = RandomGenerator(seed: 1, stream: 2), g3 = RandomGenerator(seed: 1, stream: 3)
        let a = DiffAugment.apply(x, policies: DiffAugment.consistency, probability: 1, rng: &g1)
        let b = DiffAugment.apply(x, policies: DiffAugment.consistency, probability: 1, rng: &g2)
        let c = DiffAugment.apply(x, policies: DiffAugment.consistency, probability: 1, rng: &g3)
        XCTAssertEqual(a.scalars.map(\.bitPattern), b.scalars.map(\.bitPattern))
        XCTAssertNotEqual(a.scalars, c.scalars)
        XCTAssertGreaterThan(maxAbsDiff(a.scalars, x.scalars), 0.1)
        // Cutout 0.5 on 16 x 16 zeroes an 8 x 8 square (clipped at the border) in every image.
        let zeros = (0..<3).map { n in (0..<256).filter { i in (0..<3).allSatisfy { a.pointer[(n * 3 + $0) * 256 + i] == 0 } }.count }
        XCTAssertTrue(zeros.allSatisfy { $0 >= 16 && $0 <= 64 + 40 }, "\(zeros)")
        let leaf = x.copy()
        leaf.requiresGrad = true
        var g4 = RandomGenerator(seed: 1, stream: 2)
        DiffAugment.apply(leaf, policies: DiffAugment.consistency, probability: 1, rng: &g4).square().sum().backward()
        XCTAssertGreaterThan(try XCTUnwrap(leaf.grad).scalars.map { abs($0) }.max()!, 0)
    }
}
