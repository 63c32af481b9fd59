// The adversarial half of the official tokenizer recipe (losses/vq_loss.py with
// train/train_tokenizer.py): a PatchGAN discriminator with its own AdamW, the generator's
// adversarial term, and the discriminator step (optimizer_idx == 1) with DiffAugment, LeCAM
// regularization and consistency regularization (CR), gradient clipping and the update.
//
// Randomness: every augmentation draw comes from RandomGenerator(seed, stream) with the stream
// a function of (step, which draw), so a run killed and resumed at a step repeats it exactly.
//
// Dimension legend: N batch, C channels, H x W image, h x w patch-logit grid.

import Foundation
import Tensor

/// The adversarial options of the recipe. Coding keys are the official argument names
/// (train_tokenizer.py / configs/*.yaml) where one exists; missing fields take the defaults,
/// which are the official argument defaults (the released softvq configs use disc_weight 0.2,
/// lecam 0.001, CR 4.0, diff-aug on, weight decay 1e-4).
public struct AdversarialOptions: Codable, Equatable, Sendable {
    public var discriminator = PatchGANDiscriminator.Config()
    /// The step from which the adversarial terms count (official disc_start; adopt_weight).
    public var discStart = 20000
    /// Weight of the discriminator loss once active (official disc_weight; the lead applies it
    /// to the generator's term too).
    public var discWeight: Float = 0.5
    public var discLoss: DiscriminatorLoss = .hinge
    public var genLoss: GeneratorLoss = .hinge
    /// LeCAM regularization weight (official lecam_loss_weight; nil = off).
    public var lecamWeight: Float? = nil
    /// Consistency-regularization weight (official disc_cr_loss_weight; 0 = off).
    public var crWeight: Float = 0
    /// DiffAugment "color,translation,cutout_0.2" with probability 0.5 on the D inputs.
    public var diffAugment = false
    /// Clip the discriminator's gradient norm to this (0 = no clipping).
    public var maxGradNorm: Float = 1
    public var beta1: Float = 0.9
    public var beta2: Float = 0.95
    public var weightDecay: Float = 0.05
    public var seed: UInt64 = 0
    /// Run the discriminator step before discStart with weight 0, as the official code does
    /// (the update then only applies weight decay and moves the BatchNorm running statistics);
    /// false skips those steps entirely.
    public var stepBeforeStart = true

    public init() {}

    enum CodingKeys: String, CodingKey {
        case discriminator, seed
        case discStart = "disc_start", discWeight = "disc_weight", discLoss = "disc_loss", genLoss = "gen_loss"
        case lecamWeight = "lecam_loss_weight", crWeight = "disc_cr_loss_weight", diffAugment = "use_diff_aug"
        case maxGradNorm = "max_grad_norm", beta1, beta2, weightDecay = "weight_decay"
        case stepBeforeStart = "step_before_start"
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        var o = AdversarialOptions()
        o.discriminator = try c.decodeIfPresent(PatchGANDiscriminator.Config.self, forKey: .discriminator) ?? o.discriminator
        o.discStart = try c.decodeIfPresent(Int.self, forKey: .discStart) ?? o.discStart
        o.discWeight = try c.decodeIfPresent(Float.self, forKey: .discWeight) ?? o.discWeight
        o.discLoss = try c.decodeIfPresent(DiscriminatorLoss.self, forKey: .discLoss) ?? o.discLoss
        o.genLoss = try c.decodeIfPresent(GeneratorLoss.self, forKey: .genLoss) ?? o.genLoss
        o.lecamWeight = try c.decodeIfPresent(Float.self, forKey: .lecamWeight)
        o.crWeight = try c.decodeIfPresent(Float.self, forKey: .crWeight) ?? o.crWeight
        o.diffAugment = try c.decodeIfPresent(Bool.self, forKey: .diffAugment) ?? o.diffAugment
        o.maxGradNorm = try c.decodeIfPresent(Float.self, forKey: .maxGradNorm) ?? o.maxGradNorm
        o.beta1 = try c.decodeIfPresent(Float.self, forKey: .beta1) ?? o.beta1
        o.beta2 = try c.decodeIfPresent(Float.self, forKey: .beta2) ?? o.beta2
        o.weightDecay = try c.decodeIfPresent(Float.self, forKey: .weightDecay) ?? o.weightDecay
        o.seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? o.seed
        o.stepBeforeStart = try c.decodeIfPresent(Bool.self, forKey: .stepBeforeStart) ?? o.stepBeforeStart
        self = o
    }
}

