// Per-channel normalization layers of convolutional networks: BatchNorm2d (nn.BatchNorm2d) and
// ActNorm (taming-transformers' data-initialized affine layer).
//
// Dimension legend: N batch, C channels, H height, W width.

import Foundation

// MARK: - BatchNorm2d

/// nn.BatchNorm2d(C) with affine weight and running statistics. Keys: `weight`, `bias`,
/// `running_mean`, `running_var`, `num_batches_tracked`.
///
/// `num_batches_tracked` is stored as a float32 tensor of shape [] (PyTorch: int64, shape []);
/// `adoptCounterShape(from:)` lets a file that holds it with shape [1] load too.
///
/// Training mode normalizes with the batch mean and biased variance and updates
/// running = (1 - momentum) running + momentum batch, with the unbiased variance for
/// `running_var`, as PyTorch. Evaluation mode normalizes with the running statistics.
public final class BatchNorm2d: Module {
    public let weight: Tensor
    public let bias: Tensor
    public let runningMean: Tensor
    public let runningVar: Tensor
    public private(set) var numBatchesTracked: Tensor
    public let eps: Float
    public let momentum: Float
    /// Batch statistics and running-average updates when true (PyTorch's `module.train()`).
    public var training = true

    /// weight 1, bias 0, running mean 0, running var 1 (PyTorch's initialization); weight and
    /// bias come from `f` (zeros in `.zeros` mode, untouched in `.uninitialized`).
    public init(_ channels: Int, eps: Float = 1e-5, momentum: Float = 0.1, _ f: inout ParameterFactory) {
        weight = f.constant([channels], 1)
        bias = f.zeros([channels])
        runningMean = Tensor(zeros: [channels])
        runningVar = Tensor(repeating: 1, shape: [channels])
        numBatchesTracked = Tensor(zeros: [])
        self.eps = eps
        self.momentum = momentum
    }

    public var channels: Int { weight.dim(0) }

    public var entries: [(String, ModuleEntry)] {
        [("weight", .tensor(weight)), ("bias", .tensor(bias)), ("running_mean", .tensor(runningMean)),
         ("running_var", .tensor(runningVar)), ("num_batches_tracked", .tensor(numBatchesTracked))]
    }

    /// Takes the shape of `num_batches_tracked` ([] or [1]) that `file` holds under `key`, so a
    /// strict load accepts either.
    public func adoptCounterShape(from file: SafeTensorsFile, key: String) {
        guard let shape = file.entries[key]?.shape, shape != numBatchesTracked.shape, shape == [] || shape == [1] else { return }
        let value = numBatchesTracked.item
        numBatchesTracked = Tensor(repeating: value, shape: shape)
    }

    /// (N, C, H, W) -> (N, C, H, W). With `parameterGradients` false the affine parameters
    /// are read as constants (gradients still flow to x), e.g. when only the input trains.
    public func callAsFunction(_ x: Tensor, parameterGradients: Bool = true) -> Tensor {
        let c = channels
        let (w, b) = parameterGradients ? (weight, bias) : (weight.detached(), bias.detached())
        guard training else {
            // y = (x - running_mean) * weight / sqrt(running_var + eps) + bias
            let scale = Tensor(runningVar.scalars.map { 1 / ($0 + eps).squareRoot() }, shape: [1, c, 1, 1])
            return (x - runningMean.reshaped([1, c, 1, 1])) * scale * w.reshaped([1, c, 1, 1]) + b.reshaped([1, c, 1, 1])
        }
        let (y, stats) = batchNormTraining(x, weight: w, bias: b, eps: eps)
        let m = Double(momentum), unbiased = Double(stats.valuesPerChannel) / Double(stats.valuesPerChannel - 1)
        let pm = runningMean.pointer, pv = runningVar.pointer
        for ch in 0..<c {
            // In Double, rounded once, as PyTorch's CPU kernel: running = m batch + (1 - m) running.
            pm[ch] = Float(m * stats.mean[ch] + (1 - m) * Double(pm[ch]))
            pv[ch] = Float(m * stats.biasedVariance[ch] * unbiased + (1 - m) * Double(pv[ch]))
        }
        numBatchesTracked.pointer[0] += 1
        runningMean.markModified(); runningVar.markModified(); numBatchesTracked.markModified()
        return y
    }
}

// MARK: - ActNorm

/// taming-transformers' ActNorm: h = scale (x + loc) per channel. Keys: `loc` (1, C, 1, 1),
/// `scale` (1, C, 1, 1), `initialized` (a float32 flag of shape []; PyTorch: uint8). On the first
/// training-mode forward it sets loc = -mean_c and scale = 1 / (std_c + 1e-6) from that batch
/// (std unbiased, as torch.std), so its first output has zero mean and unit spread per channel.
public final class ActNorm: Module {
    public let loc: Tensor
    public let scale: Tensor
    public let initialized: Tensor
    public var training = true

    public init(_ channels: Int, _ f: inout ParameterFactory) {
        loc = f.zeros([1, channels, 1, 1])
        scale = f.constant([1, channels, 1, 1], 1)
        initialized = Tensor(zeros: [])
    }

    public var entries: [(String, ModuleEntry)] {
        [("loc", .tensor(loc)), ("scale", .tensor(scale)), ("initialized", .tensor(initialized))]
    }

    /// (N, C, H, W) -> (N, C, H, W); `parameterGradients` as in BatchNorm2d.
    public func callAsFunction(_ x: Tensor, parameterGradients: Bool = true) -> Tensor {
        if training && initialized.item == 0 { initialize(from: x) }
        return parameterGradients ? scale * (x + loc) : scale.detached() * (x + loc.detached())
    }

    private func initialize(from x: Tensor) {
        let (n, c, hw) = (x.dim(0), x.dim(1), x.dim(2) * x.dim(3))
        let m = n * hw
        for ch in 0..<c {
            var s = 0.0
            for b in 0..<n { let p = x.pointer + (b * c + ch) * hw; for k in 0..<hw { s += Double(p[k]) } }
            let mu = s / Double(m)
            var ss = 0.0
            for b in 0..<n { let p = x.pointer + (b * c + ch) * hw; for k in 0..<hw { let d = Double(p[k]) - mu; ss += d * d } }
            let std = (ss / Double(max(m - 1, 1))).squareRoot()
            loc.pointer[ch] = Float(-mu)
            scale.pointer[ch] = 1 / (Float(std) + 1e-6)
        }
        initialized.pointer[0] = 1
        loc.markModified(); scale.markModified(); initialized.markModified()
    }
}
