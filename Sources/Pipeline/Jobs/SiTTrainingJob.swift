// `gen train`: trains a SiT on a latent cache, resumably. The data loader's position and the
// trainer's generator are saved with each checkpoint, so a resumed run continues exactly.

import Cluster
import Formats
import Foundation
import Render
import SiT
import Tensor
import Tokenizer

public struct SiTTrainingOptions: TrainingOptions, Sendable {
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
    /// AdamW's epsilon (nil in older runs: PyTorch's 1e-8).
    public var adamEps: Float? = nil
    public var classDropout: Double = 0.1
    public var path: InterpolantPath = .linear
    public var timeSampling: TimeSampling = .uniform
    /// Draw each sample's latent or its mirror's with probability 1/2 (the official loader);
    /// off (`gen train --no-flip`) for data whose orientation matters.
    public var randomFlip: Bool = true
    public var seed: UInt64 = 0
    public var saveEvery: Int = 1000
    public var logEvery: Int = 50
    /// Train even if some classes the cache lists have no latents (nil in older runs: false).
    public var allowMissingClasses: Bool? = nil
    /// A SiT folder (or run) whose weights start this run instead of a random initialization
    /// (`gen train --init-from`: fine-tuning; fresh optimizer, warmup and schedule). Same
    /// architecture and tokenizer; nil when the run started from scratch.
    public var initFrom: String? = nil

    public init() {}
}

/// The tokenizer identity recorded in caches: its folder name and the SHA-256 of its weights.
public struct TokenizerIdentity: Equatable {
    public let name: String
    public let sha256: String

    public init(folder: String) throws {
        let weights = (folder as NSString).appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weights) else { throw PipelineError.missingFile(weights) }
        // The folder's name, or the run's name for a run's `checkpoint/`.
        let full = (folder as NSString).standardizingPath as NSString
        name = full.lastPathComponent == "checkpoint" ? (full.deletingLastPathComponent as NSString).lastPathComponent : full.lastPathComponent
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

/// `gen train`: a SiT on a latent cache (the TrainingTask of a TrainingRun).
public final class SiTTrainingJob: TrainingTask {
    public static let info = TrainingTaskInfo(kind: "sit", label: "train", plotTitle: "SiT training loss",
                                              plotField: "loss", throughputField: "samples_per_s")

    /// What a SiT run saves besides the step: the trainer's generator and the loader's position.
    public struct Progress: Codable {
        public var rng: RandomGenerator
        public var dataPosition: LatentLoaderPosition

        enum CodingKeys: String, CodingKey {
            case rng
            case dataPosition = "data_position"
        }
    }

    public let options: SiTTrainingOptions
    public let trainer: SiTTrainer
    public let loader: LatentBatchLoader
    public let classNames: [String]

    public static func resumedOptions(given: SiTTrainingOptions, saved: SiTTrainingOptions, out: String) throws -> SiTTrainingOptions {
        if !given.cache.isEmpty && given.cache != saved.cache {
            throw PipelineError.invalidArgument("\(out) was trained on \(saved.cache), not \(given.cache); leave out --cache to resume on the run's own cache.")
        }
        var options = saved
        options.steps = resumedSteps(given: given.steps, saved: saved.steps)
        // A resumed run's weights are its checkpoint's; the folder it started from may be gone.
        options.initFrom = nil
        // --no-flip on a resume switches the rest of the run to the unmirrored latents.
        if !given.randomFlip { options.randomFlip = false }
        return options
    }

