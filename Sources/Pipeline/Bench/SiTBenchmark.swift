// Throughput of the SiT forward (inference, no tape) with random weights of the released shapes,
// reported beside a raw sgemm of the same row count.

import Foundation
import SiT
import Tensor

public enum SiTBenchmark {
    public struct Result: CustomStringConvertible, Sendable {
        public let batch: Int
        public let tokens: Int
        public let secondsPerForward: Double
        /// Matmul FLOPs of one forward (linears + attention products).
        public let flops: Double
        public var gflopPerSecond: Double { flops / secondsPerForward / 1e9 }

        public var description: String {
            String(format: "batch %d x %d tokens: %.3f s/forward, %.1f GFLOP, %.1f GFLOP/s",
                   batch, tokens, secondsPerForward, flops / 1e9, gflopPerSecond)
        }
    }

    /// Matmul FLOPs (2 M N K per product) of one forward of `config` at batch `n`: embedders,
    /// per block qkv, q k^T, P v, proj, fc1, fc2, adaLN; final adaLN and linear.
    public static func forwardFLOPs(_ config: SiTConfig, batch n: Int) -> Double {
        let d = Double(config.hiddenSize), t = Double(config.numTokens), b = Double(n)
        let m = b * t
        let cIn = Double(config.inChannels * config.patchSize * config.patchSize)
        let mlp = Double(config.mlpHiddenSize)
        var f = 2 * m * cIn * d                                   // x_embedder
        f += 2 * b * (256 * d + d * d)                            // t_embedder
        let block = 2 * m * d * 3 * d                             // qkv
            + 2 * 2 * b * t * t * d                               // q k^T and P v over all heads
            + 2 * m * d * d                                       // proj
            + 2 * 2 * m * d * mlp                                 // fc1, fc2
            + 2 * b * d * 6 * d                                   // adaLN
        f += Double(config.depth) * block
        f += 2 * b * d * 2 * d + 2 * m * d * Double(config.outputWidth)   // final layer
        return f
    }

    /// Fills every parameter with small uniform noise (fast, parallel; not the official init) so
    /// timings see realistic, non-zero values everywhere.
    public static func randomize(_ model: SiT, seed: UInt64 = 0, scale: Float = 0.02) {
        for (i, (key, t)) in model.namedTensors().enumerated() where key != "pos_embed" {
            let p = t.pointer
            let s = seed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15
            parallelFor(t.count, grain: 1 << 16) { lo, hi in
                var x = (s ^ UInt64(lo)) &* 0xBF58_476D_1CE4_E5B9 | 1
                for j in lo..<hi {
                    x ^= x << 13; x ^= x >> 7; x ^= x << 17
                    p[j] = scale * (Float(x >> 40) / Float(1 << 24) * 2 - 1)
                }
            }
            t.markModified()
        }
    }

    /// Times the forward of `config` (default SiT-XL/1 over 64 tokens x 32 channels) at each batch
    /// size, under `Autograd.noGrad`: `warmup` untimed runs, then the median of `repeats`.
    public static func forward(config: SiTConfig = .xl1SoftVQ(tokens: 64), batches: [Int] = [1, 8],
                               warmup: Int = 1, repeats: Int = 3, log: (String) -> Void = { print($0) }) throws -> [Result] {
        let model = try SiT(config: config)
        randomize(model)
        model.freeze()
        var results: [Result] = []
        for n in batches {
            var rng = RandomGenerator(seed: 1)
            let x = rng.normalTensor([n] + config.latentShape)
            let t = (0..<n).map { Float($0 + 1) / Float(n + 1) }
            let y = (0..<n).map { $0 % config.numClasses }
            var times: [Double] = []
            for r in 0..<(warmup + repeats) {
                let start = DispatchTime.now().uptimeNanoseconds
                let v = try Autograd.noGrad { try model(x, t: t, y: y) }
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                precondition(v.scalars.allSatisfy(\.isFinite), "benchmark forward produced non-finite values")
                if r >= warmup { times.append(seconds) }
            }
            let median = times.sorted()[times.count / 2]
            let result = Result(batch: n, tokens: config.numTokens, secondsPerForward: median,
                                flops: forwardFLOPs(config, batch: n))
            log(result.description)
            results.append(result)
        }
        return results
    }

    /// GFLOP/s of a raw sgemm C[m, n] = A[m, k] B[n, k]^T (the Linear layout), median of `repeats`.
    public static func sgemmGFLOPs(m: Int = 64, n: Int = 4608, k: Int = 1152, repeats: Int = 20) -> Double {
        let reference = SgemmReference(m: m, n: n, k: k, calls: 1)
        for _ in 0..<2 { reference.run() }
        var times: [Double] = []
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            reference.run()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return reference.gflops(times.sorted()[times.count / 2])
    }
}
