// Fused row-wise kernels of the hot paths, each a forward that saves what its backward needs:
// softmax, log-softmax, LayerNorm, l2-normalize, embedding, adaLN modulate.
// The naive references used as test oracles live in Reference.swift.

import CKernels
import Foundation

extension Tensor {
    /// Rows of the last axis: (rows, n).
    @inline(__always) var rowsAndWidth: (Int, Int) {
        let n = shape.last ?? 1
        return (count / Swift.max(n, 1), n)
    }

    /// Softmax over the last axis. Saves the output y; backward: dx = y * (dy - sum(dy * y)).
    public func softmax() -> Tensor {
        let (rows, n) = rowsAndWidth
        let out = Tensor(uninitialized: shape)
        let px = pointer, po = out.pointer
        parallelFor(rows, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { lo, hi in
            for r in lo..<hi { softmaxRow(px + r * n, po + r * n, n) }
        }
        let saved = out.detached()
        return out.record("softmax", [self]) { g, _ in
            let dx = Tensor(uninitialized: saved.shape)
            let py = saved.pointer, pg = g.pointer, pd = dx.pointer
            parallelFor(rows, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { lo, hi in
                for r in lo..<hi {
                    let y = py + r * n, gy = pg + r * n, d = pd + r * n
                    var dot: Float = 0
                    for j in 0..<n { dot += gy[j] * y[j] }
                    for j in 0..<n { d[j] = y[j] * (gy[j] - dot) }
                }
            }
            return [dx]
        }
    }

    /// Log-softmax over the last axis. Saves the output; backward: dx = dy - softmax * sum(dy).
    public func logSoftmax() -> Tensor {
        let (rows, n) = rowsAndWidth
        let out = Tensor(uninitialized: shape)
        let px = pointer, po = out.pointer
        parallelFor(rows, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { lo, hi in
            for r in lo..<hi {
                let x = px + r * n, y = po + r * n
                var m = -Float.infinity
                for j in 0..<n { m = Swift.max(m, x[j]) }
                var s: Float = 0
                for j in 0..<n { s += Foundation.exp(x[j] - m) }
                let lse = m + Foundation.log(s)
                for j in 0..<n { y[j] = x[j] - lse }
            }
        }
        let saved = out.detached()
        return out.record("log_softmax", [self]) { g, _ in
            let dx = Tensor(uninitialized: saved.shape)
            let py = saved.pointer, pg = g.pointer, pd = dx.pointer
            for r in 0..<rows {
                let y = py + r * n, gy = pg + r * n, d = pd + r * n
                var s: Float = 0
                for j in 0..<n { s += gy[j] }
                for j in 0..<n { d[j] = gy[j] - Foundation.exp(y[j]) * s }
            }
            return [dx]
        }
    }

    /// LayerNorm over the last axis, with optional affine weight and bias (shape [n]).
    /// Saves per-row mean and reciprocal standard deviation.
    public func layerNorm(weight: Tensor? = nil, bias: Tensor? = nil, eps: Float) -> Tensor {
        let (rows, n) = rowsAndWidth
        let out = Tensor(uninitialized: shape)
        let mean = Tensor(uninitialized: [rows]), rstd = Tensor(uninitialized: [rows])
        let px = pointer, po = out.pointer, pm = mean.pointer, pr = rstd.pointer
        let pw = weight?.pointer, pb = bias?.pointer
        parallelFor(rows, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { lo, hi in
            for r in lo..<hi { ck_layernorm_row(px + r * n, po + r * n, n, eps, pw, pb, pm + r, pr + r) }
        }
        var inputs = [self]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        return out.record("layer_norm", inputs) { g, needs in
            let pg = g.pointer, pm = mean.pointer, pr = rstd.pointer
            var dx: Tensor? = nil
            if needs[0] {
                let d = Tensor(uninitialized: self.shape)
                let pd = d.pointer
                parallelFor(rows, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { lo, hi in
                    for r in lo..<hi {
                        let x = px + r * n, gy = pg + r * n, dxr = pd + r * n
                        let mu = pm[r], rs = pr[r]
                        // dxhat = dy * w; dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))
                        var a: Float = 0, b: Float = 0
                        for j in 0..<n {
                            let dxh = gy[j] * (pw?[j] ?? 1)
                            a += dxh
                            b += dxh * (x[j] - mu) * rs
                        }
                        a /= Float(n); b /= Float(n)
                        for j in 0..<n {
                            let dxh = gy[j] * (pw?[j] ?? 1)
                            dxr[j] = rs * (dxh - a - (x[j] - mu) * rs * b)
                        }
                    }
                }
                dx = d
            }
            var grads: [Tensor?] = [dx]
            if weight != nil || bias != nil {
                var dw = [Double](repeating: 0, count: n), db = [Double](repeating: 0, count: n)
                for r in 0..<rows {
                    let x = px + r * n, gy = pg + r * n
                    let mu = pm[r], rs = pr[r]
                    for j in 0..<n {
                        dw[j] += Double(gy[j] * (x[j] - mu) * rs)
                        db[j] += Double(gy[j])
                    }
                }
                if let weight { grads.append(needs[1] ? Tensor(dw.map { Float($0) }, shape: weight.shape) : nil) }
                if let bias { grads.append(needs[grads.count] ? Tensor(db.map { Float($0) }, shape: bias.shape) : nil) }
            }
            return grads
        }
    }

    /// x / max(||x||_2, eps) over the last axis (PyTorch F.normalize).
    public func l2Normalized(eps: Float = 1e-12) -> Tensor {
        let (rows, n) = rowsAndWidth
        let out = Tensor(uninitialized: shape)
        let norms = Tensor(uninitialized: [rows])
        let px = pointer, po = out.pointer, pn = norms.pointer
        parallelFor(rows, grain: Swift.max(1, 8192 / Swift.max(n, 1))) { lo, hi in
            for r in lo..<hi {
                let x = px + r * n, y = po + r * n
                var s: Float = 0
                for j in 0..<n { s += x[j] * x[j] }
                let norm = Swift.max(Foundation.sqrt(s), eps)
                pn[r] = norm
                for j in 0..<n { y[j] = x[j] / norm }
            }
        }
        let saved = out.detached()
        return out.record("l2_normalize", [self]) { g, _ in
            let dx = Tensor(uninitialized: saved.shape)
            let pg = g.pointer, py = saved.pointer, pd = dx.pointer, pn = norms.pointer
            for r in 0..<rows {
                let y = py + r * n, gy = pg + r * n, d = pd + r * n
                let norm = pn[r]
                if norm > eps {
                    var dot: Float = 0
                    for j in 0..<n { dot += y[j] * gy[j] }
                    for j in 0..<n { d[j] = (gy[j] - y[j] * dot) / norm }
                } else {
                    for j in 0..<n { d[j] = gy[j] / eps }
                }
            }
            return [dx]
        }
    }
}

/// Rows of `table` (V, D) picked by `indices`: (indices.count, D). Backward scatter-adds.
public func embedding(_ table: Tensor, _ indices: [Int]) -> Tensor {
    let v = table.dim(0), d = table.dim(1)
    for i in indices { precondition(i >= 0 && i < v, "embedding: index \(i) outside table of \(v) rows") }
    let out = Tensor(uninitialized: [indices.count, d])
    for (r, i) in indices.enumerated() { (out.pointer + r * d).update(from: table.pointer + i * d, count: d) }
    return out.record("embedding", [table]) { g, _ in
        let dt = Tensor(zeros: table.shape)
        for (r, i) in indices.enumerated() {
            let dst = dt.pointer + i * d, src = g.pointer + r * d
            for j in 0..<d { dst[j] += src[j] }
        }
        return [dt]
    }
}

/// adaLN modulation: x * (1 + scale) + shift with x (N, T, D) and shift, scale (N, D).
/// Saves nothing beyond its inputs; backward: dx = dy (1 + scale), dshift = sum_T dy,
/// dscale = sum_T dy x.
public func modulate(_ x: Tensor, shift: Tensor, scale: Tensor) -> Tensor {
    let n = x.dim(0), t = x.dim(1), d = x.dim(2)
    precondition(shift.count == n * d && scale.count == n * d,
                 "modulate: shift \(shift.shape) / scale \(scale.shape) for x \(x.shape)")
    let out = Tensor(uninitialized: x.shape)
    let px = x.pointer, po = out.pointer, ps = shift.pointer, pc = scale.pointer
    perBatchRows(n: n, t: t, d: d) { b, lo, hi in
        ck_modulate(px + (b * t + lo) * d, ps + b * d, pc + b * d, po + (b * t + lo) * d, hi - lo, d)
    }
    return out.record("modulate", [x, shift, scale]) { g, needs in
        let pg = g.pointer
        let dx = needs[0] ? scaledPerBatch(pg, by: pc, plus: 1, shape: x.shape) : nil
        let dshift = needs[1] ? sumOverTokens(pg, nil, n: n, t: t, d: d) : nil
        let dscale = needs[2] ? sumOverTokens(pg, px, n: n, t: t, d: d) : nil
        return [dx, dshift, dscale]
    }
}

/// Gated residual of adaLN-Zero: x + gate * a with x, a (N, T, D) and gate (N, D), in one pass.
/// Backward: dx = dy, da = dy gate, dgate = sum_T dy a.
public func gatedResidual(_ x: Tensor, gate: Tensor, _ a: Tensor) -> Tensor {
    let n = x.dim(0), t = x.dim(1), d = x.dim(2)
    precondition(x.shape == a.shape && gate.count == n * d,
                 "gatedResidual: x \(x.shape), a \(a.shape), gate \(gate.shape)")
    let out = Tensor(uninitialized: x.shape)
    let px = x.pointer, pa = a.pointer, pgate = gate.pointer, po = out.pointer
    perBatchRows(n: n, t: t, d: d) { b, lo, hi in
        let off = (b * t + lo) * d
        ck_gated_residual(px + off, pgate + b * d, pa + off, po + off, hi - lo, d)
    }
    return out.record("gated_residual", [x, gate, a]) { g, needs in
        let pg = g.pointer
        let da = needs[2] ? scaledPerBatch(pg, by: pgate, plus: 0, shape: a.shape) : nil
        let dgate = needs[1] ? sumOverTokens(pg, pa, n: n, t: t, d: d).reshaped(gate.shape) : nil
        return [needs[0] ? g : nil, dgate, da]
    }
}

/// Runs body(batch, rowLo, rowHi) over the T rows of each of N batch entries, in parallel chunks.
@inline(__always)
private func perBatchRows(n: Int, t: Int, d: Int, _ body: (Int, Int, Int) -> Void) {
    let grain = Swift.max(1, 8192 / Swift.max(d, 1))
    parallelFor(n * t, grain: grain) { lo, hi in
        var r = lo
        while r < hi {
            let b = r / t, end = Swift.min(hi, (b + 1) * t)
            body(b, r - b * t, end - b * t)
            r = end
        }
    }
}

/// g (N, T, D) times (add + s[n]) with s (N, D) broadcast over the T rows: a new tensor.
private func scaledPerBatch(_ g: UnsafePointer<Float>, by s: UnsafePointer<Float>, plus add: Float, shape: [Int]) -> Tensor {
    let (n, t, d) = (shape[0], shape[1], shape[2])
    let out = Tensor(uninitialized: shape)
    let po = out.pointer
    perBatchRows(n: n, t: t, d: d) { b, lo, hi in
        ck_scale_rows(g + (b * t + lo) * d, s + b * d, add, po + (b * t + lo) * d, hi - lo, d)
    }
    return out
}

/// (N, D) sums over the T rows of each batch entry of g (N, T, D), or of g * x when x is given.
private func sumOverTokens(_ g: UnsafePointer<Float>, _ x: UnsafePointer<Float>?, n: Int, t: Int, d: Int) -> Tensor {
    let out = Tensor(zeros: [n, d])
    let po = out.pointer
    parallelFor(n * d, grain: Swift.max(16, 65536 / Swift.max(t, 1))) { lo, hi in
        var c = lo
        while c < hi {
            let b = c / d, j0 = c - b * d, j1 = Swift.min(d, j0 + (hi - c))
            let off = b * t * d + j0
            if let x { ck_add_rows_product(g + off, x + off, t, j1 - j0, d, po + b * d + j0) }
            else { ck_add_rows(g + off, t, j1 - j0, d, po + b * d + j0) }
            c += j1 - j0
        }
    }
    return out
}

/// Numerically stable softmax of one row (shared by the softmax op and attention).
@inline(__always)
func softmaxRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    ck_softmax_row(x, y, n)
}
