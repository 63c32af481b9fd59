// Ops of convolutional discriminators and GAN losses, each forward beside its backward:
// leaky ReLU, softplus, training-mode batch normalization (batch statistics, backward through
// them) and the per-sample integer translation of DiffAugment.
//
// Dimension legend: N batch, C channels, H height, W width, M = N H W (values per channel).

import Foundation

extension Tensor {
    /// max(x, 0) + slope min(x, 0) (nn.LeakyReLU). Backward: g where x > 0, slope g elsewhere
    /// (PyTorch's choice at x == 0: slope).
    public func leakyReLU(slope: Float) -> Tensor {
        mapOp("leaky_relu", self, { $0 > 0 ? $0 : slope * $0 }) { x, y, g in
            zipGrad(g, x, y) { x, _ in x > 0 ? 1 : slope }
        }
    }

    /// log(1 + exp(x)), computed as max(x, 0) + log1p(exp(-|x|)) so it never overflows.
    /// Backward: g sigmoid(x).
    public func softplus() -> Tensor {
        mapOp("softplus", self, { Swift.max($0, 0) + Foundation.log1p(Foundation.exp(-Swift.abs($0))) }) { x, y, g in
            zipGrad(g, x, y) { x, _ in 1 / (1 + Foundation.exp(-x)) }
        }
    }

    /// Per-sample integer translation of (N, C, H, W) with zero fill:
    /// out[n, c, i, j] = x[n, c, i + rows[n], j + cols[n]] where that lies inside, else 0.
    /// (DiffAugment's rand_translation: a gather from the 1-pixel zero-padded image with the
    /// index clamped onto the padding.) Backward: the same shift the other way, zero filled.
    public func translated(rows: [Int], cols: [Int]) -> Tensor {
        precondition(rank == 4 && rows.count == dim(0) && cols.count == dim(0),
                     "translated: input \(shape) needs one row and one column shift per sample")
        let out = Tensor(uninitialized: shape)
        shift2d(pointer, into: out.pointer, shape: shape, rows: rows, cols: cols)
        return out.record("translate", [self]) { [shape] g, _ in
            let dx = Tensor(uninitialized: shape)
            shift2d(g.pointer, into: dx.pointer, shape: shape, rows: rows.map { -$0 }, cols: cols.map { -$0 })
            return [dx]
        }
    }
}

/// dst[n, c, i, j] = src[n, c, i + rows[n], j + cols[n]] inside the image, 0 outside.
private func shift2d(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, shape: [Int], rows: [Int], cols: [Int]) {
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
    parallelFor(n * c, grain: 4) { lo, hi in
        for plane in lo..<hi {
            let b = plane / c
            let s = src + plane * h * w, d = dst + plane * h * w
            for i in 0..<h {
                let si = i + rows[b]
                for j in 0..<w {
                    let sj = j + cols[b]
                    d[i * w + j] = (si >= 0 && si < h && sj >= 0 && sj < w) ? s[si * w + sj] : 0
                }
            }
        }
    }
}

// MARK: - Batch normalization (training mode)

/// What a training-mode batch norm measured on its batch: per-channel mean and the biased
/// variance it normalized with (the running averages use the unbiased one, var M / (M - 1)).
public struct BatchStatistics {
    public let mean: [Double]
    public let biasedVariance: [Double]
    public let valuesPerChannel: Int
}

