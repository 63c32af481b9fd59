// `gen train`: trains a SiT on a latent cache, resumably. The data loader's position and the
// trainer's generator are saved with each checkpoint, so a resumed run continues exactly.

import Formats
import Foundation
import Render
import SiT
import Tensor
import Tokenizer

public struct SiTTrainingOptions: Codable, Equatable, Sendable {
    public var cache: String = ""
    public var tokenizer: String = ""
    /// Model width; depth and heads. Defaults: a ~5M-parameter SiT for small data.
    public var hiddenSize: Int = 256
    public var depth: Int = 6
    public var numHeads: Int = 4
    public var mlpRatio: Double = 4
    public var qkNorm: Bool = false
    public var steps: Int = 20_000
    public var batchSize: Int = 64
    public var lr: Float = 3e-4
    public var warmup: Int = 500
    public var minLR: Float = 3e-5
    public var weightDecay: Float = 0
    public var emaDecay: Float = 0.999
    public var maxGradNorm: Float = 1
    public var classDropout: Double = 0.1
    public var path: InterpolantPath = .linear
    public var timeSampling: TimeSampling = .uniform
    public var randomFlip: Bool = true
    public var seed: UInt64 = 0
    public var saveEvery: Int = 1000
    public var logEvery: Int = 50

    public init() {}
}

/// The tokenizer identity recorded in caches: its folder name and the SHA-256 of its weights.
public struct TokenizerIdentity: Equatable {
    public let name: String
    public let sha256: String

    public init(folder: String) throws {
        let weights = (folder as NSString).appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weights) else { throw PipelineError.missingFile(weights) }
        name = ((folder as NSString).standardizingPath as NSString).lastPathComponent
        sha256 = try SHA256.file(weights)
    }
}

/// Refuses a cache that another tokenizer made.
public func checkCache(_ meta: LatentCacheMetadata, matches tokenizer: String) throws {
    let id = try TokenizerIdentity(folder: tokenizer)
    guard meta.tokenizerSHA256 == id.sha256 else {
        throw PipelineError.cacheMismatch("The latent cache was made by tokenizer '\(meta.tokenizerName)' (weights \(meta.tokenizerSHA256.prefix(12))…), not by \(tokenizer) (weights \(id.sha256.prefix(12))…); run gen precompute with this tokenizer.")
    }
}

public final class SiTTrainingJob {
    public let options: SiTTrainingOptions
    public let run: RunFolder
    public let trainer: SiTTrainer
    public let loader: LatentBatchLoader
    public let classNames: [String]
    var log: (String) -> Void

