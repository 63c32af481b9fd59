// SoftVQ-VAE tokenizer configuration: the official `ModelArgs` dataclass as written to
// config.json (snake_case), the ViT architecture derived from the timm model names, presets of
// the released tokenizers and small presets for CPU training.
//
// Unknown fields of a config.json are kept verbatim (`raw`) and written back on save, so a
// round trip never loses anything. Our own keys (not in the official ModelArgs) live in one
// object, `softvq_swift`, so every top-level field is an official one:
//
//   enc_embed_dim, enc_depth, enc_num_heads   override the encoder ViT derived from encoder_model
//   dec_embed_dim, dec_depth, dec_num_heads   override the decoder ViT derived from decoder_model
//   enc_mlp_ratio, dec_mlp_ratio              MLP hidden width / embed dim (default 4)
//   layer_scale_init                          LayerScale gamma at random init (default 1e-5)
//
// They describe ViTs that the official code builds only through timm keyword overrides (the
// tiny parity fixture, home-made small tokenizers): `encoder_model` then names the timm family
// (its block layout and LayerScale) and the block the shrunken width, depth and heads, exactly
// as `timm.create_model(encoder_model, embed_dim=..., depth=..., num_heads=...)` would build it.
// Configs written before the block kept these keys at the top level; they are read from there.

import Foundation
import Tensor

/// Errors of the tokenizer, each one sentence for the user.
public enum TokenizerError: Error, CustomStringConvertible, Equatable, LocalizedError {
    /// The input images have the wrong rank, channel count or size.
    case badInput(String)
    /// config.json is unreadable or describes something inconsistent.
    case config(String)
    /// A checkpoint does not match its config (or is unreadable).
    case checkpoint(String)
    /// A feature of the official code this port does not implement.
    case unsupported(String)

    public var description: String {
        switch self {
        case let .badInput(s), let .config(s), let .checkpoint(s), let .unsupported(s): return s.oneLine(limit: 600)
        }
    }
    public var errorDescription: String? { description }
}

/// The shape of one ViT (encoder, decoder, or a frozen REPA teacher).
public struct ViTSpec: Equatable, Sendable, CustomStringConvertible {
    public var width: Int
    public var depth: Int
    public var heads: Int
    public var mlpRatio: Double = 4
    /// DINOv2-style LayerScale (`ls1.gamma`, `ls2.gamma`) in every block.
    public var layerScale: Bool
    public var patchSize: Int
    public var imageSize: Int

    public init(width: Int, depth: Int, heads: Int, mlpRatio: Double = 4, layerScale: Bool, patchSize: Int, imageSize: Int) {
        self.width = width; self.depth = depth; self.heads = heads; self.mlpRatio = mlpRatio
        self.layerScale = layerScale; self.patchSize = patchSize; self.imageSize = imageSize
    }

    public var mlpHidden: Int { Int(Double(width) * mlpRatio) }
    public var gridSize: Int { imageSize / patchSize }
    public var numPatches: Int { gridSize * gridSize }
    public var description: String {
        "ViT(width \(width), depth \(depth), \(heads) heads, patch \(patchSize), \(imageSize)px\(layerScale ? ", LayerScale" : ""))"
    }

    /// Width, depth, heads and LayerScale of a timm model name as the official code builds it
    /// (the repository re-registers the DINOv2 names with its own ViT; the pretrained tag after
    /// the dot is ignored). Head width is 64 for every supported name.
    public static func named(_ name: String) throws -> (width: Int, depth: Int, heads: Int, layerScale: Bool) {
        let base = name.split(separator: ".").first.map(String.init) ?? name
        let sizes: [String: (Int, Int, Int)] = [
            "tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16),
        ]
        if base.contains("reg4") {
            throw TokenizerError.unsupported("ViT '\(name)' uses register tokens, which this tokenizer does not implement")
        }
        if base.hasPrefix("vit_giant") {
            throw TokenizerError.unsupported("ViT '\(name)' uses a SwiGLU MLP, which this tokenizer does not implement")
        }
        if base.contains("clip") || base.hasPrefix("eva") || base.hasPrefix("samvit") {
            throw TokenizerError.unsupported("ViT '\(name)' (CLIP / EVA / SAM layout) is not implemented; use a DINOv2 or plain vit_* name")
        }
        let parts = base.split(separator: "_").map(String.init)
        guard parts.count >= 3, parts[0] == "vit", let size = sizes[parts[1]], parts[2].hasPrefix("patch") else {
            throw TokenizerError.config("unknown ViT model name '\(name)' (expected e.g. vit_large_patch14_dinov2.lvd142m or vit_base_patch16_224)")
        }
        let dinov2 = parts.contains("dinov2")
        return (size.0, size.1, size.2, dinov2)
    }
}

