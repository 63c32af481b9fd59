import XCTest
@testable import Tensor

/// Every differentiable op: gradients against central finite differences over several shapes,
/// odd sizes included.
final class OpGradientTests: XCTestCase {
    func testBroadcastArithmetic() {
        let cases: [([Int], [Int])] = [([3, 5], [3, 5]), ([2, 3, 5], [5]), ([2, 3, 5], [3, 1]), ([4, 1, 3], [1, 5, 3]),
                                       ([7], [1]), ([2, 3], [2, 1]), ([1, 3, 5], [2, 1, 5])]
        for (i, (sa, sb)) in cases.enumerated() {
            let a = randn(sa, seed: UInt64(10 + i)), b = randn(sb, seed: UInt64(20 + i))
            checkGradients("add \(sa) \(sb)", [a, b]) { $0[0] + $0[1] }
            checkGradients("sub \(sa) \(sb)", [a, b]) { $0[0] - $0[1] }
            checkGradients("mul \(sa) \(sb)", [a, b]) { $0[0] * $0[1] }
            let bp = (b.abs() + 0.5).detached()
            checkGradients("div \(sa) \(sb)", [a, bp], eps: 1e-3) { $0[0] / $0[1] }
        }
    }

    func testScalarOps() {
        let x = randn([3, 7], seed: 3)
        checkGradients("adds", [x]) { $0[0] + 2 }
        checkGradients("rsubs", [x]) { 1 - $0[0] }
        checkGradients("muls", [x]) { $0[0] * -3 }
        checkGradients("divs", [x]) { $0[0] / 4 }
        checkGradients("neg", [x]) { -$0[0] }
    }

    func testUnary() {
        let x = randn([4, 9], seed: 4)
        let pos = (x.abs() + 0.3).detached()
        checkGradients("exp", [x]) { $0[0].exp() }
        checkGradients("log", [pos], eps: 1e-3) { $0[0].log() }
        checkGradients("sqrt", [pos], eps: 1e-3) { $0[0].sqrt() }
        checkGradients("tanh", [x]) { $0[0].tanh() }
        checkGradients("square", [x]) { $0[0].square() }
        checkGradients("sigmoid", [x]) { $0[0].sigmoid() }
        checkGradients("silu", [x]) { $0[0].silu() }
        checkGradients("gelu_erf", [x]) { $0[0].gelu() }
        checkGradients("gelu_tanh", [x]) { $0[0].gelu(approximate: true) }
        checkGradients("pow", [pos], eps: 1e-3) { $0[0].pow(1.7) }
        // Kinks: keep inputs away from 0 so finite differences are valid.
        let away = (x.abs() + 0.1).detached() * Tensor((0..<36).map { $0 % 2 == 0 ? 1 : -1 }, shape: [4, 9])
        checkGradients("relu", [away.detached()]) { $0[0].relu() }
        checkGradients("abs", [away.detached()]) { $0[0].abs() }
    }

    func testReductions() {
        for (i, shape) in [[5], [3, 4], [2, 3, 5], [3, 1, 4]].enumerated() {
            let x = randn(shape, seed: UInt64(30 + i))
            checkGradients("sum all \(shape)", [x]) { $0[0].sum() }
            checkGradients("mean all \(shape)", [x]) { $0[0].mean() }
            for axis in 0..<shape.count {
                checkGradients("sum axis \(axis) \(shape)", [x]) { $0[0].sum(axes: [axis]) }
                checkGradients("sum keep \(axis) \(shape)", [x]) { $0[0].sum(axes: [axis], keepDims: true) }
                checkGradients("mean axis \(axis) \(shape)", [x]) { $0[0].mean(axes: [axis]) }
                checkGradients("max axis \(axis) \(shape)", [x], eps: 1e-3) { $0[0].max(axis: axis) }
            }
        }
        let x = randn([2, 3, 4], seed: 40)
        checkGradients("sum axes 0,2", [x]) { $0[0].sum(axes: [0, 2]) }
    }

    func testLayoutOps() {
        let x = randn([2, 3, 5], seed: 5)
        checkGradients("reshape", [x]) { $0[0].reshaped([5, -1]) * 1 }
        checkGradients("permute", [x]) { $0[0].permuted([2, 0, 1]) }
        checkGradients("transpose", [x]) { $0[0].transposed() }
        checkGradients("slice0", [x]) { $0[0].slice(axis: 0, 1..<2) * 1 }
        checkGradients("slice1", [x]) { $0[0].slice(axis: 1, 1..<3) }
        checkGradients("slice2", [x]) { $0[0].slice(axis: 2, 0..<4) }
        let y = randn([2, 4, 5], seed: 6), z = randn([2, 1, 5], seed: 7)
        checkGradients("concat", [x, y, z]) { concat($0, axis: 1) }
        checkGradients("stack", [x, x.copy()]) { stack($0) }
        // A tensor used several times accumulates.
        checkGradients("reuse", [x]) { $0[0] * $0[0] + $0[0].exp() * $0[0] }
    }

