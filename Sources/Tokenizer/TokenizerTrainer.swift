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
    public let quantized: BottleneckOutput
}

/// The perceptual term of the official VQLoss: `weight * min(1, global_step / warmup)` times
/// the mean perceptual distance between the images and their reconstruction.
public struct PerceptualTerm {
    public var name: String
    public var weight: Float
    /// perceptual_warmup (nil: full weight from the first step).
    public var warmup: Int?
    /// (reconstruction on the tape, target images) -> scalar mean distance.
    public var distance: (Tensor, Tensor) -> Tensor

    public init(name: String, weight: Float, warmup: Int?, distance: @escaping (Tensor, Tensor) -> Tensor) {
        self.name = name; self.weight = weight; self.warmup = warmup; self.distance = distance
    }

    /// The weight at `globalStep` (the official code counts steps from 1).
    public func weight(at globalStep: Int) -> Float {
        Float(perceptualWeight(step: globalStep, weight: Double(weight), warmup: warmup))
    }
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
    /// The perceptual term (off when nil).
    public var perceptual: PerceptualTerm?
    /// The adversarial terms: PatchGAN discriminator, its optimizer and losses (off when nil).
    public var adversarial: AdversarialTraining?
    /// disc_adaptive_weight: scale the generator loss by the gradient-norm ratio at the
    /// decoder's last layer (to_pixel).
    public var adaptiveAdversarialWeight = true
    /// Seed of the Gaussian posterior's samples (stream = step).
    public var seed: UInt64 = 0
    /// Additional differentiable loss terms, added to the total.
    public var extraLosses: [(name: String, weight: Float, term: (TokenizerForward) throws -> Tensor)] = []
    /// Called after backward and before clipping.
    public var afterBackward: ((TokenizerForward) throws -> Void)?
    /// Called after `afterBackward` and before clipping with the parameters whose gradients
    /// the step uses (data-parallel training sums the ranks' gradients here).
    public var reduceGradients: (([Tensor]) throws -> Void)?
    /// Data-parallel: this rank's batch statistics to the global batch's (share-weighted sum
    /// over the ranks); nil in one process.
    public var reduceStatistics: (([Double]) throws -> [Double])?
    public internal(set) var step = 0
    /// Codebook usage of the last step's batch (for logging; nil for the Gaussian).
    public internal(set) var lastUsage: QuantizerStats?

    public init(model: SoftVQModel, lr: Float = 1e-4, betas: (Float, Float) = (0.9, 0.95), weightDecay: Float = 1e-4,
                schedule: LRSchedule? = nil, maxGradNorm: Float = 1.0, ema emaDecay: Float? = 0.999,
                reconstructionLoss: ReconstructionLoss = .l2, repa: RepaAligner? = nil, decayMatricesOnly: Bool = false) throws {
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
        optimizer = AdamW(params, lr: lr, betas: betas, weightDecay: weightDecay,
                          decays: decayMatricesOnly ? AdamW.decaysMatricesOnly : nil)
    }

    /// Reconstruction loss between decoder output and target images.
    public static func reconstruction(_ output: Tensor, _ target: Tensor, _ kind: ReconstructionLoss) -> Tensor {
        let d = output - target
        switch kind {
        case .l2: return d.square().mean()
        case .l1: return d.abs().mean()
        }
    }

    /// The generator of this step's posterior samples (a function of seed and step).
    var stepGenerator: RandomGenerator { RandomGenerator(seed: seed, stream: 3_000_000 + UInt64(step)) }

    /// The tokenizer's forward on the tape: (reconstruction, decoder features at the input of
    /// the last layer (N, T, D), bottleneck output).
    func forward(_ images: Tensor) throws -> (Tensor, Tensor, BottleneckOutput) {
        var rng = stepGenerator
        let q = try model.bottleneck.forward(try model.encode(images), training: true, rng: &rng)
        let features = model.decoder.features(model.postQuantConv(q.zq))
        return (model.decoder.toPixel(features), features, q)
    }

