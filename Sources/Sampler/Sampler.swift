// Velocity-field samplers of the official code (modelling/samplers.py), independent of SiT:
// Euler and Heun ODE on linspace(1, 0, N + 1), Euler-Maruyama SDE on linspace(1, 0.04, N) then 0,
// classifier-free guidance inside a guidance interval.
//
// Time convention: t = 1 is noise, t = 0 is data. The state is kept in Double; the velocity
// function is called with Float tensors and Float times, as the official sampler casts them.
// A run is a Sequence of steps, so callers can show progress or previews.

import Foundation
import Tensor

/// v(x, t, labels): x (R, ...) Float, t per row (R), labels (R) -> velocity shaped like x. The
/// rows the sampler passes are laid out by `SamplerOptions.evaluation` (see `Evaluation`);
/// callers never regroup them.
public typealias VelocityField = (_ x: Tensor, _ t: [Float], _ labels: [Int]) throws -> Tensor

/// How a step calls the velocity function. This module owns the row layout of guided calls:
/// the conditional rows first, then the unconditional rows (label `Guidance.nullLabel`).
public enum Evaluation: String, Codable, CaseIterable, Sendable {
    /// One call for the whole batch: B rows, or 2B when guided (B conditional, then B
    /// unconditional). Fastest; results may differ by float rounding with the batch.
    case batch
    /// One call per sample: 1 row, or 2 when guided (conditional, then unconditional), so a
    /// sample's result does not depend on the rest of the batch (bit-identical alone).
    case perSample
}

public enum SamplerMethod: String, Codable, CaseIterable, Sendable {
    /// Deterministic Euler ODE: one evaluation per step.
    case euler
    /// Euler with Heun's corrector on every step but the last: two evaluations per step.
    case heun
    /// Euler-Maruyama SDE with diffusion w(t) = 2t; the last step returns the deterministic mean.
    case eulerMaruyama = "euler-maruyama"
}

/// The interpolation path the model was trained on (the SDE converts velocity to score with it).
public enum SamplerPath: String, Codable, CaseIterable, Sendable {
    case linear, cosine

    /// (alpha, sigma, d alpha / dt, d sigma / dt) at time t.
    public func coefficients(_ t: Double) -> (alpha: Double, sigma: Double, dAlpha: Double, dSigma: Double) {
        switch self {
        case .linear: return (1 - t, t, -1, 1)
        case .cosine:
            let a = t * Double.pi / 2
            return (cos(a), sin(a), -Double.pi / 2 * sin(a), Double.pi / 2 * cos(a))
        }
    }

    /// Score from velocity: with r = alpha / alpha', var = sigma^2 - r sigma' sigma,
    /// score = (r v - x) / var.
    @inline(__always)
    public func score(velocity v: Double, x: Double, t: Double) -> Double {
        let (alpha, sigma, dAlpha, dSigma) = coefficients(t)
        let r = alpha / dAlpha
        let variance = sigma * sigma - r * dSigma * sigma
        return (r * v - x) / variance
    }
}

/// Classifier-free guidance `v_u + scale (v_c - v_u)` over all channels, applied on steps whose
/// current time t satisfies low <= t <= high. The unconditional half uses `nullLabel`.
public struct Guidance: Codable, Equatable, Sendable {
    public var scale: Double
    public var low: Double
    public var high: Double
    public var nullLabel: Int

    public init(scale: Double, low: Double = 0, high: Double = 1, nullLabel: Int) {
        self.scale = scale
        self.low = low
        self.high = high
        self.nullLabel = nullLabel
    }

    /// Guidance runs when the scale differs from 1 and t lies in the interval.
    public func isActive(at t: Double) -> Bool { scale != 1 && low <= t && t <= high }
}

public struct SamplerOptions: Codable, Equatable, Sendable {
    public var method: SamplerMethod
    public var steps: Int
    public var guidance: Guidance?
    public var path: SamplerPath
    public var evaluation: Evaluation

    public init(method: SamplerMethod = .euler, steps: Int, guidance: Guidance? = nil, path: SamplerPath = .linear,
                evaluation: Evaluation = .batch) {
        self.method = method
        self.steps = steps
        self.guidance = guidance
        self.path = path
        self.evaluation = evaluation
    }

    /// The time grid: N + 1 points from 1 to 0.
    public var timeGrid: [Double] {
        switch method {
        case .euler, .heun: return linspace(1, 0, steps + 1)
        case .eulerMaruyama: return linspace(1, 0.04, steps) + [0]
        }
    }

    /// Model evaluations of the whole batch (each of B rows, or 2B when guided) over a run.
    public var evaluations: Int { method == .heun ? 2 * steps - 1 : steps }
}

public enum SamplerError: Error, CustomStringConvertible, Equatable {
    case invalid(String)
    case velocityShape(step: Int, expected: [Int], found: [Int])
    case nonFinite(step: Int, t: Double, what: String)

