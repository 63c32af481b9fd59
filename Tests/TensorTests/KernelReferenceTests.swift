import XCTest
@testable import Tensor

/// The fast kernels' forward against the naive Double references.
final class KernelReferenceTests: XCTestCase {
    func testMatmulAgainstNaive() {
        for (m, k, n) in [(1, 1, 1), (3, 5, 7), (64, 33, 17), (13, 128, 9)] {
            let a = randn([m, k], seed: 1), b = randn([k, n], seed: 2)
            let fast = matmul(a, b).scalars
            let ref = Naive.matmul(a.scalars, b.scalars, m: m, k: k, n: n)
            XCTAssertLessThan(maxAbsDiff(fast, ref), 1e-4 * Float(k).squareRoot())
            // Transposed forms agree with the plain one.
            XCTAssertLessThan(maxAbsDiff(matmul(a.transposed(), b, transposeA: true).scalars, ref), 1e-4 * Float(k))
            XCTAssertLessThan(maxAbsDiff(matmul(a, b.transposed(), transposeB: true).scalars, ref), 1e-4 * Float(k))
        }
        let x = randn([2, 3, 4], seed: 3), w = randn([6, 4], seed: 4), bias = randn([6], seed: 5)
        let y = linear(x, w, bias).scalars
        var ref = Naive.matmul(x.scalars, w.transposed().scalars, m: 6, k: 4, n: 6)
        for r in 0..<6 { for j in 0..<6 { ref[r * 6 + j] += bias.scalars[j] } }
        XCTAssertLessThan(maxAbsDiff(y, ref), 1e-5)
    }

    func testRowKernelsAgainstNaive() {
        for n in [1, 7, 64, 1152] {
            let x = randn([5, n], seed: 6, std: 3), w = randn([n], seed: 7), b = randn([n], seed: 8)
            XCTAssertLessThan(maxAbsDiff(x.layerNorm(weight: w, bias: b, eps: 1e-6).scalars,
                                         Naive.layerNorm(x.scalars, width: n, weight: w.scalars, bias: b.scalars, eps: 1e-6)), 1e-4)
            XCTAssertLessThan(maxAbsDiff(x.layerNorm(eps: 1e-6).scalars,
                                         Naive.layerNorm(x.scalars, width: n, weight: nil, bias: nil, eps: 1e-6)), 1e-4)
            XCTAssertLessThan(maxAbsDiff(x.softmax().scalars, Naive.softmax(x.scalars, width: n)), 1e-6)
            XCTAssertLessThan(maxAbsDiff(x.gelu().scalars, Naive.geluErf(x.scalars)), 1e-5)
            XCTAssertLessThan(maxAbsDiff(x.gelu(approximate: true).scalars, Naive.geluTanh(x.scalars)), 1e-5)
            let ls = x.logSoftmax().scalars, sm = Naive.softmax(x.scalars, width: n).map { Float(Foundation.log(Double($0))) }
            XCTAssertLessThan(maxAbsDiff(ls, sm), 1e-4)
        }
        let h = randn([2, 3, 5], seed: 9), sh = randn([2, 5], seed: 10), sc = randn([2, 5], seed: 11)
        XCTAssertLessThan(maxAbsDiff(modulate(h, shift: sh, scale: sc).scalars,
                                     Naive.modulate(h.scalars, shift: sh.scalars, scale: sc.scalars, n: 2, t: 3, d: 5)), 1e-6)
    }

    func testAttentionAgainstNaive() {
        let (n, h, t, dh) = (2, 3, 11, 8)
        let q = randn([n, h, t, dh], seed: 12), k = randn([n, h, t, dh], seed: 13), v = randn([n, h, t, dh], seed: 14)
        let ref = Naive.attention(q.scalars, k.scalars, v.scalars, n: n, h: h, t: t, dh: dh)
        XCTAssertLessThan(maxAbsDiff(scaledDotProductAttention(q, k, v).scalars, ref), 1e-5)
        // The packed layout (N, T, 3, H, Dh) gives the same result, heads merged back.
        let packed = stack([q, k, v]).permuted([1, 3, 0, 2, 4]).reshaped([n, t, 3 * h * dh])
        let merged = packedAttention(packed, heads: h)
        let refMerged = Tensor(ref, shape: [n, h, t, dh]).permuted([0, 2, 1, 3]).reshaped([n, t, h * dh])
        XCTAssertLessThan(maxAbsDiff(merged.scalars, refMerged.scalars), 1e-5)
    }

    func testBroadcastGeneralPath() {
        let a = randn([2, 1, 3], seed: 15), b = randn([1, 4, 1], seed: 16)
        let c = (a + b)
        XCTAssertEqual(c.shape, [2, 4, 3])
        for i in 0..<2 { for j in 0..<4 { for k in 0..<3 {
            XCTAssertEqual(c.scalars[(i * 4 + j) * 3 + k], a.scalars[i * 3 + k] + b.scalars[j], accuracy: 1e-6)
        } } }
    }

    func testHalfPrecision() {
        let values: [Float] = [0, 1, -2.5, 65504, 1e-8, 3.14159, -0.0001]
        for v in values {
            let h = HalfPrecision.f16ToF32(HalfPrecision.f32ToF16(v))
            XCTAssertEqual(h, Float(Float16(v)))
            let b = HalfPrecision.bf16ToF32(HalfPrecision.f32ToBF16(v))
            XCTAssertLessThanOrEqual(Swift.abs(b - v), Swift.abs(v) / 128 + 1e-30)
        }
        XCTAssertEqual(HalfPrecision.bf16ToF32(0x3F80), 1)
        XCTAssertEqual(HalfPrecision.f32ToBF16(1.00390625), 0x3F80)  // tie rounds to even
        XCTAssertTrue(HalfPrecision.bf16ToF32(HalfPrecision.f32ToBF16(.nan)).isNaN)
    }

    func testRandomReproducibleAndSplittable() throws {
        var a = RandomGenerator(seed: 7), b = RandomGenerator(seed: 7)
        let xs = (0..<10).map { _ in a.normal() }
        XCTAssertEqual(xs, (0..<10).map { _ in b.normal() })
        var c = RandomGenerator(seed: 8)
        XCTAssertNotEqual(xs, (0..<10).map { _ in c.normal() })
        // Saving and restoring the state continues the same stream.
        let saved = try JSONEncoder().encode(a)
        var restored = try JSONDecoder().decode(RandomGenerator.self, from: saved)
        XCTAssertEqual((0..<5).map { _ in a.uniform() }, (0..<5).map { _ in restored.uniform() })
        // Per-sample streams do not depend on other samples.
        let root = RandomGenerator(seed: 42)
        var s3 = root.split(3), s3b = root.split(3), s4 = root.split(4)
        XCTAssertEqual(s3.normal(), s3b.normal())
        XCTAssertNotEqual(s3.normal(), s4.normal())
        // Moments of the normal stream.
        var g = RandomGenerator(seed: 1)
        let n = 20000
        let v = (0..<n).map { _ in g.normal() }
        let mean = v.reduce(0, +) / Double(n)
        let varr = v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)
        XCTAssertEqual(mean, 0, accuracy: 0.03)
        XCTAssertEqual(varr, 1, accuracy: 0.05)
    }
}
