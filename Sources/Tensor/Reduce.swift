// Reductions over axes: sum, mean, max.

import Foundation

extension Tensor {
    /// (outer, n, inner) view of reducing one axis.
    private func split(_ axis: Int) -> (Int, Int, Int) {
        (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
    }

    private func normalizedAxes(_ axes: [Int]) -> [Int] {
        Array(Set(axes.map { $0 < 0 ? rank + $0 : $0 })).sorted()
    }

    /// Sum over `axes` (all axes when empty), accumulated in Double.
    public func sum(axes: [Int] = [], keepDims: Bool = false) -> Tensor {
        let ax = axes.isEmpty ? Array(0..<rank) : normalizedAxes(axes)
        var kept = shape
        for a in ax { kept[a] = 1 }
        let out = Tensor(zeros: kept)
        // Reduce one axis at a time (largest index first keeps earlier indices valid).
        var current = self.detached()
        for a in ax.reversed() {
            let (outer, n, inner) = current.split(a)
            var s = current.shape; s[a] = 1
            let next = Tensor(uninitialized: s)
            let pi = current.pointer, po = next.pointer
            parallelFor(outer, grain: Swift.max(1, 4096 / Swift.max(n * inner, 1))) { lo, hi in
                var acc = [Double](repeating: 0, count: inner)
                for o in lo..<hi {
                    for j in 0..<inner { acc[j] = 0 }
                    for k in 0..<n {
                        let row = pi + (o * n + k) * inner
                        for j in 0..<inner { acc[j] += Double(row[j]) }
                    }
                    for j in 0..<inner { po[o * inner + j] = Float(acc[j]) }
                }
            }
            current = next
        }
        out.assign(current)
        let result = keepDims ? out : out.reshaped(kept.enumerated().filter { !ax.contains($0.offset) }.map(\.element))
        let inShape = shape
        return result.detached().record("sum", [self]) { g, _ in
            // Broadcast the gradient back over the reduced axes.
            [Autograd.noGrad { Tensor(zeros: inShape) + g.reshaped(kept) }]
        }
    }

    public func mean(axes: [Int] = [], keepDims: Bool = false) -> Tensor {
        let ax = axes.isEmpty ? Array(0..<rank) : normalizedAxes(axes)
        let n = ax.map { shape[$0] }.reduce(1, *)
        return sum(axes: ax, keepDims: keepDims) * (1 / Float(n))
    }

    /// Maximum over one axis; the gradient flows to the first maximal element.
    public func max(axis: Int, keepDims: Bool = false) -> Tensor {
        let a = axis < 0 ? rank + axis : axis
        let (outer, n, inner) = split(a)
        var kept = shape; kept[a] = 1
        let out = Tensor(uninitialized: kept)
        var argmax = [Int](repeating: 0, count: outer * inner)
        let pi = pointer, po = out.pointer
        for o in 0..<outer {
            for j in 0..<inner {
                var best = -Float.infinity, bi = 0
                for k in 0..<n {
                    let v = pi[(o * n + k) * inner + j]
                    if k == 0 || v > best { best = v; bi = k }
                }
                po[o * inner + j] = best
                argmax[o * inner + j] = bi
            }
        }
        let result = keepDims ? out : out.reshaped(kept.enumerated().filter { $0.offset != a }.map(\.element))
        let inShape = shape
        return result.detached().record("max", [self]) { g, _ in
            let dx = Tensor(zeros: inShape)
            for o in 0..<outer {
                for j in 0..<inner {
                    dx.pointer[(o * n + argmax[o * inner + j]) * inner + j] = g.pointer[o * inner + j]
                }
            }
            return [dx]
        }
    }

    /// Index of the maximum along the last axis, per row.
    public func argmaxLastAxis() -> [Int] {
        let n = shape.last ?? 1
        let rows = count / Swift.max(n, 1)
        return (0..<rows).map { r in
            let p = pointer + r * n
            var bi = 0
            for k in 1..<Swift.max(n, 1) where p[k] > p[bi] { bi = k }
            return bi
        }
    }
}
