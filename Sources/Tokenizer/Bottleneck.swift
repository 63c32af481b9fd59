// The latent bottleneck between quant_conv and post_quant_conv, the one place where the three
// posteriors of the paper's ablation differ: SoftVQ (softmax mixture of codewords, the paper's
// method), hard VQ (nearest codeword, straight-through) and a diagonal Gaussian with a KL
// penalty. Encoder, decoder and the 1-D latent tokens are the same for all three.
//
// Dimension legend: N batch, L latent tokens, E codebook (latent) dim.

import Foundation
import Tensor

/// Which posterior a tokenizer uses (`softvq_swift.quantizer` in config.json; the official
/// code chooses it by model class: SoftVQModel, VQModel, KLModel).
public enum QuantizerKind: String, Codable, Sendable, CaseIterable {
    case softvq, vq, kl

    /// The official model class this kind builds.
    public var officialModel: String {
        switch self {
        case .softvq: return "SoftVQModel"
        case .vq: return "VQModel"
        case .kl: return "KLModel"
        }
    }
}

/// What a bottleneck hands the decoder and the loss.
public struct BottleneckOutput {
    /// The latent the decoder reads, (N, L, E).
    public let zq: Tensor
    /// The bottleneck's own loss terms, already weighted (SoftVQ: entropy; VQ: codebook,
    /// commitment, entropy; KL: kl), as the official quantizers return them in training.
    public let losses: [(name: String, value: Tensor)]
    /// SoftVQ's logits and probabilities (nil for the other kinds).
    public let soft: QuantizerOutput?
    /// Nearest-codeword index of every token (hard VQ only), rows in token order.
    public let indices: [Int]?

    public init(zq: Tensor, losses: [(name: String, value: Tensor)], soft: QuantizerOutput? = nil, indices: [Int]? = nil) {
        self.zq = zq
        self.losses = losses
        self.soft = soft
        self.indices = indices
    }
}

/// One of the three posteriors. `training` turns on the loss terms and, for the Gaussian,
/// sampling (from `rng`; its mean otherwise).
public protocol LatentBottleneck: Module {
    var kind: QuantizerKind { get }
    /// The width quant_conv must produce: E, or 2E (mean and log-variance) for the Gaussian.
    var inputDim: Int { get }
    func forward(_ h: Tensor, training: Bool, rng: inout RandomGenerator) throws -> BottleneckOutput
    /// Pushes a training batch's codeword choices into the usage history (when kept).
    func recordUsage(_ out: BottleneckOutput)
    /// Usage statistics for logging (nil when the kind has no codebook).
    func stats(_ out: BottleneckOutput) -> QuantizerStats?
}

extension LatentBottleneck {
    /// The latent the decoder reads, deterministic (no loss terms, the Gaussian's mean).
    public func latents(_ h: Tensor) throws -> Tensor {
        var rng = RandomGenerator(seed: 0)
        return try forward(h, training: false, rng: &rng).zq
    }
}

/// Builds the bottleneck a config describes, drawing its parameters from `f`.
func makeBottleneck(_ config: TokenizerConfig, _ f: inout ParameterFactory) -> any LatentBottleneck {
    switch config.quantizer {
    case .softvq: return SoftVectorQuantizer(config, &f)
    case .vq: return VectorQuantizer(config, &f)
    case .kl: return GaussianPosterior(config)
    }
}
