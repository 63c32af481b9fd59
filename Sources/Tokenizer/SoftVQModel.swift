// SoftVQ-VAE tokenizer (official SoftVQModel): ViT encoder with learnable latent query tokens,
// quant_conv, soft vector quantizer, post_quant_conv, ViT decoder with mask tokens, to_pixel,
// unpatchify. Checkpoint keys are the official state-dict keys.
//
// Dimension legend: N batch, T = G*G image patches, L latent tokens, D ViT width,
// E codebook dim, p patch, H = W image side.

import Foundation
import Tensor

/// Official TimmViTEncoder: [cls, patches] + pos_embed, then latent tokens + latent_pos_embed
/// appended; blocks; norm; the last L tokens.
public final class ViTEncoder: Module {
    public let latentTokens: Tensor      // (1, L, D)
    public let latentPosEmbed: Tensor    // (1, L, D)
    /// Only present when enc_token_drop > 0 (training-time token drop, not applied here).
    public let maskToken: Tensor?        // (1, 1, D)
    public let model: VisionTransformer

    init(_ spec: ViTSpec, latentTokens l: Int, tokenDrop: Bool, _ f: inout ParameterFactory) {
        model = VisionTransformer(spec, &f)
        latentTokens = f.truncatedNormal([1, l, spec.width], std: 0.02)
        latentPosEmbed = f.truncatedNormal([1, l, spec.width], std: 0.02)
        maskToken = tokenDrop ? f.truncatedNormal([1, 1, spec.width], std: 0.02) : nil
    }

    public var entries: [(String, ModuleEntry)] {
        var e: [(String, ModuleEntry)] = [("latent_tokens", .tensor(latentTokens)), ("latent_pos_embed", .tensor(latentPosEmbed))]
        if let maskToken { e.append(("mask_token", .tensor(maskToken))) }
        e.append(("model", .module(model)))
        return e
    }

    /// images (N, 3, H, W) -> (N, L, D)
    public func callAsFunction(_ images: Tensor) -> Tensor {
        let n = images.dim(0), l = latentTokens.dim(1)
        let x = model.withClassAndPositions(model.patchEmbed(images))      // (N, 1 + T, D)
        let z = repeatBatch(latentTokens + latentPosEmbed, n)               // (N, L, D)
        let h = model.norm(model.runBlocks(concat([x, z], axis: 1)))        // (N, 1 + T + L, D)
        return h.slice(axis: 1, (h.dim(1) - l)..<h.dim(1))                  // (N, L, D)
    }
}

/// to_pixel with to_pixel='linear': `model` Linear D -> p*p*3.
public final class ToPixel: Module {
    public let model: Linear
    public let patchSize: Int
    init(width: Int, patch: Int, _ f: inout ParameterFactory) {
        patchSize = patch
        model = Linear(width, 3 * patch * patch, &f)
    }
    public var entries: [(String, ModuleEntry)] { [("model", .module(model))] }

    /// (N, T, D) -> images (N, 3, H, W). Each token's p*p*3 outputs are ordered
    /// (row-in-patch, col-in-patch, channel), as the official unpatchify reads them.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let n = x.dim(0), t = x.dim(1), p = patchSize
        let g = Int(Double(t).squareRoot().rounded())
        precondition(g * g == t, "to_pixel: \(t) tokens do not form a square grid")
        return model(x)                                          // (N, T, p p 3)
            .reshaped([n, g, g, p, p, 3])                        // (N, Gh, Gw, p, q, C)
            .permuted([0, 5, 1, 3, 2, 4])                        // (N, C, Gh, p, Gw, q)
            .reshaped([n, 3, g * p, g * p])                      // (N, 3, H, W)
    }

    /// dL/dW of the linear layer (the decoder's `last_layer`, (p p 3, D)) from its input x
    /// (N, T, D) and dL/d(image) (N, 3, H, W): the image gradient read back in the layer's
    /// output order (the inverse of the unpatchify permutation), times x.
    public func weightGradient(input x: Tensor, imageGradient g: Tensor) -> Tensor {
        Autograd.noGrad {
            let n = x.dim(0), t = x.dim(1), p = patchSize
            let grid = Int(Double(t).squareRoot().rounded())
            let gy = g.reshaped([n, 3, grid, p, grid, p])        // (N, C, Gh, p, Gw, q)
                .permuted([0, 2, 4, 3, 5, 1])                    // (N, Gh, Gw, p, q, C)
                .reshaped([n * t, 3 * p * p])
            return matmul(gy, x.reshaped([n * t, x.dim(2)]), transposeA: true)   // (p p 3, D)
        }
    }
}

