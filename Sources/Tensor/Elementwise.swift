// Elementwise ops: broadcasting binary arithmetic, scalar arithmetic and unary functions, each
// with its backward beside it.

import CKernels
import Foundation

// MARK: - Broadcasting

/// The broadcast shape of two shapes (NumPy rules), or nil if they are incompatible.
public func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
    let n = max(a.count, b.count)
    var out = [Int](repeating: 1, count: n)
    for i in 0..<n {
        let da = i < n - a.count ? 1 : a[i - (n - a.count)]
        let db = i < n - b.count ? 1 : b[i - (n - b.count)]
        if da == db || db == 1 { out[i] = da } else if da == 1 { out[i] = db } else { return nil }
    }
    return out
}

/// Strides to read a tensor of `shape` as if broadcast to `target` (0 along broadcast axes).
func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
    let strides = contiguousStrides(shape)
    let pad = target.count - shape.count
    return (0..<target.count).map { i in
        i < pad ? 0 : (shape[i - pad] == 1 && target[i] != 1 ? 0 : strides[i - pad])
    }
}

/// Applies `f` over the broadcast of `a` and `b` into `out` (shape = broadcast shape).
@inline(__always)
func broadcastApply(_ a: Tensor, _ b: Tensor, _ out: Tensor, _ f: (Float, Float) -> Float) {
    let pa = a.pointer, pb = b.pointer, po = out.pointer
    let n = out.count
    if a.shape == b.shape {
        parallelFor(n, grain: 1 << 15) { lo, hi in for i in lo..<hi { po[i] = f(pa[i], pb[i]) } }
        return
    }
    if b.count == 1 {
        let s = pb[0]
        if a.count == n {
            parallelFor(n, grain: 1 << 15) { lo, hi in for i in lo..<hi { po[i] = f(pa[i], s) } }
            return
        }
    }
    if a.count == 1, b.count == n {
        let s = pa[0]
        parallelFor(n, grain: 1 << 15) { lo, hi in for i in lo..<hi { po[i] = f(s, pb[i]) } }
        return
    }
    // b repeats along leading axes of a (bias-like): b's shape is a suffix of out's.
    if a.count == n, b.count > 0, isSuffix(b.shape, of: out.shape) {
        let inner = b.count
        parallelFor(n / inner, grain: max(1, (1 << 15) / max(inner, 1))) { lo, hi in
            for r in lo..<hi {
                let base = r * inner
                for j in 0..<inner { po[base + j] = f(pa[base + j], pb[j]) }
            }
        }
        return
    }
    // General case: walk the output with a multi-index, inner axis unrolled.
    let shape = out.shape
    let sa = broadcastStrides(a.shape, to: shape), sb = broadcastStrides(b.shape, to: shape)
    let rank = shape.count
    let inner = shape[rank - 1]
    let ia = sa[rank - 1], ib = sb[rank - 1]
    let rows = n / max(inner, 1)
    var index = [Int](repeating: 0, count: rank)
    var oa = 0, ob = 0
    for r in 0..<rows {
        let base = r * inner
        for j in 0..<inner { po[base + j] = f(pa[oa + j * ia], pb[ob + j * ib]) }
        // Advance the multi-index over the leading axes.
        var d = rank - 2
        while d >= 0 {
            index[d] += 1; oa += sa[d]; ob += sb[d]
            if index[d] < shape[d] { break }
            oa -= sa[d] * shape[d]; ob -= sb[d] * shape[d]; index[d] = 0
            d -= 1
        }
    }
}

@inline(__always)
func isSuffix(_ s: [Int], of t: [Int]) -> Bool {
    // Leading 1s in s are ignored (they broadcast).
    var core = s[...]
    while core.first == 1 { core = core.dropFirst() }
    return core.count <= t.count && Array(t.suffix(core.count)) == Array(core)
}

