import XCTest
@testable import Tensor

/// bf16 products: the software reference (round to nearest even, fp32 sums) against derived
/// error bounds; the oneDNN training products in fp32 (any CPU) against OpenBLAS; and, on CPUs
/// with bf16 hardware, oneDNN's bf16 products against the reference.
///
/// Bounds (u = 2^-8, the unit roundoff of bf16's 8-bit significand; gamma_K = K 2^-24 /
/// (1 - K 2^-24) for a float32 sum of K terms): rounding both operands moves each product by at
/// most (2u + u^2) |a b|, so |bf16 product - exact| <= (2u + u^2 + gamma_K (1 + u)^2) sum_k |a_k b_k|;
/// two float32 sums of the same exact products (reference and hardware, different orders) differ
/// by at most 2 gamma_K sum_k |a~_k b~_k|.
final class MixedPrecisionTests: XCTestCase {
    override func tearDown() { try? Engine.setPrecision(.fp32) }

    static let u = 1.0 / 256.0
    static func gamma(_ k: Int) -> Double { Double(k) * 0x1p-24 / (1 - Double(k) * 0x1p-24) }

    func bits(_ f: Float) -> Float { roundedToBF16(Tensor([f], shape: [1])).scalars[0] }

    func testRoundToNearestEven() {
        XCTAssertEqual(bits(1 + 0x1p-8), 1)                          // tie: to the even 1.0
        XCTAssertEqual(bits(1 + 3 * 0x1p-8), 1 + 0x1p-6)             // tie: to the even 1 + 2^-6
        XCTAssertEqual(bits(1 + 0x1p-8 + 0x1p-20), 1 + 0x1p-7)       // above the tie: up
        XCTAssertEqual(bits(-(1 + 0x1p-8 + 0x1p-20)), -(1 + 0x1p-7))
        XCTAssertEqual(bits(3.140625), 3.140625)                     // representable: unchanged
        XCTAssertEqual(bits(.infinity), .infinity)
        XCTAssertTrue(bits(.nan).isNaN)
        XCTAssertEqual(bits(Float.greatestFiniteMagnitude), .infinity) // past bf16's largest finite: overflows
    }

