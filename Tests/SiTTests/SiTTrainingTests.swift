// A tiny SiT trained on a few fixed latents (one per class): the loss falls, samples land on the
// latent of their class, and training is deterministic given the seed.

import Foundation
import XCTest
import Tensor
import Sampler
@testable import SiT

final class SiTTrainingTests: XCTestCase {
    static let config: SiTConfig = {
        var c = SiTConfig(hiddenSize: 64, depth: 2, numHeads: 4, patchSize: 1, inChannels: 4, inputSize: 8,
                          numClasses: 4, classDropoutProb: 0, vae1D: true)
        c.extra = [:]
        return c
    }()

    /// Four fixed latents (4, 8, 4), one per class.
    static func latents() -> Tensor {
        var rng = RandomGenerator(seed: 99)
        return rng.normalTensor([4, 8, 4])
    }

    static func makeTrainer(seed: UInt64) throws -> SiTTrainer {
        var rng = RandomGenerator(seed: seed)
        let model = try SiT(config: Self.config, rng: &rng)
        let ema = try SiT(config: Self.config)
        return SiTTrainer(model: model, ema: ema, schedule: .warmup(lr: 2e-3, warmup: 20), emaDecay: 0.99,
                          rng: RandomGenerator(seed: seed, stream: 1))
    }

    /// A batch of 16: every latent four times.
    static func batch() -> (Tensor, [Int]) {
        let base = Self.latents()
        let x = concat([base, base, base, base], axis: 0)
        return (x, Array(0..<4) + Array(0..<4) + Array(0..<4) + Array(0..<4))
    }

    func testTrainingLowersTheLossAndSamplesLandOnTheLatents() throws {
        let trainer = try Self.makeTrainer(seed: 5)
        let (x, y) = Self.batch()
        var losses: [Float] = []
        for _ in 0..<600 { losses.append(try trainer.step(latents: x, labels: y).loss) }
        let first = losses.prefix(10).reduce(0, +) / 10, last = losses.suffix(20).reduce(0, +) / 20
        print("loss: first 10 steps \(first), last 20 steps \(last), ratio \(first / last)")
        XCTAssertGreaterThan(first / last, 10)

        // Sample each class with Heun, 20 steps, from per-sample seeded noise; compare to the latents.
        let base = Self.latents()
        let model = trainer.model
        let run = try SamplingRun(velocity: { x, t, y in try model(x, t: t, y: y) },
                                  options: SamplerOptions(method: .heun, steps: 20),
                                  shape: [4, 8, 4], labels: [0, 1, 2, 3],
                                  generators: (0..<4).map { RandomGenerator(seed: 123, stream: UInt64($0)) })
        let samples = try run.run()
        let per = 32
        for i in 0..<4 {
            let dists = (0..<4).map { j -> Float in
                let d = (0..<per).map { k in samples.pointer[i * per + k] - base.pointer[j * per + k] }
                return (d.map { $0 * $0 }.reduce(0, +) / Float(per)).squareRoot()
            }
            print("class \(i): RMS distance to each latent \(dists)")
            XCTAssertEqual(dists.firstIndex(of: dists.min()!), i)
            XCTAssertLessThan(dists[i], 0.25)
        }
    }

    /// A tiny SiT trained on each interpolant path, sampled with each sampler told that path:
    /// every sample lands on its class latent (the SDE converts velocity to score with the path).
    func testEachPathSampledWithEachSamplerLandsOnTheLatents() throws {
        let base = Self.latents()
        let (x, y) = Self.batch()
        for path in InterpolantPath.allCases {
            var rng = RandomGenerator(seed: 11)
            let model = try SiT(config: Self.config, rng: &rng)
            let trainer = SiTTrainer(model: model, objective: FlowMatchingObjective(for: Self.config, path: path),
                                     schedule: .warmup(lr: 2e-3, warmup: 20), rng: RandomGenerator(seed: 11, stream: 1))
            for _ in 0..<400 { try trainer.step(latents: x, labels: y) }
            for method in SamplerMethod.allCases {
                let options = SamplerOptions(method: method, steps: method == .eulerMaruyama ? 60 : 20,
                                             path: path == .cosine ? .cosine : .linear)
                let run = try SamplingRun(velocity: { x, t, y in try model(x, t: t, y: y) }, options: options,
                                          shape: [4, 8, 4], labels: [0, 1, 2, 3],
                                          generators: (0..<4).map { RandomGenerator(seed: 321, stream: UInt64($0)) })
                let samples = try run.run()
                for i in 0..<4 {
                    let dists = (0..<4).map { j -> Float in
                        let d = (0..<32).map { k in samples.pointer[i * 32 + k] - base.pointer[j * 32 + k] }
                        return (d.map { $0 * $0 }.reduce(0, +) / 32).squareRoot()
                    }
                    print("\(path) \(method.rawValue) class \(i): RMS \(dists.map { String(format: "%.3f", $0) })")
                    XCTAssertEqual(dists.firstIndex(of: dists.min()!), i, "\(path) \(method)")
                    XCTAssertLessThan(dists[i], 0.35, "\(path) \(method)")
                }
            }
        }
    }

