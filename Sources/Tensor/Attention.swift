// Fused scaled-dot-product attention: softmax(Q K^T / sqrt(d)) V per (batch, head).
//
// Two kernels serve two layouts through strided per-head views (sgemm leading dimensions):
// (N, H, T, Dh) tensors, and the packed qkv projection (N, T, 3 * H * Dh) that the Attention
// layer produces, so the heads are never permuted into place.
//
// - Whole-matrix kernel: S = Q K^T (T x T) per head, softmax rows, O = P V; the forward saves
//   P (N, H, T, T) while the tape records, and the backward reads it.
// - Blocked kernel (FlashAttention-2's loop on a CPU): tiles of `queryTile` queries against
//   tiles of `keyTile` keys with an online softmax (running row maximum m and sum l; the
//   output rows are rescaled by exp(m_old - m_new) whenever the maximum grows), so no T x T
//   matrix exists; the forward saves only each row's log-sum-exp L = m + log l (N, H, T). The
//   backward recomputes every tile's P = exp(S - L) and uses D = rowsum(dO * O):
//   dV += P^T dO, dP = dO V^T, dS = P * (dP - D), dQ += scale dS K, dK += scale dS^T Q.
//   It runs where it is faster (`gen bench attention`): every forward without the tape, and
//   training from `BlockedAttention.trainingMinTokens` tokens.

import CKernels
import Foundation

/// The choice between the two attention kernels.
public enum BlockedAttention {
    public enum Mode: String, Sendable, CaseIterable {
        /// Blocked from `inferenceMinTokens` tokens without the tape and from
        /// `trainingMinTokens` with it, whole-matrix below.
        case auto
        case always, never
    }

    nonisolated(unsafe) public static var mode: Mode = .auto
    /// Queries and keys per tile.
    nonisolated(unsafe) public static var queryTile = 64
    nonisolated(unsafe) public static var keyTile = 128
    /// The switch-overs of `auto`, from `gen bench attention` (16 heads of 72, 2 threads, AMD
    /// EPYC Zen, interleaved; bench/results/attention-amd-epyc.md and two more runs). Forward
    /// alone, blocked over whole-matrix: 1.07x at 8 tokens, 1.2-1.4x at 16-64, 1.1x at 128,
    /// 2.3-2.6x at 256, 1.3-1.5x at 1024, 1.2x at 4096 (its tasks are (head, query tile) pairs and
    /// it writes no T x T matrix), so every inference forward runs blocked. Forward + backward:
    /// 0.93x at 32 tokens, 0.98-0.99x at 64, 1.17x at 128, 1.9-2x at 256, 0.96-1.14x at 1024 (the
    /// recomputed scores cost about what the saved probabilities save), so training runs blocked
    /// from 128 tokens, where it also stops holding H T^2 probabilities per image.
    nonisolated(unsafe) public static var inferenceMinTokens = 1
    nonisolated(unsafe) public static var trainingMinTokens = 128

    static func use(tokens t: Int, training: Bool) -> Bool {
        switch mode {
        case .always: return true
        case .never: return false
        case .auto: return t >= (training ? trainingMinTokens : inferenceMinTokens)
        }
    }
}

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