    /// The loss of one batch and, by backward, every gradient. The image-space terms
    /// (reconstruction, perceptual, adversarial) are evaluated on a detached copy of the
    /// reconstruction, so their gradients with respect to it are known separately (the
    /// adaptive weight compares two of them at the decoder's last layer); their weighted sum
    /// then flows through the tokenizer in one backward pass with the other terms.
    func backward(_ images: Tensor) throws -> (TokenizerLosses, TokenizerForward) {
        let (rec, features, q) = try forward(images)
        let fwd = TokenizerForward(images: images, reconstruction: rec, quantized: q)
        let globalStep = step + 1
        var stats = TokenizerLosses()
        let probe = rec.detached()
        probe.requiresGrad = true
        // nll = reconstruction + perceptual (the official `nll_loss`).
        var nll = Self.reconstruction(probe, images, reconstructionLoss)
        stats.reconstruction = nll.item
        if let perceptual {
            let w = perceptual.weight(at: globalStep)
            let p = perceptual.distance(probe, images) * w
            stats.extra[perceptual.name] = p.item
            nll = nll + p
        }
        nll.backward()
        var imageGradient = probe.grad!
        probe.grad = nil
        var total = nll.item
        // The generator's adversarial loss (nil before disc_start, where its weight is 0).
        if let adversarial, let g = adversarial.generatorLoss(reconstruction: probe, step: globalStep) {
            g.backward()
            let advGradient = probe.grad!
            probe.grad = nil
            var w = adversarial.options.discWeight
            if adaptiveAdversarialWeight {
                let toPixel = model.decoder.toPixel
                let a = AdversarialLoss.adaptiveWeight(nllGradient: toPixel.weightGradient(input: features, imageGradient: imageGradient),
                                                       generatorGradient: toPixel.weightGradient(input: features, imageGradient: advGradient))
                stats.extra["adaptive_weight"] = a
                w *= a
            }
            stats.extra["generator_adv"] = g.item * w
            total += g.item * w
            imageGradient = Autograd.noGrad { imageGradient + advGradient * w }
        }
        var graph = (rec * imageGradient).sum()
        for (name, value) in q.losses {
            stats.extra[name] = value.item
            if name == "entropy" { stats.entropy = value.item }
            total += value.item
            graph = graph + value
        }
        if let repa {
            let r = try repa.loss(images: images, zq: q.zq)
            stats.repa = r.item
            total += r.item
            graph = graph + r
        }
        for (name, w, term) in extraLosses {
            let t = try term(fwd) * w
            stats.extra[name] = t.item
            total += t.item
            graph = graph + t
        }
        stats.total = total
        graph.backward()
        return (stats, fwd)
    }

    /// One optimisation step on a batch of images (N, 3, H, W) in [-1, 1]: the tokenizer's
    /// update, then (with an adversarial objective past disc_start) the discriminator's on the
    /// same batch and the reconstruction made before the update, as the official loop.
    @discardableResult
    public func trainStep(_ images: Tensor) throws -> TokenizerLosses {
        try model.checkImages(images)
        model.zeroGrad()
        repa?.projection.zeroGrad()
        var (stats, fwd) = try backward(images)
        try afterBackward?(fwd)
        try reduceGradients?(optimizer.parameters.compactMap { $0.1.grad == nil ? nil : $0.1 })
        model.bottleneck.recordUsage(fwd.quantized)
        lastUsage = model.bottleneck.stats(fwd.quantized)
        stats.gradNorm = gradientNorm(optimizer.parameters)
        optimizer.lr = schedule.lr(at: step)
        Autograd.noGrad { optimizer.update(gradientScale: clipCoefficient(norm: stats.gradNorm, maxNorm: maxGradNorm)) }
        if let adversarial {
            let reduce = reduceGradients.map { r in { (p: [(String, Tensor)]) throws in try r(p.map(\.1)) } }
            if let d = try adversarial.discriminatorStep(real: images, fake: fwd.reconstruction.detached(), step: step + 1,
                                                         lr: optimizer.lr, reduceGradients: reduce, reduceMeans: reduceStatistics) {
                stats.extra["disc_loss"] = d.loss
                stats.extra["disc_logits_real"] = d.logitsRealMean
                stats.extra["disc_logits_fake"] = d.logitsFakeMean
                if adversarial.options.crWeight != 0 { stats.extra["disc_cr"] = d.consistency }
                if adversarial.options.lecamWeight != nil { stats.extra["disc_lecam"] = d.lecam }
            }
        }
        if let ema {
            EMA.update(ema, from: model, decay: EMA.warmedUp(emaDecay, updates: step))
            if let a = ema.namedTensors().first(where: { $0.0 == "quantize.codebook_used" })?.1,
               let b = model.namedTensors().first(where: { $0.0 == "quantize.codebook_used" })?.1 { a.assign(b) }
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
        try repa?.projection.save(to: training + "/projection.safetensors")
        try adversarial?.save(into: training)
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
        try repa?.projection.load(from: SafeTensorsFile(path: training + "/projection.safetensors"))
        try adversarial?.restore(from: training)
        self.step = step
    }
}