    public init(options: SiTTrainingOptions) throws {
        try DataParallel(world: Cluster.world).requireShares(of: options.batchSize, items: "sample")
        guard !options.cache.isEmpty else {
            throw PipelineError.invalidArgument("No latent cache: pass --cache (only --resume of an existing run in the output folder may leave it out).")
        }
        self.options = options
        let reader = try LatentCacheReader(path: options.cache)
        let meta = reader.metadata
        if !options.tokenizer.isEmpty { try checkCache(meta, matches: options.tokenizer) }
        classNames = meta.classNames
        // The classes are the cache's recorded ones; labels outside them are refused (a cache
        // without class names gets as many classes as its largest label needs, bounded).
        let largest = reader.labels.max() ?? 0, names = meta.classNames
        if let bad = reader.labels.first(where: { $0 < 0 || (!names.isEmpty && $0 >= names.count) }) {
            throw PipelineError.corruptFile(path: options.cache, reason: "label \(bad) is outside the \(classNames.count) classes it records")
        }
        guard largest < 1_000_000 else {
            throw PipelineError.corruptFile(path: options.cache, reason: "label \(largest) is implausibly large (at most 1,000,000 classes)")
        }
        let numClasses = classNames.isEmpty ? largest + 1 : classNames.count
        if !names.isEmpty && !(options.allowMissingClasses ?? false) {
            let present = Set(reader.classesPresent)
            let missing = names.indices.filter { !present.contains($0) }.map { names[$0] }
            if !missing.isEmpty {
                throw PipelineError.invalidArgument("The latent cache lists \(names.count) classes but has no latents of \(missing.count): \(missing.prefix(5).joined(separator: ", "))\(missing.count > 5 ? ", ..." : ""); precompute more images (a class-balanced --limit of at least \(names.count)) or pass --allow-missing-classes.")
            }
        }
        var config = SiTConfig(hiddenSize: options.hiddenSize, depth: options.depth, numHeads: options.numHeads,
                               mlpRatio: options.mlpRatio, patchSize: 1, inChannels: meta.tokenDim, inputSize: meta.numTokens,
                               numClasses: numClasses, classDropoutProb: options.classDropout, vae1D: true, qkNorm: options.qkNorm)
        // The objective the samplers must honour, in the official field (path_type).
        config.extra["path_type"] = .string(options.path.rawValue)
        config.extra["tags"] = .array(["arxiv:2412.10958", "image-generation", "\(meta.numTokens) tokens", "SiT"].map { .string($0) })
        // Ours, in the softvq_swift block: what the official config cannot say.
        config.setSwiftField("class_names", .array(classNames.map { .string($0) }))
        config.setSwiftField("prediction", .string("v"))
        config.setSwiftField("tokenizer", .string(meta.tokenizerName))
        config.setSwiftField("tokenizer_sha256", .string(meta.tokenizerSHA256))
        config.setSwiftField("vq_mean", .double(meta.vqMean))
        config.setSwiftField("vq_std", .double(meta.vqStd))
        let model = try SiT(config: config)
        var initRng = RandomGenerator(seed: options.seed)
        model.initializeWeights(rng: &initRng)
        if let folder = options.initFrom { try Self.initialize(model, from: folder, tokenizerSHA256: meta.tokenizerSHA256) }
        let ema = try SiT(config: config)
        let objective = FlowMatchingObjective(for: config, path: options.path, timeSampling: options.timeSampling)
        trainer = SiTTrainer(model: model, ema: ema, objective: objective,
                             schedule: .cosine(lr: options.lr, warmup: options.warmup, total: options.steps, minLR: options.minLR),
                             weightDecay: options.weightDecay, eps: options.adamEps ?? 1e-8, maxGradNorm: options.maxGradNorm, emaDecay: options.emaDecay,
                             rng: RandomGenerator(seed: options.seed, stream: 7))
        loader = try LatentBatchLoader(reader: reader, batchSize: options.batchSize,
                                       rng: RandomGenerator(seed: options.seed, stream: 11),
                                       randomFlip: options.randomFlip, position: LatentLoaderPosition())
    }

