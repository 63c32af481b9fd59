// Soft vector quantization (SoftVQ-VAE): every latent token is replaced by a softmax-weighted
// mixture of l2-normalised codewords of its codebook; no hard assignment, no straight-through.
//
// Dimension legend: N batch, L latent tokens, B = num_codebooks, S = L / B tokens per codebook,
// E codebook dim, K codebook size.

import Foundation
import Tensor

/// What the soft quantizer returns.
public struct QuantizerOutput {
    /// The continuous latent, (N, L, E): probs . normalised codebook, in token order.
    public let zq: Tensor
    /// Cosine similarities before / tau, (B, N*S, K): codebook b owns tokens b*S..<(b+1)*S of
    /// every image; rows are batch-major then token within the block.
    public let logits: Tensor
    /// softmax(logits / tau), (B, N*S, K).
    public let probs: Tensor
    /// The quantizer input after l2-normalisation (or as given), (B, N*S, E).
    public let tokens: Tensor

    /// Arg-max codeword of each row of `probs`, (B, N*S) flattened (diagnostic only).
    public var indices: [Int] { probs.argmaxLastAxis() }
}

/// Codebook-usage statistics for logging.
public struct QuantizerStats: Sendable, CustomStringConvertible {
    /// exp(entropy of the batch-mean soft assignment), averaged over codebooks (max K).
    public var perplexity: Double
    /// Distinct arg-max codewords in this batch / K, averaged over codebooks.
    public var batchUsage: Double
    /// Distinct codewords in the `codebook_used` history / K, averaged over codebooks (0 when
    /// the history is off).
    public var historyUsage: Double
    /// Mean of the largest probability of each row.
    public var meanMaxProb: Double
    /// Mean cosine similarity between each (normalised) token and its z_q.
    public var tokenCosine: Double

    public var description: String {
        String(format: "perplexity %.1f, batch usage %.3f, history usage %.3f, max prob %.3f, cos %.3f",
               perplexity, batchUsage, historyUsage, meanMaxProb, tokenCosine)
    }
}

public final class SoftVectorQuantizer: LatentBottleneck {
    /// (B, K, E)
    public let embedding: Tensor
    /// (B, 65536): the last 65536 arg-max indices of each codebook seen in training (a float
    /// buffer as in the official code; logging only, not trained).
    public let codebookUsed: Tensor?
    public let numCodebooks: Int
    public let codebookSize: Int
    public let dim: Int
    public let tau: Float
    public let l2Norm: Bool
    public let entropyLossRatio: Float
    public static let historyLength = 65536

    init(_ config: TokenizerConfig, _ f: inout ParameterFactory) {
        numCodebooks = config.numCodebooks
        codebookSize = config.codebookSize
        dim = config.codebookEmbedDim
        tau = Float(config.tau)
        l2Norm = config.codebookL2Norm
        entropyLossRatio = Float(config.entropyLossRatio)
        let e = f.uniform([numCodebooks, codebookSize, dim], bound: 1 / Float(codebookSize))
        if case .random = f.mode, l2Norm { e.assign(Autograd.noGrad { e.l2Normalized() }) }
        embedding = e
        if config.codebookShowUsage {
            let used = f.mode == .uninitialized ? Tensor(uninitialized: [numCodebooks, Self.historyLength])
                                                 : Tensor(zeros: [numCodebooks, Self.historyLength])
            used.requiresGrad = false
            codebookUsed = used
        } else {
            codebookUsed = nil
        }
    }

    public var entries: [(String, ModuleEntry)] {
        var e: [(String, ModuleEntry)] = [("embedding", .tensor(embedding))]
        if let codebookUsed { e.append(("codebook_used", .tensor(codebookUsed))) }
        return e
    }

    /// h: (N, L, E) -> soft quantization. Gradients reach h through the logits and z_q, and the
    /// codebook through z_q only (the logits use a detached codebook, as the official code).
    public func callAsFunction(_ h: Tensor) throws -> QuantizerOutput {
        guard h.rank == 3, h.dim(2) == dim else {
            throw TokenizerError.badInput("quantizer input must be (batch, tokens, \(dim)), got \(h.shape)")
        }
        let (n, l, e) = (h.dim(0), h.dim(1), h.dim(2))
        guard l % numCodebooks == 0 else {
            throw TokenizerError.badInput("\(l) tokens cannot be split into \(numCodebooks) codebooks")
        }
        let b = numCodebooks, s = l / b
        var z = h.reshaped([n, b, s, e])                        // (N, B, S, E)
            .permuted([1, 0, 2, 3])                             // (B, N, S, E)
            .reshaped([b, n * s, e])                            // (B, N*S, E)
        let codebook = l2Norm ? embedding.l2Normalized() : embedding    // (B, K, E)
        if l2Norm { z = z.l2Normalized() }
        let logits = matmul(z, codebook.detached(), transposeB: true)   // (B, N*S, K)
        let probs = (logits / tau).softmax()                    // (B, N*S, K)
        let zq = matmul(probs, codebook)                        // (B, N*S, E)
            .reshaped([b, n, s, e])
            .permuted([1, 0, 2, 3])                             // (N, B, S, E)
            .reshaped([n, l, e])                                // (N, L, E)
        return QuantizerOutput(zq: zq, logits: logits, probs: probs, tokens: z)
    }