/// The official ModelArgs (SoftVQ fields), with our ViT-size override keys.
public struct TokenizerConfig: Codable, Equatable, Sendable {
    public var imageSize: Int
    public var baseImageSize: Int
    public var codebookSize: Int
    public var codebookEmbedDim: Int
    public var codebookL2Norm: Bool
    public var codebookShowUsage: Bool
    public var entropyLossRatio: Double
    public var tau: Double
    public var numCodebooks: Int
    public var encType: String
    public var decType: String
    public var encoderModel: String
    public var decoderModel: String
    public var numLatentTokens: Int
    public var toPixel: String
    public var encPatchSize: Int
    public var decPatchSize: Int
    public var encTokenDrop: Double
    public var decClsToken: Bool
    public var useApe: Bool
    public var useRope: Bool
    public var repa: Bool
    public var repaModel: String
    public var repaPatchSize: Int
    public var repaProjDim: Int
    public var repaLossWeight: Double
    public var repaAlign: String
    public var vqMean: Double
    public var vqStd: Double
    /// commit_loss_beta (hard VQ's commitment weight) and kl_loss_weight (the Gaussian's).
    public var commitLossBeta: Double
    public var klLossWeight: Double
    /// The posterior (ours, in `softvq_swift`; the official code picks it by model class).
    public var quantizer: QuantizerKind
    // Our extra keys (nil: derived from the model names).
    public var encEmbedDim: Int?
    public var encDepth: Int?
    public var encNumHeads: Int?
    public var encMlpRatio: Double?
    public var decEmbedDim: Int?
    public var decDepth: Int?
    public var decNumHeads: Int?
    public var decMlpRatio: Double?
    public var layerScaleInit: Double?
    /// Every field of the file as read (unknown ones included); typed fields win on save.
    public var raw: [String: JSONValue]

    /// The official ModelArgs defaults, with the SoftVQ ViT settings of configs/softvq-l-64.yaml.
    public init() {
        imageSize = 256; baseImageSize = 256
        codebookSize = 8192; codebookEmbedDim = 32; codebookL2Norm = true; codebookShowUsage = true
        entropyLossRatio = 0.01; tau = 0.07; numCodebooks = 4
        encType = "vit"; decType = "vit"
        encoderModel = "vit_large_patch14_dinov2.lvd142m"; decoderModel = "vit_large_patch14_dinov2.lvd142m"
        numLatentTokens = 64; toPixel = "linear"; encPatchSize = 16; decPatchSize = 16
        encTokenDrop = 0; decClsToken = true; useApe = true; useRope = false
        repa = false; repaModel = "vit_large_patch14_dinov2.lvd142m"; repaPatchSize = 16; repaProjDim = 1024
        repaLossWeight = 0.1; repaAlign = "repeat"; vqMean = 0; vqStd = 1
        commitLossBeta = 0; klLossWeight = 1e-6; quantizer = .softvq
        raw = [:]
        raw = Self.officialDefaults
    }

    /// Fields the official save_pretrained writes that we do not model (kept for round trips).
    static let officialDefaults: [String: JSONValue] = [
        "commit_loss_beta": .double(0), "vq_loss_ratio": .double(0), "kl_loss_weight": .double(1e-6),
        "encoder_ch_mult": .array([1, 1, 2, 2, 4].map { .int($0) }),
        "decoder_ch_mult": .array([1, 1, 2, 2, 4].map { .int($0) }),
        "z_channels": .int(256), "dropout_p": .double(0),
        "enc_tuning_method": .string("full"), "dec_tuning_method": .string("full"),
        "enc_pretrained": .bool(false), "dec_pretrained": .bool(false),
        "enc_drop_path_rate": .double(0), "dec_drop_path_rate": .double(0),
        "enc_token_drop_max": .double(0.6), "rope_mixed": .bool(false), "rope_theta": .double(10),
    ]