/// Official TimmViTDecoder: mask_token at every image position with cls + pos_embed, then the
/// latent tokens + latent_pos_embed; blocks; norm; image tokens; to_pixel. The ViT's own
/// patch_embed is part of the state dict but never used.
public final class ViTDecoder: Module {
    public let maskToken: Tensor         // (1, 1, D)
    public let latentPosEmbed: Tensor    // (1, L, D)
    public let model: VisionTransformer
    public let toPixel: ToPixel

    init(_ spec: ViTSpec, latentTokens l: Int, _ f: inout ParameterFactory) {
        model = VisionTransformer(spec, &f)
        maskToken = f.truncatedNormal([1, 1, spec.width], std: 0.02)
        latentPosEmbed = f.truncatedNormal([1, l, spec.width], std: 0.02)
        toPixel = ToPixel(width: spec.width, patch: spec.patchSize, &f)
    }

    public var entries: [(String, ModuleEntry)] {
        [("mask_token", .tensor(maskToken)), ("latent_pos_embed", .tensor(latentPosEmbed)),
         ("model", .module(model)), ("to_pixel", .module(toPixel))]
    }

    /// z: (N, L, D) (post_quant_conv output) -> images (N, 3, H, W)
    public func callAsFunction(_ z: Tensor) -> Tensor { toPixel(features(z)) }

    /// z: (N, L, D) -> the image tokens after the final norm (N, T, D), to_pixel's input.
    public func features(_ z: Tensor) -> Tensor {
        let n = z.dim(0), t = model.spec.numPatches
        let masks = repeatBatch(maskToken, t)                               // (T, 1, D)
            .reshaped([1, t, model.spec.width])                             // (1, T, D)
        let x = model.withClassAndPositions(repeatBatch(masks, n))          // (N, 1 + T, D)
        let h = model.norm(model.runBlocks(concat([x, z + latentPosEmbed], axis: 1)))  // (N, 1 + T + L, D)
        return h.slice(axis: 1, 1..<(1 + t))                                // (N, T, D)
    }
}

/// The SoftVQ-VAE tokenizer.
public final class SoftVQModel: Module {
    public let config: TokenizerConfig
    public let encoder: ViTEncoder
    public let quantConv: Linear
    public let decoder: ViTDecoder
    public let postQuantConv: Linear
    /// The posterior between quant_conv and post_quant_conv: SoftVQ, or a baseline of the
    /// ablation (hard VQ, Gaussian); key `quantize`.
    public let bottleneck: any LatentBottleneck
    /// False after `load(..., decoderOnly: true)`: the encoder's weights were never read.
    public private(set) var encoderLoaded = true

    public init(config: TokenizerConfig, initialization: WeightInit = .random(seed: 0)) throws {
        try config.validate()
        self.config = config
        let enc = try config.encoderSpec, dec = try config.decoderSpec
        var f = ParameterFactory(initialization, layerScaleInit: Float(config.layerScaleInit ?? 1e-5))
        encoder = ViTEncoder(enc, latentTokens: config.numLatentTokens, tokenDrop: config.encTokenDrop > 0, &f)
        let e = config.codebookEmbedDim
        quantConv = Linear(enc.width, config.quantizer == .kl ? 2 * e : e, &f)
        decoder = ViTDecoder(dec, latentTokens: config.numLatentTokens, &f)
        postQuantConv = Linear(e, dec.width, &f)
        bottleneck = makeBottleneck(config, &f)
        precondition(bottleneck.inputDim == quantConv.outFeatures)
    }

