// Naive reference kernels: straightforward loops in Double, kept beside the fast kernels as the
// oracle of the tests. Never used by the models.

import Foundation

public enum Naive {
    /// C = A B for row-major A (m, k), B (k, n).
    public static func matmul(_ a: [Float], _ b: [Float], m: Int, k: Int, n: Int) -> [Float] {
        var c = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k { s += Double(a[i * k + p]) * Double(b[p * n + j]) }
                c[i * n + j] = Float(s)
            }
        }
        return c
    }

    public static func layerNorm(_ x: [Float], width n: Int, weight: [Float]?, bias: [Float]?, eps: Float) -> [Float] {
        var y = x
        for r in 0..<(x.count / n) {
            let row = (0..<n).map { Double(x[r * n + $0]) }
            let mu = row.reduce(0, +) / Double(n)
            let v = row.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(n)
            for j in 0..<n {
                var o = (row[j] - mu) / (v + Double(eps)).squareRoot()
                if let weight { o *= Double(weight[j]) }
                if let bias { o += Double(bias[j]) }
                y[r * n + j] = Float(o)
            }
        }
        return y
    }

    public static func softmax(_ x: [Float], width n: Int) -> [Float] {
        var y = x
        for r in 0..<(x.count / n) {
            let row = (0..<n).map { Double(x[r * n + $0]) }
            let m = row.max()!
            let e = row.map { Foundation.exp($0 - m) }
            let s = e.reduce(0, +)
            for j in 0..<n { y[r * n + j] = Float(e[j] / s) }
        }
        return y
    }

    public static func geluErf(_ x: [Float]) -> [Float] {
        x.map { v in let d = Double(v); return Float(0.5 * d * (1 + Foundation.erf(d / 2.0.squareRoot()))) }
    }

    public static func geluTanh(_ x: [Float]) -> [Float] {
        x.map { v in
            let d = Double(v)
            return Float(0.5 * d * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (d + 0.044715 * d * d * d))))
        }
    }

    /// x (N, T, D), shift/scale (N, D).
    public static func modulate(_ x: [Float], shift: [Float], scale: [Float], n: Int, t: Int, d: Int) -> [Float] {
        var y = x
        for b in 0..<n { for i in 0..<t { for j in 0..<d {
            let idx = (b * t + i) * d + j
            y[idx] = Float(Double(x[idx]) * (1 + Double(scale[b * d + j])) + Double(shift[b * d + j]))
        } } }
        return y
    }

    /// softmax(q k^T / sqrt(dh)) v for (N, H, T, Dh) arrays.
    public static func attention(_ q: [Float], _ k: [Float], _ v: [Float], n: Int, h: Int, t: Int, dh: Int) -> [Float] {
        var o = [Float](repeating: 0, count: q.count)
        let scale = 1 / Double(dh).squareRoot()
        for bh in 0..<(n * h) {
            let base = bh * t * dh
            for i in 0..<t {
                var s = [Double](repeating: 0, count: t)
                for j in 0..<t {
                    var dot = 0.0
                    for c in 0..<dh { dot += Double(q[base + i * dh + c]) * Double(k[base + j * dh + c]) }
                    s[j] = dot * scale
                }
                let m = s.max()!
                let e = s.map { Foundation.exp($0 - m) }
                let z = e.reduce(0, +)
                for c in 0..<dh {
                    var acc = 0.0
                    for j in 0..<t { acc += e[j] / z * Double(v[base + j * dh + c]) }
                    o[base + i * dh + c] = Float(acc)
                }
            }
        }
        return o
    }
}
