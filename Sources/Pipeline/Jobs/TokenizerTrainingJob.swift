// `gen train-tokenizer`: trains a SoftVQ tokenizer on an image dataset, resumably.
//
// Determinism: the data order of epoch e is a permutation drawn from the seed's stream e, the
// flips of step s from the seed's stream for s; so the step number alone fixes what comes next
// and a resumed run reaches the same weights as an uninterrupted one.

import Cluster
import Datasets
import Formats
import Foundation
import Render
import Tensor
import Tokenizer

public struct TokenizerTrainingOptions: TrainingOptions, Sendable {
    public var dataset: String = "fashion-mnist"
    public var preset: String = "fashion32"
    public var steps: Int = 8000
    public var batchSize: Int = 32
    public var lr: Float = 4e-4
    public var warmup: Int = 500
    public var minLR: Float = 4e-5
    public var weightDecay: Float = 1e-4
    /// Weight decay on matrices only, none on vectors (the official parameter groups); nil in
    /// runs made before it existed, which decay every parameter and keep doing so on --resume.
    public var decayMatricesOnly: Bool? = nil
    public var emaDecay: Float = 0.999
    public var maxGradNorm: Float = 1
    public var l1: Bool = false
    public var randomFlip: Bool = true
    public var seed: UInt64 = 0
    public var limit: Int? = nil
    public var saveEvery: Int = 500
    public var logEvery: Int = 25
    /// Overrides of the preset (both ViTs): width, depth, heads, patch size; latent tokens and
    /// codebooks.
    public var width: Int? = nil
    public var depth: Int? = nil
    public var heads: Int? = nil
    public var patchSize: Int? = nil
    public var tokens: Int? = nil
    public var codebooks: Int? = nil
    public var codebookSize: Int? = nil
    public var codebookDim: Int? = nil
    /// The recipe's optional terms (nil in runs made before it existed: reconstruction +
    /// entropy).
    public var recipe: TokenizerRecipe? = nil

    public init() {}

    /// The preset with the overrides applied.
    public func config() throws -> TokenizerConfig {
        var c = try TokenizerConfig.preset(preset)
        if let width { c.encEmbedDim = width; c.decEmbedDim = width }
        if let depth { c.encDepth = depth; c.decDepth = depth }
        if let heads { c.encNumHeads = heads; c.decNumHeads = heads }
        if let patchSize { c.encPatchSize = patchSize; c.decPatchSize = patchSize }
        if let tokens { c.numLatentTokens = tokens }
        if let codebooks { c.numCodebooks = codebooks }
        if let codebookSize { c.codebookSize = codebookSize }
        if let codebookDim { c.codebookEmbedDim = codebookDim }
        recipe?.apply(to: &c)
        try c.validate()
        return c
    }
}

/// `gen train-tokenizer`: a SoftVQ tokenizer on an image dataset (the TrainingTask of a
/// TrainingRun).
public final class TokenizerTrainingJob: TrainingTask {
    public static let info = TrainingTaskInfo(kind: "tokenizer", label: "train-tokenizer", plotTitle: "tokenizer training loss",
                                              plotField: "reconstruction", throughputField: "images_per_s")

    /// What a tokenizer run records besides the step: the dataset it reads. The step alone
    /// fixes the data order and flips that come next (see `batchIndices`).
    public struct Progress: Codable { public var dataset: String }

    public let options: TokenizerTrainingOptions
    public let dataset: ImageDataset
    public let trainer: TokenizerTrainer
    let count: Int

    public init(options: TokenizerTrainingOptions) throws {
        self.options = options
        let config = try options.config()
        dataset = try ImageDataset.open(options.dataset, size: config.imageSize).limited(to: options.limit)   // class-balanced
        count = dataset.count
        try DataParallel(world: Cluster.world).requireShares(of: options.batchSize, items: "image")
        guard count >= options.batchSize else {
            throw PipelineError.invalidArgument("The dataset has \(count) images, fewer than the batch size \(options.batchSize).")
        }
        let model = try SoftVQModel(config: config, initialization: .random(seed: options.seed))
        let schedule = LRSchedule.cosine(lr: options.lr, warmup: options.warmup, total: options.steps, minLR: options.minLR)
        let recipe = options.recipe ?? TokenizerRecipe()
        trainer = try TokenizerTrainer(model: model, lr: options.lr, weightDecay: options.weightDecay, schedule: schedule,
                                       maxGradNorm: options.maxGradNorm, ema: options.emaDecay,
                                       reconstructionLoss: options.l1 ? .l1 : .l2,
                                       repa: try recipe.aligner(config: config, seed: options.seed &+ 1),
                                       decayMatricesOnly: options.decayMatricesOnly ?? false)
        trainer.seed = options.seed
        try configureLosses(recipe, config: config)
    }

