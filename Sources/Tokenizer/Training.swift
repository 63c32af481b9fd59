// Tokenizer training objective and one optimisation step: reconstruction loss, the SoftVQ
// entropy regulariser, optional representation alignment (REPA) of the latent tokens with the
// patch features of a frozen ViT, gradient clipping, AdamW and EMA.
//
// Dimension legend: N batch, L latent tokens, E codebook dim, T teacher patches,
// Dz teacher width, P projector width.

import Foundation
import Tensor

public enum ReconstructionLoss: String, Codable, Sendable {
    case l2, l1
}

/// The official REPA projector `projection`: Linear(E, P) - SiLU - Linear(P, P) - SiLU -
/// Linear(P, Dz), keys projection.0 / .2 / .4.
public final class RepaProjector: Module {
    public let l0: Dense
    public let l2: Dense
    public let l4: Dense

    public init(inDim: Int, hidden: Int, outDim: Int, seed: UInt64 = 1) {
        var f = ParameterFactory(.random(seed: seed))
        l0 = Dense(inDim, hidden, std: nil, f: &f)
        l2 = Dense(hidden, hidden, std: nil, f: &f)
        l4 = Dense(hidden, outDim, std: nil, f: &f)
    }

    public var entries: [(String, ModuleEntry)] { [("0", .module(l0)), ("2", .module(l2)), ("4", .module(l4))] }

    /// (..., E) -> (..., Dz)
    public func callAsFunction(_ x: Tensor) -> Tensor { l4(l2(l0(x).silu()).silu()) }
}

/// Representation alignment: negative cosine similarity between the projected latent tokens
/// and the patch features of a frozen ViT (DINOv2 in the official recipe).
public final class RepaAligner {
    public enum Alignment: String, Sendable {
        /// Each projected token repeated T / L times along the sequence, compared per patch.
        case `repeat`
        /// Mean over tokens vs mean over patches.
        case global
    }

    public let teacher: VisionTransformer
    public let projection: RepaProjector
    public let alignment: Alignment
    public let weight: Float

    public init(teacher: VisionTransformer, projection: RepaProjector, alignment: Alignment, weight: Float) {
        self.teacher = teacher
        self.projection = projection
        self.alignment = alignment
        self.weight = weight
        for (_, t) in teacher.namedTensors() { t.requiresGrad = false }
    }

