// Samplers on analytic velocity fields with closed-form solutions, guidance, SDE behaviour and
// errors.

import Foundation
import XCTest
import Tensor
import Sampler

final class SamplerTests: XCTestCase {
    /// dx/dt = cos(t) x: x(0) = x(1) exp(sin 0 - sin 1) = x(1) exp(-sin 1).
    let field: VelocityField = { x, t, _ in
        let out = Tensor(uninitialized: x.shape)
        let per = x.count / x.dim(0)
        for i in 0..<x.count { out.pointer[i] = Float(cos(Double(t[i / per]))) * x.pointer[i] }
        return out
    }

    /// Largest error of a deterministic run against the exact solution (the errors stay far above
    /// the 1e-7 rounding of the Float interface for these step counts).
    func solve(_ method: SamplerMethod, steps: Int) throws -> Double {
        let run = try SamplingRun(velocity: field, options: SamplerOptions(method: method, steps: steps),
                                  initialNoise: [1, -2], shape: [2, 1], labels: [0, 0])
        try run.run()
        let exact = exp(-sin(1.0))
        return max(abs(run.x[0] - exact), abs(run.x[1] + 2 * exact))
    }

    func testEulerIsFirstOrderAndHeunSecondOrder() throws {
        let e = try [8, 16, 32].map { try solve(.euler, steps: $0) }
        let h = try [8, 16, 32].map { try solve(.heun, steps: $0) }
        print("Euler errors \(e), ratios \(e[0] / e[1]), \(e[1] / e[2])")
        print("Heun errors \(h), ratios \(h[0] / h[1]), \(h[1] / h[2])")
        XCTAssertEqual(e[0] / e[1], 2, accuracy: 0.3)
        XCTAssertEqual(e[1] / e[2], 2, accuracy: 0.3)
        XCTAssertEqual(h[0] / h[1], 4, accuracy: 0.6)
        XCTAssertEqual(h[1] / h[2], 4, accuracy: 0.6)
        XCTAssertLessThan(h[2], e[2] / 10)
    }

    func testTimeGrids() {
        XCTAssertEqual(SamplerOptions(method: .euler, steps: 4).timeGrid, [1, 0.75, 0.5, 0.25, 0])
        let sde = SamplerOptions(method: .eulerMaruyama, steps: 5).timeGrid
        XCTAssertEqual(sde.count, 6)
        XCTAssertEqual(sde[0], 1); XCTAssertEqual(sde[4], 0.04, accuracy: 1e-15); XCTAssertEqual(sde[5], 0)
        XCTAssertEqual(SamplerOptions(method: .heun, steps: 5).evaluations, 9)
    }

    /// Records the calls of a label-dependent field: v = x * (1 + label) (null label 9 -> 0.5 x).
    final class Recorder {
        var calls: [(batch: Int, t: Float, labels: [Int])] = []
        lazy var field: VelocityField = { x, t, y in
            self.calls.append((x.dim(0), t[0], y))
            let out = Tensor(uninitialized: x.shape)
            let per = x.count / x.dim(0)
            for i in 0..<x.count {
                let label = y[i / per]
                out.pointer[i] = x.pointer[i] * (label == 9 ? 0.5 : Float(1 + label))
            }
            return out
        }
    }

    func testGuidanceCombinesOneDoubledBatchInsideTheInterval() throws {
        let rec = Recorder()
        let g = Guidance(scale: 3, low: 0.2, high: 0.6, nullLabel: 9)
        let run = try SamplingRun(velocity: rec.field, options: SamplerOptions(method: .euler, steps: 5, guidance: g),
                                  initialNoise: [1, 1], shape: [2, 1], labels: [0, 1])
        try run.run()
        XCTAssertEqual(rec.calls.map(\.batch), [2, 2, 4, 4, 4])       // t = 1, .8 unguided; .6, .4, .2 guided
        XCTAssertEqual(rec.calls[2].labels, [0, 1, 9, 9])
        // Expected by hand: guided slope k_u + s (k_c - k_u).
        var x = [1.0, 1.0]
        let grid = [1.0, 0.8, 0.6, 0.4, 0.2, 0.0]
        for i in 0..<5 {
            let t = grid[i]
            for b in 0..<2 {
                let kc = Double(Float(1 + b)), ku = 0.5
                let k = (t >= 0.2 && t <= 0.6) ? ku + 3 * (kc - ku) : kc
                x[b] += (grid[i + 1] - t) * k * Double(Float(x[b]))
            }
        }
        XCTAssertEqual(run.x[0], x[0], accuracy: 1e-6)
        XCTAssertEqual(run.x[1], x[1], accuracy: 1e-6)
    }

    /// Per-sample evaluation: the sampler itself calls the model once per sample with its
    /// conditional and unconditional rows together, and the result equals the batched run.
    func testPerSampleEvaluationCallsOneGuidedPairAtATime() throws {
        let g = Guidance(scale: 3, low: 0.2, high: 0.6, nullLabel: 9)
        let batched = try SamplingRun(velocity: Recorder().field, options: SamplerOptions(method: .heun, steps: 5, guidance: g),
                                      initialNoise: [1, -0.5, 2], shape: [3, 1], labels: [0, 1, 2])
        try batched.run()
        let rec = Recorder()
        let single = try SamplingRun(velocity: rec.field,
                                     options: SamplerOptions(method: .heun, steps: 5, guidance: g, evaluation: .perSample),
                                     initialNoise: [1, -0.5, 2], shape: [3, 1], labels: [0, 1, 2])
        try single.run()
        XCTAssertEqual(single.x, batched.x)
        XCTAssertTrue(rec.calls.allSatisfy { $0.batch == 1 || $0.batch == 2 })
        let guided = rec.calls.filter { $0.batch == 2 }
        XCTAssertFalse(guided.isEmpty)
        XCTAssertEqual(Set(guided.map(\.labels)), [[0, 9], [1, 9], [2, 9]])
        XCTAssertEqual(rec.calls.count, 3 * (2 * 5 - 1))
    }