    func testTrainingIsDeterministicGivenTheSeed() throws {
        let (x, y) = Self.batch()
        func train() throws -> ([Float], [Float]) {
            let trainer = try Self.makeTrainer(seed: 3)
            var losses: [Float] = []
            for _ in 0..<5 { losses.append(try trainer.step(latents: x, labels: y).loss) }
            return (losses, trainer.ema!.blocks[1].mlp.fc2.weight.scalars)
        }
        let a = try train(), b = try train()
        XCTAssertEqual(a.0, b.0)
        XCTAssertEqual(a.1, b.1)
        XCTAssertNotEqual(a.0[0], a.0[4])
    }

    func testObjectiveRandomness() throws {
        let objective = FlowMatchingObjective(path: .linear, timeSampling: .lognormal, classDropoutProb: 0.5, nullLabel: 4)
        var rng = RandomGenerator(seed: 1)
        let t = objective.sampleTimes(2000, rng: &rng)
        XCTAssertTrue(t.allSatisfy { $0 > 0 && $0 < 1 })
        XCTAssertEqual(Double(t.reduce(0, +)) / 2000, 0.5, accuracy: 0.03)   // median of s/(1+s) is 1/2
        let dropped = objective.dropLabels(Array(repeating: 2, count: 2000), rng: &rng)
        XCTAssertEqual(Double(dropped.filter { $0 == 4 }.count) / 2000, 0.5, accuracy: 0.05)
        // Cosine path: x_t = cos(pi t/2) x + sin(pi t/2) eps, v = -pi/2 sin x + pi/2 cos eps.
        let cosine = FlowMatchingObjective(path: .cosine, nullLabel: 4)
        let (input, target) = cosine.interpolate(x0: Tensor([2], shape: [1, 1]), noise: Tensor([3], shape: [1, 1]), t: [0.5])
        let a = Float.pi / 4
        XCTAssertEqual(input.item, cos(a) * 2 + sin(a) * 3, accuracy: 1e-6)
        XCTAssertEqual(target.item, -Float.pi / 2 * sin(a) * 2 + Float.pi / 2 * cos(a) * 3, accuracy: 1e-6)
    }
}

final class SiTTrainerStateTests: XCTestCase {
    func testSavedStateResumesExactly() throws {
        let (x, y) = SiTTrainingTests.batch()
        let a = try SiTTrainingTests.makeTrainer(seed: 4)
        for _ in 0..<3 { try a.step(latents: x, labels: y) }
        let dir = temporaryFolder("state")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/s", withIntermediateDirectories: true)
        try a.save(into: dir + "/s")
        let b = try SiTTrainingTests.makeTrainer(seed: 77)
        try b.restore(from: dir + "/s", step: a.stepCount, rng: a.rng)
        XCTAssertEqual(b.stepCount, 3)
        let la = try a.step(latents: x, labels: y), lb = try b.step(latents: x, labels: y)
        XCTAssertEqual(la.loss, lb.loss)
        XCTAssertEqual(la.step, lb.step)
        XCTAssertEqual(a.model.blocks[0].attn.qkv.weight.scalars, b.model.blocks[0].attn.qkv.weight.scalars)
        XCTAssertEqual(a.ema!.finalLayer.linear.weight.scalars, b.ema!.finalLayer.linear.weight.scalars)
    }
}
