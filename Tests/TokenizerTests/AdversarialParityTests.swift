// The adversarial pieces against fixtures made with the official code
// (tools/fixtures/adversarial.py -> Tests/Fixtures/adversarial): the PatchGAN discriminator
// (BatchNorm and ActNorm) forward, backward and running statistics, the GAN losses and their
// gradients, LeCAM, the adaptive weight and DiffAugment with given random parameters.
//
// Each comparison is judged against the fixture's own float32 rounding scale (the largest
// |float32 - float64| of the official code on the same inputs, in scale.json).

import Foundation
import Tensor
@testable import Tokenizer
import XCTest

final class AdversarialParityTests: XCTestCase {
    static let folder = Fixtures.root.appendingPathComponent("adversarial").path

    func file(_ name: String) throws -> SafeTensorsFile { try SafeTensorsFile(path: Self.folder + "/\(name).safetensors") }

    func scaleJSON() throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.folder + "/scale.json"))
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    /// Compares `ours` with the fixture tensor `key`: |diff| <= 10 x the float32 scale of that
    /// output plus 1e-6 of its magnitude. Prints the measured difference.
    func expectClose(_ ours: Tensor, _ f: SafeTensorsFile, _ key: String, case name: String,
                     file: StaticString = #filePath, line: UInt = #line) throws {
        let ref = try f.tensor(key)
        XCTAssertEqual(ours.count, ref.count, "\(name) \(key): size", file: file, line: line)
        guard ours.count == ref.count else { return }
        let scales = try scaleJSON()["max_abs_float32_minus_float64"] as! [String: [String: Double]]
        let scale = scales[name]?[key] ?? 0
        let magnitude = ref.scalars.map { abs(Double($0)) }.max() ?? 0
        let diff = Double(maxAbsDiff(ours.scalars, ref.scalars))
        let tol = 10 * scale + 1e-6 * max(magnitude, 1)
        print("parity \(name) \(key): max |diff| \(diff) (float32 scale \(scale), tolerance \(tol))")
        XCTAssertLessThanOrEqual(diff, tol, "\(name) \(key)", file: file, line: line)
    }

    func fixtureDiscriminator(actNorm: Bool) -> PatchGANDiscriminator {
        var f = ParameterFactory(.zeros)
        return PatchGANDiscriminator(.init(inputChannels: 3, ndf: 8, nLayers: 3, useActNorm: actNorm), &f)
    }

    func testPatchGANForwardBackwardAndRunningStatistics() throws {
        let f = try file("patchgan")
        let d = fixtureDiscriminator(actNorm: false)
        try d.load(file: f, prefix: "before.")
        XCTAssertEqual(d.namedTensors().map(\.0).filter { $0.hasPrefix("main.3") },
                       ["main.3.weight", "main.3.bias", "main.3.running_mean", "main.3.running_var", "main.3.num_batches_tracked"])
        let x = try f.tensor("x")
        x.requiresGrad = true
        let logits = d(x)
        XCTAssertEqual(logits.shape, [2, 1, 2, 2])
        try expectClose(logits, f, "logits", case: "patchgan")
        (logits * (try f.tensor("r"))).sum().backward()
        try expectClose(x.grad!, f, "grad_x", case: "patchgan")
        let params = Dictionary(uniqueKeysWithValues: d.namedTensors())
        for key in ["main.0.weight", "main.0.bias", "main.2.weight", "main.3.weight", "main.3.bias", "main.11.weight"] {
            try expectClose(params[key]!.grad!, f, "grad." + key, case: "patchgan")
        }
        for i in [3, 6, 9] {
            for s in ["running_mean", "running_var", "num_batches_tracked"] {
                try expectClose(params["main.\(i).\(s)"]!, f, "after.main.\(i).\(s)", case: "patchgan")
            }
        }
    }

    /// num_batches_tracked loads from shape [] (PyTorch) and [1].
    func testCounterShapes() throws {
        let f = try file("patchgan")
        let tensors = try f.names.filter { $0.hasPrefix("before.") }.map { key -> (String, Tensor) in
            let t = try f.tensor(key)
            return (String(key.dropFirst("before.".count)), key.hasSuffix("num_batches_tracked") ? t.reshaped([1]) : t)
        }
        let path = Fixtures.tempDir("counter") + "/d.safetensors"
        try writeSafeTensors(tensors, to: path, metadata: [:])
        let d = fixtureDiscriminator(actNorm: false)
        try d.load(file: SafeTensorsFile(path: path))
        let counter = d.namedTensors().first { $0.0 == "main.3.num_batches_tracked" }!.1
        XCTAssertEqual(counter.shape, [1])
        try d.load(file: f, prefix: "before.")
        XCTAssertEqual(d.namedTensors().first { $0.0 == "main.3.num_batches_tracked" }!.1.shape, [])
    }

    func testActNormVariantInitializesOnFirstForward() throws {
        let f = try file("actnorm")
        let d = fixtureDiscriminator(actNorm: true)
        try d.load(file: f, prefix: "before.")
        XCTAssertNotNil(d.namedTensors().first { $0.0 == "main.2.bias" }, "ActNorm keeps the conv biases")
        let logits = d(try f.tensor("x"))
        try expectClose(logits, f, "logits", case: "actnorm")
        let params = Dictionary(uniqueKeysWithValues: d.namedTensors())
        for i in [3, 6, 9] {
            for s in ["loc", "scale", "initialized"] { try expectClose(params["main.\(i).\(s)"]!, f, "after.main.\(i).\(s)", case: "actnorm") }
        }
    }

    func testLosses() throws {
        let f = try file("losses")
        let real = try f.tensor("logits_real"), fake = try f.tensor("logits_fake")
        for (kind, name) in [(DiscriminatorLoss.hinge, "hinge_d_loss"), (.vanilla, "vanilla_d_loss"), (.nonSaturating, "non_saturating_d_loss")] {
            real.requiresGrad = true; fake.requiresGrad = true
            real.grad = nil; fake.grad = nil
            let loss = AdversarialLoss.discriminator(kind, logitsReal: real, logitsFake: fake)
            try expectClose(loss, f, name, case: "losses")
            loss.backward()
            try expectClose(real.grad!, f, name + ".grad_real", case: "losses")
            try expectClose(fake.grad ?? Tensor(zeros: fake.shape), f, name + ".grad_fake", case: "losses")
        }
        for (kind, name) in [(GeneratorLoss.hinge, "hinge_gen_loss"), (.nonSaturating, "non_saturating_gen_loss")] {
            fake.requiresGrad = true; fake.grad = nil
            let loss = AdversarialLoss.generator(kind, logitsFake: fake)
            try expectClose(loss, f, name, case: "losses")
            loss.backward()
            try expectClose(fake.grad!, f, name + ".grad_fake", case: "losses")
        }
        real.requiresGrad = false; fake.requiresGrad = false

        // LeCAM: one EMA update from (0.3, -0.2), then the regularizer.
        var ema = LeCAMEMA()
        ema.logitsReal = 0.3; ema.logitsFake = -0.2
        ema.update(logitsReal: real, logitsFake: fake)
        let expected = ((try scaleJSON()["lecam_ema"] as! [String: Any])["losses.float32"] as! [String: Double])
        print("parity LeCAM EMA: real \(abs(ema.logitsReal - expected["logits_real_ema"]!)), fake \(abs(ema.logitsFake - expected["logits_fake_ema"]!))")
        XCTAssertEqual(ema.logitsReal, expected["logits_real_ema"]!, accuracy: 1e-9)
        XCTAssertEqual(ema.logitsFake, expected["logits_fake_ema"]!, accuracy: 1e-9)
        try expectClose(AdversarialLoss.lecamRegularization(logitsReal: real, logitsFake: fake, ema: ema), f, "lecam_reg", case: "losses")

        let w = AdversarialLoss.adaptiveWeight(nllGradient: try f.tensor("adaptive.nll_grad"), generatorGradient: try f.tensor("adaptive.g_grad"))
        try expectClose(Tensor(scalar: w), f, "adaptive_weight", case: "losses")
        XCTAssertEqual(AdversarialLoss.adaptiveWeight(nllGradient: Tensor(repeating: 1e3, shape: [4]), generatorGradient: Tensor(zeros: [4])), 1e4)
        XCTAssertEqual(AdversarialLoss.adoptWeight(0.5, step: 9, threshold: 10), 0)
        XCTAssertEqual(AdversarialLoss.adoptWeight(0.5, step: 10, threshold: 10), 0.5)
    }

    func testDiffAugmentWithGivenParameters() throws {
        let f = try file("augment")
        let x = try f.tensor("x"), r = try f.tensor("r")
        let n = x.dim(0)
        let u = try f.tensor("color.u").scalars
        x.requiresGrad = true
        let color = DiffAugment.contrast(DiffAugment.saturation(DiffAugment.brightness(x, uniforms: Array(u[0..<n])),
                                                                uniforms: Array(u[n..<(2 * n)])), uniforms: Array(u[(2 * n)...]))
        try expectClose(color, f, "color", case: "augment")
        (color * r).sum().backward()
        try expectClose(x.grad!, f, "color.grad_x", case: "augment")
        x.requiresGrad = false

        func ints(_ key: String) throws -> [Int] { try f.tensor(key).scalars.map { Int($0) } }
        let t = DiffAugment.translation(x, rows: try ints("translation.rows"), cols: try ints("translation.cols"))
        try expectClose(t, f, "translation", case: "augment")
        for ratio in ["0.2", "0.5"] {
            let c = DiffAugment.cutout(x, ratio: Float(ratio)!, centreRows: try ints("cutout_\(ratio).rows"),
                                       centreCols: try ints("cutout_\(ratio).cols"))
            try expectClose(c, f, "cutout_\(ratio)", case: "augment")
        }
        XCTAssertEqual(DiffAugment.Policy.parse("color,translation,cutout_0.2"), DiffAugment.standard)
        XCTAssertNil(DiffAugment.Policy.parse("color,flip"))
    }

    /// Three discriminator steps of the official loop (no DiffAugment, no CR): hinge + LeCAM
    /// 0.001, disc_start 1 (step 0 has weight 0), clip_grad_norm_ 0.05, AdamW over
    /// param_groups_weight_decay at lr 1e-3, betas (0.9, 0.95), weight decay 0.1 (large, so that
    /// decaying the wrong group would show).
    func testDiscriminatorStepsMatchTheOfficialLoop() throws {
        let f = try file("dstep")
        var o = AdversarialOptions()
        o.discriminator = .init(inputChannels: 3, ndf: 8, nLayers: 2)
        o.discStart = 1; o.discWeight = 0.5; o.discLoss = .hinge
        o.lecamWeight = 0.001; o.crWeight = 0; o.diffAugment = false
        o.maxGradNorm = 0.05; o.beta1 = 0.9; o.beta2 = 0.95; o.weightDecay = 0.1
        let adv = AdversarialTraining(o)
        try adv.discriminator.load(file: f, prefix: "before.")
        let real = try f.tensor("real"), fake = try f.tensor("fake")
        var losses: [Float] = [], norms: [Float] = []
        for step in 0..<3 {
            let s = try XCTUnwrap(adv.discriminatorStep(real: real, fake: fake, step: step, lr: 1e-3))
            losses.append(s.loss); norms.append(s.gradientNorm)
        }
        try expectClose(Tensor(losses, shape: [3]), f, "losses", case: "dstep")
        try expectClose(Tensor(norms, shape: [3]), f, "grad_norms", case: "dstep")
        for (key, t) in adv.discriminator.namedTensors() { try expectClose(t, f, "after." + key, case: "dstep") }
        let ema = (try scaleJSON()["lecam_ema"] as! [String: Any])["dstep.float32"] as! [String: Double]
        print("parity dstep LeCAM EMA: real \(abs(adv.lecam.logitsReal - ema["logits_real_ema"]!)), fake \(abs(adv.lecam.logitsFake - ema["logits_fake_ema"]!))")
        XCTAssertEqual(adv.lecam.logitsReal, ema["logits_real_ema"]!, accuracy: 1e-9)
        XCTAssertEqual(adv.lecam.logitsFake, ema["logits_fake_ema"]!, accuracy: 1e-9)
    }

    /// The full-size discriminator of the recipe (ndf 64, 3 layers) enumerates exactly the
    /// official keys and shapes, and its random initialization has the official statistics.
    func testOfficialKeyLayoutAndInitialization() throws {
        let text = try String(contentsOf: Fixtures.keys.appendingPathComponent("patchgan-ndf64-3layers.tsv"), encoding: .utf8)
        let expected = text.split(separator: "\n").map { line -> (String, [Int]) in
            let f = line.split(separator: "\t")
            return (String(f[0]), f[1].dropFirst().dropLast().split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces))! })
        }
        var f = ParameterFactory(.random(seed: 3))
        let d = PatchGANDiscriminator(.init(), &f)
        let got = d.namedTensors()
        XCTAssertEqual(got.map(\.0), expected.map(\.0))
        XCTAssertEqual(got.map(\.1.shape), expected.map(\.1))
        func moments(_ t: Tensor) -> (Double, Double) {
            let v = t.scalars.map(Double.init), mu = v.reduce(0, +) / Double(v.count)
            return (mu, (v.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(v.count)).squareRoot())
        }
        let tensors = Dictionary(uniqueKeysWithValues: got)
        let (mu, sd) = moments(tensors["main.8.weight"]!)                     // 2 M draws of N(0, 0.02)
        XCTAssertEqual(mu, 0, accuracy: 1e-4); XCTAssertEqual(sd, 0.02, accuracy: 2e-4)
        let (bnMu, bnSd) = moments(tensors["main.9.weight"]!)                 // N(1, 0.02)
        XCTAssertEqual(bnMu, 1, accuracy: 0.005); XCTAssertEqual(bnSd, 0.02, accuracy: 0.003)
        XCTAssertEqual(tensors["main.9.bias"]!.scalars.map { abs($0) }.max(), 0)
        let bound = 1 / Float(3 * 16).squareRoot()                           // conv bias: U(-1/sqrt(fan_in), ...)
        let bias = tensors["main.0.bias"]!.scalars
        XCTAssertLessThanOrEqual(bias.map { abs($0) }.max()!, bound)
        XCTAssertGreaterThan(bias.map { abs($0) }.max()!, bound / 2)
        XCTAssertEqual(tensors["main.9.running_var"]!.scalars, [Float](repeating: 1, count: 512))
        XCTAssertEqual(tensors["main.9.num_batches_tracked"]!.shape, [])
        // The patch-logit map is H/8 - 2 on a side (30 x 30 at 256 px; 6 x 6 for this 64 px probe).
        XCTAssertEqual(Autograd.noGrad { d(Tensor(zeros: [1, 3, 64, 64])) }.shape, [1, 1, 6, 6])
    }
}
