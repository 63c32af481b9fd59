// LPIPS's `normalize_tensor`: each feature vector divided by its l2 norm over channels,
// x / (sqrt(sum_c x^2) + eps), as one fused op with its backward.
//
// Shapes: N batch, C channels (axis 1), P positions (the product of the remaining axes).

import Foundation

extension Tensor {
    /// x (N, C, ...) -> x / (||x||_c + eps), the norm over axis 1 at every position.
    ///
    /// The forward saves the norm n per (N, P). Backward, with d = n + eps:
    ///   dx_k = g_k / d - x_k (sum_c g_c x_c) / (n d^2).
    /// Where n = 0 (a position whose channels are all zero, common after ReLU) x is zero too and
    /// the second term is taken as 0; PyTorch's composed graph gives NaN there (sqrt'(0) = inf
    /// times 2x = 0), which is never what a loss wants.
    public func channelNormalized(eps: Float = 1e-10) -> Tensor {
        precondition(rank >= 2, "channelNormalized: need (N, C, ...), got \(shape)")
        let n = shape[0], c = shape[1], p = count / Swift.max(n * c, 1)
        let out = Tensor(uninitialized: shape)
        var norms = [Float](repeating: 0, count: n * p)
        let xp = pointer, yp = out.pointer
        norms.withUnsafeMutableBufferPointer { nb in
            let np = nb.baseAddress!
            parallelFor(n, grain: 1) { lo, hi in
                for b in lo..<hi {
                    let xb = xp + b * c * p, yb = yp + b * c * p
                    for j in 0..<p {
                        var s: Float = 0
                        for k in 0..<c { s += xb[k * p + j] * xb[k * p + j] }
                        let nrm = s.squareRoot()
                        np[b * p + j] = nrm
                        let inv = 1 / (nrm + eps)
                        for k in 0..<c { yb[k * p + j] = xb[k * p + j] * inv }
                    }
                }
            }
        }
        return out.record("channelNormalized", [self]) { g, _ in
            let dx = Tensor(uninitialized: self.shape)
            let gp = g.pointer, dp = dx.pointer
            norms.withUnsafeBufferPointer { nb in
                parallelFor(n, grain: 1) { lo, hi in
                    for b in lo..<hi {
                        let xb = xp + b * c * p, gb = gp + b * c * p, db = dp + b * c * p
                        for j in 0..<p {
                            let nrm = nb[b * p + j], d = nrm + eps
                            var dot: Float = 0
                            for k in 0..<c { dot += gb[k * p + j] * xb[k * p + j] }
                            let coef = nrm > 0 ? dot / (nrm * d * d) : 0
                            for k in 0..<c { db[k * p + j] = gb[k * p + j] / d - xb[k * p + j] * coef }
                        }
                    }
                }
            }
            return [dx]
        }
    }
}