    /// Copies the weights of the SiT in `folder` into `model`, refusing another architecture or
    /// a SiT trained on another tokenizer's latents. A source with fewer blocks (same width,
    /// heads, tokens, channels and classes) fills the first blocks; the model's further blocks
    /// keep their fresh initialization, whose adaLN-Zero modulation makes each an identity, so
    /// the deeper model starts out computing exactly the source's function.
    static func initialize(_ model: SiT, from folder: String, tokenizerSHA256: String) throws {
        let source: SiT
        do { source = try SiT.load(folder: folder) } catch {
            throw PipelineError.invalidArgument("--init-from \(folder): \(error)")
        }
        if case let .string(sha)? = source.config.swiftField("tokenizer_sha256"), sha != tokenizerSHA256 {
            throw PipelineError.invalidArgument("--init-from \(folder) was trained on the latents of tokenizer weights \(sha.prefix(12))…, not on this cache's (\(tokenizerSHA256.prefix(12))…).")
        }
        let c = source.config
        let theirs = source.namedTensors()
        let mine = Dictionary(uniqueKeysWithValues: model.namedTensors().map { ($0.0, $0.1) })
        let sourceKeys = Set(theirs.map(\.0))
        /// A key only the model has must belong to one of its blocks past the source's depth.
        func isAddedBlock(_ key: String) -> Bool {
            let parts = key.split(separator: ".")
            guard parts.count > 2, parts[0] == "blocks", let i = Int(parts[1]) else { return false }
            return i >= c.depth
        }
        let fits = c.numHeads == model.config.numHeads && c.depth <= model.config.depth
            && theirs.allSatisfy { mine[$0.0]?.shape == $0.1.shape }
            && mine.keys.allSatisfy { sourceKeys.contains($0) || isAddedBlock($0) }
        guard fits else {
            throw PipelineError.invalidArgument("--init-from \(folder) is a SiT of width \(c.hiddenSize), depth \(c.depth), \(c.numHeads) heads, \(c.inputSize) tokens x \(c.inChannels), \(c.numClasses) classes\(c.qkNorm ? ", qk-norm" : ""); this run's --hidden, --heads, --qk-norm and cache must describe the same, and --depth at least as many blocks.")
        }
        for (name, t) in theirs { try checkFinite(t, "weights \(name) of --init-from \(folder)") }
        for (name, t) in theirs { mine[name]!.assign(t) }
        // The sin-cos table is fixed, not learned: a half-precision source holds it rounded
        // (up to ~2e-4); the run keeps the exact table unless the source's differs by more.
        if let d = source.posEmbedMaxDifference, d <= 1e-2 { model.posEmbed.assign(SiT.positionTable(model.config)) }
    }

    public var step: Int { trainer.stepCount }

    public func summary(from start: Int) -> String {
        "Training SiT (\(trainer.model.parameterCount) parameters, \(options.depth) blocks x \(options.hiddenSize)) on \(loader.reader.count) latents of \(loader.reader.metadata.numTokens) x \(loader.reader.metadata.tokenDim), batch \(options.batchSize), steps \(start)..<\(options.steps)."
    }

    /// This rank's rows of the global batch, each with its own random stream (keyed by its
    /// position in the epoch); the loss is the global batch mean.
    public func trainStep(_ step: Int, parallel: DataParallel) throws -> StepReport {
        let share = parallel.share(of: options.batchSize)
        let (z, y, keys) = try loader.next(slice: parallel.isParallel ? share : nil)
        let weight = Float(share.count) / Float(options.batchSize)
        trainer.reduceGradients = parallel.isParallel ? { try parallel.sumGradients($0, weight: weight) } : nil
        let stats = try trainer.step(latents: z, labels: y, sampleKeys: keys)
        let loss = try parallel.sumStatistics([Double(stats.loss)], weight: Double(weight))[0]
        return StepReport(loss: Float(loss), averaged: ["loss": loss],
                          latest: ["grad_norm": Double(stats.gradNorm), "lr": Double(stats.lr)],
                          bar: [("loss", String(format: "%.4f", loss))])
    }

    public func decorate(_ record: inout [String: Any]) { record["epoch"] = loader.position.epoch }

    public func writeCheckpoint(into folder: String) throws { try trainer.save(into: folder) }

    public var progress: Progress { Progress(rng: trainer.rng, dataPosition: loader.position) }

    public func restore(from folder: String, step: Int, progress: Progress) throws {
        try trainer.restore(from: folder, step: step, rng: progress.rng)
        loader.position = progress.dataPosition
    }

    public var stateTensors: [Tensor] {
        trainer.model.namedTensors().map(\.1) + (trainer.ema?.namedTensors().map(\.1) ?? [])
            + trainer.optimizer.stateTensors.map(\.1)
    }

    public var replicatedTensors: [Tensor] { trainer.optimizer.parameters.map(\.1) }

    public func adopt(step: Int, progress: Progress) throws {
        trainer.restore(step: step, rng: progress.rng)
        trainer.optimizer.step = step
        loader.position = progress.dataPosition
    }
}