/// Blocked forward of every head: O, and each query row's log-sum-exp into `lse` (N * H rows
/// of T) when given. Tasks are (head, query tile) pairs, each with serial BLAS.
private func blockedAttentionCore(batch: Int, heads: Int, t: Int, dh: Int,
                                  ldq: Int, ldk: Int, ldv: Int, ldo: Int,
                                  views: (Int, Int) -> HeadViews, lse: UnsafeMutablePointer<Float>?) {
    let scale = 1 / Float(dh).squareRoot()
    let bq = Swift.min(BlockedAttention.queryTile, t), bk = Swift.min(BlockedAttention.keyTile, t)
    let queryTiles = (t + bq - 1) / bq
    let tasks = batch * heads * queryTiles
    func run(_ lo: Int, _ hi: Int) {
        let s = UnsafeMutablePointer<Float>.allocate(capacity: bq * bk)
        let stats = UnsafeMutablePointer<Float>.allocate(capacity: 3 * bq)
        defer { s.deallocate(); stats.deallocate() }
        let m = stats, l = stats + bq, corr = stats + 2 * bq
        for task in lo..<hi {
            let pair = task / queryTiles, q0 = (task % queryTiles) * bq
            let rq = Swift.min(bq, t - q0)
            let hv = views(pair / heads, pair % heads)
            let qi = hv.q + q0 * ldq, oi = hv.o + q0 * ldo
            m.update(repeating: -.infinity, count: rq)
            l.update(repeating: 0, count: rq)
            for k0 in stride(from: 0, to: t, by: bk) {
                let rk = Swift.min(bk, t - k0)
                // S = scale Q_i K_j^T : (rq, rk)
                sgemm(transA: false, transB: true, m: rq, n: rk, k: dh, alpha: scale,
                      a: qi, lda: ldq, b: hv.k + k0 * ldk, ldb: ldk, c: s, ldc: bk)
                ck_flash_softmax_tile(s, rq, rk, bk, m, l, corr)
                if k0 > 0 { ck_scale_rows_strided(oi, rq, dh, ldo, corr) }
                // O_i = corr O_i + exp(S - m) V_j : (rq, Dh)
                sgemm(transA: false, transB: false, m: rq, n: dh, k: rk,
                      a: s, lda: bk, b: hv.v + k0 * ldv, ldb: ldv, beta: k0 == 0 ? 0 : 1, c: oi, ldc: ldo)
            }
            for r in 0..<rq { corr[r] = 1 / l[r] }
            ck_scale_rows_strided(oi, rq, dh, ldo, corr)
            if let lse {
                let li = lse + pair * t + q0
                for r in 0..<rq { li[r] = m[r] + Foundation.log(l[r]) }
            }
        }
    }
    if tasks >= 2 && Threads.count > 1 {
        Threads.withSerialBLAS { parallelFor(tasks, grain: 1, run) }
    } else {
        run(0, tasks)
    }
}

/// Blocked backward of every head from Q, K, V, the forward's O and log-sum-exp and dO:
/// writes dQ, dK, dV (overwritten, not accumulated). One head per task (dK and dV gather over
/// all query tiles of the head).
private func blockedAttentionBackward(batch: Int, heads: Int, t: Int, dh: Int,
                                      ldq: Int, ldk: Int, ldv: Int, ldo: Int,
                                      fwd: (Int, Int) -> HeadViews, grad: (Int, Int) -> HeadViews,
                                      lse: UnsafePointer<Float>) {
    let scale = 1 / Float(dh).squareRoot()
    let bq = Swift.min(BlockedAttention.queryTile, t), bk = Swift.min(BlockedAttention.keyTile, t)
    forEachHead(batch * heads) { lo, hi in
        let p = UnsafeMutablePointer<Float>.allocate(capacity: bq * bk)
        let dp = UnsafeMutablePointer<Float>.allocate(capacity: bq * bk)
        let d = UnsafeMutablePointer<Float>.allocate(capacity: t)
        defer { p.deallocate(); dp.deallocate(); d.deallocate() }
        for pair in lo..<hi {
            let f = fwd(pair / heads, pair % heads), g = grad(pair / heads, pair % heads)
            let li = lse + pair * t
            // D = rowsum(dO * O) : (T)
            ck_rows_dot(g.o, ldo, f.o, ldo, t, dh, d)
            for r in 0..<t {
                (g.q + r * ldq).update(repeating: 0, count: dh)
                (g.k + r * ldk).update(repeating: 0, count: dh)
                (g.v + r * ldv).update(repeating: 0, count: dh)
            }
            for q0 in stride(from: 0, to: t, by: bq) {
                let rq = Swift.min(bq, t - q0)
                let qi = f.q + q0 * ldq, doi = g.o + q0 * ldo, dqi = g.q + q0 * ldq
                for k0 in stride(from: 0, to: t, by: bk) {
                    let rk = Swift.min(bk, t - k0)
                    let kj = f.k + k0 * ldk, vj = f.v + k0 * ldv
                    // P = exp(scale Q_i K_j^T - L_i) : (rq, rk)
                    sgemm(transA: false, transB: true, m: rq, n: rk, k: dh, alpha: scale, a: qi, lda: ldq, b: kj, ldb: ldk, c: p, ldc: bk)
                    ck_flash_probs_tile(p, rq, rk, bk, li + q0)
                    // dV_j += P^T dO_i : (rk, Dh)
                    sgemm(transA: true, transB: false, m: rk, n: dh, k: rq, a: p, lda: bk, b: doi, ldb: ldo,
                          beta: 1, c: g.v + k0 * ldv, ldc: ldv)
                    // dP = dO_i V_j^T ; dS = P * (dP - D_i) : (rq, rk)
                    sgemm(transA: false, transB: true, m: rq, n: rk, k: dh, a: doi, lda: ldo, b: vj, ldb: ldv, c: dp, ldc: bk)
                    ck_flash_dscores_tile(p, dp, rq, rk, bk, d + q0)
                    // dQ_i += scale dS K_j ; dK_j += scale dS^T Q_i
                    sgemm(transA: false, transB: false, m: rq, n: dh, k: rk, alpha: scale, a: dp, lda: bk, b: kj, ldb: ldk,
                          beta: 1, c: dqi, ldc: ldq)
                    sgemm(transA: true, transB: false, m: rk, n: dh, k: rq, alpha: scale, a: dp, lda: bk, b: qi, ldb: ldq,
                          beta: 1, c: g.k + k0 * ldk, ldc: ldk)
                }
            }
        }
    }
}

