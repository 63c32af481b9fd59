// Fused scaled-dot-product attention: softmax(Q K^T / sqrt(d)) V per (batch, head).
//
// One kernel serves two layouts through strided per-head views (sgemm leading dimensions):
// (N, H, T, Dh) tensors, and the packed qkv projection (N, T, 3 * H * Dh) that the Attention
// layer produces, so the heads are never permuted into place. The forward saves the
// attention probabilities P (N, H, T, T) only while the tape records.

import Foundation

/// Pointers and leading dimensions of one (batch, head) slice.
struct HeadViews {
    var q, k, v, o: UnsafeMutablePointer<Float>
}

private func attentionCore(batch: Int, heads: Int, t: Int, dh: Int,
                           ldq: Int, ldk: Int, ldv: Int, ldo: Int,
                           views: (Int, Int) -> HeadViews, saveP: UnsafeMutablePointer<Float>?) {
    let scale = 1 / Float(dh).squareRoot()
    // One (batch, head) pair per task: each thread runs whole heads with single-threaded BLAS.
    forEachHead(batch * heads) { lo, hi in
        let scratch = saveP == nil ? Tensor(uninitialized: [t, t]) : nil
        for pair in lo..<hi {
            let hv = views(pair / heads, pair % heads)
            let p = saveP.map { $0 + pair * t * t } ?? scratch!.pointer
            sgemm(transA: false, transB: true, m: t, n: t, k: dh, alpha: scale,
                  a: hv.q, lda: ldq, b: hv.k, ldb: ldk, c: p, ldc: t)
            for r in 0..<t { softmaxRow(p + r * t, p + r * t, t) }
            sgemm(transA: false, transB: false, m: t, n: dh, k: t,
                  a: p, lda: t, b: hv.v, ldb: ldv, c: hv.o, ldc: ldo)
        }
    }
}

/// Runs body over chunks of `pairs` (batch, head) tasks: in parallel with serial BLAS when
/// there are at least two, else one task with BLAS's own threads.
private func forEachHead(_ pairs: Int, _ body: (Int, Int) -> Void) {
    if pairs >= 2 && Threads.count > 1 {
        Threads.withSerialBLAS { parallelFor(pairs, grain: 1, body) }
    } else {
        body(0, pairs)
    }
}

/// Backward of one head: given P and dO, writes dQ, dK, dV (views with the same strides).
private func attentionCoreBackward(batch: Int, heads: Int, t: Int, dh: Int,
                                   ldq: Int, ldk: Int, ldv: Int, ldo: Int,
                                   fwd: (Int, Int) -> HeadViews, grad: (Int, Int) -> HeadViews,
                                   probs: UnsafeMutablePointer<Float>) {
    let scale = 1 / Float(dh).squareRoot()
    forEachHead(batch * heads) { lo, hi in
        let dp = Tensor(uninitialized: [t, t])
        for pair in lo..<hi {
            let f = fwd(pair / heads, pair % heads), g = grad(pair / heads, pair % heads)
            let p = probs + pair * t * t
            // dV = P^T dO
            sgemm(transA: true, transB: false, m: t, n: dh, k: t, a: p, lda: t, b: g.o, ldb: ldo, c: g.v, ldc: ldv)
            // dP = dO V^T
            sgemm(transA: false, transB: true, m: t, n: t, k: dh, a: g.o, lda: ldo, b: f.v, ldb: ldv, c: dp.pointer, ldc: t)
            // dS = P * (dP - rowsum(dP * P))
            let pdp = dp.pointer
            for r in 0..<t {
                let pr = p + r * t, dr = pdp + r * t
                var dot: Float = 0
                for j in 0..<t { dot += pr[j] * dr[j] }
                for j in 0..<t { dr[j] = pr[j] * (dr[j] - dot) }
            }
            // dQ = scale dS K ; dK = scale dS^T Q
            sgemm(transA: false, transB: false, m: t, n: dh, k: t, alpha: scale, a: pdp, lda: t, b: f.k, ldb: ldk, c: g.q, ldc: ldq)
            sgemm(transA: true, transB: false, m: t, n: dh, k: t, alpha: scale, a: pdp, lda: t, b: f.q, ldb: ldq, c: g.k, ldc: ldk)
        }
    }
}

