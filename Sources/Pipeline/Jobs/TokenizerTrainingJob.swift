// `gen train-tokenizer`: trains a SoftVQ tokenizer on an image dataset, resumably.
//
// Determinism: the data order of epoch e is a permutation drawn from the seed's stream e, the
// flips of step s from the seed's stream for s; so the step number alone fixes what comes next
// and a resumed run reaches the same weights as an uninterrupted one.

import Datasets
import Formats
import Foundation
import Render
import Tensor
import Tokenizer

public struct TokenizerTrainingOptions: Codable, Equatable, Sendable {
    public var dataset: String = "fashion-mnist"
    public var preset: String = "fashion32"
    public var steps: Int = 8000
    public var batchSize: Int = 32
    public var lr: Float = 4e-4
    public var warmup: Int = 500
    public var minLR: Float = 4e-5
    public var weightDecay: Float = 1e-4
    public var emaDecay: Float = 0.999
    public var maxGradNorm: Float = 1
    public var l1: Bool = false
    public var randomFlip: Bool = true
    public var seed: UInt64 = 0
    public var limit: Int? = nil
    public var saveEvery: Int = 500
    public var logEvery: Int = 25
    /// Overrides of the preset (both ViTs): width, depth, heads; latent tokens and codebooks.
    public var width: Int? = nil
    public var depth: Int? = nil
    public var heads: Int? = nil
    public var tokens: Int? = nil
    public var codebooks: Int? = nil
    public var codebookSize: Int? = nil
    public var codebookDim: Int? = nil

    public init() {}

    /// The preset with the overrides applied.
    public func config() throws -> TokenizerConfig {
        var c = try TokenizerConfig.preset(preset)
        if let width { c.encEmbedDim = width; c.decEmbedDim = width }
        if let depth { c.encDepth = depth; c.decDepth = depth }
        if let heads { c.encNumHeads = heads; c.decNumHeads = heads }
        if let tokens { c.numLatentTokens = tokens }
        if let codebooks { c.numCodebooks = codebooks }
        if let codebookSize { c.codebookSize = codebookSize }
        if let codebookDim { c.codebookEmbedDim = codebookDim }
        try c.validate()
        return c
    }
}

public final class TokenizerTrainingJob {
    public let options: TokenizerTrainingOptions
    public let run: RunFolder
    public let dataset: ImageDataset
    public let trainer: TokenizerTrainer
    let count: Int
    var log: (String) -> Void