    func testMatmul() {
        for (m, k, n) in [(3, 4, 5), (1, 7, 2), (6, 1, 3), (5, 5, 5)] {
            let a = randn([m, k], seed: 50), at = randn([k, m], seed: 51)
            let b = randn([k, n], seed: 52), bt = randn([n, k], seed: 53)
            checkGradients("mm \(m)x\(k)x\(n)", [a, b]) { matmul($0[0], $0[1]) }
            checkGradients("mm tB", [a, bt]) { matmul($0[0], $0[1], transposeB: true) }
            checkGradients("mm tA", [at, b]) { matmul($0[0], $0[1], transposeA: true) }
            checkGradients("mm tA tB", [at, bt]) { matmul($0[0], $0[1], transposeA: true, transposeB: true) }
        }
        let a = randn([2, 3, 4, 5], seed: 54), b = randn([2, 3, 5, 6], seed: 55), bt = randn([2, 3, 6, 5], seed: 56)
        let at = randn([2, 3, 5, 4], seed: 57)
        checkGradients("bmm", [a, b]) { matmul($0[0], $0[1]) }
        checkGradients("bmm tB", [a, bt]) { matmul($0[0], $0[1], transposeB: true) }
        checkGradients("bmm tA", [at, b]) { matmul($0[0], $0[1], transposeA: true) }
        checkGradients("bmm tA tB", [at, bt]) { matmul($0[0], $0[1], transposeA: true, transposeB: true) }
        let shared = randn([5, 6], seed: 58), sharedT = randn([6, 5], seed: 59)
        checkGradients("bmm shared", [a, shared]) { matmul($0[0], $0[1]) }
        checkGradients("bmm shared tB", [a, sharedT]) { matmul($0[0], $0[1], transposeB: true) }
    }

    func testLinear() {
        let x = randn([2, 3, 7], seed: 60), w = randn([5, 7], seed: 61), b = randn([5], seed: 62)
        checkGradients("linear", [x, w, b]) { linear($0[0], $0[1], $0[2]) }
        checkGradients("linear nobias", [x, w]) { linear($0[0], $0[1], nil) }
    }

    func testSoftmaxFamily() {
        for shape in [[3, 7], [2, 2, 5], [1, 1]] {
            let x = randn(shape, seed: 70)
            checkGradients("softmax \(shape)", [x]) { $0[0].softmax() }
            checkGradients("logsoftmax \(shape)", [x]) { $0[0].logSoftmax() }
        }
    }

    func testLayerNorm() {
        for shape in [[3, 7], [2, 4, 9], [5, 2]] {
            let n = shape.last!
            let x = randn(shape, seed: 80), w = randn([n], seed: 81), b = randn([n], seed: 82)
            checkGradients("ln affine \(shape)", [x, w, b], eps: 1e-3, atol: 3e-3) { $0[0].layerNorm(weight: $0[1], bias: $0[2], eps: 1e-6) }
            checkGradients("ln plain \(shape)", [x], eps: 1e-3, atol: 3e-3) { $0[0].layerNorm(eps: 1e-6) }
            checkGradients("ln weight only \(shape)", [x, w], eps: 1e-3, atol: 3e-3) { $0[0].layerNorm(weight: $0[1], eps: 1e-5) }
        }
    }

    func testL2NormalizeEmbeddingModulate() {
        let x = randn([4, 6], seed: 90)
        checkGradients("l2norm", [x], eps: 1e-3) { $0[0].l2Normalized() }
        let table = randn([7, 5], seed: 91)
        checkGradients("embedding", [table]) { embedding($0[0], [3, 0, 3, 6, 3]) }
        let h = randn([2, 3, 5], seed: 92), shift = randn([2, 5], seed: 93), scale = randn([2, 5], seed: 94)
        checkGradients("modulate", [h, shift, scale]) { modulate($0[0], shift: $0[1], scale: $0[2]) }
    }

    func testGatedResidual() {
        let x = randn([2, 3, 5], seed: 95), gate = randn([2, 5], seed: 96), a = randn([2, 3, 5], seed: 97)
        checkGradients("gated residual", [x, gate, a]) { gatedResidual($0[0], gate: $0[1], $0[2]) }
    }