/// softmax(q k^T / sqrt(Dh)) v for q, k, v of shape (N, H, T, Dh).
public func scaledDotProductAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor) -> Tensor {
    precondition(q.rank == 4 && q.shape == k.shape && q.shape == v.shape,
                 "attention: q \(q.shape), k \(k.shape), v \(v.shape) must be equal (N, H, T, Dh)")
    let (n, h, t, dh) = (q.dim(0), q.dim(1), q.dim(2), q.dim(3))
    let out = Tensor(uninitialized: q.shape)
    let recording = Autograd.isRecording && (q.requiresGrad || k.requiresGrad || v.requiresGrad)
    let probs = recording ? Tensor(uninitialized: [n, h, t, t]) : nil
    func views(_ qq: Tensor, _ kk: Tensor, _ vv: Tensor, _ oo: Tensor) -> (Int, Int) -> HeadViews {
        { b, hh in
            let off = (b * h + hh) * t * dh
            return HeadViews(q: qq.pointer + off, k: kk.pointer + off, v: vv.pointer + off, o: oo.pointer + off)
        }
    }
    attentionCore(batch: n, heads: h, t: t, dh: dh, ldq: dh, ldk: dh, ldv: dh, ldo: dh,
                  views: views(q, k, v, out), saveP: probs?.pointer)
    guard let probs else { return out }
    let saved = out.detached()
    return out.record("attention", [q, k, v]) { g, _ in
        let dq = Tensor(uninitialized: q.shape), dk = Tensor(uninitialized: k.shape), dv = Tensor(uninitialized: v.shape)
        attentionCoreBackward(batch: n, heads: h, t: t, dh: dh, ldq: dh, ldk: dh, ldv: dh, ldo: dh,
                              fwd: views(q, k, v, saved), grad: views(dq, dk, dv, g), probs: probs.pointer)
        return [dq, dk, dv]
    }
}

/// Multi-head attention straight from a packed projection qkv (N, T, 3 * H * Dh), laid out as
/// PyTorch's `qkv.reshape(N, T, 3, H, Dh)`; returns the heads merged back: (N, T, H * Dh).
public func packedAttention(_ qkv: Tensor, heads: Int) -> Tensor {
    precondition(qkv.rank == 3 && qkv.dim(2) % (3 * heads) == 0,
                 "attention: qkv \(qkv.shape) is not (N, T, 3 * heads * head_dim) for \(heads) heads")
    let (n, t) = (qkv.dim(0), qkv.dim(1))
    let d = qkv.dim(2) / 3, dh = d / heads
    let out = Tensor(uninitialized: [n, t, d])
    let recording = Autograd.isRecording && qkv.requiresGrad
    let probs = recording ? Tensor(uninitialized: [n, heads, t, t]) : nil
    func views(_ packed: Tensor, _ o: Tensor) -> (Int, Int) -> HeadViews {
        { b, hh in
            let base = packed.pointer + b * t * 3 * d + hh * dh
            return HeadViews(q: base, k: base + d, v: base + 2 * d, o: o.pointer + b * t * d + hh * dh)
        }
    }
    attentionCore(batch: n, heads: heads, t: t, dh: dh, ldq: 3 * d, ldk: 3 * d, ldv: 3 * d, ldo: d,
                  views: views(qkv, out), saveP: probs?.pointer)
    guard let probs else { return out }
    let saved = out.detached()
    return out.record("packed_attention", [qkv]) { g, _ in
        let dqkv = Tensor(uninitialized: qkv.shape)
        attentionCoreBackward(batch: n, heads: heads, t: t, dh: dh, ldq: 3 * d, ldk: 3 * d, ldv: 3 * d, ldo: d,
                              fwd: views(qkv, saved), grad: views(dqkv, g), probs: probs.pointer)
        return [dqkv]
    }
}