    /// The soft quantizer of a SoftVQ tokenizer (the paper's model; a programming error on the
    /// baselines, which have `bottleneck` only).
    public var quantizer: SoftVectorQuantizer {
        guard let q = bottleneck as? SoftVectorQuantizer else {
            preconditionFailure("this tokenizer's posterior is \(bottleneck.kind.rawValue), not softvq")
        }
        return q
    }

    /// Official state-dict order: encoder, quant_conv, decoder, post_quant_conv, quantize (none
    /// for the Gaussian, as the official KLModel).
    public var entries: [(String, ModuleEntry)] {
        var e: [(String, ModuleEntry)] = [("encoder", .module(encoder)), ("quant_conv", .module(quantConv)),
                                          ("decoder", .module(decoder)), ("post_quant_conv", .module(postQuantConv))]
        if !bottleneck.entries.isEmpty { e.append(("quantize", .module(bottleneck))) }
        return e
    }

    public var imageSize: Int { config.imageSize }
    public var numLatentTokens: Int { config.numLatentTokens }
    public var latentDim: Int { config.codebookEmbedDim }

    /// Throws unless images are (N, 3, image_size, image_size) with N >= 1.
    public func checkImages(_ images: Tensor) throws {
        guard images.rank == 4 else {
            throw TokenizerError.badInput("images must be (batch, 3, \(imageSize), \(imageSize)), got shape \(images.shape)")
        }
        guard images.dim(1) == 3 else {
            throw TokenizerError.badInput("images must have 3 channels (convert grayscale to RGB first), got \(images.dim(1)) in shape \(images.shape)")
        }
        guard images.dim(2) == imageSize, images.dim(3) == imageSize else {
            throw TokenizerError.badInput("this tokenizer takes \(imageSize)x\(imageSize) images, got \(images.dim(2))x\(images.dim(3))")
        }
        guard images.dim(0) > 0 else { throw TokenizerError.badInput("empty image batch") }
    }

    /// Encoder + quant_conv: images (N, 3, H, W) in [-1, 1] -> pre-quantization h (N, L, E).
    public func encode(_ images: Tensor) throws -> Tensor {
        guard encoderLoaded else {
            throw TokenizerError.unsupported("this tokenizer was loaded for decoding only; load it without decoderOnly to encode")
        }
        try checkImages(images)
        return quantConv(encoder(images))
    }

    /// Soft quantization of h (N, L, E).
    public func quantize(_ h: Tensor) throws -> QuantizerOutput { try quantizer(h) }

    /// post_quant_conv + decoder: z_q (N, L, E) -> images (N, 3, H, W), not clamped.
    public func decode(_ zq: Tensor) throws -> Tensor {
        guard zq.rank == 3, zq.dim(1) == numLatentTokens, zq.dim(2) == latentDim else {
            throw TokenizerError.badInput("latents must be (batch, \(numLatentTokens), \(latentDim)), got \(zq.shape)")
        }
        return decoder(postQuantConv(zq))
    }

    /// Images -> continuous latents z_q (N, L, E) (what SiT is trained on, before vq_mean /
    /// vq_std normalisation): the soft mixture, the nearest codewords or the Gaussian's mean.
    public func latents(_ images: Tensor) throws -> Tensor { try bottleneck.latents(try encode(images)) }

    /// Full forward: (reconstruction, bottleneck output), deterministic, without loss terms.
    public func reconstruct(_ images: Tensor) throws -> (Tensor, BottleneckOutput) {
        var rng = RandomGenerator(seed: 0)
        return try reconstruct(images, training: false, rng: &rng)
    }

