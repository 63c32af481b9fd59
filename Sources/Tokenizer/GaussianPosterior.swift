// The diagonal Gaussian posterior, the KL baseline of the paper's ablation (official KLModel
// with DiagonalGaussianDistribution in modelling/quantizers/kl.py): quant_conv produces a mean
// and a log-variance per latent channel, training decodes a reparameterised sample and pays
// kl_loss_weight * KL(q || N(0, I)) summed over tokens and channels, averaged over images.
// Inference and the latents SiT learns use the mean. No parameters (the official KLModel has
// no `quantize` module).
//
// Dimension legend: N batch, L latent tokens, E latent dim.

import Foundation
import Tensor

public final class GaussianPosterior: LatentBottleneck {
    public let dim: Int
    public let klWeight: Float

    init(_ config: TokenizerConfig) {
        dim = config.codebookEmbedDim
        klWeight = Float(config.klLossWeight)
    }

    public var kind: QuantizerKind { .kl }
    public var inputDim: Int { 2 * dim }
    public var entries: [(String, ModuleEntry)] { [] }

    /// h (N, L, 2E) = [mean | logvar] (torch.chunk on the last axis); logvar clamped to
    /// [-30, 20]. Training: mean + exp(logvar / 2) * eps with eps ~ N(0, I) from `rng`, and the
    /// weighted KL; otherwise the mean.
    public func forward(_ h: Tensor, training: Bool, rng: inout RandomGenerator) throws -> BottleneckOutput {
        guard h.rank == 3, h.dim(2) == 2 * dim else {
            throw TokenizerError.badInput("posterior input must be (batch, tokens, \(2 * dim)), got \(h.shape)")
        }
        let n = h.dim(0)
        let mean = h.slice(axis: 2, 0..<dim)                                // (N, L, E)
        guard training else { return BottleneckOutput(zq: mean, losses: []) }
        let logvar = h.slice(axis: 2, dim..<(2 * dim)).clamped(min: -30, max: 20)
        let std = (logvar * 0.5).exp()
        let noise = Tensor(uninitialized: mean.shape)
        for i in 0..<noise.count { noise.pointer[i] = Float(rng.normal()) }
        let z = mean + std * noise
        // 0.5 sum(mean^2 + var - 1 - logvar) per image, summed then / N.
        let kl = ((mean.square() + logvar.exp() - 1 - logvar).sum() * 0.5) / Float(n)
        return BottleneckOutput(zq: z, losses: [("kl", kl * klWeight)])
    }

    public func recordUsage(_ out: BottleneckOutput) {}
    public func stats(_ out: BottleneckOutput) -> QuantizerStats? { nil }
}
