// The raw sgemm that the SiT and generation benchmarks report their throughput against.

import Tensor

/// A raw cblas_sgemm C[m, n] = A[m, k] B[n, k]^T (the Linear layout; by default the MLP's first
/// product at SiT-XL width), `calls` times per `run`.
public final class SgemmReference {
    public let m: Int, n: Int, k: Int
    public let calls: Int
    let a: Tensor, b: Tensor, c: Tensor

    /// calls: nil for >= 3 calls and about 10 GFLOP per run (a timed case about as long as a forward).
    public init(m: Int, n: Int = 4608, k: Int = 1152, calls: Int? = nil) {
        (self.m, self.n, self.k) = (m, n, k)
        var rng = RandomGenerator(seed: 2)
        a = rng.uniformTensor([m, k], low: -1, high: 1)
        b = rng.uniformTensor([n, k], low: -1, high: 1)
        c = Tensor(zeros: [m, n])
        self.calls = calls ?? max(3, 10_000_000_000 / (2 * m * n * k))
    }

    public func run() {
        for _ in 0..<calls {
            sgemm(transA: false, transB: true, m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: k,
                  c: c.pointer, ldc: n)
        }
    }

    /// GFLOP/s of one run that took `seconds`.
    public func gflops(_ seconds: Double) -> Double { Double(calls) * 2 * Double(m * n * k) / seconds / 1e9 }
}

/// The same product on oneDNN's matmul with the weight packed once in the engine's precision
/// (the reference the engine's forwards are held to); nil where oneDNN cannot run it.
public final class OneDNNMatmulReference {
    public let m: Int, n: Int, k: Int
    public let calls: Int
    let product: () -> Void

    public init?(m: Int, n: Int = 4608, k: Int = 1152, precision: Precision = Engine.precision, calls: Int? = nil) {
        (self.m, self.n, self.k) = (m, n, k)
        var rng = RandomGenerator(seed: 2)
        let a = rng.uniformTensor([m, k], low: -1, high: 1)
        let b = rng.uniformTensor([n, k], low: -1, high: 1)
        let c = Tensor(zeros: [m, n])
        guard let f = Engine.packedProduct(x: a, weights: [b], precision: precision, out: c) else { return nil }
        product = f
        self.calls = calls ?? max(3, 10_000_000_000 / (2 * m * n * k))
    }

    public func run() { for _ in 0..<calls { product() } }

    public func gflops(_ seconds: Double) -> Double { Double(calls) * 2 * Double(m * n * k) / seconds / 1e9 }
}