/// What one discriminator step logs.
public struct DiscriminatorStats: Equatable, Sendable {
    /// The total loss that was back-propagated (weights applied, CR and LeCAM included).
    public var loss: Float
    /// The unweighted discriminator loss of the chosen kind.
    public var discriminatorLoss: Float
    public var logitsRealMean: Float
    public var logitsFakeMean: Float
    /// Unweighted CR term (0 when off).
    public var consistency: Float
    /// Unweighted LeCAM regularizer (0 when off).
    public var lecam: Float
    /// The discriminator gradient norm before clipping.
    public var gradientNorm: Float
    /// adopt_weight(discWeight) of this step.
    public var weight: Float
}

public final class AdversarialTraining {
    public let options: AdversarialOptions
    public let discriminator: PatchGANDiscriminator
    /// The official param_groups_weight_decay: decay on parameters of ndim >= 2 that are not
    /// biases, none on the rest (1-D: biases, BatchNorm affine).
    public let decayed: AdamW
    public let undecayed: AdamW
    public private(set) var lecam: LeCAMEMA
    /// This process's rank in a data-parallel job: folded into the augmentation streams so that
    /// ranks draw different augmentations (the discriminator's initialization does not depend
    /// on it).
    public var rank = 0

    public static let discriminatorFile = "discriminator.safetensors"
    public static let optimizerFile = "discriminator-optimizer.safetensors"
    public static let stateFile = "adversarial.json"

    /// A freshly initialized discriminator drawn from `options.seed`.
    public init(_ options: AdversarialOptions) {
        self.options = options
        var f = ParameterFactory(.random(seed: options.seed ^ 0xD15C_0000_0000_0000))
        discriminator = PatchGANDiscriminator(options.discriminator, &f)
        let params = discriminator.parameters
        let decay = params.filter(AdamW.decaysMatricesOnly)
        let noDecay = params.filter { !AdamW.decaysMatricesOnly($0.0, $0.1) }
        let betas = (options.beta1, options.beta2)
        decayed = AdamW(decay, lr: 0, betas: betas, weightDecay: options.weightDecay)
        undecayed = AdamW(noDecay, lr: 0, betas: betas, weightDecay: 0)
        lecam = LeCAMEMA()
    }

    // MARK: - Random streams

    private enum Draw: UInt64 { case generator = 0, discriminator = 1 }

    /// The generator for the draws of `step`: a pure function of (seed, rank, step, draw).
    private func rng(_ draw: Draw, step: Int) -> RandomGenerator {
        precondition(step >= 0 && step < 1 << 38 && rank >= 0 && rank < 1 << 16, "adversarial streams: step \(step), rank \(rank)")
        return RandomGenerator(seed: options.seed,
                               stream: 0xAD00_0000_0000_0000 | (UInt64(rank) << 39) | (UInt64(step) << 1) | draw.rawValue)
    }

    private func augment(_ x: Tensor, _ policies: [DiffAugment.Policy], probability: Float, _ rng: inout RandomGenerator) -> Tensor {
        DiffAugment.apply(x, policies: policies, probability: probability, rng: &rng)
    }

    // MARK: - Generator term

    /// The generator's adversarial loss on its reconstruction (N, C, H, W), on the tape (through
    /// DiffAugment when on); gradients reach the reconstruction, not the discriminator. Not
    /// multiplied by disc_weight nor the adaptive weight (the caller applies adopt_weight and
    /// the adaptive weight). Returns nil before discStart: the official code computes it there
    /// with weight 0, which changes nothing but the discriminator's BatchNorm running averages
    /// (unused, since the discriminator always runs in training mode).
    public func generatorLoss(reconstruction: Tensor, step: Int) -> Tensor? {
        guard step >= options.discStart else { return nil }
        var r = rng(.generator, step: step)
        let x = options.diffAugment ? augment(reconstruction, DiffAugment.standard, probability: 0.5, &r) : reconstruction
        let logits = discriminator(x, parameterGradients: false)              // (N, 1, h, w)
        return AdversarialLoss.generator(options.genLoss, logitsFake: logits)
    }

    // MARK: - Discriminator step