    func testGuidanceScaleOneEqualsConditionalRun() throws {
        for method in [SamplerMethod.euler, .heun] {
            let plain = try SamplingRun(velocity: Recorder().field, options: SamplerOptions(method: method, steps: 7),
                                        initialNoise: [0.3, -1.2], shape: [2, 1], labels: [2, 4])
            try plain.run()
            let rec = Recorder()
            let one = try SamplingRun(velocity: rec.field,
                                      options: SamplerOptions(method: method, steps: 7, guidance: Guidance(scale: 1, nullLabel: 9)),
                                      initialNoise: [0.3, -1.2], shape: [2, 1], labels: [2, 4])
            try one.run()
            XCTAssertEqual(plain.x, one.x)
            XCTAssertTrue(rec.calls.allSatisfy { $0.batch == 2 })
        }
    }

    func testSDEIsSeededPerSampleAndEndsWithTheMean() throws {
        let gens = (0..<3).map { RandomGenerator(seed: 7, stream: UInt64($0)) }
        let opts = SamplerOptions(method: .eulerMaruyama, steps: 10)
        let a = try SamplingRun(velocity: field, options: opts, shape: [3, 4], labels: [0, 0, 0], generators: gens)
        var states: [[Double]] = []
        for step in a { states.append(step.x) }
        XCTAssertNil(a.failure)
        XCTAssertEqual(states.count, 10)
        // Same seeds, same result; sample 1 alone equals sample 1 inside the batch.
        let b = try SamplingRun(velocity: field, options: opts, shape: [3, 4], labels: [0, 0, 0], generators: gens)
        XCTAssertEqual(try b.run().scalars, a.result.scalars)
        let alone = try SamplingRun(velocity: field, options: opts, shape: [1, 4], labels: [0], generators: [gens[1]])
        try alone.run()
        XCTAssertEqual(alone.x, Array(a.x[4..<8]))
        // The last step is the deterministic mean: x + dt * (v - t * score(v)) with t = 0.04, dt = -0.04.
        let before = states[8], t = 0.04
        for j in 0..<before.count {
            let v = Double(Float(cos(Double(Float(t)))) * Float(before[j]))
            let drift = v - 0.5 * 2 * t * SamplerPath.linear.score(velocity: v, x: before[j], t: t)
            XCTAssertEqual(a.x[j], before[j] - 0.04 * drift, accuracy: 1e-12)
        }
        // Different seeds give different samples.
        let c = try SamplingRun(velocity: field, options: opts, shape: [3, 4], labels: [0, 0, 0],
                                generators: (0..<3).map { RandomGenerator(seed: 8, stream: UInt64($0)) })
        XCTAssertNotEqual(try c.run().scalars, a.result.scalars)
    }

    func testScoreFromVelocityMatchesTheOfficialFormula() {
        // Linear path: score = (-(1 - t) v - x) / t.
        XCTAssertEqual(SamplerPath.linear.score(velocity: 0.7, x: -0.2, t: 0.3), (-(0.7) * 0.7 + 0.2) / 0.3, accuracy: 1e-12)
        // Cosine path at t: r = alpha / alpha', var = sigma^2 - r sigma' sigma.
        let t = 0.4, a = t * .pi / 2
        let r = cos(a) / (-.pi / 2 * sin(a)), variance = sin(a) * sin(a) - r * (.pi / 2 * cos(a)) * sin(a)
        XCTAssertEqual(SamplerPath.cosine.score(velocity: 0.5, x: 0.1, t: t), (r * 0.5 - 0.1) / variance, accuracy: 1e-12)
    }

    func testNonFiniteVelocityNamesTheStep() throws {
        let nanAtStep3: VelocityField = { x, t, _ in
            let v = Tensor(repeating: t[0] < 0.55 ? .nan : 0.1, shape: x.shape)
            return v
        }
        let run = try SamplingRun(velocity: nanAtStep3, options: SamplerOptions(method: .euler, steps: 5),
                                  initialNoise: [0, 0], shape: [1, 2], labels: [0])
        XCTAssertThrowsError(try run.run()) { error in
            XCTAssertEqual(error as? SamplerError, .nonFinite(step: 3, t: 0.4, what: "the model velocity"))
            print("sampler error:", error)
        }
        let iter = try SamplingRun(velocity: nanAtStep3, options: SamplerOptions(method: .euler, steps: 5),
                                   initialNoise: [0, 0], shape: [1, 2], labels: [0])
        XCTAssertEqual(Array(iter).count, 3)
        XCTAssertNotNil(iter.failure)
        XCTAssertThrowsError(try SamplingRun(velocity: field, options: SamplerOptions(method: .eulerMaruyama, steps: 3),
                                             initialNoise: [0, 0], shape: [1, 2], labels: [0]))
    }
}
