// Attention benchmark: the whole-matrix kernel against the blocked (flash-style) one at the
// SiT-XL head shape (16 heads of 72) over several token counts, forward (inference) and forward
// plus backward (training), timed in interleaved rounds. The switch-overs of `BlockedAttention`
// are set from this measurement.

import Foundation
import Tensor

public struct AttentionBenchmarkRow: Codable, Sendable {
    public let tokens: Int
    public let batch: Int
    /// "forward" or "forward+backward".
    public let pass: String
    public let whole: TimingStats
    public let blocked: TimingStats
    /// whole median / blocked median (above 1: blocked is faster).
    public var speedup: Double { whole.median / blocked.median }
}

public enum AttentionBenchmark {
    /// - tokens: sequence lengths; backward rows only up to `backwardUpTo` tokens (the
    ///   whole-matrix backward holds H T^2 probabilities per image).
    public static func run(tokens: [Int], batch: Int = 1, heads: Int = 16, headDim: Int = 72, repeats: Int = 5,
                           backwardUpTo: Int = 1024) -> [AttentionBenchmarkRow] {
        var rows: [AttentionBenchmarkRow] = []
        var rng = RandomGenerator(seed: 0)
        let saved = BlockedAttention.mode
        defer { BlockedAttention.mode = saved }
        for t in tokens {
            let d = heads * headDim
            let qkv = rng.normalTensor([batch, t, 3 * d], std: 0.5)
            let r = rng.normalTensor([batch, t, d])
            func forward(_ mode: BlockedAttention.Mode) -> () -> Void {
                { BlockedAttention.mode = mode; _ = Autograd.noGrad { packedAttention(qkv, heads: heads) } }
            }
            func training(_ mode: BlockedAttention.Mode) -> () -> Void {
                {
                    BlockedAttention.mode = mode
                    let x = qkv.detached()
                    x.requiresGrad = true
                    (packedAttention(x, heads: heads) * r).sum().backward()
                }
            }
            var variants: [(String, () -> Void)] = [("fw whole", forward(.never)), ("fw blocked", forward(.always))]
            if t <= backwardUpTo { variants += [("fb whole", training(.never)), ("fb blocked", training(.always))] }
            let reps = t >= 4096 ? Swift.max(1, repeats / 2) : repeats
            let stats = measureInterleaved(variants, warmup: 1, repeats: reps)
            rows.append(AttentionBenchmarkRow(tokens: t, batch: batch, pass: "forward", whole: stats["fw whole"]!, blocked: stats["fw blocked"]!))
            if t <= backwardUpTo {
                rows.append(AttentionBenchmarkRow(tokens: t, batch: batch, pass: "forward+backward", whole: stats["fb whole"]!, blocked: stats["fb blocked"]!))
            }
        }
        return rows
    }

    public static func table(_ rows: [AttentionBenchmarkRow], heads: Int = 16, headDim: Int = 72) -> String {
        var s = "| tokens | batch | pass | whole-matrix (median, min..max) | blocked (median, min..max) | whole / blocked |\n|---|---|---|---|---|---|\n"
        func f(_ t: TimingStats) -> String { String(format: "%.2f ms (%.2f..%.2f)", t.median * 1e3, t.min * 1e3, t.max * 1e3) }
        for r in rows {
            s += "| \(r.tokens) | \(r.batch) | \(r.pass) | \(f(r.whole)) | \(f(r.blocked)) | \(String(format: "%.2fx", r.speedup)) |\n"
        }
        s += "\n\(heads) heads of \(headDim)\(heads == 16 && headDim == 72 ? " (SiT-XL)" : ""), packed qkv layout; tiles \(BlockedAttention.queryTile) queries x \(BlockedAttention.keyTile) keys; the engine runs blocked from \(BlockedAttention.inferenceMinTokens) tokens in inference and from \(BlockedAttention.trainingMinTokens) in training."
        return s
    }
}