    public var step: Int { trainer.step }

    /// The perceptual and adversarial terms of the recipe.
    func configureLosses(_ recipe: TokenizerRecipe, config: TokenizerConfig) throws {
        if let path = recipe.perceptual {
            let loss = try recipe.perceptualLoss(path)
            trainer.perceptual = PerceptualTerm(name: loss.name, weight: recipe.perceptualWeight, warmup: recipe.perceptualWarmup) { loss($0, $1) }
        }
        if recipe.discWeight > 0 {
            var a = AdversarialOptions()
            a.discriminator = PatchGANDiscriminator.Config(inputChannels: 3, ndf: recipe.discDim, nLayers: recipe.discLayers)
            a.discStart = recipe.discStart
            a.discWeight = recipe.discWeight
            guard let d = DiscriminatorLoss(rawValue: recipe.discLoss), let g = GeneratorLoss(rawValue: recipe.genLoss) else {
                throw PipelineError.invalidArgument("Unknown adversarial loss '\(recipe.discLoss)' / '\(recipe.genLoss)'.")
            }
            a.discLoss = d
            a.genLoss = g
            a.lecamWeight = recipe.lecamWeight
            a.crWeight = recipe.crWeight
            a.diffAugment = recipe.diffAugment
            // The official loop gives the discriminator the tokenizer's optimizer settings.
            a.maxGradNorm = options.maxGradNorm
            a.weightDecay = options.weightDecay
            a.seed = options.seed
            // Before disc_start the official step has weight 0: it only decays the
            // discriminator's weights and moves BatchNorm averages that training mode never
            // reads. Skipped here (the adversarial terms start from the same initialization).
            a.stepBeforeStart = false
            let adversarial = AdversarialTraining(a)
            adversarial.rank = Cluster.world.rank
            trainer.adversarial = adversarial
            trainer.adaptiveAdversarialWeight = recipe.adaptiveWeight
        }
    }

    public func summary(from start: Int) -> String {
        "Training tokenizer '\(options.preset)' (\(trainer.model.parameterCount) parameters; \((options.recipe ?? TokenizerRecipe()).summary)) on \(dataset.name) (\(count) images), batch \(options.batchSize), steps \(start)..<\(options.steps)."
    }

    /// This rank's rows of the global batch (the same order and flips as one process). The
    /// reconstruction loss is a per-sample mean, so its summed gradient is the global batch's;
    /// the entropy regulariser's batch-mean term is taken over each rank's rows (as the official
    /// code under DDP), so it matches one process only approximately.
    public func trainStep(_ step: Int, parallel: DataParallel) throws -> StepReport {
        var (idx, flips) = batchIndices(step: step)
        let share = parallel.share(of: options.batchSize)
        if parallel.isParallel { idx = Array(idx[share]); flips = Array(flips[share]) }
        let (images, _) = try dataset.batch(idx, flips: flips)
        let weight = Float(share.count) / Float(options.batchSize)
        trainer.reduceGradients = parallel.isParallel ? { try parallel.sumGradients($0, weight: weight) } : nil
        trainer.reduceStatistics = parallel.isParallel ? { try parallel.sumStatistics($0, weight: Double(weight)) } : nil
        var stats = try trainer.trainStep(images)
        let sums = try parallel.sumStatistics([Double(stats.total), Double(stats.reconstruction), Double(stats.entropy)], weight: Double(weight))
        (stats.total, stats.reconstruction, stats.entropy) = (Float(sums[0]), Float(sums[1]), Float(sums[2]))
        let usage = trainer.lastUsage
        var latest: [String: Double] = ["loss": Double(stats.total), "entropy": Double(stats.entropy),
                                        "grad_norm": Double(stats.gradNorm), "lr": Double(trainer.optimizer.lr)]
        if let usage { latest["codebook_perplexity"] = usage.perplexity; latest["codebook_batch_usage"] = usage.batchUsage }
        if trainer.repa != nil { latest["repa"] = Double(stats.repa) }
        for (k, v) in stats.extra { latest[k] = Double(v) }
        return StepReport(loss: stats.total, averaged: ["reconstruction": sums[1]],
                          latest: latest,
                          bar: [("loss", String(format: "%.4f", stats.total)),
                                ("psnr", String(format: "%.1f", psnr(mse: Double(stats.reconstruction), range: 2)))])
    }

