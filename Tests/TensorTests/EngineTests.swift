import Foundation
import XCTest
@testable import Tensor

/// The oneDNN matmul engine of inference against the OpenBLAS path it replaces, its weight
/// packing and repacking, and the bf16 path against fp32 within a derived bound.
///
/// Tolerances.
/// - fp32, oneDNN vs OpenBLAS: both sum the same K float32 products in different orders. Each
///   result is within gamma_K * S of the exact sum (S = sum_k |x_k w_k|, gamma_K = K u32 / (1 - K u32),
///   u32 = 2^-24), so they differ by at most 2 gamma_K S per output (plus the bias addition's
///   rounding, u32 |y|). The tests check that bound per element.
/// - bf16: rounding to nearest even with 8 significant bits has unit roundoff u = 2^-8, so
///   |x~ w~ - x w| <= (2u + u^2) |x w| and, with float32 accumulation on both sides,
///   |y_bf16 - y_fp32| <= (2u + u^2) S + gamma_K (2 + 2u + u^2) S per output: about 7.9e-3 S.
///   That worst case is checked per element. Statistically the relative rounding error of one
///   operand has an RMS of sqrt(0.541 / 3) 2^-8 = 0.425 2^-8 (errors uniform over half an ulp,
///   mantissas log-uniform), so an output's error has an RMS of 0.60 2^-8 ||x w||_2 (two rounded
///   operands per product); the tests also check that the RMS over all outputs of
///   err / ||x w||_2 stays below 1.5 x 0.60 2^-8 (the margin covers the mantissa assumption).
final class EngineTests: XCTestCase {
    private var savedBackend = Engine.backend
    private var savedRowLimit = Engine.streamingRowLimit

    override func setUp() {
        savedBackend = Engine.backend
        savedRowLimit = Engine.streamingRowLimit
        Engine.backend = .onednn
    }

    override func tearDown() {
        Engine.backend = savedBackend
        Engine.streamingRowLimit = savedRowLimit
        try? Engine.setPrecision(.fp32)
    }

    // MARK: helpers

    private static let u32 = Double(Float.ulpOfOne) / 2    // 2^-24

    /// S[r, j] = sum_k |x[r, k] w[j, k]| and ||x w||_2[r, j] = sqrt(sum_k (x[r, k] w[j, k])^2).
    private func productMagnitudes(_ x: Tensor, _ w: Tensor) -> (abs: [Double], l2: [Double]) {
        let k = w.dim(1), n = w.dim(0), m = x.count / k
        let px = x.scalars, pw = w.scalars
        var s = [Double](repeating: 0, count: m * n), q = s
        for r in 0..<m {
            for j in 0..<n {
                var a = 0.0, b = 0.0
                for i in 0..<k {
                    let p = Double(px[r * k + i]) * Double(pw[j * k + i])
                    a += Swift.abs(p)
                    b += p * p
                }
                s[r * n + j] = a
                q[r * n + j] = b.squareRoot()
            }
        }
        return (s, q)
    }