    /// One discriminator update (official optimizer_idx == 1, then clip and step) on detached
    /// real and fake images (N, C, H, W) at learning rate `lr`. Returns nil (and does nothing)
    /// before discStart when `stepBeforeStart` is off. `reduceGradients`, when given, runs after
    /// the backward and before clipping on the discriminator's parameters (e.g. the all-reduce
    /// average of a data-parallel job, as DDP does for the official discriminator). Throws, without
    /// updating the weights, on mismatched batches or a non-finite gradient norm.
    /// `reduceMeans`, when given, turns this rank's batch means into the global batch's (the
    /// share-weighted sum over the ranks): the LeCAM averages then follow the global batch on
    /// every rank, as in one process, and stay identical across ranks.
    @discardableResult
    public func discriminatorStep(real: Tensor, fake: Tensor, step: Int, lr: Float,
                                  reduceGradients: (([(String, Tensor)]) throws -> Void)? = nil,
                                  reduceMeans: (([Double]) throws -> [Double])? = nil) throws -> DiscriminatorStats? {
        guard real.shape == fake.shape, real.rank == 4, real.dim(1) == options.discriminator.inputChannels else {
            throw TokenizerError.badInput("discriminator step: real \(real.shape) and fake \(fake.shape) must be equal (N, \(options.discriminator.inputChannels), H, W) batches")
        }
        guard options.stepBeforeStart || step >= options.discStart else { return nil }
        let realImages = real.detached(), fakeImages = fake.detached()
        discriminator.training = true
        discriminator.zeroGrad()
        defer { discriminator.zeroGrad() }   // gradients never outlive the step, even on a throw
        var r = rng(.discriminator, step: step)

        // Logits of the (augmented) real and fake batches, one forward each (own batch stats).
        let dReal = options.diffAugment ? augment(realImages, DiffAugment.standard, probability: 0.5, &r) : realImages
        let dFake = options.diffAugment ? augment(fakeImages, DiffAugment.standard, probability: 0.5, &r) : fakeImages
        let logitsReal = discriminator(dReal)                                   // (N, 1, h, w)
        let logitsFake = discriminator(dFake)                                   // (N, 1, h, w)
        let weight = AdversarialLoss.adoptWeight(options.discWeight, step: step, threshold: options.discStart)

        let dLoss = AdversarialLoss.discriminator(options.discLoss, logitsReal: logitsReal, logitsFake: logitsFake)
        let realMean = Autograd.noGrad { logitsReal.mean() }.item, fakeMean = Autograd.noGrad { logitsFake.mean() }.item
        var loss: Tensor
        var lecamValue: Float = 0
        if let lw = options.lecamWeight {
            var means = [Double(realMean), Double(fakeMean)]
            if let reduceMeans { means = try reduceMeans(means) }
            lecam.update(meanReal: means[0], meanFake: means[1])
            let reg = AdversarialLoss.lecamRegularization(logitsReal: logitsReal, logitsFake: logitsFake, ema: lecam)
            lecamValue = reg.item
            loss = (reg * lw + dLoss) * weight
        } else {
            loss = dLoss * weight
        }

        // Consistency regularization: the logits of strongly augmented copies (probability 1)
        // should match those of the batches above; MSE over the concatenated maps.
        var crValue: Float = 0
        if options.crWeight != 0 {
            let sReal = discriminator(augment(realImages, DiffAugment.consistency, probability: 1, &r))
            let sFake = discriminator(augment(fakeImages, DiffAugment.consistency, probability: 1, &r))
            let cr = (concat([logitsReal, logitsFake], axis: 0) - concat([sReal, sFake], axis: 0)).square().mean()
            crValue = cr.item
            let crWeight = step >= options.discStart ? options.crWeight : 0
            loss = loss + cr * crWeight
        }

        let stats = DiscriminatorStats(
            loss: loss.item, discriminatorLoss: dLoss.item,
            logitsRealMean: realMean, logitsFakeMean: fakeMean,
            consistency: crValue, lecam: lecamValue, gradientNorm: 0, weight: weight)
        loss.backward()

        // Clip the global norm of all discriminator gradients, then one AdamW step per group.
        let all = discriminator.parameters
        try reduceGradients?(all)
        let norm = gradientNorm(all)
        guard norm.isFinite else {
            throw TokenizerError.badInput("discriminator step \(step): the gradient norm is \(norm) (the losses diverged); the weights were not updated")
        }
        let scale = options.maxGradNorm > 0 ? clipCoefficient(norm: norm, maxNorm: options.maxGradNorm) : 1
        for opt in [decayed, undecayed] {
            opt.lr = lr
            opt.update(gradientScale: scale)
        }
        var out = stats
        out.gradientNorm = norm
        return out
    }