/// The forward of either kernel, and the backward closure for the tape when recording.
private func attentionForward(batch: Int, heads: Int, t: Int, dh: Int, ldq: Int, ldk: Int, ldv: Int, ldo: Int,
                              views: (Int, Int) -> HeadViews, recording: Bool)
    -> ((_ fwd: (Int, Int) -> HeadViews, _ grad: (Int, Int) -> HeadViews) -> Void)? {
    if BlockedAttention.use(tokens: t, training: recording) {
        let lse = recording ? Tensor(uninitialized: [batch, heads, t]) : nil
        blockedAttentionCore(batch: batch, heads: heads, t: t, dh: dh, ldq: ldq, ldk: ldk, ldv: ldv, ldo: ldo,
                             views: views, lse: lse?.pointer)
        guard let lse else { return nil }
        return { fwd, grad in
            blockedAttentionBackward(batch: batch, heads: heads, t: t, dh: dh, ldq: ldq, ldk: ldk, ldv: ldv, ldo: ldo,
                                     fwd: fwd, grad: grad, lse: lse.pointer)
        }
    }
    let probs = recording ? Tensor(uninitialized: [batch, heads, t, t]) : nil
    attentionCore(batch: batch, heads: heads, t: t, dh: dh, ldq: ldq, ldk: ldk, ldv: ldv, ldo: ldo,
                  views: views, saveP: probs?.pointer)
    guard let probs else { return nil }
    return { fwd, grad in
        attentionCoreBackward(batch: batch, heads: heads, t: t, dh: dh, ldq: ldq, ldk: ldk, ldv: ldv, ldo: ldo,
                              fwd: fwd, grad: grad, probs: probs.pointer)
    }
}

/// softmax(q k^T / sqrt(Dh)) v for q, k, v of shape (N, H, T, Dh).
public func scaledDotProductAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor) -> Tensor {
    precondition(q.rank == 4 && q.shape == k.shape && q.shape == v.shape,
                 "attention: q \(q.shape), k \(k.shape), v \(v.shape) must be equal (N, H, T, Dh)")
    let (n, h, t, dh) = (q.dim(0), q.dim(1), q.dim(2), q.dim(3))
    let out = Tensor(uninitialized: q.shape)
    let recording = Autograd.isRecording && (q.requiresGrad || k.requiresGrad || v.requiresGrad)
    func views(_ qq: Tensor, _ kk: Tensor, _ vv: Tensor, _ oo: Tensor) -> (Int, Int) -> HeadViews {
        { b, hh in
            let off = (b * h + hh) * t * dh
            return HeadViews(q: qq.pointer + off, k: kk.pointer + off, v: vv.pointer + off, o: oo.pointer + off)
        }
    }
    guard let backward = attentionForward(batch: n, heads: h, t: t, dh: dh, ldq: dh, ldk: dh, ldv: dh, ldo: dh,
                                          views: views(q, k, v, out), recording: recording) else { return out }
    let saved = out.detached()
    return out.record("attention", [q, k, v]) { g, _ in
        let dq = Tensor(uninitialized: q.shape), dk = Tensor(uninitialized: k.shape), dv = Tensor(uninitialized: v.shape)
        backward(views(q, k, v, saved), views(dq, dk, dv, g))
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
    func views(_ packed: Tensor, _ o: Tensor) -> (Int, Int) -> HeadViews {
        { b, hh in
            let base = packed.pointer + b * t * 3 * d + hh * dh
            return HeadViews(q: base, k: base + d, v: base + 2 * d, o: o.pointer + b * t * d + hh * dh)
        }
    }
    guard let backward = attentionForward(batch: n, heads: heads, t: t, dh: dh, ldq: 3 * d, ldk: 3 * d, ldv: 3 * d, ldo: d,
                                          views: views(qkv, out), recording: recording) else { return out }
    let saved = out.detached()
    return out.record("packed_attention", [qkv]) { g, _ in
        let dqkv = Tensor(uninitialized: qkv.shape)
        backward(views(qkv, saved), views(dqkv, g))
        return [dqkv]
    }
}
