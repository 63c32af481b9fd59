// Optimizers and training utilities: AdamW, EMA, global gradient-norm clipping, learning-rate
// schedules. Their state saves and restores exactly.

import CKernels
import Foundation

/// AdamW as in PyTorch (decoupled weight decay, bias correction, eps outside the square root);
/// `decays` picks the parameters that take the decay (PyTorch's two parameter groups).
/// The official no-decay rule for models (timm's `param_groups_weight_decay`: nothing 1-D and no
/// bias) is `AdamW.decaysMatricesOnly`.
public final class AdamW {
    public var lr: Float
    public var beta1: Float
    public var beta2: Float
    public var eps: Float
    public var weightDecay: Float
    /// timm's `param_groups_weight_decay`: weight decay on parameters of rank >= 2 that are not
    /// biases; none on vectors (LayerNorm, biases, scales).
    public static func decaysMatricesOnly(_ name: String, _ t: Tensor) -> Bool { t.rank >= 2 && !name.hasSuffix(".bias") }

    /// Updates made so far (bias correction); restored from a checkpoint or another process.
    public var step: Int = 0
    public let parameters: [(String, Tensor)]
    /// Whether each parameter takes the weight decay (all, unless `decays` said otherwise).
    public let decayed: [Bool]
    private var m: [Tensor]
    private var v: [Tensor]

    public init(_ parameters: [(String, Tensor)], lr: Float = 1e-4, betas: (Float, Float) = (0.9, 0.999),
                eps: Float = 1e-8, weightDecay: Float = 0, decays: ((String, Tensor) -> Bool)? = nil) {
        self.parameters = parameters
        decayed = parameters.map { decays?($0.0, $0.1) ?? true }
        self.lr = lr
        beta1 = betas.0
        beta2 = betas.1
        self.eps = eps
        self.weightDecay = weightDecay
        m = parameters.map { Tensor(zeros: $0.1.shape) }
        v = parameters.map { Tensor(zeros: $0.1.shape) }
    }

    /// One update from each parameter's `.grad` (parameters without a gradient are skipped),
    /// the gradients taken times `gradientScale` (the clipping coefficient of `clipCoefficient`,
    /// applied here instead of in a separate pass over the gradients).
    public func update(gradientScale: Float = 1) {
        step += 1
        let bc1 = 1 - Foundation.pow(Double(beta1), Double(step))
        let bc2 = 1 - Foundation.pow(Double(beta2), Double(step))
        let stepSize = Float(Double(lr) / bc1)
        let bc2Sqrt = Float(bc2.squareRoot())
        let (b1, b2, eps) = (beta1, beta2, eps)
        for (i, (_, p)) in parameters.enumerated() {
            guard let g = p.grad else { continue }
            let decay = decayed[i] ? 1 - lr * weightDecay : 1
            let pp = p.pointer, pg = g.pointer, pm = m[i].pointer, pv = v[i].pointer
            parallelFor(p.count, grain: 1 << 14) { lo, hi in
                ck_adamw(pp + lo, pg + lo, pm + lo, pv + lo, hi - lo, gradientScale, b1, b2, eps, decay, stepSize, bc2Sqrt)
            }
            p.markModified()
        }
    }

    /// Moments under `exp_avg.<key>` / `exp_avg_sq.<key>`, for saving.
    public var stateTensors: [(String, Tensor)] {
        zip(parameters, zip(m, v)).flatMap { p, mv in [("exp_avg." + p.0, mv.0), ("exp_avg_sq." + p.0, mv.1)] }
    }

    public func save(to path: String) throws {
        try writeSafeTensors(stateTensors, to: path, metadata: ["step": String(step), "format": "adamw-v1"])
    }

    public func load(from path: String) throws {
        let file = try SafeTensorsFile(path: path)
        guard let s = file.metadata["step"].flatMap(Int.init) else {
            throw CheckpointError.corruptHeader((path as NSString).lastPathComponent, "no optimizer step in metadata")
        }
        for (key, t) in stateTensors {
            guard let info = file.entries[key] else { throw CheckpointError.missingKey((path as NSString).lastPathComponent, key) }
            guard info.shape == t.shape else {
                throw CheckpointError.shapeMismatch(key, expected: t.shape, found: info.shape, file: (path as NSString).lastPathComponent)
            }
            try file.read(info, into: t.pointer)
        }
        step = s
    }
}