    /// Builds the config from the fields of config.json (`file` names it in errors). Missing
    /// fields take the official defaults; a field of the wrong type or a fractional or
    /// out-of-range integer is refused with one sentence naming the field.
    public init(json: [String: JSONValue], file: String = "config.json") throws {
        self.init()
        raw = json
        let fields = JSONFields(json, file: file, nullIsMissing: false, error: { TokenizerError.config($0) })
        func int(_ k: String, _ d: Int) throws -> Int { try fields.int(k, d) }
        func dbl(_ k: String, _ d: Double) throws -> Double { try fields.double(k, d) }
        func bool(_ k: String, _ d: Bool) throws -> Bool { try fields.bool(k, d) }
        func str(_ k: String, _ d: String) throws -> String { try fields.string(k, d) }
        // Our keys: from the softvq_swift block, else (older configs) from the top level.
        var ours = json
        if case let .object(block)? = json[Self.swiftBlockKey] { for (k, v) in block { ours[k] = v } }
        let swiftFields = JSONFields(ours, file: file, nullIsMissing: false, error: { TokenizerError.config($0) })
        func optInt(_ k: String) throws -> Int? { try swiftFields.optionalInt(k) }
        func optDbl(_ k: String) throws -> Double? { try swiftFields.optionalDouble(k) }
        // Missing fields take the official ModelArgs defaults.
        imageSize = try int("image_size", 256)
        baseImageSize = try int("base_image_size", 256)
        codebookSize = try int("codebook_size", 16384)
        codebookEmbedDim = try int("codebook_embed_dim", 8)
        codebookL2Norm = try bool("codebook_l2_norm", true)
        codebookShowUsage = try bool("codebook_show_usage", true)
        entropyLossRatio = try dbl("entropy_loss_ratio", 0)
        tau = try dbl("tau", 0.1)
        numCodebooks = try int("num_codebooks", 1)
        encType = try str("enc_type", "cnn")
        decType = try str("dec_type", "cnn")
        encoderModel = try str("encoder_model", "llamagen_encoder")
        decoderModel = try str("decoder_model", "llamagen_decoder")
        numLatentTokens = try int("num_latent_tokens", 256)
        toPixel = try str("to_pixel", "linear")
        encPatchSize = try int("enc_patch_size", 16)
        decPatchSize = try int("dec_patch_size", 16)
        encTokenDrop = try dbl("enc_token_drop", 0)
        decClsToken = try bool("dec_cls_token", true)
        useApe = try bool("use_ape", true)
        useRope = try bool("use_rope", false)
        repa = try bool("repa", false)
        repaModel = try str("repa_model", "vit_base_patch16_224")
        repaPatchSize = try int("repa_patch_size", 16)
        repaProjDim = try int("repa_proj_dim", 2048)
        repaLossWeight = try dbl("repa_loss_weight", 0.1)
        repaAlign = try str("repa_align", "global")
        vqMean = try dbl("vq_mean", 0)
        vqStd = try dbl("vq_std", 1)
        encEmbedDim = try optInt("enc_embed_dim"); encDepth = try optInt("enc_depth")
        encNumHeads = try optInt("enc_num_heads"); encMlpRatio = try optDbl("enc_mlp_ratio")
        decEmbedDim = try optInt("dec_embed_dim"); decDepth = try optInt("dec_depth")
        decNumHeads = try optInt("dec_num_heads"); decMlpRatio = try optDbl("dec_mlp_ratio")
        layerScaleInit = try optDbl("layer_scale_init")
        commitLossBeta = try dbl("commit_loss_beta", 0.25)
        klLossWeight = try dbl("kl_loss_weight", 1e-6)
        let kind = try swiftFields.string("quantizer", "softvq")
        guard let q = QuantizerKind(rawValue: kind) else {
            throw TokenizerError.config("\(file): unknown quantizer '\(kind)' (softvq, vq or kl)")
        }
        quantizer = q
    }

