// Kernel benchmark: the matmul wrapper (`linear`) against raw cblas_sgemm at the SiT-XL shapes,
// and the bandwidth of the row-wise kernels on (512, 1152) rows.

import CBLAS
import Foundation
import Tensor

public struct KernelBenchmarkRow: Codable, Sendable {
    public let name: String
    public let shape: String
    public let seconds: TimingStats
    /// GFLOP/s for products, GB/s (bytes read + written) for row kernels.
    public let rate: Double
    public let unit: String
    /// For the wrapper rows: wrapper rate / raw sgemm rate in the same run.
    public let ratioToRaw: Double?
}

public enum KernelBenchmark {
    /// (M, K, N): x (M, K) times W^T with W (N, K), the SiT-XL/1 linear shapes (qkv, fc1 at 64
    /// and 512 rows, fc2), and its adaLN product at batch 1, 2, 4 and 8 (where `linear` streams
    /// the weight instead of calling sgemm).
    public static let matmulShapes: [(Int, Int, Int)] = [(64, 1152, 3456), (64, 1152, 4608), (512, 1152, 4608), (64, 4608, 1152),
                                                         (1, 1152, 6912), (2, 1152, 6912), (4, 1152, 6912), (8, 1152, 6912)]

    /// - precision: the oneDNN rows to add: fp32 always (with oneDNN), bf16 when it resolves to
    ///   bf16 (`auto` on bf16 hardware, or `bf16`).
    /// - shapes: the (M, K, N) products to time (default `matmulShapes`).
    public static func run(repeats: Int = 20, rows: Int = 512, width: Int = 1152, quick: Bool = false,
                           precision: Precision = .fp32, shapes: [(Int, Int, Int)]? = nil) -> [KernelBenchmarkRow] {
        var out: [KernelBenchmarkRow] = []
        var rng = RandomGenerator(seed: 0)
        let reps = quick ? 2 : repeats
        let withBF16 = precision == .bf16
        for (m, k, n) in quick ? [(8, 64, 96), (3, 64, 96)] : (shapes ?? matmulShapes) {
            // Four weight copies used in turn, so that (as in a forward, where every block has its
            // own) the weight comes from memory rather than from the last-level cache.
            let x = rng.normalTensor([m, k]), b = rng.normalTensor([n])
            let ws = (0..<4).map { _ in rng.normalTensor([n, k]) }
            var turnRaw = 0, turnLinear = 0, turnLayer = 0
            let c = Tensor(uninitialized: [m, n])
            let flops = 2.0 * Double(m * n * k)
            // Linear layers over the same weights: what a model's forward runs (the engine's pick).
            let layers: [Linear] = ws.map { w in
                var f = ParameterFactory(.uninitialized)
                let l = Linear(k, n, bias: true, &f)
                l.weight.assign(w)
                l.bias!.assign(b)
                l.freeze()
                return l
            }
            var variants: [(String, () -> Void)] = [
                ("cblas_sgemm (raw)", {
                    turnRaw += 1
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1,
                                x.pointer, Int32(k), ws[turnRaw % 4].pointer, Int32(k), 0, c.pointer, Int32(n))
                }),
                ("linear (OpenBLAS wrapper, +bias)", { turnLinear += 1; _ = linear(x, ws[turnLinear % 4], b) }),
            ]
            if let f = Engine.packedProduct(x: x, weights: ws, precision: .fp32, out: c) {
                variants.append(("oneDNN fp32, packed weights", f))
            }
            if let f = Engine.packedProduct(x: x, weights: ws, precision: .fp32, plainLayout: true, out: c) {
                variants.append(("oneDNN fp32, plain [out, in] weights", f))
            }
            if withBF16, let f = Engine.packedProduct(x: x, weights: ws, precision: .bf16, out: c) {
                variants.append(("oneDNN bf16, packed weights", f))
            }
            variants.append(("Linear layer (engine, +bias)", { turnLayer += 1; _ = layers[turnLayer % 4](x) }))
            // Primed: each timed call follows an untimed one of the same variant (on the next weight
            // copy), so that OpenBLAS's, OpenMP's and Dispatch's threads are each as awake as in
            // a forward, whichever variant ran before.
            let stats = Autograd.noGrad { measureInterleaved(variants, warmup: 3, repeats: reps, primed: true) }
            let raw = flops / stats["cblas_sgemm (raw)"]!.median / 1e9
            let shape = "\(m)x\(k) . \(k)x\(n)"
            for (name, _) in variants {
                let rate = flops / stats[name]!.median / 1e9
                out.append(KernelBenchmarkRow(name: name, shape: shape, seconds: stats[name]!, rate: rate, unit: "GFLOP/s",
                                              ratioToRaw: name == "cblas_sgemm (raw)" ? nil : rate / raw))
            }
        }
        let r = quick ? 16 : rows, d = quick ? 32 : width
        let x = rng.normalTensor([r, d]), w = rng.normalTensor([d]), bias = rng.normalTensor([d])
        let x3 = x.reshaped([1, r, d]), shift = rng.normalTensor([1, d]), scale = rng.normalTensor([1, d])
        let bytes = Double(r * d * 4 * 2)   // read x, write y
        let kernels: [(String, () -> Void)] = [
            ("layer_norm (affine)", { _ = x.layerNorm(weight: w, bias: bias, eps: 1e-6) }),
            ("layer_norm (no affine)", { _ = x.layerNorm(eps: 1e-6) }),
            ("softmax", { _ = x.softmax() }),
            ("gelu (tanh)", { _ = x.gelu(approximate: true) }),
            ("gelu (erf)", { _ = x.gelu() }),
            ("modulate", { _ = modulate(x3, shift: shift, scale: scale) }),
        ]
        let stats = Autograd.noGrad { measureInterleaved(kernels, warmup: 3, repeats: reps * 5) }
        for (name, _) in kernels {
            let s = stats[name]!
            out.append(KernelBenchmarkRow(name: name, shape: "(\(r), \(d))", seconds: s, rate: bytes / s.median / 1e9, unit: "GB/s", ratioToRaw: nil))
        }
        return out
    }

    public static func table(_ rows: [KernelBenchmarkRow]) -> String {
        var lines = ["| kernel | shape | median | min..max | rate | vs raw sgemm |", "|---|---|---|---|---|---|"]
        for r in rows {
            let ratio = r.ratioToRaw.map { String(format: "%.1f%%", $0 * 100) } ?? ""
            lines.append(String(format: "| %@ | %@ | %.3f ms | %.3f..%.3f ms | %.1f %@ | %@ |", r.name, r.shape,
                                r.seconds.median * 1e3, r.seconds.min * 1e3, r.seconds.max * 1e3, r.rate, r.unit, ratio))
        }
        return lines.joined(separator: "\n")
    }
}