    /// Full forward; in training with the bottleneck's loss terms (and the Gaussian's sample
    /// drawn from `rng`).
    public func reconstruct(_ images: Tensor, training: Bool, rng: inout RandomGenerator) throws -> (Tensor, BottleneckOutput) {
        let q = try bottleneck.forward(try encode(images), training: training, rng: &rng)
        return (try decode(q.zq), q)
    }

    /// (z_q - vq_mean) / vq_std
    public func normalizeLatents(_ zq: Tensor) -> Tensor {
        Autograd.noGrad { (zq - Float(config.vqMean)) / Float(config.vqStd) }
    }

    /// z * vq_std + vq_mean
    public func denormalizeLatents(_ z: Tensor) -> Tensor {
        Autograd.noGrad { z * Float(config.vqStd) + Float(config.vqMean) }
    }
}

// MARK: - Checkpoints

extension SoftVQModel {
    /// Keys of official checkpoints that belong to training-time REPA modules; skipped on load.
    public static func isTrainingOnlyKey(_ key: String) -> Bool {
        key.hasPrefix("projection.") || key.hasPrefix("repa_model.")
    }

    /// Loads a checkpoint folder (config.json + model.safetensors), strictly. `configure` may
    /// adjust the config first (e.g. ViT size overrides that the official config.json cannot
    /// record). Keys under `projection.` / `repa_model.` are skipped with a notice.
    /// - decoderOnly: check every tensor but read only what decoding needs (not the encoder and
    ///   quant_conv, about half the weights), for sampling; `encode` then throws.
    public static func load(folder: String, decoderOnly: Bool = false, log: (String) -> Void = { print($0) },
                            configure: (inout TokenizerConfig) throws -> Void = { _ in }) throws -> SoftVQModel {
        let configPath = (folder as NSString).appendingPathComponent("config.json")
        var config = try TokenizerConfig.load(path: configPath)
        try configure(&config)
        do {
            try config.validate()
        } catch TokenizerError.config(let why) {
            throw TokenizerError.config("\(configPath): \(why)")
        }
        return try load(config: config, weights: (folder as NSString).appendingPathComponent("model.safetensors"),
                        decoderOnly: decoderOnly, log: log)
    }

    public static func load(config: TokenizerConfig, weights path: String, decoderOnly: Bool = false,
                            log: (String) -> Void = { print($0) }) throws -> SoftVQModel {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch {
            throw TokenizerError.checkpoint("cannot open tokenizer weights: \(error)")
        }
        try config.validate()
        try checkArchitecture(config, against: file)
        // A config far larger than the weights cannot belong to them: refuse it before the model
        // is allocated (smaller differences are named key by key by the strict load).
        let stored = file.entries.values.reduce(0.0) { $0 + Double($1.shape.reduce(1, *)) }
        let needed = try config.parameterCount
        if needed > 2 * stored + 1e7 {
            throw TokenizerError.checkpoint("the tokenizer config describes \(String(format: "%.3g", needed)) parameters but \(path) holds only \(Int(stored)) values; they do not belong together")
        }
        let model = try SoftVQModel(config: config, initialization: .uninitialized)
        do {
            let encoderKey = { (k: String) in k.hasPrefix("encoder.") || k.hasPrefix("quant_conv.") }
            let skipped = try model.load(from: file, skip: isTrainingOnlyKey, read: { !decoderOnly || !encoderKey($0) })
            model.encoderLoaded = !decoderOnly
            if !skipped.isEmpty {
                let groups = Set(skipped.map { String($0.split(separator: ".").first!) }).sorted()
                log("tokenizer: skipped \(skipped.count) training-only tensors (\(groups.map { $0 + ".*" }.joined(separator: ", ")))")
            }
        } catch let e as CheckpointError {
            throw TokenizerError.checkpoint(e.description)
        }
        return model
    }