    public init(options: SiTTrainingOptions, out: String, resume: Bool, overwrite: Bool,
                log: @escaping (String) -> Void = { print($0) }) throws {
        self.log = log
        run = RunFolder(out)
        var options = options
        var state: [String: Any]? = nil
        if let existing = run.latestCheckpoint {
            guard resume || overwrite else {
                throw PipelineError.invalidArgument("\(out) already holds a training run; pass --resume to continue it or --overwrite to start over.")
            }
            if resume {
                let s = try readJSONObject(existing + "/state.json")
                let saved = try decodeJSONObject(SiTTrainingOptions.self, s["options"] as Any)
                let steps = options.steps
                if !options.cache.isEmpty && options.cache != saved.cache {
                    throw PipelineError.invalidArgument("\(out) was trained on \(saved.cache), not \(options.cache); leave out --cache to resume on the run's own cache.")
                }
                options = saved
                options.steps = max(steps, saved.steps)
                state = s
            } else {
                try? FileManager.default.removeItem(atPath: run.root)
            }
        }
        if options.steps <= 0 { options.steps = SiTTrainingOptions().steps }   // a fresh run given no target
        guard !options.cache.isEmpty else {
            throw PipelineError.invalidArgument("No latent cache: pass --cache (only --resume of an existing run in \(out) may leave it out).")
        }
        self.options = options
        try run.create()
        let reader = try LatentCacheReader(path: options.cache)
        let meta = reader.metadata
        if !options.tokenizer.isEmpty { try checkCache(meta, matches: options.tokenizer) }
        classNames = meta.classNames
        let numClasses = max(classNames.count, (reader.labels.max() ?? 0) + 1)
        var config = SiTConfig(hiddenSize: options.hiddenSize, depth: options.depth, numHeads: options.numHeads,
                               mlpRatio: options.mlpRatio, patchSize: 1, inChannels: meta.tokenDim, inputSize: meta.numTokens,
                               numClasses: numClasses, classDropoutProb: options.classDropout, vae1D: true, qkNorm: options.qkNorm)
        config.extra["class_names"] = .array(classNames.map { .string($0) })
        config.extra["tokenizer"] = .string(meta.tokenizerName)
        config.extra["tokenizer_sha256"] = .string(meta.tokenizerSHA256)
        config.extra["vq_mean"] = .double(meta.vqMean)
        config.extra["vq_std"] = .double(meta.vqStd)
        let model = try SiT(config: config)
        var initRng = RandomGenerator(seed: options.seed)
        model.initializeWeights(rng: &initRng)
        let ema = try SiT(config: config)
        let objective = FlowMatchingObjective(for: config, path: options.path, timeSampling: options.timeSampling)
        trainer = SiTTrainer(model: model, ema: ema, objective: objective,
                             schedule: .cosine(lr: options.lr, warmup: options.warmup, total: options.steps, minLR: options.minLR),
                             weightDecay: options.weightDecay, maxGradNorm: options.maxGradNorm, emaDecay: options.emaDecay,
                             rng: RandomGenerator(seed: options.seed, stream: 7))
        var position = LatentLoaderPosition()
        if let state, let existing = run.latestCheckpoint {
            guard let step = state["step"] as? Int, let rngObj = state["rng"], let posObj = state["data_position"] else {
                throw CheckpointError.io(existing + "/state.json", "step, rng or data_position missing")
            }
            try model.load(from: SafeTensorsFile(path: existing + "/train-model.safetensors"))
            try ema.load(from: SafeTensorsFile(path: existing + "/model.safetensors"))
            try trainer.optimizer.load(from: existing + "/optimizer.safetensors")
            trainer.restore(step: step, rng: try decodeJSONObject(RandomGenerator.self, rngObj))
            position = try decodeJSONObject(LatentLoaderPosition.self, posObj)
            run.truncateLog(after: step)
            log("Resuming \(run.root) at step \(step) of \(options.steps).")
        }
        loader = try LatentBatchLoader(reader: reader, batchSize: options.batchSize,
                                       rng: RandomGenerator(seed: options.seed, stream: 11),
                                       randomFlip: options.randomFlip, position: position)
    }

    public func saveCheckpoint() throws {
        let step = trainer.stepCount
        try run.saveCheckpoint { dir in
            try (trainer.ema ?? trainer.model).save(folder: dir)
            try trainer.model.save(to: dir + "/train-model.safetensors")
            try trainer.optimizer.save(to: dir + "/optimizer.safetensors")
            try writeJSONObject([
                "kind": "sit",
                "step": step,
                "options": try jsonObject(options),
                "rng": try jsonObject(trainer.rng),
                "data_position": try jsonObject(loader.position),
            ], to: dir + "/state.json")
        }
        try? run.plotLoss(title: "SiT training loss")
    }

    public func run(stopAfter: Int? = nil) throws {
        let total = options.steps
        let start = trainer.stepCount
        guard start < total else {
            log("Already trained for \(start) steps (target \(total)).")
            return
        }
        log("Training SiT (\(trainer.model.parameterCount) parameters, \(options.depth) blocks x \(options.hiddenSize)) on \(loader.reader.count) latents of \(loader.reader.metadata.numTokens) x \(loader.reader.metadata.tokenDim), batch \(options.batchSize), steps \(start)..<\(total).")
        let bar = ProgressBar(total: total - start, label: "train", unit: "step")
        let t0 = now()
        var window: [Float] = []
        for step in start..<total {
            let (z, y) = try loader.next()
            let stats = try trainer.step(latents: z, labels: y)
            window.append(stats.loss)
            let done = step + 1
            if done % options.logEvery == 0 || done == total {
                let mean = window.reduce(0, +) / Float(window.count)
                window.removeAll()
                let elapsed = now() - t0
                try run.appendLog([
                    "step": done, "loss": Double(mean), "grad_norm": Double(stats.gradNorm), "lr": Double(stats.lr),
                    "epoch": loader.position.epoch, "samples_per_s": Double((done - start) * options.batchSize) / elapsed,
                    "elapsed_s": elapsed,
                ])
            }
            bar.update(fields: [("loss", String(format: "%.4f", stats.loss))])
            if done % options.saveEvery == 0 || done == total { try saveCheckpoint() }
            if let stopAfter, done - start >= stopAfter { break }
        }
        bar.finish()
        try run.plotLoss(title: "SiT training loss")
        log("Done: step \(trainer.stepCount). Checkpoint: \(run.checkpoint)")
    }
}
