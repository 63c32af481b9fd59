// The flow-matching objective of the official code (losses/sit_loss.py, SILoss with
// prediction 'v'): interpolant paths, time sampling, label dropout, per-sample MSE.
//
// Time convention: t = 1 noise, t = 0 data; x_t = alpha_t x + sigma_t eps, target
// v = alpha'_t x + sigma'_t eps (linear path: x_t = (1 - t) x + t eps, v = eps - x).

import Foundation
import Tensor

/// The interpolation between data (t = 0) and noise (t = 1).
public enum InterpolantPath: String, Codable, CaseIterable, Sendable {
    case linear, cosine

    /// (alpha, sigma, d alpha / dt, d sigma / dt) at t, in float32 as the official loss.
    public func coefficients(_ t: Float) -> (alpha: Float, sigma: Float, dAlpha: Float, dSigma: Float) {
        switch self {
        case .linear: return (1 - t, t, -1, 1)
        case .cosine:
            let a = t * Float.pi / 2
            return (cos(a), sin(a), -Float.pi / 2 * sin(a), Float.pi / 2 * cos(a))
        }
    }
}

extension SiTConfig {
    /// The path the model was trained on, from config.json's `path_type`: "linear" or "cosine";
    /// the official releases write "edm" (their SiT constructor's default, unused by their
    /// linear-path training), which reads as linear, as does a missing field.
    public var interpolantPath: InterpolantPath {
        if case let .string(name)? = extra["path_type"], let path = InterpolantPath(rawValue: name) { return path }
        return .linear
    }
}

/// How training times are drawn.
public enum TimeSampling: String, Codable, CaseIterable, Sendable {
    /// t ~ U[0, 1).
    case uniform
    /// s = exp(N(0, 1)); t = s / (1 + s) (linear path) or 2/pi atan(s) (cosine path).
    case lognormal
}

/// The SiT training objective: per-sample mean squared error between the model output at x_t
/// and the velocity target.
public struct FlowMatchingObjective: Codable, Equatable, Sendable {
    public var path: InterpolantPath
    public var timeSampling: TimeSampling
    /// Probability of replacing a label by the null class (`nullLabel`) during training.
    public var classDropoutProb: Double
    public var nullLabel: Int

    public init(path: InterpolantPath = .linear, timeSampling: TimeSampling = .uniform,
                classDropoutProb: Double = 0.1, nullLabel: Int) {
        self.path = path
        self.timeSampling = timeSampling
        self.classDropoutProb = classDropoutProb
        self.nullLabel = nullLabel
    }

    /// The objective the official training uses for a model (its label dropout and null class).
    public init(for config: SiTConfig, path: InterpolantPath = .linear, timeSampling: TimeSampling = .uniform) {
        self.init(path: path, timeSampling: timeSampling, classDropoutProb: config.classDropoutProb,
                  nullLabel: config.numClasses)
    }

    /// Draws one training time per sample.
    public func sampleTimes(_ count: Int, rng: inout RandomGenerator) -> [Float] {
        (0..<count).map { _ in
            switch timeSampling {
            case .uniform: return Float(rng.uniform())
            case .lognormal:
                let s = Foundation.exp(rng.normal())
                return Float(path == .linear ? s / (1 + s) : 2 / Double.pi * Foundation.atan(s))
            }
        }
    }

    /// Replaces each label by the null class with probability `classDropoutProb`.
    public func dropLabels(_ labels: [Int], rng: inout RandomGenerator) -> [Int] {
        guard classDropoutProb > 0 else { return labels }
        return labels.map { rng.uniform() < classDropoutProb ? nullLabel : $0 }
    }

    /// x_t = alpha_t x0 + sigma_t eps and the target v = alpha'_t x0 + sigma'_t eps, per sample t.
    /// x0, noise: (N, ...) -> (input, target), both (N, ...). Not recorded on the tape.
    public func interpolate(x0: Tensor, noise: Tensor, t: [Float]) -> (input: Tensor, target: Tensor) {
        precondition(x0.shape == noise.shape && t.count == x0.dim(0), "interpolate: x0 \(x0.shape), noise \(noise.shape), \(t.count) times")
        let input = Tensor(uninitialized: x0.shape), target = Tensor(uninitialized: x0.shape)
        let per = x0.count / max(x0.dim(0), 1)
        let px = x0.pointer, pn = noise.pointer, pi = input.pointer, pt = target.pointer
        for (b, tb) in t.enumerated() {
            let (alpha, sigma, dAlpha, dSigma) = path.coefficients(tb)
            for j in (b * per)..<((b + 1) * per) {
                pi[j] = alpha * px[j] + sigma * pn[j]
                pt[j] = dAlpha * px[j] + dSigma * pn[j]
            }
        }
        return (input, target)
    }

    /// Per-sample loss (N,): mean over non-batch axes of (model(x_t, t, y) - target)^2, with the
    /// given times, noise and labels (no randomness; labels are used as given).
    public func perSampleLoss(model: SiT, x0: Tensor, noise: Tensor, t: [Float], labels: [Int]) throws -> Tensor {
        let (input, target) = interpolate(x0: x0, noise: noise, t: t)
        let output = try model(input, t: t, y: labels)                      // (N, ...)
        let n = x0.dim(0)
        return (output - target).square().reshaped([n, -1]).mean(axes: [1]) // (N,)
    }

    /// The training loss with each sample's randomness from its own generator, in this order:
    /// its time, its noise (the latent's elements in row-major order), its label dropout. A
    /// sample's draws so depend only on its generator, not on the batch or the process it is
    /// in (data-parallel ranks see exactly the draws of one process). Returns the batch mean (a
    /// scalar tensor on the tape when recording) and the per-sample losses.
    public func loss(model: SiT, x0: Tensor, labels: [Int], generators: [RandomGenerator]) throws -> (mean: Tensor, perSample: Tensor) {
        let n = x0.dim(0)
        precondition(generators.count == n && labels.count == n, "loss: \(n) samples, \(generators.count) generators, \(labels.count) labels")
        let per = x0.count / max(n, 1)
        var t = [Float](repeating: 0, count: n), y = labels
        let noise = Tensor(uninitialized: x0.shape)
        for i in 0..<n {
            var rng = generators[i]
            t[i] = sampleTimes(1, rng: &rng)[0]
            let row = noise.pointer + i * per
            for j in 0..<per { row[j] = Float(rng.normal()) }
            if classDropoutProb > 0 && rng.uniform() < classDropoutProb { y[i] = nullLabel }
        }
        let losses = try perSampleLoss(model: model, x0: x0, noise: noise, t: t, labels: y)
        return (losses.mean(), losses)
    }
}