    /// The raw fields with every typed field written over them (what config.json will hold).
    public var json: [String: JSONValue] {
        var j = raw
        j["image_size"] = .int(imageSize); j["base_image_size"] = .int(baseImageSize)
        j["codebook_size"] = .int(codebookSize); j["codebook_embed_dim"] = .int(codebookEmbedDim)
        j["codebook_l2_norm"] = .bool(codebookL2Norm); j["codebook_show_usage"] = .bool(codebookShowUsage)
        j["entropy_loss_ratio"] = .double(entropyLossRatio); j["tau"] = .double(tau)
        j["num_codebooks"] = .int(numCodebooks)
        j["enc_type"] = .string(encType); j["dec_type"] = .string(decType)
        j["encoder_model"] = .string(encoderModel); j["decoder_model"] = .string(decoderModel)
        j["num_latent_tokens"] = .int(numLatentTokens); j["to_pixel"] = .string(toPixel)
        j["enc_patch_size"] = .int(encPatchSize); j["dec_patch_size"] = .int(decPatchSize)
        j["enc_token_drop"] = .double(encTokenDrop); j["dec_cls_token"] = .bool(decClsToken)
        j["use_ape"] = .bool(useApe); j["use_rope"] = .bool(useRope)
        j["repa"] = .bool(repa); j["repa_model"] = .string(repaModel); j["repa_patch_size"] = .int(repaPatchSize)
        j["repa_proj_dim"] = .int(repaProjDim); j["repa_loss_weight"] = .double(repaLossWeight)
        j["repa_align"] = .string(repaAlign); j["vq_mean"] = .double(vqMean); j["vq_std"] = .double(vqStd)
        j["commit_loss_beta"] = .double(commitLossBeta); j["kl_loss_weight"] = .double(klLossWeight)
        var block: [String: JSONValue] = [:]
        if case let .object(b)? = raw[Self.swiftBlockKey] { block = b }
        func put(_ k: String, _ v: Int?) { j[k] = nil; block[k] = v.map { .int($0) } }
        func putD(_ k: String, _ v: Double?) { j[k] = nil; block[k] = v.map { .double($0) } }
        put("enc_embed_dim", encEmbedDim); put("enc_depth", encDepth); put("enc_num_heads", encNumHeads)
        putD("enc_mlp_ratio", encMlpRatio)
        put("dec_embed_dim", decEmbedDim); put("dec_depth", decDepth); put("dec_num_heads", decNumHeads)
        putD("dec_mlp_ratio", decMlpRatio)
        putD("layer_scale_init", layerScaleInit)
        j["quantizer"] = nil
        block["quantizer"] = quantizer == .softvq ? nil : .string(quantizer.rawValue)
        j[Self.swiftBlockKey] = block.isEmpty ? nil : .object(block)
        return j
    }

    /// The object holding this project's fields in config.json.
    public static let swiftBlockKey = "softvq_swift"

    public init(from decoder: Decoder) throws {
        try self.init(json: try [String: JSONValue](from: decoder))
    }

    /// Two configs are equal when they would write the same config.json.
    public static func == (a: TokenizerConfig, b: TokenizerConfig) -> Bool { a.json == b.json }

    public func encode(to encoder: Encoder) throws { try json.encode(to: encoder) }

    /// Reads config.json. Every failure is one sentence naming the file (missing, empty, not
    /// JSON, not an object, a field of the wrong type); the architecture is checked by
    /// `validate()` when a model is built (after any `configure` adjustments).
    public static func load(path: String) throws -> TokenizerConfig {
        let json: [String: JSONValue]
        do {
            json = try JSONFile.readObject(at: path)
        } catch let CheckpointError.config(why) {
            throw TokenizerError.config(why)
        }
        return try TokenizerConfig(json: json, file: path)
    }