    // MARK: - Saving and restoring

    /// Writes discriminator.safetensors (official keys), discriminator-optimizer.safetensors and
    /// adversarial.json (the LeCAM EMAs as exact bit patterns) into `folder`, each atomically.
    public func save(into folder: String) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try discriminator.save(to: folder + "/" + Self.discriminatorFile)
        try writeSafeTensors(decayed.stateTensors + undecayed.stateTensors, to: folder + "/" + Self.optimizerFile,
                             metadata: ["step": String(decayed.step), "format": "adamw-v1"])
        let state = SavedState(format: "adversarial-v1", lecamRealBits: String(lecam.logitsReal.bitPattern, radix: 16),
                               lecamFakeBits: String(lecam.logitsFake.bitPattern, radix: 16), lecamDecay: lecam.decay,
                               lecamReal: lecam.logitsReal, lecamFake: lecam.logitsFake)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try atomicWrite(try encoder.encode(state), to: folder + "/" + Self.stateFile)
    }

    /// The LeCAM averages as exact bytes (what rank 0 sends the other ranks of a resumed job;
    /// the tensors travel with the training state).
    public var lecamBytes: [UInt8] {
        withUnsafeBytes(of: (lecam.logitsReal.bitPattern, lecam.logitsFake.bitPattern)) { Array($0) }
    }

    /// Takes over `lecamBytes` of another rank.
    public func adoptLeCAM(_ bytes: [UInt8]) throws {
        guard bytes.count == 16 else { throw TokenizerError.badInput("LeCAM state of \(bytes.count) bytes (expected 16)") }
        let (real, fake) = bytes.withUnsafeBytes { ($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
        lecam.logitsReal = Double(bitPattern: real)
        lecam.logitsFake = Double(bitPattern: fake)
    }

    /// Reads what `save(into:)` wrote (strictly: every key present, shapes equal).
    public func restore(from folder: String) throws {
        let file = try SafeTensorsFile(path: folder + "/" + Self.discriminatorFile)
        try discriminator.load(file: file)
        try decayed.load(from: folder + "/" + Self.optimizerFile)
        try undecayed.load(from: folder + "/" + Self.optimizerFile)
        let path = folder + "/" + Self.stateFile
        guard let data = FileManager.default.contents(atPath: path) else { throw CheckpointError.io(path, "no such file") }
        let state: SavedState
        do { state = try JSONDecoder().decode(SavedState.self, from: data) } catch {
            throw CheckpointError.config("\(path) is not an adversarial state file: \(JSONFile.reason(error, data: data))")
        }
        guard state.format == "adversarial-v1" else { throw CheckpointError.config("\(path): unknown format '\(state.format.oneLine())'") }
        guard let realBits = UInt64(state.lecamRealBits, radix: 16), let fakeBits = UInt64(state.lecamFakeBits, radix: 16) else {
            throw CheckpointError.config("\(path): the LeCAM bit patterns are not hexadecimal numbers")
        }
        lecam = LeCAMEMA(initial: 0, decay: state.lecamDecay)
        lecam.logitsReal = Double(bitPattern: realBits)
        lecam.logitsFake = Double(bitPattern: fakeBits)
    }

    /// adversarial.json: the EMAs exactly (bit patterns) and readably.
    private struct SavedState: Codable {
        var format: String
        /// Hexadecimal IEEE-754 bit patterns of the Doubles.
        var lecamRealBits: String
        var lecamFakeBits: String
        var lecamDecay: Double
        var lecamReal: Double
        var lecamFake: Double
        enum CodingKeys: String, CodingKey {
            case format
            case lecamRealBits = "lecam_logits_real_ema_bits", lecamFakeBits = "lecam_logits_fake_ema_bits"
            case lecamDecay = "lecam_decay", lecamReal = "lecam_logits_real_ema", lecamFake = "lecam_logits_fake_ema"
        }
    }
}