    /// |C_bf16 - C_exact| against the bound, per element; returns the largest error / bound.
    func checkBound(_ c: [Float], a: [Float], b: [Float], m: Int, k: Int, n: Int, bTransposed: Bool,
                    file: StaticString = #filePath, line: UInt = #line) -> Double {
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var exact = 0.0, mag = 0.0
                for l in 0..<k {
                    let bv = Double(bTransposed ? b[j * k + l] : b[l * n + j])
                    exact += Double(a[i * k + l]) * bv
                    mag += Swift.abs(Double(a[i * k + l]) * bv)
                }
                let bound = (2 * Self.u + Self.u * Self.u + Self.gamma(k) * (1 + Self.u) * (1 + Self.u)) * mag
                let err = Swift.abs(Double(c[i * n + j]) - exact)
                worst = Swift.max(worst, err / bound)
            }
        }
        XCTAssertLessThanOrEqual(worst, 1, "bf16 product outside its derived bound", file: file, line: line)
        return worst
    }

    func testReferenceLinearWithinTheDerivedBound() {
        let (rows, inF, outF) = (7, 70, 13)
        let x = randn([rows, inF], seed: 1), w = randn([outF, inF], seed: 2), g = randn([rows, outF], seed: 3)
        Engine.useBF16Reference()
        x.requiresGrad = true
        w.requiresGrad = true
        let y = bf16ReferenceLinear(x, w, nil)
        (y * g).sum().backward()
        let worst = checkBound(y.scalars, a: x.scalars, b: w.scalars, m: rows, k: inF, n: outF, bTransposed: true)
        // The rounding is real: the bf16 result differs from fp32.
        let fp32 = Autograd.noGrad { linear(x, w, nil) }
        XCTAssertGreaterThan(maxAbsDiff(y.scalars, fp32.scalars), 1e-4)
        print("bf16 reference forward: worst error / derived bound \(worst)")
        // dX = bf16(dY) bf16(W): against dY W exactly; dW = bf16(dY)^T bf16(X) against dY^T X.
        _ = checkBound(x.grad!.scalars, a: g.scalars, b: w.scalars, m: rows, k: outF, n: inF, bTransposed: false)
        let gT = (0..<(outF * rows)).map { g.scalars[($0 % rows) * outF + $0 / rows] }
        _ = checkBound(w.grad!.scalars, a: gT, b: x.scalars, m: outF, k: rows, n: inF, bTransposed: false)
    }

    /// The Linear layer under the bf16 reference takes the reference path in training and in
    /// inference, and its bias gradient stays the fp32 column sum.
    func testLinearLayerUsesTheReference() {
        var f = ParameterFactory(.random(seed: 4))
        let layer = Linear(24, 10, bias: true, &f)
        let x = randn([5, 24], seed: 5), g = randn([5, 10], seed: 6)
        Engine.useBF16Reference()
        let y = layer(x)
        XCTAssertEqual(y.scalars, Autograd.noGrad { bf16ReferenceLinear(x, layer.weight, layer.bias) }.scalars)
        (y * g).sum().backward()
        let db = (0..<10).map { j in (0..<5).reduce(Float(0)) { $0 + g.scalars[$1 * 10 + j] } }
        XCTAssertLessThan(maxAbsDiff(layer.bias!.grad!.scalars, db), 1e-5)
        layer.freeze()
        XCTAssertEqual(Autograd.noGrad { layer(x) }.scalars, y.scalars)
    }

    /// The oneDNN training products (forward over the packed weight, backward over plain and
    /// transposed operands) in fp32 equal OpenBLAS's within float rounding, on any CPU; an
    /// optimizer-style update of the weight repacks it.
    func testOneDNNTrainingProductsInFP32() throws {
        try XCTSkipIf(Engine.implementation(m: 1, k: 8, n: 8) == nil, "oneDNN failed to initialize here")
        for (rows, inF, outF) in [(7, 70, 13), (64, 96, 160), (1, 33, 5)] {
            let x = randn([rows, inF], seed: 7), w = randn([outF, inF], seed: 8), b = randn([outF], seed: 9)
            let g = randn([rows, outF], seed: 10)
            func run(_ f: (Tensor, Tensor, Tensor) -> Tensor) -> [[Float]] {
                let (xx, ww, bb) = (x.detached(), w.detached(), b.detached())
                for t in [xx, ww, bb] { t.requiresGrad = true }
                let y = f(xx, ww, bb)
                (y * g).sum().backward()
                return [y.scalars, xx.grad!.scalars, ww.grad!.scalars, bb.grad!.scalars]
            }
            let packed = PackedWeight()
            let dnn = run { oneDNNTrainingLinear($0, $1, $2, packed: packed, bf16: false) }
            let blas = run { linear($0, $1, $2) }
            for (i, part) in ["y", "dx", "dw", "db"].enumerated() {
                let scale = Swift.max(1, blas[i].map { Swift.abs($0) }.max()!)
                XCTAssertLessThan(maxAbsDiff(dnn[i], blas[i]) / scale, 1e-5, "\(rows)x\(inF)x\(outF) \(part)")
            }
        }
        // After an in-place update that bumps the version (as AdamW does), the forward repacks.
        let x = randn([16, 40], seed: 11), w = randn([24, 40], seed: 12)
        w.requiresGrad = true
        let packed = PackedWeight()
        _ = Autograd.noGrad { oneDNNTrainingLinear(x, w, nil, packed: packed, bf16: false) }
        let packs = packed.packCount
        w.assign(randn([24, 40], seed: 13))
        let y = Autograd.noGrad { oneDNNTrainingLinear(x, w, nil, packed: packed, bf16: false) }
        XCTAssertLessThan(maxAbsDiff(y.scalars, linear(x, w, nil).scalars), 1e-4)
        XCTAssertTrue(packed.packCount == packs + 1 || packed.bytes == 0, "an updated weight must be repacked (or read in place)")
    }

    /// On bf16 hardware: oneDNN's bf16 products (training forward and backward, and inference
    /// over the packed weight) against the software reference, within the summation-order bound.
    func testOneDNNBF16AgainstTheReference() throws {
        guard Engine.bf16Available else {
            let reason = "bf16 oneDNN products not tested: this CPU (\(Engine.cpuName), oneDNN ISA \(Engine.isa), cpuid bf16 flags: \(Engine.cpuBF16Flags.isEmpty ? "none" : Engine.cpuBF16Flags.joined(separator: " "))) has no AVX512-BF16 or AMX"
            print(reason)
            throw XCTSkip(reason)
        }
        for (rows, inF, outF) in [(7, 70, 13), (64, 1152, 160), (8, 256, 6912 / 16)] {
            let x = randn([rows, inF], seed: 14), w = randn([outF, inF], seed: 15), b = randn([outF], seed: 16)
            let g = randn([rows, outF], seed: 17)
            func run(_ f: (Tensor, Tensor, Tensor) -> Tensor) -> [[Float]] {
                let (xx, ww, bb) = (x.detached(), w.detached(), b.detached())
                for t in [xx, ww, bb] { t.requiresGrad = true }
                let y = f(xx, ww, bb)
                (y * g).sum().backward()
                return [y.scalars, xx.grad!.scalars, ww.grad!.scalars]
            }
            let packed = PackedWeight()
            let hw = run { oneDNNTrainingLinear($0, $1, $2, packed: packed, bf16: true) }
            let ref = run { bf16ReferenceLinear($0, $1, $2) }
            // 2 gamma_K sum |a~ b~| <= 2 gamma_K (1 + u)^2 sum |a b|, K the contraction length.
            func bound(_ k: Int, _ mag: Double) -> Double { 2 * Self.gamma(k) * (1 + Self.u) * (1 + Self.u) * mag + 1e-6 }
            let xs = x.scalars, ws = w.scalars, gs = g.scalars
            for i in 0..<rows { for j in 0..<outF {
                let mag = (0..<inF).reduce(0.0) { $0 + Swift.abs(Double(xs[i * inF + $1]) * Double(ws[j * inF + $1])) } + Swift.abs(Double(b.scalars[j]))
                XCTAssertLessThanOrEqual(Swift.abs(Double(hw[0][i * outF + j] - ref[0][i * outF + j])), bound(inF, mag), "y[\(i),\(j)]")
            } }
            for i in 0..<rows { for j in 0..<inF {
                let mag = (0..<outF).reduce(0.0) { $0 + Swift.abs(Double(gs[i * outF + $1]) * Double(ws[$1 * inF + j])) }
                XCTAssertLessThanOrEqual(Swift.abs(Double(hw[1][i * inF + j] - ref[1][i * inF + j])), bound(outF, mag), "dx[\(i),\(j)]")
            } }
            for i in 0..<outF { for j in 0..<inF {
                let mag = (0..<rows).reduce(0.0) { $0 + Swift.abs(Double(gs[$1 * outF + i]) * Double(xs[$1 * inF + j])) }
                XCTAssertLessThanOrEqual(Swift.abs(Double(hw[2][i * inF + j] - ref[2][i * inF + j])), bound(rows, mag), "dw[\(i),\(j)]")
            } }
            // Inference: a frozen Linear in bf16 over its packed weight.
            try Engine.setPrecision(.bf16)
            var f = ParameterFactory(.uninitialized)
            let layer = Linear(inF, outF, bias: true, &f)
            layer.weight.assign(w)
            layer.bias!.assign(b)
            layer.freeze()
            let yi = Autograd.noGrad { layer(x) }
            let yr = Autograd.noGrad { bf16ReferenceLinear(x, w, b) }
            for i in 0..<rows { for j in 0..<outF {
                let mag = (0..<inF).reduce(0.0) { $0 + Swift.abs(Double(xs[i * inF + $1]) * Double(ws[j * inF + $1])) } + Swift.abs(Double(b.scalars[j]))
                XCTAssertLessThanOrEqual(Swift.abs(Double(yi.scalars[i * outF + j] - yr.scalars[i * outF + j])), bound(inF, mag), "inference y[\(i),\(j)]")
            } }
            try Engine.setPrecision(.fp32)
        }
    }
}