    /// config.json text: sorted keys, indent 2 (as save_pretrained writes it).
    public func jsonData() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try enc.encode(self)
    }

    // MARK: Derived architecture

    public var encoderSpec: ViTSpec {
        get throws {
            try spec(model: encoderModel, patch: encPatchSize, width: encEmbedDim, depth: encDepth,
                     heads: encNumHeads, mlpRatio: encMlpRatio, role: "encoder")
        }
    }

    public var decoderSpec: ViTSpec {
        get throws {
            try spec(model: decoderModel, patch: decPatchSize, width: decEmbedDim, depth: decDepth,
                     heads: decNumHeads, mlpRatio: decMlpRatio, role: "decoder")
        }
    }

    private func spec(model: String, patch: Int, width: Int?, depth: Int?, heads: Int?, mlpRatio: Double?,
                      role: String) throws -> ViTSpec {
        let named = try ViTSpec.named(model)
        let w = width ?? named.width
        // With an overridden width and no explicit head count, keep the head width at 64.
        let h = heads ?? (width == nil ? named.heads : max(1, w / 64))
        let d = depth ?? named.depth, ratio = mlpRatio ?? 4
        let L = Self.Limits.self
        // Ranges first, so that nothing below (or in the model constructor) can overflow.
        for (field, value, limit) in [("width", w, L.width), ("depth", d, L.depth), ("heads", h, L.width)]
        where value > limit {
            throw TokenizerError.config("the \(role) ViT \(field) \(value) is above the limit of \(limit)")
        }
        guard ratio.isFinite, ratio > 0, ratio <= L.mlpRatio else {
            throw TokenizerError.config("the \(role) mlp_ratio \(ratio) must be positive and at most \(Int(L.mlpRatio))")
        }
        let s = ViTSpec(width: w, depth: d, heads: h, mlpRatio: ratio,
                        layerScale: named.layerScale, patchSize: patch, imageSize: imageSize)
        guard s.width > 0, s.depth > 0, s.heads > 0, s.width % s.heads == 0 else {
            throw TokenizerError.config("\(role) width \(s.width) is not divisible into \(s.heads) heads")
        }
        guard patch > 0, imageSize > 0, imageSize <= L.imageSize, patch <= imageSize, imageSize % patch == 0 else {
            throw TokenizerError.config("image_size \(imageSize) is not a multiple of the \(role) patch size \(patch)")
        }
        guard s.mlpHidden >= 1 else {
            throw TokenizerError.config("the \(role) mlp_ratio \(ratio) gives an MLP of width \(s.mlpHidden)")
        }
        return s
    }

    /// Upper bounds of a buildable tokenizer (far above the released ones: ViT-L is 1024 wide and
    /// 24 deep, 256 or 512 px, 64 tokens, 4 codebooks of 8192 x 32), checked before anything
    /// is allocated.
    public enum Limits {
        public static let imageSize = 4096
        public static let width = 16384
        public static let depth = 256
        public static let mlpRatio = 64.0
        public static let latentTokens = 16384
        public static let codebookSize = 1 << 20
        public static let codebookEmbedDim = 16384
        public static let repaDim = 65536
        public static let parameters = 20e9
    }

    /// Parameters (and buffers) of the model this config builds, exactly (the official key
    /// layout); floating point, so absurd configs cannot overflow.
    public var parameterCount: Double {
        get throws {
            let enc = try encoderSpec, dec = try decoderSpec
            func vit(_ s: ViTSpec) -> Double {
                let w = Double(s.width), m = Double(s.mlpHidden), p = Double(s.patchSize)
                let ls = s.layerScale ? 2 * w : 0
                let block = 2 * w + (3 * w * w + 3 * w) + (w * w + w) + 2 * w + (w * m + m) + (m * w + w) + ls
                return (3 * p * p * w + w) + w + (1 + Double(s.numPatches)) * w + Double(s.depth) * block + 2 * w
            }
            let l = Double(numLatentTokens), e = Double(codebookEmbedDim)
            let we = Double(enc.width), wd = Double(dec.width), pixels = 3 * Double(dec.patchSize) * Double(dec.patchSize)
            let encoderExtra = 2 * l * we + (encTokenDrop > 0 ? we : 0)
            let decoderExtra = wd + l * wd + (wd * pixels + pixels)
            let h = quantizer == .kl ? 2 * e : e
            let convs = (we * h + h) + (e * wd + wd)
            let history = codebookShowUsage ? Double(SoftVectorQuantizer.historyLength) : 0
            let bottleneck: Double
            switch quantizer {
            case .softvq: bottleneck = Double(numCodebooks) * (Double(codebookSize) * e + history)
            case .vq: bottleneck = Double(codebookSize) * e + history
            case .kl: bottleneck = 0
            }
            return vit(enc) + encoderExtra + vit(dec) + decoderExtra + convs + bottleneck
        }
    }

    /// Tokens per codebook segment.
    public var tokensPerCodebook: Int { numLatentTokens / max(numCodebooks, 1) }

    /// Checks everything the model constructor relies on (positive, divisible, within `Limits`),
    /// before anything is allocated; throws one clear sentence naming the field.
    public func validate() throws {
        guard encType == "vit", decType == "vit" else {
            throw TokenizerError.unsupported("enc_type '\(encType)' / dec_type '\(decType)': only the ViT tokenizer ('vit') is implemented")
        }
        guard numCodebooks > 0, numLatentTokens > 0, numLatentTokens % numCodebooks == 0 else {
            throw TokenizerError.config("num_latent_tokens (\(numLatentTokens)) must be a positive multiple of num_codebooks (\(numCodebooks))")
        }
        guard numLatentTokens <= Limits.latentTokens else {
            throw TokenizerError.config("num_latent_tokens \(numLatentTokens) is above the limit of \(Limits.latentTokens)")
        }
        guard codebookSize > 0, codebookEmbedDim > 0 else {
            throw TokenizerError.config("codebook_size and codebook_embed_dim must be positive")
        }
        guard codebookSize <= Limits.codebookSize, codebookEmbedDim <= Limits.codebookEmbedDim else {
            throw TokenizerError.config("codebook_size \(codebookSize) / codebook_embed_dim \(codebookEmbedDim) are above the limits of \(Limits.codebookSize) / \(Limits.codebookEmbedDim)")
        }
        guard tau > 0, tau.isFinite else { throw TokenizerError.config("tau must be positive, got \(tau)") }
        for (field, value) in [("entropy_loss_ratio", entropyLossRatio), ("vq_mean", vqMean), ("vq_std", vqStd),
                               ("commit_loss_beta", commitLossBeta), ("kl_loss_weight", klLossWeight),
                               ("layer_scale_init", layerScaleInit ?? 0)] where !value.isFinite {
            throw TokenizerError.config("\(field) must be a finite number, got \(value)")
        }
        guard vqStd != 0 else { throw TokenizerError.config("vq_std must not be 0 (latents are divided by it)") }
        guard encTokenDrop.isFinite, encTokenDrop >= 0, encTokenDrop <= 1 else {
            throw TokenizerError.config("enc_token_drop \(encTokenDrop) must be in [0, 1]")
        }
        if repa {
            guard (1...Limits.repaDim).contains(repaProjDim), (1...Limits.imageSize).contains(repaPatchSize) else {
                throw TokenizerError.config("repa_proj_dim \(repaProjDim) / repa_patch_size \(repaPatchSize) must be in 1...\(Limits.repaDim) / 1...\(Limits.imageSize)")
            }
        }
        guard toPixel == "linear" else {
            throw TokenizerError.unsupported("to_pixel '\(toPixel)': only 'linear' is implemented")
        }
        guard !useRope, useApe else {
            throw TokenizerError.unsupported("use_rope / use_ape=false: only learned absolute position tables are implemented")
        }
        guard decClsToken else {
            throw TokenizerError.unsupported("dec_cls_token=false is not implemented (the official code cannot run it either: its position table keeps the class row)")
        }
        guard imageSize > 0 else { throw TokenizerError.config("image_size must be positive") }
        guard imageSize <= Limits.imageSize else {
            throw TokenizerError.config("image_size \(imageSize) is above the limit of \(Limits.imageSize)")
        }
        _ = try encoderSpec
        _ = try decoderSpec
        let parameters = try parameterCount
        guard parameters <= Limits.parameters else {
            throw TokenizerError.config(String(format: "the tokenizer would have %.3g parameters, above the limit of %.0e", parameters, Limits.parameters))
        }
    }
}