extension Tensor {
    /// Sums a gradient of a broadcast result back to `shape` (the inverse of broadcasting).
    public func sumTo(_ target: [Int]) -> Tensor {
        if shape == target { return self }
        let pad = rank - target.count
        var axes: [Int] = []
        for i in 0..<rank where i < pad || (target[i - pad] == 1 && shape[i] != 1) { axes.append(i) }
        return Autograd.noGrad { sum(axes: axes, keepDims: true).reshaped(target) }
    }
}

// MARK: - Binary arithmetic

func binaryOp(_ name: String, _ a: Tensor, _ b: Tensor, _ f: (Float, Float) -> Float,
              _ back: @escaping (Tensor, Tensor, Tensor, [Bool]) -> [Tensor?]) -> Tensor {
    guard let shape = broadcastShape(a.shape, b.shape) else {
        preconditionFailure("\(name): shapes \(a.shape) and \(b.shape) do not broadcast")
    }
    let out = Tensor(uninitialized: shape)
    broadcastApply(a, b, out, f)
    return out.record(name, [a, b]) { g, needs in back(a, b, g, needs) }
}

public func + (a: Tensor, b: Tensor) -> Tensor {
    binaryOp("add", a, b, +) { a, b, g, needs in
        [needs[0] ? g.sumTo(a.shape) : nil, needs[1] ? g.sumTo(b.shape) : nil]
    }
}

public func - (a: Tensor, b: Tensor) -> Tensor {
    binaryOp("sub", a, b, -) { a, b, g, needs in
        [needs[0] ? g.sumTo(a.shape) : nil, needs[1] ? (-g).sumTo(b.shape) : nil]
    }
}

public func * (a: Tensor, b: Tensor) -> Tensor {
    binaryOp("mul", a, b, *) { a, b, g, needs in
        [needs[0] ? (g * b).sumTo(a.shape) : nil, needs[1] ? (g * a).sumTo(b.shape) : nil]
    }
}

public func / (a: Tensor, b: Tensor) -> Tensor {
    binaryOp("div", a, b, /) { a, b, g, needs in
        [needs[0] ? (g / b).sumTo(a.shape) : nil,
         needs[1] ? (-(g * a) / (b * b)).sumTo(b.shape) : nil]
    }
}

// MARK: - Vectorized unary kernels

/// Runs a C kernel `y = k(x)` over all elements in parallel chunks.
func vectorMapOp(_ name: String, _ x: Tensor, _ kernel: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void,
                 _ back: @escaping (Tensor, Tensor, Tensor) -> Tensor) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    let px = x.pointer, po = out.pointer
    parallelFor(x.count, grain: 1 << 14) { lo, hi in kernel(px + lo, po + lo, hi - lo) }
    let saved = out.detached()
    return out.record(name, [x]) { g, _ in [back(x, saved, g)] }
}