    public var description: String {
        switch self {
        case let .invalid(why): return "sampler: \(why)"
        case let .velocityShape(step, expected, found):
            return "sampler step \(step): the velocity function returned shape \(found), expected \(expected)"
        case let .nonFinite(step, t, what):
            return "sampler step \(step) (t = \(String(format: "%.4f", t))): \(what) contains NaN or infinity"
        }
    }
}

/// torch.linspace in float64: the first half counts up from `start`, the second down from `end`.
public func linspace(_ start: Double, _ end: Double, _ n: Int) -> [Double] {
    guard n > 1 else { return n == 1 ? [start] : [] }
    let step = (end - start) / Double(n - 1)
    let half = n / 2
    return (0..<n).map { i in i < half ? start + step * Double(i) : end - step * Double(n - 1 - i) }
}

/// One finished step of a run.
public struct SamplerStep {
    /// 0-based step index and the number of steps.
    public let index: Int
    public let count: Int
    /// The step went from time `t` to `tNext`.
    public let t: Double
    public let tNext: Double
    /// Whether guidance was applied on this step.
    public let guided: Bool
    /// The state after the step, (B, ...) flattened, in Double.
    public let x: [Double]
}

/// One sampling run over a batch: iterate it (`for step in run`) or call `run()`.
///
/// Sample i of the batch draws its noise (the initial x_1 with the `seeded` initializer, and the
/// SDE increments) only from its own generator, so results do not depend on batch composition.
public final class SamplingRun: Sequence, IteratorProtocol {
    public let options: SamplerOptions
    public let velocity: VelocityField
    /// Shape of the batch (B, ...).
    public let shape: [Int]
    public let labels: [Int]
    public private(set) var x: [Double]
    public private(set) var generators: [RandomGenerator]
    public private(set) var stepIndex = 0
    /// The error that stopped iteration through `next()` (use `nextStep()` to get it thrown).
    public private(set) var failure: Error?
    private let grid: [Double]
    private let sampleSize: Int

    /// A run from given initial noise x_1 (B, ...) in Double. The SDE needs one generator per
    /// sample for its increments.
    public init(velocity: @escaping VelocityField, options: SamplerOptions, initialNoise: [Double], shape: [Int],
                labels: [Int], generators: [RandomGenerator] = []) throws {
        guard options.steps >= 1 else { throw SamplerError.invalid("steps must be at least 1, got \(options.steps)") }
        guard shape.count >= 2, let b = shape.first, b > 0 else {
            throw SamplerError.invalid("batch shape \(shape) must be (B, ...) with B > 0")
        }
        guard initialNoise.count == shape.reduce(1, *) else {
            throw SamplerError.invalid("initial noise has \(initialNoise.count) values for shape \(shape)")
        }
        guard labels.count == b else { throw SamplerError.invalid("\(labels.count) labels for a batch of \(b)") }
        if options.method == .eulerMaruyama && generators.count != b {
            throw SamplerError.invalid("the SDE sampler needs one noise generator per sample (\(b)), got \(generators.count)")
        }
        if let g = options.guidance, !(g.low <= g.high) || !g.scale.isFinite {
            throw SamplerError.invalid("guidance interval [\(g.low), \(g.high)] or scale \(g.scale) is invalid")
        }
        if !initialNoise.allSatisfy({ $0.isFinite }) {
            throw SamplerError.nonFinite(step: 0, t: 1, what: "the initial noise")
        }
        self.velocity = velocity
        self.options = options
        self.shape = shape
        self.labels = labels
        self.x = initialNoise
        self.generators = generators
        grid = options.timeGrid
        sampleSize = shape.dropFirst().reduce(1, *)
    }

    /// A run whose initial noise x_1 is drawn per sample from `generators[i]` (standard normal),
    /// which then continue to supply the SDE increments.
    public convenience init(velocity: @escaping VelocityField, options: SamplerOptions, shape: [Int], labels: [Int],
                            generators: [RandomGenerator]) throws {
        guard let b = shape.first, generators.count == b else {
            throw SamplerError.invalid("need one generator per sample: shape \(shape), \(generators.count) generators")
        }
        var gens = generators
        let per = shape.dropFirst().reduce(1, *)
        var noise = [Double](repeating: 0, count: b * per)
        for i in 0..<b { for j in 0..<per { noise[i * per + j] = gens[i].normal() } }
        try self.init(velocity: velocity, options: options, initialNoise: noise, shape: shape, labels: labels,
                      generators: gens)
    }

    public var stepCount: Int { options.steps }

    /// The final state as a Float tensor (B, ...).
    public var result: Tensor { Tensor(x.map { Float($0) }, shape: shape) }

    // MARK: iteration

    public func next() -> SamplerStep? {
        guard failure == nil else { return nil }
        do { return try nextStep() } catch { failure = error; return nil }
    }

    /// Runs all remaining steps; `progress` sees each finished step.
    @discardableResult
    public func run(progress: ((SamplerStep) -> Void)? = nil) throws -> Tensor {
        while let step = try nextStep() { progress?(step) }
        return result
    }