    /// Builds the aligner from a frozen ViT in safetensors (timm key names, optionally under
    /// `prefix`, e.g. "repa_model."). The ViT's width, depth, patch size, image size and
    /// LayerScale are read from the tensors; heads = width / 64. Extra keys outside the ViT
    /// (a classifier head, ...) are ignored.
    public static func load(teacher path: String, prefix: String = "", config: TokenizerConfig, seed: UInt64 = 1) throws -> RepaAligner {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw TokenizerError.checkpoint("cannot open REPA teacher: \(error)") }
        let name = (path as NSString).lastPathComponent
        guard let pos = file.entries[prefix + "pos_embed"]?.shape, pos.count == 3,
              let pw = file.entries[prefix + "patch_embed.proj.weight"]?.shape, pw.count == 4 else {
            throw TokenizerError.checkpoint("\(name) does not hold a ViT under '\(prefix)' (no pos_embed / patch_embed.proj.weight)")
        }
        var depth = 0
        while file.entries["\(prefix)blocks.\(depth).norm1.weight"] != nil { depth += 1 }
        let width = pos[2], patch = pw[2]
        let grid = Int(Double(pos[1] - 1).squareRoot().rounded())
        guard grid * grid == pos[1] - 1, file.entries[prefix + "cls_token"] != nil else {
            throw TokenizerError.unsupported("\(name): only ViTs with one class token and a square position table are supported")
        }
        guard grid * patch == config.imageSize else {
            throw TokenizerError.config("\(name): the teacher's position table covers \(grid * patch)px at patch \(patch), but images are \(config.imageSize)px (position-table resampling is not implemented)")
        }
        let hidden = file.entries["\(prefix)blocks.0.mlp.fc1.weight"]?.shape.first ?? 4 * width
        let spec = ViTSpec(width: width, depth: depth, heads: max(1, width / 64), mlpRatio: Double(hidden) / Double(width),
                           layerScale: file.entries["\(prefix)blocks.0.ls1.gamma"] != nil, patchSize: patch, imageSize: config.imageSize)
        let teacher = VisionTransformer(spec: spec, initialization: .uninitialized)
        do {
            try teacher.load(from: file, prefix: prefix, skip: { !$0.hasPrefix(prefix + "cls_token") && !$0.hasPrefix(prefix + "pos_embed") && !$0.hasPrefix(prefix + "patch_embed") && !$0.hasPrefix(prefix + "blocks.") && !$0.hasPrefix(prefix + "norm.") })
        } catch let e as CheckpointError {
            throw TokenizerError.checkpoint(e.description)
        }
        guard let align = Alignment(rawValue: config.repaAlign) else {
            throw TokenizerError.unsupported("repa_align '\(config.repaAlign)': only 'repeat' and 'global' are implemented")
        }
        let proj = RepaProjector(inDim: config.codebookEmbedDim, hidden: config.repaProjDim, outDim: width, seed: seed)
        return RepaAligner(teacher: teacher, projection: proj, alignment: align, weight: Float(config.repaLossWeight))
    }

    /// Teacher patch features (N, T, Dz) of images in [-1, 1]: mapped to [0, 1], ImageNet
    /// mean/std normalised, forward_features, class token dropped. No gradients.
    public func teacherFeatures(_ images: Tensor) -> Tensor {
        Autograd.noGrad {
            let x = images.copy()
            let (n, c, hw) = (x.dim(0), x.dim(1), x.dim(2) * x.dim(3))
            let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
            for i in 0..<n {
                for ch in 0..<c {
                    let p = x.pointer + (i * c + ch) * hw
                    for j in 0..<hw { p[j] = ((p[j] + 1) * 0.5 - mean[ch]) / std[ch] }
                }
            }
            let f = teacher.forwardFeatures(x)                      // (N, 1 + T, Dz)
            return f.slice(axis: 1, 1..<f.dim(1)).copy()            // (N, T, Dz)
        }
    }

    /// weight * mean over images and positions of -cos(teacher feature, projected token).
    public func loss(images: Tensor, zq: Tensor) throws -> Tensor {
        let z = teacherFeatures(images)                             // (N, T, Dz)
        var zHat = projection(zq)                                   // (N, L, Dz)
        var target = z
        switch alignment {
        case .repeat:
            let (n, l, d) = (zHat.dim(0), zHat.dim(1), zHat.dim(2))
            let t = z.dim(1)
            guard t % l == 0 else {
                throw TokenizerError.config("REPA 'repeat' alignment needs the teacher's \(t) patches to be a multiple of \(l) latent tokens")
            }
            let r = t / l
            if r > 1 {
                zHat = (zHat.reshaped([n, l, 1, d]) + Tensor(zeros: [1, 1, r, 1]))  // (N, L, r, Dz)
                    .reshaped([n, l * r, d])                                       // (N, T, Dz)
            }
        case .global:
            target = Autograd.noGrad { z.mean(axes: [1]) }              // (N, Dz)
            zHat = zHat.mean(axes: [1])                                 // (N, Dz)
        }
        let cos = (target.l2Normalized() * zHat.l2Normalized()).sum(axes: [-1])  // (N, T) or (N)
        return -cos.mean() * weight
    }
}

/// Loss terms of one step (values, for logging).
public struct TokenizerLosses: Sendable, CustomStringConvertible {
    public var total: Float = 0
    public var reconstruction: Float = 0
    public var entropy: Float = 0
    public var repa: Float = 0
    public var extra: [String: Float] = [:]
    public var gradNorm: Float = 0

    public init() {}

    public var description: String {
        var s = String(format: "loss %.5f (rec %.5f, entropy %.5f, repa %.5f", total, reconstruction, entropy, repa)
        for (k, v) in extra.sorted(by: { $0.key < $1.key }) { s += String(format: ", %@ %.5f", k, v) }
        return s + String(format: "), grad norm %.3f", gradNorm)
    }
}

/// What an extra loss term sees: the batch and the forward pass on the tape.
public struct TokenizerForward {
    public let images: Tensor
    public let reconstruction: Tensor
    public let quantized: QuantizerOutput
}