    public var kind: QuantizerKind { .softvq }
    public var inputDim: Int { dim }

    /// LatentBottleneck: the soft quantization, with the weighted entropy regulariser in training.
    public func forward(_ h: Tensor, training: Bool, rng: inout RandomGenerator) throws -> BottleneckOutput {
        let q = try self(h)
        let losses: [(name: String, value: Tensor)] = training && entropyLossRatio != 0 ? [("entropy", weightedEntropyLoss(q))] : []
        return BottleneckOutput(zq: q.zq, losses: losses, soft: q)
    }

    /// The official regulariser on raw logits (B, R, K): with q = softmax(logits / 0.01),
    /// mean_rows H(q) - H(mean_rows q) (1e-6 inside the last log), rows of all codebooks pooled.
    /// Not multiplied by entropy_loss_ratio.
    /// (The hard VQ's version of the official code puts 1e-5 in the last log: `eps`.)
    public static func entropyLoss(logits: Tensor, temperature: Float = 0.01, eps: Float = 1e-6) -> Tensor {
        let k = logits.dim(-1)
        let flat = logits.reshaped([-1, k]) / temperature      // (R, K)
        let p = flat.softmax()
        let logp = flat.logSoftmax()
        let sampleEntropy = -((p * logp).sum(axes: [1]).mean()) // ()
        let avg = p.mean(axes: [0])                             // (K)
        let avgEntropy = -((avg * (avg + eps).log()).sum())   // ()
        return sampleEntropy - avgEntropy
    }

    /// entropy_loss_ratio * entropyLoss (what the official quantizer returns in training).
    public func weightedEntropyLoss(_ out: QuantizerOutput) -> Tensor {
        Self.entropyLoss(logits: out.logits) * entropyLossRatio
    }

    /// Pushes a training batch's arg-max indices into the history (LatentBottleneck).
    public func recordUsage(_ out: BottleneckOutput) { if let soft = out.soft { recordUsage(soft) } }

    /// Usage statistics of a bottleneck output (LatentBottleneck).
    public func stats(_ out: BottleneckOutput) -> QuantizerStats? { out.soft.map { stats($0) } }

    /// Pushes this batch's arg-max indices into the `codebook_used` history (training only).
    /// The official code means to do this but shifts by the number of codebooks instead of the
    /// number of rows; here each codebook's row receives its own N*S indices.
    public func recordUsage(_ out: QuantizerOutput) {
        guard let used = codebookUsed else { return }
        let idx = out.indices
        let rows = idx.count / numCodebooks
        let len = Self.historyLength
        let cur = Swift.min(rows, len)
        for k in 0..<numCodebooks {
            let row = used.pointer + k * len
            if cur < len { (row).update(from: row + cur, count: len - cur) }
            for j in 0..<cur { row[len - cur + j] = Float(idx[k * rows + rows - cur + j]) }
        }
    }

    /// Usage statistics of one quantizer output (no gradients).
    public func stats(_ out: QuantizerOutput) -> QuantizerStats {
        Autograd.noGrad {
            let b = numCodebooks, k = codebookSize
            let rows = out.probs.dim(1)
            let p = out.probs.pointer
            var perplexity = 0.0, usage = 0.0, maxProb = 0.0
            for c in 0..<b {
                var mean = [Double](repeating: 0, count: k)
                var seen = Set<Int>()
                for r in 0..<rows {
                    let row = p + (c * rows + r) * k
                    var best = 0
                    for j in 0..<k {
                        mean[j] += Double(row[j])
                        if row[j] > row[best] { best = j }
                    }
                    seen.insert(best)
                    maxProb += Double(row[best])
                }
                var h = 0.0
                for j in 0..<k { let q = mean[j] / Double(rows); if q > 0 { h -= q * Foundation.log(q) } }
                perplexity += Foundation.exp(h)
                usage += Double(seen.count) / Double(k)
            }
            var history = 0.0
            if let used = codebookUsed {
                for c in 0..<b {
                    let row = used.pointer + c * Self.historyLength
                    history += Double(Set((0..<Self.historyLength).map { Int(row[$0]) }).count) / Double(k)
                }
                history /= Double(b)
            }
            // Cosine between normalised token and its z_q (rows in quantizer layout).
            let zq = out.zq
            let n = zq.dim(0), l = zq.dim(1), e = zq.dim(2), s = l / b
            var cos = 0.0
            let t = out.tokens.pointer
            for c in 0..<b {
                for img in 0..<n {
                    for i in 0..<s {
                        let a = t + (c * n * s + img * s + i) * e
                        let q = zq.pointer + (img * l + c * s + i) * e
                        var dot = 0.0, na = 0.0, nq = 0.0
                        for j in 0..<e { dot += Double(a[j] * q[j]); na += Double(a[j] * a[j]); nq += Double(q[j] * q[j]) }
                        cos += dot / Swift.max((na * nq).squareRoot(), 1e-8)
                    }
                }
            }
            return QuantizerStats(perplexity: perplexity / Double(b), batchUsage: usage / Double(b),
                                  historyUsage: history, meanMaxProb: maxProb / Double(b * rows),
                                  tokenCosine: cos / Double(n * l))
        }
    }
}