/// dx = kernel(x, g) over all elements in parallel chunks.
func vectorGrad(_ x: Tensor, _ g: Tensor,
                _ kernel: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Tensor {
    let dx = Tensor(uninitialized: x.shape)
    let px = x.pointer, pg = g.pointer, pd = dx.pointer
    parallelFor(x.count, grain: 1 << 14) { lo, hi in kernel(px + lo, pg + lo, pd + lo, hi - lo) }
    return dx
}

// MARK: - Scalar arithmetic

func mapOp(_ name: String, _ x: Tensor, _ f: (Float) -> Float,
           _ back: @escaping (Tensor, Tensor, Tensor) -> Tensor) -> Tensor {
    let out = Tensor(uninitialized: x.shape)
    let px = x.pointer, po = out.pointer
    parallelFor(x.count, grain: 1 << 14) { lo, hi in for i in lo..<hi { po[i] = f(px[i]) } }
    let saved = out.detached()   // the output without its node (no reference cycle)
    return out.record(name, [x]) { g, _ in [back(x, saved, g)] }
}

/// Elementwise `g * d` where d is computed from (x, y) per element; used by unary backwards.
func zipGrad(_ g: Tensor, _ x: Tensor, _ y: Tensor, _ d: (Float, Float) -> Float) -> Tensor {
    let out = Tensor(uninitialized: g.shape)
    let pg = g.pointer, px = x.pointer, py = y.pointer, po = out.pointer
    parallelFor(g.count, grain: 1 << 14) { lo, hi in for i in lo..<hi { po[i] = pg[i] * d(px[i], py[i]) } }
    return out
}

public func + (a: Tensor, s: Float) -> Tensor { mapOp("adds", a, { $0 + s }) { _, _, g in g } }
public func + (s: Float, a: Tensor) -> Tensor { a + s }
public func - (a: Tensor, s: Float) -> Tensor { a + (-s) }
public func - (s: Float, a: Tensor) -> Tensor { mapOp("rsubs", a, { s - $0 }) { _, _, g in -g } }
public func * (a: Tensor, s: Float) -> Tensor { mapOp("muls", a, { $0 * s }) { _, _, g in g * s } }
public func * (s: Float, a: Tensor) -> Tensor { a * s }
public func / (a: Tensor, s: Float) -> Tensor { a * (1 / s) }
public prefix func - (a: Tensor) -> Tensor { mapOp("neg", a, { -$0 }) { _, _, g in -g } }

// MARK: - Unary functions

extension Tensor {
    public func exp() -> Tensor { vectorMapOp("exp", self, { ck_exp($0, $1, $2) }) { _, y, g in g * y } }
    public func log() -> Tensor { mapOp("log", self, { Foundation.log($0) }) { x, _, g in g / x } }
    public func sqrt() -> Tensor {
        mapOp("sqrt", self, { Foundation.sqrt($0) }) { x, y, g in zipGrad(g, x, y) { _, y in 0.5 / y } }
    }
    public func tanh() -> Tensor {
        vectorMapOp("tanh", self, { ck_tanh($0, $1, $2) }) { x, y, g in zipGrad(g, x, y) { _, y in 1 - y * y } }
    }
    public func square() -> Tensor {
        mapOp("square", self, { $0 * $0 }) { x, y, g in zipGrad(g, x, y) { x, _ in 2 * x } }
    }
    public func abs() -> Tensor {
        mapOp("abs", self, { Swift.abs($0) }) { x, y, g in zipGrad(g, x, y) { x, _ in x > 0 ? 1 : (x < 0 ? -1 : 0) } }
    }
    public func sigmoid() -> Tensor {
        vectorMapOp("sigmoid", self, { ck_sigmoid($0, $1, $2) }) { x, y, g in zipGrad(g, x, y) { _, y in y * (1 - y) } }
    }
    public func relu() -> Tensor {
        mapOp("relu", self, { Swift.max($0, 0) }) { x, y, g in zipGrad(g, x, y) { x, _ in x > 0 ? 1 : 0 } }
    }
    /// SiLU (swish): x * sigmoid(x).
    public func silu() -> Tensor {
        vectorMapOp("silu", self, { ck_silu($0, $1, $2) }) { x, _, g in vectorGrad(x, g) { ck_silu_grad($0, $1, $2, $3) } }
    }
    /// GELU, exact (erf) form or tanh approximation (PyTorch `approximate='tanh'`).
    public func gelu(approximate: Bool = false) -> Tensor {
        if approximate {
            return vectorMapOp("gelu_tanh", self, { ck_gelu_tanh($0, $1, $2) }) { x, _, g in
                vectorGrad(x, g) { ck_gelu_tanh_grad($0, $1, $2, $3) }
            }
        }
        return vectorMapOp("gelu", self, { ck_gelu_erf($0, $1, $2) }) { x, _, g in vectorGrad(x, g) { ck_gelu_erf_grad($0, $1, $2, $3) } }
    }
    public func pow(_ p: Float) -> Tensor {
        mapOp("pow", self, { Foundation.pow($0, p) }) { x, y, g in zipGrad(g, x, y) { x, _ in p * Foundation.pow(x, p - 1) } }
    }
    public func clamped(min lo: Float, max hi: Float) -> Tensor {
        mapOp("clamp", self, { Swift.min(Swift.max($0, lo), hi) }) { x, y, g in
            zipGrad(g, x, y) { x, _ in x >= lo && x <= hi ? 1 : 0 }
        }
    }
}