/// Owns the optimiser state of tokenizer training and runs one step at a time.
public final class TokenizerTrainer {
    public let model: SoftVQModel
    /// Shadow weights (same architecture), updated after every step when present.
    public let ema: SoftVQModel?
    public var emaDecay: Float
    public let optimizer: AdamW
    public var repa: RepaAligner?
    public var reconstructionLoss: ReconstructionLoss
    public var maxGradNorm: Float
    public var schedule: LRSchedule
    /// Additional differentiable loss terms (e.g. perceptual, adversarial), added to the total.
    public var extraLosses: [(name: String, weight: Float, term: (TokenizerForward) throws -> Tensor)] = []
    /// Called after backward and before clipping (e.g. to step a second optimiser of a
    /// discriminator that owns other parameters).
    public var afterBackward: ((TokenizerForward) throws -> Void)?
    public internal(set) var step = 0
    /// Codebook usage of the last step's batch (for logging).
    public internal(set) var lastUsage: QuantizerStats?

    public init(model: SoftVQModel, lr: Float = 1e-4, betas: (Float, Float) = (0.9, 0.95), weightDecay: Float = 1e-4,
                schedule: LRSchedule? = nil, maxGradNorm: Float = 1.0, ema emaDecay: Float? = 0.999,
                reconstructionLoss: ReconstructionLoss = .l2, repa: RepaAligner? = nil) throws {
        self.model = model
        self.repa = repa
        self.reconstructionLoss = reconstructionLoss
        self.maxGradNorm = maxGradNorm
        self.schedule = schedule ?? .constant(lr)
        self.emaDecay = emaDecay ?? 0
        if emaDecay != nil {
            let shadow = try SoftVQModel(config: model.config, initialization: .uninitialized)
            shadow.copyValues(from: model)
            for (_, t) in shadow.namedTensors() { t.requiresGrad = false }
            ema = shadow
        } else {
            ema = nil
        }
        var params = model.trainableParameters()
        if let repa { params += repa.projection.trainableParameters().map { ("projection." + $0.0, $0.1) } }
        optimizer = AdamW(params, lr: lr, betas: betas, weightDecay: weightDecay)
    }

    /// Reconstruction loss between decoder output and target images.
    public static func reconstruction(_ output: Tensor, _ target: Tensor, _ kind: ReconstructionLoss) -> Tensor {
        let d = output - target
        switch kind {
        case .l2: return d.square().mean()
        case .l1: return d.abs().mean()
        }
    }

    /// Builds the total loss on the tape (no backward): useful for gradient checks.
    public func lossGraph(_ images: Tensor) throws -> (Tensor, TokenizerLosses, TokenizerForward) {
        let (rec, q) = try model.reconstruct(images)
        let fwd = TokenizerForward(images: images, reconstruction: rec, quantized: q)
        var stats = TokenizerLosses()
        let recLoss = Self.reconstruction(rec, images, reconstructionLoss)
        var total = recLoss
        stats.reconstruction = recLoss.item
        if model.quantizer.entropyLossRatio != 0 {
            let e = model.quantizer.weightedEntropyLoss(q)
            stats.entropy = e.item
            total = total + e
        }
        if let repa {
            let r = try repa.loss(images: images, zq: q.zq)
            stats.repa = r.item
            total = total + r
        }
        for (name, w, term) in extraLosses {
            let t = try term(fwd) * w
            stats.extra[name] = t.item
            total = total + t
        }
        stats.total = total.item
        return (total, stats, fwd)
    }

    /// One optimisation step on a batch of images (N, 3, H, W) in [-1, 1].
    @discardableResult
    public func trainStep(_ images: Tensor) throws -> TokenizerLosses {
        try model.checkImages(images)
        model.zeroGrad()
        repa?.projection.zeroGrad()
        let (total, s, fwd) = try lossGraph(images)
        var stats = s
        total.backward()
        try afterBackward?(fwd)
        model.quantizer.recordUsage(fwd.quantized)
        lastUsage = model.quantizer.stats(fwd.quantized)
        stats.gradNorm = gradientNorm(optimizer.parameters)
        optimizer.lr = schedule.lr(at: step)
        Autograd.noGrad { optimizer.update(gradientScale: clipCoefficient(norm: stats.gradNorm, maxNorm: maxGradNorm)) }
        if let ema {
            EMA.update(ema, from: model, decay: emaDecay)
            if let a = ema.quantizer.codebookUsed, let b = model.quantizer.codebookUsed { a.assign(b) }
        }
        step += 1
        return stats
    }
}
