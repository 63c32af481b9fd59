// Matrix products through cblas_sgemm: plain, transposed, batched, and the fused Linear.

import CBLAS
import CKernels
import Foundation

/// C[M,N] = alpha * op(A) op(B) + beta * C on raw row-major buffers with leading dimensions.
@inline(__always)
public func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        if beta == 0 { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
        return
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Batched matrix product over the last two axes: op(a) op(b).
///
/// a: (..., M, K) or (..., K, M) when `transposeA`; b: (..., K, N) or (..., N, K) when
/// `transposeB`, with the same leading axes as a, or 2-D (shared by every batch).
public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
    precondition(a.rank >= 2 && b.rank >= 2, "matmul needs matrices, got \(a.shape) and \(b.shape)")
    let m = transposeA ? a.dim(-1) : a.dim(-2)
    let k = transposeA ? a.dim(-2) : a.dim(-1)
    let kb = transposeB ? b.dim(-1) : b.dim(-2)
    let n = transposeB ? b.dim(-2) : b.dim(-1)
    precondition(k == kb, "matmul: inner dimensions differ: \(a.shape)\(transposeA ? "^T" : "") x \(b.shape)\(transposeB ? "^T" : "")")
    let batchA = Array(a.shape.dropLast(2))
    let sharedB = b.rank == 2 && a.rank > 2
    precondition(sharedB || Array(b.shape.dropLast(2)) == batchA,
                 "matmul: batch axes differ: \(a.shape) x \(b.shape)")
    precondition(!(sharedB && transposeA && a.rank > 2), "matmul: a transposed batched left operand needs a batched right operand")
    let batch = batchA.reduce(1, *)
    let out = Tensor(uninitialized: batchA + [m, n])
    let lda = a.dim(-1), ldb = b.dim(-1)
    if sharedB && !transposeA {
        // Fold the batch into the rows: one large product.
        sgemm(transA: false, transB: transposeB, m: batch * m, n: n, k: k,
              a: a.pointer, lda: lda, b: b.pointer, ldb: ldb, c: out.pointer, ldc: n)
    } else {
        let strideA = m * k, strideB = sharedB ? 0 : k * n
        for i in 0..<batch {
            sgemm(transA: transposeA, transB: transposeB, m: m, n: n, k: k,
                  a: a.pointer + i * strideA, lda: lda, b: b.pointer + i * strideB, ldb: ldb,
                  c: out.pointer + i * m * n, ldc: n)
        }
    }
    return out.record("matmul", [a, b]) { g, needs in
        var da: Tensor? = nil, db: Tensor? = nil
        if needs[0] {
            switch (transposeA, transposeB) {
            case (false, false): da = matmul(g, b, transposeB: true)
            case (false, true): da = matmul(g, b)
            case (true, false): da = matmul(b, g, transposeB: true)
            case (true, true): da = matmul(b, g, transposeA: true, transposeB: true)
            }
        }
        if needs[1] {
            if sharedB {
                // Sum over the batch: fold the batch into the contraction axis.
                let a2 = a.reshaped([batch * m, k])
                let g2 = g.reshaped([batch * m, n])
                db = transposeB ? matmul(g2, a2, transposeA: true) : matmul(a2, g2, transposeA: true)
            } else {
                switch (transposeA, transposeB) {
                case (false, false): db = matmul(a, g, transposeA: true)
                case (false, true): db = matmul(g, a, transposeA: true)
                case (true, false): db = matmul(a, g)
                case (true, true): db = matmul(g, a, transposeA: true, transposeB: true)
                }
            }
        }
        return [da, db]
    }
}

/// Up to this many rows, `linear` streams the weight once through a dot-product kernel instead
/// of calling sgemm (which packs the whole weight first): the adaLN and timestep products of
/// sampling at batch 1-8.
let fewRowsLimit = 8

/// y = x W^T + b with W in PyTorch's [out, in] layout; x: (..., in) -> (..., out).
/// The bias is written into the output first and the product accumulated onto it.
public func linear(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?) -> Tensor {
    let inF = weight.dim(1), outF = weight.dim(0)
    precondition(x.dim(-1) == inF, "linear: input \(x.shape) does not end in \(inF) (weight \(weight.shape))")
    let rows = x.count / inF
    let out = Tensor(uninitialized: Array(x.shape.dropLast()) + [outF])
    if let bias { precondition(bias.count == outF, "linear: bias \(bias.shape) for \(outF) outputs") }
    if rows <= fewRowsLimit && inF * outF >= 1 << 16 {
        // Memory-bound: stream each weight row once for all rows (no packing of the weight).
        let px = x.pointer, pw = weight.pointer, pb = bias?.pointer, po = out.pointer
        parallelFor(outF, grain: 256) { lo, hi in
            ck_linear_few_rows(px, rows, pw, pb, po, inF, outF, lo, hi)
        }
    } else {
        if let bias {
            let po = out.pointer, pb = bias.pointer
            for r in 0..<rows { (po + r * outF).update(from: pb, count: outF) }
        }
        sgemm(transA: false, transB: true, m: rows, n: outF, k: inF, a: x.pointer, lda: inF,
              b: weight.pointer, ldb: inF, beta: bias == nil ? 0 : 1, c: out.pointer, ldc: outF)
    }
    let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
    return out.record("linear", inputs) { g, needs in
        let g2 = g.reshaped([rows, outF])
        var grads: [Tensor?] = [nil, nil]
        if needs[0] {
            // dX = dY W : (rows, out) x (out, in)
            let dx = Tensor(uninitialized: x.shape)
            sgemm(transA: false, transB: false, m: rows, n: inF, k: outF, a: g2.pointer, lda: outF,
                  b: weight.pointer, ldb: inF, c: dx.pointer, ldc: inF)
            grads[0] = dx
        }
        if needs[1] {
            // dW = dY^T X : (out, rows) x (rows, in)
            let dw = Tensor(uninitialized: weight.shape)
            sgemm(transA: true, transB: false, m: outF, n: inF, k: rows, a: g2.pointer, lda: outF,
                  b: x.pointer, ldb: inF, c: dw.pointer, ldc: inF)
            grads[1] = dw
        }
        if inputs.count == 3 {
            grads.append(needs[2] ? columnSums(g2.pointer, rows: rows, width: outF).reshaped(bias!.shape) : nil)
        }
        return grads
    }
}

/// Sums of the columns of a row-major (rows, width) buffer: (width,), in parallel over column
/// ranges (float accumulation, as PyTorch's bias gradients).
func columnSums(_ p: UnsafePointer<Float>, rows: Int, width: Int) -> Tensor {
    let out = Tensor(zeros: [width])
    let po = out.pointer
    parallelFor(width, grain: Swift.max(16, 65536 / Swift.max(rows, 1))) { lo, hi in
        ck_add_rows(p + lo, rows, hi - lo, width, po + lo)
    }
    return out
}