    /// PSNR of the window's mean reconstruction error.
    public func decorate(_ record: inout [String: Any]) {
        if let mse = record["reconstruction"] as? Double { record["psnr"] = psnr(mse: mse, range: 2) }
    }

    public var progress: Progress { Progress(dataset: dataset.name) }

    public func restore(from folder: String, step: Int, progress: Progress) throws {
        try trainer.restore(from: folder, step: step)
    }

    public var stateTensors: [Tensor] {
        trainer.model.namedTensors().map(\.1) + (trainer.ema?.namedTensors().map(\.1) ?? [])
            + trainer.optimizer.stateTensors.map(\.1)
            + (trainer.repa?.projection.namedTensors().map(\.1) ?? [])
            + (trainer.adversarial.map { a in a.discriminator.namedTensors().map(\.1) + (a.decayed.stateTensors + a.undecayed.stateTensors).map(\.1) } ?? [])
    }

    /// The trained weights (not the codebook-usage history, a logging buffer each rank fills
    /// from its own rows; rank 0's is saved).
    public var replicatedTensors: [Tensor] {
        trainer.optimizer.parameters.map(\.1) + (trainer.adversarial?.discriminator.parameters.map(\.1) ?? [])
    }

    public func adopt(step: Int, progress: Progress) throws {
        trainer.restore(step: step)
        trainer.optimizer.step = step
        if let a = trainer.adversarial {
            // The discriminator has been updated at global steps >= disc_start (steps before it
            // are skipped); its moments arrive by broadcast, its bias correction needs the count.
            let updates = max(0, step - max(a.options.discStart, 1) + 1)
            a.decayed.step = updates
            a.undecayed.step = updates
        }
    }

    /// The LeCAM averages (Doubles, kept identical on every rank by `reduceStatistics`).
    public func broadcastState(_ parallel: DataParallel) throws {
        guard let a = trainer.adversarial else { return }
        try a.adoptLeCAM(parallel.world.broadcast(bytes: a.lecamBytes))
    }

    var stepsPerEpoch: Int { count / options.batchSize }

    /// Indices and flips of the batch for `step`.
    func batchIndices(step: Int) -> ([Int], [Bool]) {
        let epoch = step / stepsPerEpoch, b = step % stepsPerEpoch
        var permRng = RandomGenerator(seed: options.seed, stream: 1_000_000 + UInt64(epoch))
        var perm = Array(0..<count)
        permRng.shuffle(&perm)
        let idx = Array(perm[(b * options.batchSize)..<((b + 1) * options.batchSize)])
        var flipRng = RandomGenerator(seed: options.seed, stream: 2_000_000 + UInt64(step))
        let flips = idx.map { _ in options.randomFlip && flipRng.below(2) == 1 }
        return (idx, flips)
    }

    /// The EMA model with the latent normalization SiT will use (vq_mean / vq_std measured on a
    /// fixed sample of the data), the raw weights and the optimizer.
    public func writeCheckpoint(into folder: String) throws {
        let saved = trainer.ema ?? trainer.model
        let (mean, std) = try latentStatistics(saved)
        try trainer.save(into: folder)
        var config = saved.config
        config.vqMean = mean
        config.vqStd = std
        try atomicWrite(try config.jsonData(), to: folder + "/config.json")
    }

    /// Mean and standard deviation of z_q over (up to) 1024 evenly spaced training images.
    func latentStatistics(_ model: SoftVQModel) throws -> (Double, Double) {
        let n = min(count, 1024)
        let indices = (0..<n).map { $0 * count / n }
        var sum = 0.0, sumSq = 0.0, k = 0.0
        try Autograd.noGrad {
            for start in stride(from: 0, to: n, by: 128) {
                let (images, _) = try dataset.batch(Array(indices[start..<min(n, start + 128)]))
                let z = try model.latents(images)
                for i in 0..<z.count { let v = Double(z.pointer[i]); sum += v; sumSq += v * v }
                k += Double(z.count)
            }
        }
        let mean = sum / k
        return (mean, max(1e-6, (sumSq / k - mean * mean).squareRoot()))
    }
}

/// PSNR in dB of a mean squared error for signals spanning `range` (2 for [-1, 1]).
public func psnr(mse: Double, range: Double = 2) -> Double {
    mse > 0 ? 10 * log10(range * range / mse) : .infinity
}
