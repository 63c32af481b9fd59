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

    public init(_ config: TokenizerConfig) {
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
        guard training else { return BottleneckOutput(zq: h.slice(axis: 2, 0..<dim), losses: []) }
        let noise = Tensor(uninitialized: [h.dim(0), h.dim(1), dim])
        for i in 0..<noise.count { noise.pointer[i] = Float(rng.normal()) }
        let (z, kl) = sample(h, noise: noise)
        return BottleneckOutput(zq: z, losses: [("kl", kl * klWeight)])
    }

    /// The reparameterised sample mean + exp(logvar / 2) * noise (N, L, E) and the unweighted
    /// KL to N(0, I): 0.5 sum(mean^2 + var - 1 - logvar) over tokens and channels, summed
    /// over images and divided by N (the official `kl_loss`).
    public func sample(_ h: Tensor, noise: Tensor) -> (Tensor, Tensor) {
        let mean = h.slice(axis: 2, 0..<dim)                                // (N, L, E)
        let logvar = h.slice(axis: 2, dim..<(2 * dim)).clamped(min: -30, max: 20)
        let z = mean + (logvar * 0.5).exp() * noise
        let kl = ((mean.square() + logvar.exp() - 1 - logvar).sum() * 0.5) / Float(h.dim(0))
        return (z, kl)
    }

    public func recordUsage(_ out: BottleneckOutput) {}
    public func stats(_ out: BottleneckOutput) -> QuantizerStats? { nil }
}