    public init(options: TokenizerTrainingOptions, out: String, resume: Bool, overwrite: Bool,
                log: @escaping (String) -> Void = { print($0) }) throws {
        self.log = log
        run = RunFolder(out)
        var options = options
        if let existing = run.latestCheckpoint {
            guard resume || overwrite else {
                throw PipelineError.invalidArgument("\(out) already holds a training run; pass --resume to continue it or --overwrite to start over.")
            }
            if resume {
                let state = try readJSONObject(existing + "/state.json")
                let saved = try decodeJSONObject(TokenizerTrainingOptions.self, state["options"] as Any)
                // The run's own options win, except the target length (which may be extended).
                let steps = options.steps
                options = saved
                options.steps = max(steps, saved.steps)
            } else {
                try? FileManager.default.removeItem(atPath: run.root)
            }
        }
        if options.steps <= 0 { options.steps = TokenizerTrainingOptions().steps }   // a fresh run given no target
        self.options = options
        try run.create()
        let config = try options.config()
        dataset = try ImageDataset.open(options.dataset, size: config.imageSize)
        count = min(dataset.count, options.limit ?? .max)
        guard count >= options.batchSize else {
            throw PipelineError.invalidArgument("The dataset has \(count) images, fewer than the batch size \(options.batchSize).")
        }
        let model = try SoftVQModel(config: config, initialization: .random(seed: options.seed))
        let schedule = LRSchedule.cosine(lr: options.lr, warmup: options.warmup, total: options.steps, minLR: options.minLR)
        trainer = try TokenizerTrainer(model: model, lr: options.lr, weightDecay: options.weightDecay, schedule: schedule,
                                       maxGradNorm: options.maxGradNorm, ema: options.emaDecay,
                                       reconstructionLoss: options.l1 ? .l1 : .l2)
        if resume, let existing = run.latestCheckpoint {
            let state = try readJSONObject(existing + "/state.json")
            guard let step = state["step"] as? Int else { throw CheckpointError.io(existing + "/state.json", "no step") }
            try model.load(from: SafeTensorsFile(path: existing + "/train-model.safetensors"))
            try trainer.ema?.load(from: SafeTensorsFile(path: existing + "/model.safetensors"))
            try trainer.optimizer.load(from: existing + "/optimizer.safetensors")
            trainer.restore(step: step)
            run.truncateLog(after: step)
            log("Resuming \(run.root) at step \(step) of \(options.steps).")
        }
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

    public func saveCheckpoint() throws {
        let step = trainer.step
        let saved = trainer.ema ?? trainer.model
        let (mean, std) = try latentStatistics(saved)
        try run.saveCheckpoint { dir in
            try saved.save(folder: dir)
            // The latent normalization SiT will use, measured on a fixed sample of the data.
            var config = saved.config
            config.vqMean = mean
            config.vqStd = std
            try atomicWrite(try config.jsonData(), to: dir + "/config.json")
            try trainer.model.save(to: dir + "/train-model.safetensors")
            try trainer.optimizer.save(to: dir + "/optimizer.safetensors")
            let epoch = step / stepsPerEpoch
            try writeJSONObject([
                "kind": "tokenizer",
                "step": step,
                "options": try jsonObject(options),
                "dataset": dataset.name,
                "data_position": ["epoch": epoch, "batch": step % stepsPerEpoch],
                "rng": ["seed": options.seed, "stream": 2_000_000 + step],
            ], to: dir + "/state.json")
        }
        try? run.plotLoss(title: "tokenizer training loss", field: "reconstruction")
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

    /// Trains until `options.steps`, checkpointing every `saveEvery` steps and at the end.
    public func run(stopAfter: Int? = nil) throws {
        let total = options.steps
        let start = trainer.step
        guard start < total else {
            log("Already trained for \(start) steps (target \(total)).")
            return
        }
        log("Training tokenizer '\(options.preset)' (\(trainer.model.parameterCount) parameters) on \(dataset.name) (\(count) images), batch \(options.batchSize), steps \(start)..<\(total).")
        let bar = ProgressBar(total: total - start, label: "train-tokenizer", unit: "step")
        let t0 = now()
        var window: [Float] = []
        var lastStats = TokenizerLosses()
        for step in start..<total {
            let (idx, flips) = batchIndices(step: step)
            let (images, _) = try dataset.batch(idx, flips: flips)
            let stats = try trainer.trainStep(images)
            guard stats.total.isFinite else {
                throw PipelineError.invalidArgument("The training loss became \(stats.total) at step \(step); lower --lr. The last checkpoint is intact.")
            }
            lastStats = stats
            window.append(stats.reconstruction)
            let done = step + 1
            if done % options.logEvery == 0 || done == total {
                let mse = window.reduce(0, +) / Float(window.count)
                window.removeAll()
                let elapsed = now() - t0
                let usage = trainer.lastUsage
                var record: [String: Any] = ["step": done, "loss": Double(stats.total), "reconstruction": Double(mse)]
                record["psnr"] = psnr(mse: Double(mse), range: 2)
                record["entropy"] = Double(stats.entropy)
                record["grad_norm"] = Double(stats.gradNorm)
                record["lr"] = Double(trainer.optimizer.lr)
                record["codebook_perplexity"] = usage?.perplexity ?? 0
                record["codebook_batch_usage"] = usage?.batchUsage ?? 0
                record["images_per_s"] = Double((done - start) * options.batchSize) / elapsed
                record["elapsed_s"] = elapsed
                try run.appendLog(record)
            }
            bar.update(fields: [("loss", String(format: "%.4f", stats.total)),
                                ("psnr", String(format: "%.1f", psnr(mse: Double(stats.reconstruction), range: 2)))])
            if done % options.saveEvery == 0 || done == total { try saveCheckpoint() }
            if let stopAfter, done - start >= stopAfter { break }
        }
        bar.finish()
        try run.plotLoss(title: "tokenizer training loss", field: "reconstruction")
        log(String(format: "Done: step %d, last loss %.5f. Checkpoint: %@", trainer.step, lastStats.total, run.checkpoint))
    }
}

/// PSNR in dB of a mean squared error for signals spanning `range` (2 for [-1, 1]).
public func psnr(mse: Double, range: Double = 2) -> Double {
    mse > 0 ? 10 * log10(range * range / mse) : .infinity
}