    /// Performs one step; nil when the run is complete.
    public func nextStep() throws -> SamplerStep? {
        let i = stepIndex
        guard i < options.steps else { return nil }
        let tCur = grid[i], tNext = grid[i + 1]
        let dt = tNext - tCur
        let guided = options.guidance?.isActive(at: tCur) ?? false
        var out: [Double]
        switch options.method {
        case .euler, .heun:
            let d = try guidedVelocity(x, t: tCur, guided: guided, step: i)
            out = zip(x, d).map { $0 + dt * $1 }
            if options.method == .heun && i < options.steps - 1 {
                // Corrector at the Euler prediction and the next time; guidance decided by t_cur.
                let dPrime = try guidedVelocity(out, t: tNext, guided: guided, step: i)
                out = (0..<x.count).map { j in x[j] + dt * (0.5 * d[j] + 0.5 * dPrime[j]) }
            }
        case .eulerMaruyama:
            let drift = try sdeDrift(x, t: tCur, guided: guided, step: i)
            if i < options.steps - 1 {
                // x += drift dt + sqrt(w(t)) sqrt(|dt|) eps, w(t) = 2t, eps per sample.
                let scale = (2 * tCur).squareRoot() * abs(dt).squareRoot()
                out = x
                for b in 0..<shape[0] {
                    for j in 0..<sampleSize {
                        let k = b * sampleSize + j
                        out[k] = x[k] + drift[k] * dt + scale * generators[b].normal()
                    }
                }
            } else {
                // Last step: the deterministic mean.
                out = zip(x, drift).map { $0 + dt * $1 }
            }
        }
        guard out.allSatisfy({ $0.isFinite }) else {
            throw SamplerError.nonFinite(step: i, t: tCur, what: "the updated state")
        }
        x = out
        stepIndex += 1
        return SamplerStep(index: i, count: options.steps, t: tCur, tNext: tNext, guided: guided, x: x)
    }

    // MARK: model evaluation

    /// Evaluates v at (state, t) for the batch, and for the unconditional copy in the same call
    /// when guided, laid out as `options.evaluation` says. Returns (conditional,
    /// unconditional or nil), each (B, ...) flattened.
    private func evaluate(_ state: [Double], t: Double, guided: Bool, step: Int) throws -> ([Double], [Double]?) {
        let b = shape[0]
        let n = state.count
        var cond = [Double](repeating: 0, count: n)
        var uncond = guided ? [Double](repeating: 0, count: n) : []
        // Samples [lo, hi) in one call: their conditional rows, then their unconditional rows.
        func call(_ lo: Int, _ hi: Int) throws {
            let rows = hi - lo, copies = guided ? 2 : 1
            var callShape = shape
            callShape[0] = rows * copies
            let input = Tensor(uninitialized: callShape)
            let span = rows * sampleSize, offset = lo * sampleSize
            for c in 0..<copies { for j in 0..<span { input.pointer[c * span + j] = Float(state[offset + j]) } }
            var ys = Array(labels[lo..<hi])
            if guided, let g = options.guidance { ys += [Int](repeating: g.nullLabel, count: rows) }
            let times = [Float](repeating: Float(t), count: rows * copies)
            let v = try Autograd.noGrad { try velocity(input, times, ys) }
            guard v.shape == callShape else { throw SamplerError.velocityShape(step: step, expected: callShape, found: v.shape) }
            let p = v.pointer
            for j in 0..<span { cond[offset + j] = Double(p[j]) }
            if guided { for j in 0..<span { uncond[offset + j] = Double(p[span + j]) } }
        }
        switch options.evaluation {
        case .batch: try call(0, b)
        case .perSample: for i in 0..<b { try call(i, i + 1) }
        }
        guard cond.allSatisfy({ $0.isFinite }), uncond.allSatisfy({ $0.isFinite }) else {
            throw SamplerError.nonFinite(step: step, t: t, what: "the model velocity")
        }
        return (cond, guided ? uncond : nil)
    }

    @inline(__always)
    private func combine(_ cond: [Double], _ uncond: [Double]?) -> [Double] {
        guard let uncond, let s = options.guidance?.scale else { return cond }
        return (0..<cond.count).map { uncond[$0] + s * (cond[$0] - uncond[$0]) }
    }

    private func guidedVelocity(_ state: [Double], t: Double, guided: Bool, step: Int) throws -> [Double] {
        let (c, u) = try evaluate(state, t: t, guided: guided, step: step)
        return combine(c, u)
    }

    /// SDE drift d = v - w(t)/2 * score(v, x, t) for each half, then guidance (as the official).
    private func sdeDrift(_ state: [Double], t: Double, guided: Bool, step: Int) throws -> [Double] {
        let (c, u) = try evaluate(state, t: t, guided: guided, step: step)
        let w = 2 * t
        let path = options.path
        func drift(_ v: [Double]) -> [Double] {
            (0..<v.count).map { j in v[j] - 0.5 * w * path.score(velocity: v[j], x: state[j], t: t) }
        }
        return combine(drift(c), u.map(drift))
    }
}