    /// Explains a config/weights disagreement in terms of config fields before the strict load.
    /// Reads only the config and the file's header, so it runs before the model is allocated.
    static func checkArchitecture(_ config: TokenizerConfig, against file: SafeTensorsFile) throws {
        let name = (file.path as NSString).lastPathComponent
        let encoderSpec = try config.encoderSpec, decoderSpec = try config.decoderSpec
        func shape(_ k: String) -> [Int]? { file.entries[k]?.shape }
        func depth(_ prefix: String) -> Int {
            var d = 0
            while file.entries["\(prefix).blocks.\(d).norm1.weight"] != nil { d += 1 }
            return d
        }
        for (role, prefix, spec, fields) in [("encoder", "encoder.model", encoderSpec, ("enc_embed_dim", "enc_depth", "enc_patch_size", "encoder_model")),
                                             ("decoder", "decoder.model", decoderSpec, ("dec_embed_dim", "dec_depth", "dec_patch_size", "decoder_model"))] {
            if let s = shape("\(prefix).pos_embed"), s.count == 3 {
                if s[2] != spec.width {
                    throw TokenizerError.checkpoint("\(name): the \(role) ViT is \(s[2]) wide but the config (\(fields.3) / \(fields.0)) gives \(spec.width)")
                }
                if s[1] != 1 + spec.numPatches {
                    throw TokenizerError.checkpoint("\(name): the \(role) position table has \(s[1]) rows but image_size \(spec.imageSize) with \(fields.2) \(spec.patchSize) needs \(1 + spec.numPatches)")
                }
            }
            let d = depth(prefix)
            if d > 0 && d != spec.depth {
                throw TokenizerError.checkpoint("\(name): the \(role) ViT has \(d) blocks but the config (\(fields.3) / \(fields.1)) gives \(spec.depth)")
            }
            if let w = shape("\(prefix).patch_embed.proj.weight"), w.count == 4, w[2] != spec.patchSize {
                throw TokenizerError.checkpoint("\(name): the \(role) patch embedding is \(w[2])x\(w[3]) but \(fields.2) is \(spec.patchSize)")
            }
        }
        if let s = shape("encoder.latent_tokens"), s.count == 3, s[1] != config.numLatentTokens {
            throw TokenizerError.checkpoint("\(name): \(s[1]) latent tokens in the weights but num_latent_tokens is \(config.numLatentTokens)")
        }
        let kind = config.quantizer
        if kind != .softvq, file.entries["quantize.embedding"] != nil {
            throw TokenizerError.checkpoint("\(name) holds a SoftVQ codebook but the config's quantizer is \(kind.rawValue)")
        }
        if kind == .softvq, file.entries["quantize.embedding.weight"] != nil {
            throw TokenizerError.checkpoint("\(name) holds a hard-VQ codebook (quantize.embedding.weight); set softvq_swift.quantizer to \"vq\" in config.json")
        }
        if let s = shape("quantize.embedding.weight"), kind == .vq, s != [config.codebookSize, config.codebookEmbedDim] {
            throw TokenizerError.checkpoint("\(name): codebook shape \(s) but the config gives (codebook_size \(config.codebookSize), codebook_embed_dim \(config.codebookEmbedDim))")
        }
        if let s = shape("quantize.embedding"), s.count == 3,
           s != [config.numCodebooks, config.codebookSize, config.codebookEmbedDim] {
            throw TokenizerError.checkpoint("\(name): codebook shape \(s) but the config gives (num_codebooks \(config.numCodebooks), codebook_size \(config.codebookSize), codebook_embed_dim \(config.codebookEmbedDim))")
        }
    }

    /// Writes config.json and model.safetensors (float32 by default, f16 / bf16 on request) into
    /// `folder` (created if needed).
    public func save(folder: String, dtype: DType = .f32) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try atomicWrite(try config.jsonData(), to: (folder as NSString).appendingPathComponent("config.json"))
        try save(to: (folder as NSString).appendingPathComponent("model.safetensors"), dtype: dtype)
    }
}
