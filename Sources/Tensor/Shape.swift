// Layout ops: reshape (a view), permute/transpose (materialized), slice and concat along an axis.

import Foundation

extension Tensor {
    /// The same storage under a new shape; one dimension may be -1.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var s = newShape
        if let i = s.firstIndex(of: -1) {
            let known = s.enumerated().filter { $0.offset != i }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "reshape: cannot infer -1 in \(newShape) from \(shape)")
            s[i] = count / known
        }
        precondition(s.reduce(1, *) == count, "reshape: \(shape) has \(count) elements, \(s) needs \(s.reduce(1, *))")
        let out = Tensor(storage: storage, shape: s, offset: offset)
        let old = shape
        return out.record("reshape", [self]) { g, _ in [g.reshaped(old)] }
    }

    /// Reorders axes: output axis i is input axis `order[i]`. Materializes a new buffer.
    public func permuted(_ order: [Int]) -> Tensor {
        precondition(order.sorted() == Array(0..<rank), "permute: \(order) is not a permutation of \(rank) axes")
        if order == Array(0..<rank) { return reshaped(shape) }
        let outShape = order.map { shape[$0] }
        let out = Tensor(uninitialized: outShape)
        let inStrides = contiguousStrides(shape)
        let src = order.map { inStrides[$0] }   // input stride for each output axis
        let r = outShape.count
        let inner = outShape[r - 1], innerStride = src[r - 1]
        let rows = out.count / Swift.max(inner, 1)
        let pi = pointer, po = out.pointer
        let lead = Array(outShape.prefix(r - 1))
        let leadStrides = contiguousStrides(lead)
        parallelFor(rows, grain: 64) { lo, hi in
            for row in lo..<hi {
                var rem = row, base = 0
                for d in 0..<(r - 1) {
                    let idx = rem / leadStrides[d]
                    rem -= idx * leadStrides[d]
                    base += idx * src[d]
                }
                let o = po + row * inner
                for j in 0..<inner { o[j] = pi[base + j * innerStride] }
            }
        }
        var inverse = [Int](repeating: 0, count: r)
        for (i, o) in order.enumerated() { inverse[o] = i }
        return out.record("permute", [self]) { g, _ in [g.permuted(inverse)] }
    }

    /// Swaps two axes (materialized).
    public func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
        var order = Array(0..<rank)
        let ia = a < 0 ? rank + a : a, ib = b < 0 ? rank + b : b
        order.swapAt(ia, ib)
        return permuted(order)
    }

    /// Elements `range` along `axis` (a copy, or a view when slicing the leading axis).
    public func slice(axis: Int, _ range: Range<Int>) -> Tensor {
        let ax = axis < 0 ? rank + axis : axis
        precondition(range.lowerBound >= 0 && range.upperBound <= shape[ax],
                     "slice: \(range) outside axis \(ax) of size \(shape[ax])")
        var outShape = shape
        outShape[ax] = range.count
        let outer = shape[..<ax].reduce(1, *)
        let inner = shape[(ax + 1)...].reduce(1, *)
        let fullShape = shape
        let out: Tensor
        if outer == 1 {
            out = Tensor(storage: storage, shape: outShape, offset: offset + range.lowerBound * inner)
        } else {
            out = Tensor(uninitialized: outShape)
            let pi = pointer, po = out.pointer
            let n = shape[ax], m = range.count
            for o in 0..<outer {
                (po + o * m * inner).update(from: pi + (o * n + range.lowerBound) * inner, count: m * inner)
            }
        }
        return out.record("slice", [self]) { g, _ in
            let dx = Tensor(zeros: fullShape)
            let n = fullShape[ax], m = range.count
            for o in 0..<outer {
                (dx.pointer + (o * n + range.lowerBound) * inner).update(from: g.pointer + o * m * inner, count: m * inner)
            }
            return [dx]
        }
    }

    /// Element `i` of the leading axis, without that axis (a view).
    public subscript(i: Int) -> Tensor { slice(axis: 0, i..<(i + 1)).reshaped(Array(shape.dropFirst())) }
}

/// Joins tensors along `axis`; all other dimensions must agree.
public func concat(_ tensors: [Tensor], axis: Int) -> Tensor {
    precondition(!tensors.isEmpty, "concat of nothing")
    let first = tensors[0]
    let ax = axis < 0 ? first.rank + axis : axis
    for t in tensors {
        precondition(t.rank == first.rank && (0..<t.rank).allSatisfy { $0 == ax || t.shape[$0] == first.shape[$0] },
                     "concat: shapes \(tensors.map(\.shape)) differ outside axis \(ax)")
    }
    var outShape = first.shape
    outShape[ax] = tensors.reduce(0) { $0 + $1.shape[ax] }
    let outer = first.shape[..<ax].reduce(1, *)
    let inner = first.shape[(ax + 1)...].reduce(1, *)
    let total = outShape[ax]
    let out = Tensor(uninitialized: outShape)
    var start = 0
    var starts: [Int] = []
    for t in tensors {
        starts.append(start)
        let m = t.shape[ax]
        for o in 0..<outer {
            (out.pointer + (o * total + start) * inner).update(from: t.pointer + o * m * inner, count: m * inner)
        }
        start += m
    }
    return out.record("concat", tensors) { g, needs in
        tensors.indices.map { i in
            needs[i] ? Autograd.noGrad { g.slice(axis: ax, starts[i]..<(starts[i] + tensors[i].shape[ax])).copy() } : nil
        }
    }
}

/// Stacks equal-shaped tensors along a new leading axis.
public func stack(_ tensors: [Tensor]) -> Tensor {
    concat(tensors.map { $0.reshaped([1] + $0.shape) }, axis: 0)
}
