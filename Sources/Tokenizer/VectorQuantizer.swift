// Hard vector quantization, the VQ baseline of the paper's ablation (official
// modelling/quantizers/vq.py, VectorQuantizer): every latent token is replaced by its nearest
// codeword (both l2-normalised when codebook_l2_norm), gradients pass straight through to the
// encoder, and the codebook learns from the codebook loss. One codebook (the official class
// has no num_codebooks).
//
// Dimension legend: N batch, L latent tokens, R = N*L rows, E codebook dim, K codebook size.

import Foundation
import Tensor

public final class VectorQuantizer: LatentBottleneck {
    /// (K, E), key `embedding.weight` (an nn.Embedding).
    public let codewords: Tensor
    /// (65536): the last 65536 chosen indices (a float buffer as in the official code).
    public let codebookUsed: Tensor?
    public let codebookSize: Int
    public let dim: Int
    public let l2Norm: Bool
    /// commit_loss_beta: weight of the commitment term.
    public let beta: Float
    public let entropyLossRatio: Float
    public static let historyLength = 65536

    public init(_ config: TokenizerConfig, _ f: inout ParameterFactory) {
        codebookSize = config.codebookSize
        dim = config.codebookEmbedDim
        l2Norm = config.codebookL2Norm
        beta = Float(config.commitLossBeta)
        entropyLossRatio = Float(config.entropyLossRatio)
        // U(-1/K, 1/K), then l2-normalised rows (the official initialization).
        let e = f.uniform([codebookSize, dim], bound: 1 / Float(codebookSize))
        if case .random = f.mode, l2Norm { e.assign(Autograd.noGrad { e.l2Normalized() }) }
        codewords = e
        if config.codebookShowUsage {
            let used = f.mode == .uninitialized ? Tensor(uninitialized: [Self.historyLength]) : Tensor(zeros: [Self.historyLength])
            used.requiresGrad = false
            codebookUsed = used
        } else {
            codebookUsed = nil
        }
    }

    public var kind: QuantizerKind { .vq }
    public var inputDim: Int { dim }

    public var entries: [(String, ModuleEntry)] {
        var e: [(String, ModuleEntry)] = [("embedding.weight", .tensor(codewords))]
        if let codebookUsed { e.append(("codebook_used", .tensor(codebookUsed))) }
        return e
    }

    /// Squared distances (R, K) between the rows of z (R, E) and the codewords (K, E):
    /// |z|^2 + |e|^2 - 2 z.e, the official expansion (on the tape).
    static func distances(_ z: Tensor, _ codebook: Tensor) -> Tensor {
        let zz = z.square().sum(axes: [1], keepDims: true)               // (R, 1)
        let ee = codebook.square().sum(axes: [1]).reshaped([1, -1])      // (1, K)
        return zz + ee - matmul(z, codebook, transposeB: true) * 2       // (R, K)
    }

    /// h (N, L, E) -> nearest codewords, straight-through. In training the official loss
    /// terms: codebook mean((z_q - sg[z])^2), commitment beta mean((sg[z_q] - z)^2) and
    /// entropy_loss_ratio * entropy(-d) (temperature 0.01).
    public func forward(_ h: Tensor, training: Bool, rng: inout RandomGenerator) throws -> BottleneckOutput {
        guard h.rank == 3, h.dim(2) == dim else {
            throw TokenizerError.badInput("quantizer input must be (batch, tokens, \(dim)), got \(h.shape)")
        }
        let (n, l) = (h.dim(0), h.dim(1))
        var z = h.reshaped([n * l, dim])                                 // (R, E)
        let codebook = l2Norm ? codewords.l2Normalized() : codewords     // (K, E)
        if l2Norm { z = z.l2Normalized() }
        let d = Self.distances(z, codebook)                              // (R, K)
        let idx = Autograd.noGrad { (d * -1).argmaxLastAxis() }          // nearest = largest -d
        let zq = embedding(codebook, idx)                                // (R, E), gradient to the codebook
        var losses: [(name: String, value: Tensor)] = []
        if training {
            losses.append(("codebook", (zq - z.detached()).square().mean()))
            losses.append(("commitment", (zq.detached() - z).square().mean() * beta))
            if entropyLossRatio != 0 {
                losses.append(("entropy", SoftVectorQuantizer.entropyLoss(logits: d * -1, eps: 1e-5) * entropyLossRatio))
            }
        }
        // Straight-through: the value of z_q, the gradient of z.
        let st = z + (zq - z).detached()
        return BottleneckOutput(zq: st.reshaped([n, l, dim]), losses: losses, indices: idx)
    }

    /// The official history update: shift left by the batch's row count, append its indices.
    public func recordUsage(_ out: BottleneckOutput) {
        guard let used = codebookUsed, let idx = out.indices else { return }
        let len = Self.historyLength, cur = Swift.min(idx.count, len)
        let p = used.pointer
        if cur < len { p.update(from: p + cur, count: len - cur) }
        for j in 0..<cur { p[len - cur + j] = Float(idx[idx.count - cur + j]) }
    }

    public func stats(_ out: BottleneckOutput) -> QuantizerStats? {
        guard let idx = out.indices else { return nil }
        var counts = [Double](repeating: 0, count: codebookSize)
        for i in idx { counts[i] += 1 }
        var h = 0.0
        for c in counts where c > 0 { let q = c / Double(idx.count); h -= q * Foundation.log(q) }
        var history = 0.0
        if let used = codebookUsed {
            history = Double(Set((0..<Self.historyLength).map { Int(used.pointer[$0]) }).count) / Double(codebookSize)
        }
        return QuantizerStats(perplexity: Foundation.exp(h), batchUsage: Double(counts.filter { $0 > 0 }.count) / Double(codebookSize),
                              historyUsage: history, meanMaxProb: 1, tokenCosine: .nan)
    }
}