// MARK: - Presets

extension TokenizerConfig {
    private static func released(encoder: String, decoder: String, tokens: Int, imageSize: Int = 256) -> TokenizerConfig {
        var c = TokenizerConfig()
        c.encoderModel = encoder
        c.decoderModel = decoder
        c.numLatentTokens = tokens
        c.imageSize = imageSize
        return c
    }

    static let vitB = "vit_base_patch14_dinov2.lvd142m"
    static let vitL = "vit_large_patch14_dinov2.lvd142m"

    /// SoftVQ-B-64 at 256 px (ViT-B encoder and decoder, 4 codebooks of 8192 x 32).
    public static var softvqB64: TokenizerConfig { released(encoder: vitB, decoder: vitB, tokens: 64) }
    /// SoftVQ-BL-64 at 256 px (ViT-B encoder, ViT-L decoder).
    public static var softvqBL64: TokenizerConfig { released(encoder: vitB, decoder: vitL, tokens: 64) }
    /// SoftVQ-L-64 at 256 px (configs/softvq-l-64.yaml).
    public static var softvqL64: TokenizerConfig { released(encoder: vitL, decoder: vitL, tokens: 64) }
    public static var softvqB32: TokenizerConfig { released(encoder: vitB, decoder: vitB, tokens: 32) }
    public static var softvqBL32: TokenizerConfig { released(encoder: vitB, decoder: vitL, tokens: 32) }
    public static var softvqL32: TokenizerConfig { released(encoder: vitL, decoder: vitL, tokens: 32) }
    /// SoftVQ-BL-64 at 512 px. Assumption (no yaml published): same architecture, patch 16,
    /// image_size 512 (1 + 1024 position rows). The released config.json decides on load.
    public static var softvqBL64_512: TokenizerConfig { released(encoder: vitB, decoder: vitL, tokens: 64, imageSize: 512) }
    /// SoftVQ-L-32 at 512 px (same assumption as `softvqBL64_512`).
    public static var softvqL32_512: TokenizerConfig { released(encoder: vitL, decoder: vitL, tokens: 32, imageSize: 512) }