    /// The fused adaLN kernels against the same formulas composed of broadcasting ops, forward and
    /// backward, at sizes where the parallel chunks split a batch entry in the middle.
    func testFusedAdaLNKernelsMatchComposedOps() {
        let (n, t, d) = (3, 100, 900)
        let x = randn([n, t, d], seed: 120), a = randn([n, t, d], seed: 121)
        let gate = randn([n, d], seed: 122), shift = randn([n, d], seed: 123), scale = randn([n, d], seed: 124)
        let upstream = randn([n, t, d], seed: 125)
        func run(_ f: ([Tensor]) -> Tensor, _ inputs: [Tensor]) -> [[Float]] {
            let leaves = inputs.map { $0.copy() }
            for l in leaves { l.requiresGrad = true }
            let y = f(leaves)
            (y * upstream).sum().backward()
            return [y.scalars] + leaves.map { $0.grad!.scalars }
        }
        let fusedG = run({ gatedResidual($0[0], gate: $0[1], $0[2]) }, [x, gate, a])
        let plainG = run({ $0[0] + $0[1].reshaped([n, 1, d]) * $0[2] }, [x, gate, a])
        let fusedM = run({ modulate($0[0], shift: $0[1], scale: $0[2]) }, [x, shift, scale])
        let plainM = run({ $0[0] * ($0[2].reshaped([n, 1, d]) + 1) + $0[1].reshaped([n, 1, d]) }, [x, shift, scale])
        for (name, fused, plain) in [("gated residual", fusedG, plainG), ("modulate", fusedM, plainM)] {
            for (i, (f, p)) in zip(fused, plain).enumerated() {
                let scaleOf = Double(p.map { Swift.abs($0) }.max() ?? 1)
                XCTAssertLessThan(Double(maxAbsDiff(f, p)), 1e-5 * Swift.max(1, scaleOf), "\(name), output/gradient \(i)")
            }
        }
    }

    func testAttention() {
        for (n, h, t, dh) in [(1, 1, 3, 4), (2, 3, 5, 2), (1, 2, 7, 3)] {
            let q = randn([n, h, t, dh], seed: 100), k = randn([n, h, t, dh], seed: 101), v = randn([n, h, t, dh], seed: 102)
            checkGradients("sdpa \(n),\(h),\(t),\(dh)", [q, k, v], eps: 1e-3, atol: 3e-3) { scaledDotProductAttention($0[0], $0[1], $0[2]) }
            let qkv = randn([n, t, 3 * h * dh], seed: 103)
            checkGradients("packed \(n),\(h),\(t),\(dh)", [qkv], eps: 1e-3, atol: 3e-3) { packedAttention($0[0], heads: h) }
        }
    }

    func testAttentionLayerWithQKNorm() {
        var rng = RandomGenerator(seed: 5)
        let layer = Attention(dim: 8, heads: 2, qkNorm: true, rng: &rng)
        let x = randn([2, 3, 8], seed: 110)
        checkGradients("attention layer x", [x], eps: 1e-3, atol: 3e-3) { layer($0[0]) }
        let w = layer.qkv.weight
        checkGradients("attention layer qkv.weight", [w], eps: 1e-3, atol: 3e-3) { _ in layer(x) }
        w.requiresGrad = true
    }

    func testNoTapeInInference() {
        let w = randn([3, 3], seed: 1)
        w.requiresGrad = true
        let y = Autograd.noGrad { linear(randn([2, 3]), w, nil).exp() }
        XCTAssertFalse(y.requiresGrad)
        XCTAssertNil(y.node)
        let z = linear(randn([2, 3]), w, nil)
        XCTAssertNotNil(z.node)
        // Inputs that need no gradient get none.
        let x = randn([2, 3])
        z.sum().backward()
        XCTAssertNil(x.grad)
        XCTAssertNotNil(w.grad)
    }
}

final class ConvTests: XCTestCase {
    func testConvGradients() {
        for (stride, pad, k) in [(1, 0, 3), (2, 1, 3), (1, 1, 1), (2, 0, 2)] {
            let x = randn([2, 3, 5, 6], seed: 120), w = randn([4, 3, k, k], seed: 121), b = randn([4], seed: 122)
            checkGradients("conv s\(stride) p\(pad) k\(k)", [x, w, b]) { conv2d($0[0], $0[1], $0[2], stride: stride, padding: pad) }
        }
    }

    func testConvAgainstDirectSum() {
        let x = randn([1, 2, 4, 4], seed: 1), w = randn([3, 2, 3, 3], seed: 2)
        let y = conv2d(x, w, nil, stride: 1, padding: 1)
        XCTAssertEqual(y.shape, [1, 3, 4, 4])
        for o in 0..<3 { for i in 0..<4 { for j in 0..<4 {
            var s: Float = 0
            for c in 0..<2 { for ky in 0..<3 { for kx in 0..<3 {
                let yy = i + ky - 1, xx = j + kx - 1
                if yy >= 0 && yy < 4 && xx >= 0 && xx < 4 { s += x.scalars[(c * 4 + yy) * 4 + xx] * w.scalars[((o * 2 + c) * 3 + ky) * 3 + kx] }
            } } }
            XCTAssertEqual(y.scalars[(o * 4 + i) * 4 + j], s, accuracy: 1e-5)
        } } }
    }
}