    /// Asserts |a - b| <= 2 gamma_K S + 4 u32 |b| + tiny per element (two float32 sums of K products).
    private func assertWithinFloatRounding(_ a: Tensor, _ b: Tensor, x: Tensor, w: Tensor, _ label: String,
                                           file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.shape, b.shape, label, file: file, line: line)
        let k = Double(w.dim(1))
        let gamma = k * Self.u32 / (1 - k * Self.u32)
        let s = productMagnitudes(x, w).abs
        let n = w.dim(0)
        let av = a.scalars, bv = b.scalars
        for i in 0..<av.count {
            let bound = 2 * gamma * s[i] + 4 * Self.u32 * Double(Swift.abs(bv[i])) + 1e-30
            if Double(Swift.abs(av[i] - bv[i])) > bound {
                XCTFail("\(label): element \(i) (row \(i / n), column \(i % n)): \(av[i]) vs \(bv[i]), bound \(bound)", file: file, line: line)
                return
            }
        }
    }

    /// A frozen Linear (what inference models hold after `freeze()`).
    private func layer(_ k: Int, _ n: Int, bias: Bool, seed: UInt64, frozen: Bool = true) -> Linear {
        var rng = RandomGenerator(seed: seed)
        let l = Linear(k, n, bias: bias, rng: &rng)
        if frozen { l.freeze() }
        return l
    }

    // MARK: fp32: oneDNN against OpenBLAS

    func testOneDNNLinearMatchesOpenBLASAtOddSizes() throws {
        XCTAssertNotNil(Engine.implementation(m: 1, k: 8, n: 8), "oneDNN failed to initialize")
        print("EngineTests: \(Engine.summary())")
        Engine.streamingRowLimit = 0     // every row count through oneDNN
        for (k, n) in [(33, 45), (67, 29), (130, 259), (300, 257)] {
            for bias in [false, true] {
                let l = layer(k, n, bias: bias, seed: UInt64(k * 1000 + n))
                for m in Array(1...9) + [17, 64] {
                    let x = randn([m, k], seed: UInt64(m * 7 + k))
                    let fast = Autograd.noGrad { l(x) }
                    let reference = linear(x, l.weight, l.bias)     // the OpenBLAS path (streaming at <= 8 rows)
                    assertWithinFloatRounding(fast, reference, x: x, w: l.weight, "M \(m) K \(k) N \(n) bias \(bias)")
                }
                XCTAssertEqual(l.packed.packCount, 1, "K \(k) N \(n): the weight is packed once for all row counts")
            }
        }
    }

    func testLeadingAxesAndBatchOfOne() throws {
        // (N, T, D) inputs as the models pass them; batch 1 against OpenBLAS, and batch 1 against
        // the same sample inside a batch of 3.
        let l = layer(72, 216, bias: true, seed: 3)
        let x3 = randn([3, 5, 72], seed: 4)
        let x1 = Tensor(Array(x3.scalars[0..<(5 * 72)]), shape: [1, 5, 72])
        let y1 = Autograd.noGrad { l(x1) }, y3 = Autograd.noGrad { l(x3) }
        XCTAssertEqual(y1.shape, [1, 5, 216])
        assertWithinFloatRounding(y1, linear(x1, l.weight, l.bias), x: x1, w: l.weight, "batch 1")
        let first = Tensor(Array(y3.scalars[0..<(5 * 216)]), shape: [1, 5, 216])
        assertWithinFloatRounding(first, y1, x: x1, w: l.weight, "batch 1 inside batch 3")
        // One row through oneDNN (the streaming kernel off) and through the streaming kernel.
        let big = layer(640, 300, bias: true, seed: 5)
        let row = randn([1, 640], seed: 6)
        Engine.streamingRowLimit = 0
        let viaOneDNN = Autograd.noGrad { big(row) }
        XCTAssertEqual(big.packed.packCount, 1)
        Engine.streamingRowLimit = 2
        let viaStreaming = Autograd.noGrad { big(row) }
        let viaSgemm = Tensor(zeros: [1, 300])
        sgemm(transA: false, transB: true, m: 1, n: 300, k: 640, a: row.pointer, lda: 640, b: big.weight.pointer, ldb: 640,
              c: viaSgemm.pointer, ldc: 300)
        let sgemmPlusBias = viaSgemm + big.bias!.reshaped([1, 300])
        assertWithinFloatRounding(viaOneDNN, sgemmPlusBias, x: row, w: big.weight, "one row, oneDNN vs sgemm")
        assertWithinFloatRounding(viaStreaming, sgemmPlusBias, x: row, w: big.weight, "one row, streaming vs sgemm")
    }

    func testRepacksOnlyWhenTheWeightChanges() throws {
        Engine.streamingRowLimit = 0
        let l = layer(45, 37, bias: true, seed: 7)
        let x = randn([6, 45], seed: 8)
        func check(_ label: String, packs: Int, file: StaticString = #filePath, line: UInt = #line) {
            let y = Autograd.noGrad { l(x) }
            assertWithinFloatRounding(y, linear(x, l.weight, l.bias), x: x, w: l.weight, label, file: file, line: line)
            XCTAssertEqual(l.packed.packCount, packs, "\(label): pack count", file: file, line: line)
        }
        check("first product packs", packs: 1)
        check("same weight: no repack", packs: 1)

        // An AdamW step on the unfrozen layer (the training forward records the tape and uses
        // OpenBLAS), then frozen again, as an EMA copy or a fine-tuned model would be.
        for (_, t) in l.namedTensors() { t.requiresGrad = true }
        let opt = AdamW(l.trainableParameters(), lr: 0.05)
        let loss = l(x).square().mean()
        XCTAssertEqual(l.packed.packCount, 1, "a recorded forward does not pack")
        loss.backward()
        opt.update()
        l.freeze()
        check("after an AdamW step", packs: 2)

        l.weight.assign(randn([37, 45], seed: 9))
        check("after assign", packs: 3)
        l.weight.fill(0.25)
        check("after fill", packs: 4)
        // A bias change needs no repack (the bias is read at every call).
        l.bias!.assign(randn([37], seed: 10))
        check("after a bias change", packs: 4)

        // Loading a checkpoint.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("engine-tests-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let other = layer(45, 37, bias: true, seed: 11)
        let path = dir.appendingPathComponent("l.safetensors").path
        try other.save(to: path)
        try l.load(from: SafeTensorsFile(path: path))
        check("after Module.load", packs: 5)

        // Raw writes declared with markModified; a whole rewrite that forgets it is caught by the
        // sampled fingerprint (a single-element edit without markModified would not be).
        l.weight.pointer[17] += 1
        l.weight.markModified()
        check("after a raw write + markModified", packs: 6)
        let p = l.weight.pointer
        for i in 0..<l.weight.count { p[i] = -p[i] }
        check("after a raw whole rewrite (fingerprint)", packs: 7)
    }

    func testTrainableWeightsAreNeverPacked() {
        // Finite-difference checks edit one element of a trainable weight through `pointer` and
        // evaluate in noGrad: a trainable weight always takes the OpenBLAS path.
        Engine.streamingRowLimit = 0
        let l = layer(40, 30, bias: true, seed: 18, frozen: false)
        let x = randn([5, 40], seed: 19)
        let before = Autograd.noGrad { l(x) }.scalars
        l.weight.pointer[3 * 40 + 7] += 0.5
        let after = Autograd.noGrad { l(x) }.scalars
        for r in 0..<5 {
            XCTAssertEqual(after[r * 30 + 3] - before[r * 30 + 3], 0.5 * x.scalars[r * 40 + 7], accuracy: 1e-5)
        }
        XCTAssertEqual(l.packed.packCount, 0)
    }

    func testTrainingForwardAndGradientsUnchanged() {
        // With the tape recording, a Linear takes the OpenBLAS path: same values and gradients
        // as the functional op, and nothing is packed.
        let l = layer(33, 19, bias: true, seed: 12, frozen: false)
        let x = randn([4, 33], seed: 13)
        x.requiresGrad = true
        let y = l(x)
        let y2 = linear(x, l.weight, l.bias)
        XCTAssertEqual(y.scalars, y2.scalars)
        y.sum().backward()
        XCTAssertNotNil(l.weight.grad)
        XCTAssertNotNil(x.grad)
        XCTAssertEqual(l.packed.packCount, 0)
    }

    func testOneDNNUsesThreadsCount() {
        Engine.streamingRowLimit = 0
        let l = layer(64, 64, bias: false, seed: 20)
        let x = randn([16, 64], seed: 21)
        let saved = Threads.count
        defer { Threads.count = saved }
        for n in [1, 2] {
            Threads.count = n
            let y = Autograd.noGrad { l(x) }
            XCTAssertEqual(Engine.openMPThreads, n, "OpenMP threads follow Threads.count")
            assertWithinFloatRounding(y, linear(x, l.weight, nil), x: x, w: l.weight, "\(n) threads")
        }
    }

    func testOpenBLASBackendIsTheOldPath() {
        Engine.backend = .openblas
        let l = layer(130, 259, bias: true, seed: 14)
        let x = randn([17, 130], seed: 15)
        XCTAssertEqual(Autograd.noGrad { l(x) }.scalars, linear(x, l.weight, l.bias).scalars)
        XCTAssertEqual(l.packed.packCount, 0)
    }

    // MARK: bf16

    func testBF16RoundingKernel() {
        let values: [Float] = [0, -0, 1, -1, 1.00390625, 1.01171875, 1.0078125 + 1e-7, 3.14159, -2.71828e-20,
                               Float.greatestFiniteMagnitude, -Float.greatestFiniteMagnitude, .infinity, -.infinity,
                               Float.leastNonzeroMagnitude, 1e-39, 65504, 0.1, 1 + 1 / 256, 1 + 3 / 256]
        let t = Tensor(values, shape: [values.count]).roundedToBF16()
        for (v, r) in zip(values, t.scalars) {
            XCTAssertEqual(r.bitPattern, HalfPrecision.bf16ToF32(HalfPrecision.f32ToBF16(v)).bitPattern, "\(v)")
        }
        XCTAssertEqual(Tensor([1 + 1 / 256], shape: [1]).roundedToBF16().item, 1, "a tie rounds to even (down)")
        XCTAssertEqual(Tensor([1 + 3 / 256], shape: [1]).roundedToBF16().item, 1 + 4 / 256, "a tie rounds to even (up)")
        XCTAssertTrue(Tensor([Float.nan], shape: [1]).roundedToBF16().item.isNaN)
    }

    /// Checks y (bf16 product) against the fp32 product within the derived bounds (see the top).
    private func assertWithinBF16Bound(_ y: Tensor, _ reference: Tensor, x: Tensor, w: Tensor, _ label: String,
                                       file: StaticString = #filePath, line: UInt = #line) {
        let u = 1.0 / 256, k = Double(w.dim(1))
        let gamma = k * Self.u32 / (1 - k * Self.u32)
        let (s, l2) = productMagnitudes(x, w)
        let a = y.scalars, b = reference.scalars
        var sumSq = 0.0, worstRatio = 0.0
        for i in 0..<a.count {
            let err = Double(Swift.abs(a[i] - b[i]))
            let bound = (2 * u + u * u) * s[i] + gamma * (2 + 2 * u + u * u) * s[i] + 4 * Self.u32 * Double(Swift.abs(b[i])) + 1e-30
            worstRatio = Swift.max(worstRatio, err / bound)
            if l2[i] > 0 { sumSq += (err / l2[i]) * (err / l2[i]) }
        }
        let rms = (sumSq / Double(a.count)).squareRoot()
        XCTAssertLessThanOrEqual(worstRatio, 1, "\(label): worst error / bound", file: file, line: line)
        XCTAssertLessThan(rms, 1.5 * 0.60 * u, "\(label): RMS of err / ||x w||_2 = \(rms / u) x 2^-8", file: file, line: line)
        print(String(format: "EngineTests bf16 %@: worst error %.3f of the bound, RMS err/||xw|| = %.3f x 2^-8 (statistical estimate 0.60)",
                     label, worstRatio, rms / u))
    }

    func testBF16EmulationWithinDerivedBound() {
        // Runs on every CPU: products of bf16-rounded operands accumulated in float32 (what a
        // bf16 matmul computes) against float32, for the derivation above.
        for (m, k, n) in [(64, 1152, 96), (17, 333, 45)] {
            let x = randn([m, k], seed: UInt64(k)), w = randn([n, k], seed: UInt64(k + 1), std: 0.03)
            let exact = linear(x, w, nil)
            let emulated = linear(x.roundedToBF16(), w.roundedToBF16(), nil)
            assertWithinBF16Bound(emulated, exact, x: x, w: w, "emulated \(m)x\(k).\(k)x\(n)")
        }
    }

    func testBF16OnOneDNN() throws {
        guard Engine.bf16Available else {
            let reason = "bf16 oneDNN test skipped: this CPU (\(Engine.cpuName), oneDNN ISA \(Engine.isa), cpuid bf16 flags: \(Engine.cpuBF16Flags.isEmpty ? "none" : Engine.cpuBF16Flags.joined(separator: " "))) has no AVX512-BF16 or AMX, and oneDNN builds no bf16 matmul for it"
            print(reason)
            // On such a CPU, bf16 is refused with one sentence and auto picks fp32.
            XCTAssertThrowsError(try Engine.resolve(.bf16)) { print("bf16 refusal: \($0)") }
            XCTAssertEqual(try Engine.resolve(.auto), .fp32)
            throw XCTSkip(reason)
        }
        XCTAssertEqual(try Engine.resolve(.auto), .bf16)
        try Engine.setPrecision(.bf16)
        for (k, n) in [(1152, 96), (333, 45)] {
            for bias in [false, true] {
                let l = layer(k, n, bias: bias, seed: UInt64(k + n))
                for m in [1, 2, 3, 8, 17, 64] {
                    let x = randn([m, k], seed: UInt64(m + k))
                    let y = Autograd.noGrad { l(x) }
                    // Against the emulation: the same bf16 products (exact in float32), summed in
                    // another order: float32 rounding only.
                    let emulated = linear(x.roundedToBF16(), l.weight.roundedToBF16(), l.bias)
                    assertWithinFloatRounding(y, emulated, x: x.roundedToBF16(), w: l.weight.roundedToBF16(),
                                              "bf16 vs emulation M \(m) K \(k) N \(n) bias \(bias)")
                    // Against fp32: the derived bf16 bound.
                    assertWithinBF16Bound(y, linear(x, l.weight, l.bias), x: x, w: l.weight, "oneDNN bf16 M \(m) K \(k) N \(n)")
                }
                XCTAssertEqual(l.packed.packCount, 1)
                XCTAssertTrue(l.packed.bytes >= k * n * 2 && l.packed.bytes < k * n * 4,
                              "the bf16 pack holds 2 bytes per weight (plus the layout's padding): \(l.packed.bytes)")
            }
        }
        // Switching back to fp32 repacks.
        try Engine.setPrecision(.fp32)
        Engine.streamingRowLimit = 0
        let l = layer(100, 50, bias: true, seed: 16)
        let x = randn([9, 100], seed: 17)
        try Engine.setPrecision(.bf16)
        _ = Autograd.noGrad { l(x) }
        try Engine.setPrecision(.fp32)
        assertWithinFloatRounding(Autograd.noGrad { l(x) }, linear(x, l.weight, l.bias), x: x, w: l.weight, "back to fp32")
        XCTAssertEqual(l.packed.packCount, 2)
    }
}