    /// A small tokenizer for 32 x 32 images (Fashion-MNIST padded / CIFAR-sized), trainable on
    /// 2 CPU cores in a few hours: ViT width 192, depth 4, 3 heads, patch 4 (64 patches),
    /// 16 latent tokens, 2 codebooks of 1024 x 16, LayerScale init 0.1. ~3.8 M parameters.
    public static var fashion32: TokenizerConfig {
        var c = TokenizerConfig()
        c.imageSize = 32; c.baseImageSize = 32
        c.encoderModel = "vit_small_patch14_dinov2.lvd142m"; c.decoderModel = "vit_small_patch14_dinov2.lvd142m"
        c.encPatchSize = 4; c.decPatchSize = 4
        c.encEmbedDim = 192; c.encDepth = 4; c.encNumHeads = 3
        c.decEmbedDim = 192; c.decDepth = 4; c.decNumHeads = 3
        c.numLatentTokens = 16; c.numCodebooks = 2; c.codebookSize = 1024; c.codebookEmbedDim = 16
        c.layerScaleInit = 0.1
        return c
    }

    /// An even smaller 32 x 32 tokenizer (width 128, depth 2, 32 tokens, 1024 x 8, ~0.9 M
    /// parameters) for quick
    /// experiments.
    public static var fashion32Small: TokenizerConfig {
        var c = fashion32
        c.encEmbedDim = 128; c.encDepth = 2; c.encNumHeads = 2
        c.decEmbedDim = 128; c.decDepth = 2; c.decNumHeads = 2
        c.numLatentTokens = 32; c.numCodebooks = 1; c.codebookEmbedDim = 8
        return c
    }

    /// Presets by name (as the CLI spells them).
    public static let presetNames: [String] = [
        "softvq-b-64", "softvq-bl-64", "softvq-l-64", "softvq-b-32", "softvq-bl-32", "softvq-l-32",
        "softvq-bl-64-512", "softvq-l-32-512", "fashion32", "fashion32-small",
    ]

    public static func preset(_ name: String) throws -> TokenizerConfig {
        switch name.lowercased() {
        case "softvq-b-64": return softvqB64
        case "softvq-bl-64": return softvqBL64
        case "softvq-l-64": return softvqL64
        case "softvq-b-32": return softvqB32
        case "softvq-bl-32": return softvqBL32
        case "softvq-l-32": return softvqL32
        case "softvq-bl-64-512": return softvqBL64_512
        case "softvq-l-32-512": return softvqL32_512
        case "fashion32": return fashion32
        case "fashion32-small": return fashion32Small
        default:
            throw TokenizerError.config("unknown tokenizer preset '\(name)'; known: \(presetNames.joined(separator: ", "))")
        }
    }
}