/// Exponential moving average of a model's tensors into a shadow model of the same
/// architecture: ema = decay * ema + (1 - decay) * param.
public enum EMA {
    /// The decay of the (updates + 1)-th update with warm-up: min(decay, (1 + n) / (10 + n)), so
    /// early averages follow the recent weights instead of the initialization.
    public static func warmedUp(_ decay: Float, updates n: Int) -> Float {
        min(decay, Float(1 + n) / Float(10 + n))
    }

    /// Updates needed before the EMA averages over its full horizon (about 1 / (1 - decay)).
    public static func horizon(_ decay: Float) -> Int { decay < 1 ? Int((1 / (1 - Double(decay))).rounded()) : .max }

    public static func update(_ ema: any Module, from model: any Module, decay: Float) {
        let target = ema.namedTensors(), source = model.namedTensors()
        precondition(target.count == source.count, "EMA: different architectures")
        for ((_, e), (_, p)) in zip(target, source) {
            let pe = e.pointer, pp = p.pointer
            parallelFor(e.count, grain: 1 << 15) { lo, hi in
                for j in lo..<hi { pe[j] = decay * pe[j] + (1 - decay) * pp[j] }
            }
            e.markModified()
        }
    }
}

/// The global l2 norm of the parameters' gradients (parameters without one are skipped).
public func gradientNorm(_ parameters: [(String, Tensor)]) -> Float {
    var total: Double = 0
    for (_, p) in parameters {
        guard let g = p.grad else { continue }
        let pg = g.pointer
        let chunks = max(1, min(Threads.count, g.count >> 16))
        var partial = [Double](repeating: 0, count: chunks)
        partial.withUnsafeMutableBufferPointer { out in
            let po = out.baseAddress!
            parallelFor(chunks) { lo, hi in
                for c in lo..<hi {
                    let a = g.count * c / chunks, b = g.count * (c + 1) / chunks
                    po[c] = ck_sum_squares(pg + a, b - a)
                }
            }
        }
        total += partial.reduce(0, +)
    }
    return Float(total.squareRoot())
}

/// PyTorch's clip_grad_norm_ coefficient for a gradient norm: maxNorm / (norm + 1e-6), clamped to 1.
public func clipCoefficient(norm: Float, maxNorm: Float) -> Float {
    min(1, maxNorm / (norm + 1e-6))
}

/// Scales all gradients so that their global l2 norm is at most `maxNorm` (PyTorch's
/// clip_grad_norm_). Returns the norm before clipping.
@discardableResult
public func clipGradNorm(_ parameters: [(String, Tensor)], maxNorm: Float) -> Float {
    let norm = gradientNorm(parameters)
    let coef = clipCoefficient(norm: norm, maxNorm: maxNorm)
    if coef < 1 {
        for (_, p) in parameters {
            guard let g = p.grad else { continue }
            let pg = g.pointer
            parallelFor(g.count, grain: 1 << 15) { lo, hi in for j in lo..<hi { pg[j] *= coef } }
        }
    }
    return norm
}

/// Learning-rate schedules as a function of the (0-based) step.
public enum LRSchedule: Codable, Equatable, Sendable {
    case constant(Float)
    /// Linear ramp from 0 to `lr` over `warmup` steps, then constant.
    case warmup(lr: Float, warmup: Int)
    /// Linear warmup then cosine decay to `minLR` at `total` steps.
    case cosine(lr: Float, warmup: Int, total: Int, minLR: Float)

    public func lr(at step: Int) -> Float {
        switch self {
        case let .constant(lr): return lr
        case let .warmup(lr, w): return w > 0 && step < w ? lr * Float(step + 1) / Float(w) : lr
        case let .cosine(lr, w, total, minLR):
            if w > 0 && step < w { return lr * Float(step + 1) / Float(w) }
            let progress = min(1, Double(step - w) / Double(max(1, total - w)))
            return minLR + (lr - minLR) * Float(0.5 * (1 + cos(Double.pi * progress)))
        }
    }
}