/// y = weight (x - mean_c) / sqrt(var_c + eps) + bias over x (N, C, H, W) with the statistics of
/// the batch (mean and biased variance over N, H, W; accumulated in Double), as
/// F.batch_norm(training=True). Returns y and the statistics.
///
/// Backward (xhat = (x - mean) invstd, dxhat = g weight, sums over the M values of a channel):
///   dx = invstd / M (M dxhat - sum(dxhat) - xhat sum(dxhat xhat))
///   dweight = sum(g xhat), dbias = sum(g).
/// The forward saves xhat and invstd.
public func batchNormTraining(_ x: Tensor, weight: Tensor, bias: Tensor, eps: Float) -> (Tensor, BatchStatistics) {
    precondition(x.rank == 4 && weight.shape == [x.dim(1)] && bias.shape == [x.dim(1)],
                 "batchNorm: input \(x.shape), weight \(weight.shape), bias \(bias.shape)")
    let (n, c, hw) = (x.dim(0), x.dim(1), x.dim(2) * x.dim(3))
    let m = n * hw
    precondition(m > 1, "batchNorm: training needs more than one value per channel, got input \(x.shape)")
    var mean = [Double](repeating: 0, count: c), variance = [Double](repeating: 0, count: c)
    let xhat = Tensor(uninitialized: x.shape), out = Tensor(uninitialized: x.shape)
    var invstd = [Float](repeating: 0, count: c)
    let px = x.pointer, ph = xhat.pointer, po = out.pointer, pw = weight.pointer, pb = bias.pointer
    mean.withUnsafeMutableBufferPointer { pm in
        variance.withUnsafeMutableBufferPointer { pv in
            invstd.withUnsafeMutableBufferPointer { pi in
                parallelFor(c) { lo, hi in
                    for ch in lo..<hi {
                        var s = 0.0
                        for b in 0..<n { let p = px + (b * c + ch) * hw; for k in 0..<hw { s += Double(p[k]) } }
                        let mu = s / Double(m)
                        var ss = 0.0
                        for b in 0..<n { let p = px + (b * c + ch) * hw; for k in 0..<hw { let d = Double(p[k]) - mu; ss += d * d } }
                        let v = ss / Double(m)
                        pm[ch] = mu; pv[ch] = v
                        let inv = Float(1 / (v + Double(eps)).squareRoot())
                        pi[ch] = inv
                        let (muF, wc, bc) = (Float(mu), pw[ch], pb[ch])
                        for b in 0..<n {
                            let o = (b * c + ch) * hw
                            for k in 0..<hw {
                                let h = (px[o + k] - muF) * inv
                                ph[o + k] = h
                                po[o + k] = h * wc + bc
                            }
                        }
                    }
                }
            }
        }
    }
    let stats = BatchStatistics(mean: mean, biasedVariance: variance, valuesPerChannel: m)
    let savedInvstd = invstd
    let y = out.record("batch_norm", [x, weight, bias]) { g, needs in
        let pg = g.pointer, ph = xhat.pointer   // xhat is kept alive by this closure
        var sumG = [Double](repeating: 0, count: c), sumGH = [Double](repeating: 0, count: c)
        let dx = needs[0] ? Tensor(uninitialized: x.shape) : nil
        let pd = dx?.pointer
        sumG.withUnsafeMutableBufferPointer { psg in
            sumGH.withUnsafeMutableBufferPointer { psgh in
                savedInvstd.withUnsafeBufferPointer { pi in
                    parallelFor(c) { lo, hi in
                        for ch in lo..<hi {
                            var a = 0.0, bsum = 0.0
                            for b in 0..<n {
                                let o = (b * c + ch) * hw
                                for k in 0..<hw { a += Double(pg[o + k]); bsum += Double(pg[o + k] * ph[o + k]) }
                            }
                            psg[ch] = a; psgh[ch] = bsum
                            guard let pd else { continue }
                            // dxhat = g w, so sum(dxhat) = w sumG and sum(dxhat xhat) = w sumGH.
                            let wc = pw[ch]
                            let k1 = Float(Double(wc) * a / Double(m)), k2 = Float(Double(wc) * bsum / Double(m))
                            let scale = pi[ch]
                            for b in 0..<n {
                                let o = (b * c + ch) * hw
                                for k in 0..<hw { pd[o + k] = scale * (wc * pg[o + k] - k1 - ph[o + k] * k2) }
                            }
                        }
                    }
                }
            }
        }
        var grads: [Tensor?] = [dx, nil, nil]
        if needs[1] { grads[1] = Tensor(sumGH.map(Float.init), shape: [c]) }
        if needs[2] { grads[2] = Tensor(sumG.map(Float.init), shape: [c]) }
        return grads
    }
    return (y, stats)
}
