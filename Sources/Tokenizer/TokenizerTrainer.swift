// Tokenizer training objective and one optimisation step: reconstruction loss, the SoftVQ
// entropy regulariser, optional representation alignment (Repa.swift), gradient clipping,
// AdamW and EMA; and the trainer's tensors in a checkpoint folder (the run folder around them,
// state.json and atomicity belong to Pipeline's TrainingRun).
//
// Dimension legend: N batch, L latent tokens, E codebook dim.

import Foundation
import Tensor

public enum ReconstructionLoss: String, Codable, Sendable {
    case l2, l1
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
    /// Called after `afterBackward` and before clipping with the parameters whose gradients
    /// the step uses (data-parallel training sums the ranks' gradients here).
    public var reduceGradients: (([Tensor]) throws -> Void)?
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
        try reduceGradients?(optimizer.parameters.compactMap { $0.1.grad == nil ? nil : $0.1 })
        model.quantizer.recordUsage(fwd.quantized)
        lastUsage = model.quantizer.stats(fwd.quantized)
        stats.gradNorm = gradientNorm(optimizer.parameters)
        optimizer.lr = schedule.lr(at: step)
        Autograd.noGrad { optimizer.update(gradientScale: clipCoefficient(norm: stats.gradNorm, maxNorm: maxGradNorm)) }
        if let ema {
            EMA.update(ema, from: model, decay: EMA.warmedUp(emaDecay, updates: step))
            if let a = ema.quantizer.codebookUsed, let b = model.quantizer.codebookUsed { a.assign(b) }
        }
        step += 1
        return stats
    }
}

// MARK: - Checkpoint files

extension TokenizerTrainer {
    /// Writes the trainer's tensors into `folder` (which exists): the EMA model (or the model
    /// without EMA) as `config.json` + `model.safetensors` and, in its `training/` subfolder,
    /// `train-model.safetensors` (raw weights) and `optimizer.safetensors` (AdamW moments).
    public func save(into folder: String) throws {
        try (ema ?? model).save(folder: folder)
        let training = try trainingFiles(of: folder, creating: true)
        try model.save(to: training + "/train-model.safetensors")
        try optimizer.save(to: training + "/optimizer.safetensors")
    }

    /// Continues from `step` with tensors set by other means (another process sent them).
    public func restore(step: Int) { self.step = step }

    /// Restores what `save(into:)` wrote (same architecture) and continues from `step` (the
    /// learning-rate schedule position).
    public func restore(from folder: String, step: Int) throws {
        let training = try trainingFiles(of: folder)
        try model.load(from: SafeTensorsFile(path: training + "/train-model.safetensors"))
        try ema?.load(from: SafeTensorsFile(path: folder + "/model.safetensors"))
        try optimizer.load(from: training + "/optimizer.safetensors")
        self.step = step
    }
}
