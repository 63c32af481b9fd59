// `gen sample`: class-conditional generation. SiT integrates noise to latents with the chosen
// sampler (Sources/Sampler), the tokenizer decodes them, and the images are written as PNGs
// (each with a `parameters` tEXt chunk that reproduces it), a labelled grid, and optionally an
// ADM-evaluator .npz and the sampled latents in the latent-cache format.
//
// Reproducibility: image i of a run with seed s uses seed s + i (mod 2^64) for its own noise (and,
// with --num-samples, its class). Batches are fixed by index (images [kB, (k+1)B)), so a run is
// bit-identical to another with the same batch size B; with B = 1 each image is bit-identical to
// itself regenerated alone (--from-png). Other batch sizes agree within float rounding.

import Cluster
import Datasets
import Formats
import Foundation
import Render
import Sampler
import SiT
import Tensor
import Tokenizer

public struct GenerationOptions: Codable, Equatable, Sendable {
    public var sit: String
    public var tokenizer: String
    /// Class labels to generate (indices into the class list).
    public var classes: [Int] = []
    public var perClass: Int = 8
    public var seed: UInt64 = 0
    public var method: SamplerMethod = .euler
    public var steps: Int = 50
    public var cfgScale: Double = 1.0
    public var guidanceLow: Double = 0
    public var guidanceHigh: Double = 1
    /// Images integrated (and decoded) together. With batch size 1 an image is bit-identical to
    /// the same image generated alone; a larger batch is faster and bit-identical to another run
    /// with the same batch size (within float rounding of other batch sizes).
    public var batchSize: Int = 1
    /// Evaluate the model image by image even inside a batch, so that results do not depend on
    /// the batch at all (slow); false runs each batch in one forward.
    public var batchInvariant: Bool = false
    /// Generate this many images with classes drawn per image from its seed, instead of
    /// `perClass` images of every class.
    public var numSamples: Int? = nil

    public init(sit: String, tokenizer: String) {
        self.sit = sit
        self.tokenizer = tokenizer
    }

    /// The most images one run may write.
    public static let maxImages = 10_000_000
    /// The generator stream that draws image i's class from its seed (with `numSamples`).
    public static let labelStream: UInt64 = 0x6C61_6265_6C73
}

/// Loaded models plus what generation needs to know about them.
public final class GenerationModels {
    public let sit: SiT
    public let tokenizer: SoftVQModel
    public let classNames: [String]
    public let sitPath: String
    public let tokenizerPath: String

    public init(sit sitPath: String, tokenizer tokenizerPath: String, log: (String) -> Void = { _ in }) throws {
        self.sitPath = sitPath
        self.tokenizerPath = tokenizerPath
        sit = try SiT.load(folder: sitPath)
        tokenizer = try SoftVQModel.load(folder: tokenizerPath, decoderOnly: true, log: log)
        sit.freeze()
        tokenizer.freeze()
        let c = sit.config
        guard c.vae1D, c.inputSize == tokenizer.numLatentTokens, c.inChannels == tokenizer.latentDim else {
            throw PipelineError.cacheMismatch("The SiT in \(sitPath) generates \(c.inputSize) x \(c.inChannels) latents but the tokenizer in \(tokenizerPath) decodes \(tokenizer.numLatentTokens) x \(tokenizer.latentDim).")
        }
        if case let .string(sha)? = c.swiftField("tokenizer_sha256"),
           let id = try? TokenizerIdentity(folder: tokenizerPath), id.sha256 != sha {
            FileHandle.standardError.write(Data("warning: the SiT was trained on latents of another tokenizer (weights \(sha.prefix(12))…, given \(id.sha256.prefix(12))…)\n".utf8))
        }
        classNames = Self.classNames(c)
    }

    /// The classes a SiT config names: its `class_names` (WordNet ids become ImageNet names), else
    /// ImageNet's for 1000 classes, else "class i".
    public static func vocabulary(_ config: SiTConfig) -> ClassVocabulary {
        var recorded: [String] = []
        if case let .array(names)? = config.swiftField("class_names") {
            recorded = names.map { if case let .string(s) = $0 { return s } else { return "?" } }
        }
        return ClassVocabulary(count: config.numClasses, recorded: recorded)
    }

    /// Display names of the classes of a SiT config.
    public static func classNames(_ config: SiTConfig) -> [String] { vocabulary(config).names }

    /// Resolves comma-separated class indices, names or WordNet ids against the SiT in
    /// `sitFolder`, reading only its config.json (no weights).
    public static func classIndices(_ list: String, sitFolder: String) throws -> [Int] {
        let config = try SiTConfig.read(from: (sitFolder as NSString).appendingPathComponent("config.json"))
        let vocabulary = vocabulary(config)
        return try list.split(separator: ",").map { try vocabulary.resolve(String($0)) }
    }
}

public struct GeneratedImage {
    public let index: Int
    public let label: Int
    public let seed: UInt64
    public let image: RGBImage
    /// Raw latent z_q (tokens, channels), after de-normalization.
    public let latent: [Float]
}

/// One image to generate: its index in the run, class and seed.
public struct GenerationItem: Equatable, Sendable {
    public let index: Int
    public let label: Int
    public let seed: UInt64

    public init(index: Int, label: Int, seed: UInt64) {
        (self.index, self.label, self.seed) = (index, label, seed)
    }

    /// The PNG file name: `<index>_class<label>_seed<seed>.png`.
    public var fileName: String { String(format: "%05d_class%d_seed%llu.png", index, label, seed) }
}

/// Whether a file name has the form `<index>_class<label>_seed<seed>.png` of sampled images.
func isSampleFileName(_ name: String) -> Bool {
    guard name.hasSuffix(".png") else { return false }
    let parts = name.dropLast(4).split(separator: "_")
    return parts.count == 3 && parts[0].count >= 5 && parts[0].allSatisfy(\.isNumber)
        && parts[1].hasPrefix("class") && parts[1].dropFirst(5).allSatisfy(\.isNumber) && parts[1].count > 5
        && parts[2].hasPrefix("seed") && parts[2].dropFirst(4).allSatisfy(\.isNumber) && parts[2].count > 4
}

/// What a finished `gen sample` wrote.
public struct GenerationSummary: Sendable {
    public var images: Int
    /// Images already on disk from an earlier run of the same job (skipped by --resume).
    public var resumed: Int
    public var seconds: Double
    public var fileNames: [String]
}

public enum GenerationJob {
    /// The sampler settings of a job for a model: its interpolant path (config.json
    /// `path_type`), guidance with its null class; `batchInvariant` evaluates sample by sample.
    public static func samplerOptions(_ o: GenerationOptions, model: SiTConfig) -> SamplerOptions {
        let guidance = o.cfgScale == 1 ? nil : Guidance(scale: o.cfgScale, low: o.guidanceLow, high: o.guidanceHigh, nullLabel: model.numClasses)
        let path: SamplerPath = model.interpolantPath == .cosine ? .cosine : .linear
        return SamplerOptions(method: o.method, steps: o.steps, guidance: guidance, path: path,
                              evaluation: o.batchInvariant ? .perSample : .batch)
    }

    /// The images of a run, in order. With `--num-samples N`, image i's class is drawn from its
    /// own seed (uniform over `classes`), as DiT's sample_ddp.py draws labels, but independent of
    /// batches and processes; otherwise `perClass` images of each class, class by class. Image i
    /// uses seed (--seed + i) mod 2^64.
    public static func items(_ o: GenerationOptions, classes: [Int]) throws -> [GenerationItem] {
        guard !classes.isEmpty else { throw PipelineError.invalidArgument("Nothing to generate: no classes.") }
        let (product, overflow) = classes.count.multipliedReportingOverflow(by: o.perClass)
        let total = o.numSamples ?? (overflow ? Int.max : product)
        guard total >= 1 else { throw PipelineError.invalidArgument("Nothing to generate (--per-class or --num-samples is 0).") }
        guard total <= GenerationOptions.maxImages else {
            throw PipelineError.invalidArgument("\(o.numSamples.map { "--num-samples \($0)" } ?? "\(classes.count) classes x \(o.perClass) per class") is more than the \(GenerationOptions.maxImages) images one run may write.")
        }
        return (0..<total).map { i in
            let seed = o.seed &+ UInt64(i)
            if o.numSamples != nil {
                var r = RandomGenerator(seed: seed, stream: GenerationOptions.labelStream)
                return GenerationItem(index: i, label: classes[r.below(classes.count)], seed: seed)
            }
            return GenerationItem(index: i, label: classes[i / o.perClass], seed: seed)
        }
    }

    /// Generates `items` in batches of `o.batchSize` and hands each finished image to `emit` (so
    /// memory stays bounded by one batch); `progress` sees each sampler step with the batch size.
    public static func generate(_ models: GenerationModels, _ o: GenerationOptions, items: [GenerationItem],
                                progress: (Int) -> Void = { _ in }, emit: (GeneratedImage) throws -> Void) throws {
        let sit = models.sit, tok = models.tokenizer
        let options = samplerOptions(o, model: sit.config)
        let shape = [sit.config.inputSize, sit.config.inChannels]
        let b = max(1, o.batchSize)
        for start in stride(from: 0, to: items.count, by: b) {
            for img in try generateBatch(models, o, Array(items[start..<min(items.count, start + b)]), progress: progress) { try emit(img) }
        }
    }

    /// One batch of `items` integrated and decoded together.
    static func generateBatch(_ models: GenerationModels, _ o: GenerationOptions, _ batch: [GenerationItem],
                              progress: (Int) -> Void) throws -> [GeneratedImage] {
        let sit = models.sit, tok = models.tokenizer
        let options = samplerOptions(o, model: sit.config)
        let shape = [sit.config.inputSize, sit.config.inChannels]
        let velocity: VelocityField = { x, t, y in try Autograd.noGrad { try sit(x, t: t, y: y) } }
        let run = try SamplingRun(velocity: velocity, options: options, shape: [batch.count] + shape,
                                  labels: batch.map(\.label), generators: batch.map { RandomGenerator(seed: $0.seed) })
        while try run.nextStep() != nil { progress(batch.count) }
        let z = tok.denormalizeLatents(run.result)                       // (B, L, C)
        try checkFinite(z, "sampled latents")
        let per = z.count / batch.count
        // Decoded one at a time when the model was evaluated per sample (batch independence).
        let decoded: Tensor? = o.batchInvariant ? nil : try Autograd.noGrad { try tok.decode(z) }
        return try batch.enumerated().map { k, item in
            let zi = Tensor(uninitialized: [1] + shape)
            zi.pointer.update(from: z.pointer + k * per, count: per)
            let img = try decoded.map { $0[k] } ?? Autograd.noGrad { try tok.decode(zi) }[0]
            return GeneratedImage(index: item.index, label: item.label, seed: item.seed,
                                  image: ImageGrid.image(fromTensor: img),
                                  latent: Array(UnsafeBufferPointer(start: zi.pointer, count: per)))
        }
    }

    /// Like `generate`, over the ranks of a job: the batches (fixed by index, as in one process)
    /// are dealt out round-robin, rank r generating batches r, r + N, ...; after each round of N
    /// batches rank 0 gathers the images and hands them to `emit` in index order (the other ranks
    /// emit nothing). So each image is made exactly as one process with the same batch size makes it.
    static func generateSharded(_ models: GenerationModels, _ o: GenerationOptions, items: [GenerationItem], world: Distributed,
                                emit: (GeneratedImage) throws -> Void) throws {
        guard world.size > 1 else { return try generate(models, o, items: items, emit: emit) }
        let b = max(1, o.batchSize)
        let batches = stride(from: 0, to: items.count, by: b).map { Array(items[$0..<min(items.count, $0 + b)]) }
        for round in stride(from: 0, to: batches.count, by: world.size) {
            let k = round + world.rank
            let mine = k < batches.count ? try generateBatch(models, o, batches[k], progress: { _ in }) : []
            var m = MessageWriter()
            m.int(mine.count)
            for g in mine {
                m.int(g.index); m.int(g.label); m.uint64(g.seed)
                m.int(g.image.width); m.int(g.image.height); m.int(g.image.channels); m.data(g.image.pixels); m.floats(g.latent)
            }
            var all: [GeneratedImage] = []
            for bytes in try world.gather(m.bytes, root: 0) {
                var r = MessageReader(bytes)
                for _ in 0..<(try r.int()) {
                    let (index, label, seed) = (try r.int(), try r.int(), try r.uint64())
                    let (w, h, c) = (try r.int(), try r.int(), try r.int())
                    let pixels = try r.data()
                    guard pixels.count == w * h * c else { throw ClusterError.invalid("A rank sent an image of the wrong size.") }
                    all.append(GeneratedImage(index: index, label: label, seed: seed,
                                              image: RGBImage(width: w, height: h, channels: c, pixels: pixels), latent: try r.floats()))
                }
            }
            for g in all.sorted(by: { $0.index < $1.index }) { try emit(g) }
        }
    }

    /// All generated images of `items` in memory (for evaluation sweeps of small sets).
    public static func generate(_ models: GenerationModels, _ o: GenerationOptions, items: [GenerationItem],
                                progress: (Int) -> Void = { _ in }) throws -> [GeneratedImage] {
        var out: [GeneratedImage] = []
        try generate(models, o, items: items, progress: progress) { out.append($0) }
        return out
    }

    /// The `parameters` text of one image: what reproduces it.
    public static func parameters(_ o: GenerationOptions, _ item: GenerationItem, className: String) -> String {
        let obj: [String: Any] = [
            "sit": o.sit, "tokenizer": o.tokenizer, "class": item.label, "class_name": className,
            "seed": item.seed, "sampler": o.method.rawValue, "steps": o.steps, "cfg_scale": o.cfgScale,
            "guidance_interval": [o.guidanceLow, o.guidanceHigh], "index": item.index, "batch_size": max(1, o.batchSize),
            "command": "gen sample --sit \(o.sit) --tokenizer \(o.tokenizer) --classes \(item.label) --per-class 1 --seed \(item.seed) --sampler \(o.method.rawValue) --steps \(o.steps) --cfg \(o.cfgScale) --guidance-low \(o.guidanceLow) --guidance-high \(o.guidanceHigh)",
        ]
        let data = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data()
        return String(data: data, encoding: .utf8) ?? ""
    }

    /// Options that regenerate the image whose PNG `parameters` chunk is `text` (alone: bit for
    /// bit when it was made with batch size 1, within float rounding otherwise).
    public static func options(fromParameters text: String) throws -> (GenerationOptions, label: Int, seed: UInt64) {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let sit = obj["sit"] as? String, let tok = obj["tokenizer"] as? String,
              let label = obj["class"] as? Int, let seed = (obj["seed"] as? NSNumber)?.uint64Value,
              let sampler = (obj["sampler"] as? String).flatMap(SamplerMethod.init(rawValue:)),
              let steps = obj["steps"] as? Int, let cfg = (obj["cfg_scale"] as? NSNumber)?.doubleValue,
              let interval = obj["guidance_interval"] as? [Double], interval.count == 2 else {
            throw PipelineError.invalidArgument("The PNG's parameters chunk is not one written by gen sample.")
        }
        var o = GenerationOptions(sit: sit, tokenizer: tok)
        o.classes = [label]; o.perClass = 1; o.seed = seed; o.method = sampler; o.steps = steps
        o.cfgScale = cfg; o.guidanceLow = interval[0]; o.guidanceHigh = interval[1]; o.batchSize = 1
        return (o, label, seed)
    }

    /// Runs a whole `gen sample` job into the folder `out`, streaming: each batch's PNGs are
    /// written as soon as it is decoded (memory bounded by one batch). `resume` continues an
    /// interrupted run of the same job: existing PNGs are checked against this job's parameters
    /// and skipped (from the batch holding the first missing image on). The grid, the .npz
    /// (assembled from the PNGs) and latents.h5 come at the end.
    @discardableResult
    public static func run(_ o: GenerationOptions, out: String, npz: Bool = false, latentsH5: Bool = false,
                           grid: Bool = true, overwrite: Bool = false, resume: Bool = false, world: Distributed = Cluster.world,
                           log: @escaping (String) -> Void = { print($0) }) throws -> GenerationSummary {
        // Under mpirun the ranks share the sampling (`generateSharded`); rank 0 alone touches `out`.
        if !world.isRoot { return try runHelper(o, out: out, resume: resume, world: world) }
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: out, isDirectory: &isDir) {
            guard isDir.boolValue else { throw PipelineError.invalidArgument("\(out) is a file; --out takes a folder for the images.") }
            let contents = (try? fm.contentsOfDirectory(atPath: out)) ?? []
            guard contents.isEmpty || overwrite || resume else {
                throw PipelineError.invalidArgument("\(out) already exists and is not empty; pass --resume to finish an interrupted run there or --overwrite to write into it.")
            }
        }
        do { try fm.createDirectory(atPath: out, withIntermediateDirectories: true) } catch {
            throw PipelineError.writeFailed(path: out, reason: "cannot create the folder (\(oneSentence(error)))")
        }
        let t0 = now()
        let models = try GenerationModels(sit: o.sit, tokenizer: o.tokenizer, log: log)
        let classes = o.classes.isEmpty ? Array(0..<models.sit.config.numClasses) : o.classes
        let items = try Self.items(o, classes: classes)
        let b = max(1, o.batchSize)
        let text = { (item: GenerationItem) in parameters(o, item, className: models.classNames[item.label]) }

        // Where to start: the batch that holds the first image not yet on disk.
        var start = 0
        if resume {
            let mine = Set(items.map(\.fileName))
            if let foreign = ((try? fm.contentsOfDirectory(atPath: out)) ?? []).sorted()
                .first(where: { !mine.contains($0) && isSampleFileName($0) }) {
                throw PipelineError.invalidArgument("\(out)/\(foreign) was made by another sample job (it is not one of this command's images); use another --out, or the command that made it.")
            }
            var firstMissing = items.count
            for item in items {
                let path = out + "/" + item.fileName
                guard fm.fileExists(atPath: path) else { firstMissing = min(firstMissing, item.index); continue }
                guard let found = try? ImageIO.readPNGText(path: path, key: "parameters"), found == text(item) else {
                    throw PipelineError.invalidArgument("\(path) was made by another sample job (its parameters differ from this command's); use another --out, or the command that made it.")
                }
            }
            start = firstMissing / b * b
        }
        var latents: LatentCacheWriter? = nil
        let latentsPath = out + "/latents.h5"
        let latentsDone = resume && (try? LatentCacheReader(path: latentsPath))?.count == items.count
        if latentsH5 && !latentsDone {
            let w = try latentWriter(models, o, count: items.count, to: latentsPath, overwrite: overwrite || resume)
            start = min(start, w.rowsDone / b * b)
            try w.rewind(to: start)
            latents = w
        }
        defer { latents?.close() }
        if world.size > 1 {
            var s = [Double(start), Double(items.count)]
            try s.withUnsafeMutableBytes { try world.broadcast($0, root: 0) }
        }
        if start > 0 { log("Resuming \(out): \(start) of \(items.count) images are done.") }
        let mode = o.numSamples != nil ? "\(items.count) images, classes drawn per seed" : "\(items.count) images (\(classes.count) classes x \(o.perClass))"
        log("Generating \(mode), \(o.method.rawValue) \(o.steps) steps, cfg \(o.cfgScale) on t in [\(o.guidanceLow), \(o.guidanceHigh)], batch \(b), seeds \(o.seed)...\(o.seed &+ UInt64(items.count - 1)).")

        let todo = Array(items[start...])
        let bar = ProgressBar(total: todo.count, label: "sample", unit: "img")
        var pending: [GeneratedImage] = []
        try generateSharded(models, o, items: todo, world: world) { img in
            let item = GenerationItem(index: img.index, label: img.label, seed: img.seed)
            try ImageIO.writePNG(path: out + "/" + item.fileName, image: img.image, text: ["parameters": text(item)])
            bar.update(by: 1)
            guard let latents else { return }
            pending.append(img)
            if pending.count == b || img.index == items.count - 1 {
                let z = Tensor(pending.flatMap(\.latent), shape: [pending.count, models.tokenizer.numLatentTokens, models.tokenizer.latentDim])
                try latents.append(latents: z, flipped: nil, labels: pending.map(\.label), paths: pending.map {
                    GenerationItem(index: $0.index, label: $0.label, seed: $0.seed).fileName })
                pending.removeAll()
            }
        }
        bar.finish()
        let names = items.map(\.fileName)
        if grid { try writeGrid(items, classes: classes, names: models.classNames, o, out: out, log: log) }
        if npz {
            let first = try ImageIO.decode(path: out + "/" + names[0])
            let (h, w) = (first.height, first.width)
            let writer = try NPZWriter(path: out + "/samples.npz", shape: [items.count, h, w, 3])
            for name in names {
                let img = try ImageIO.decode(path: out + "/" + name).rgb()
                guard img.width == w, img.height == h else { throw PipelineError.corruptFile(path: out + "/" + name, reason: "its size differs from the other samples") }
                try writer.append(img.pixels)
            }
            try writer.finish()
            log("Wrote \(out)/samples.npz (arr_0: \(items.count) x \(h) x \(w) x 3 uint8)")
        }
        if let latents {
            try latents.finish()
            log("Wrote \(out)/latents.h5")
        }
        let seconds = now() - t0
        log(String(format: "Wrote %d images to %@ in %.1f s (%.2f images/s).", items.count, out, seconds, Double(todo.count) / seconds))
        return GenerationSummary(images: items.count, resumed: start, seconds: seconds, fileNames: names)
    }

    /// A rank other than 0 of a sharded `run`: loads the models, learns from rank 0 where the
    /// run starts, and generates its batches (rank 0 writes them).
    static func runHelper(_ o: GenerationOptions, out: String, resume: Bool, world: Distributed) throws -> GenerationSummary {
        let t0 = now()
        let models = try GenerationModels(sit: o.sit, tokenizer: o.tokenizer, log: { _ in })
        let classes = o.classes.isEmpty ? Array(0..<models.sit.config.numClasses) : o.classes
        let items = try Self.items(o, classes: classes)
        var s = [Double(0), Double(items.count)]
        try s.withUnsafeMutableBytes { try world.broadcast($0, root: 0) }
        guard Int(s[1]) == items.count else {
            throw ClusterError.divergence("Rank \(world.rank) has \(items.count) images to make, rank 0 \(Int(s[1])); every rank must load the same models and options.")
        }
        let start = Int(s[0])
        try generateSharded(models, o, items: Array(items[start...]), world: world) { _ in }
        return GenerationSummary(images: items.count, resumed: start, seconds: now() - t0, fileNames: items.map(\.fileName))
    }

    /// " on t in [low, high]" when guidance is limited to part of the path (t = 1 is noise); empty
    /// without guidance (cfg 1) or at every t. The grid's title and gen eval's progress say it so.
    public static func guidanceSuffix(cfg: Double, low: Double, high: Double) -> String {
        cfg == 1 || (low <= 0 && high >= 1) ? "" : String(format: " on t in [%g, %g]", low, high)
    }

    /// A labelled grid of the first images (up to 16) of each class (up to 32 classes), read
    /// back from their PNGs.
    static func writeGrid(_ items: [GenerationItem], classes: [Int], names: [String], _ o: GenerationOptions,
                          out: String, log: (String) -> Void) throws {
        var shown: [Int] = []
        for c in classes where !shown.contains(c) && shown.count < 32 { shown.append(c) }
        let rows = try shown.map { c in
            try items.filter { $0.label == c }.prefix(16).map { try ImageIO.decode(path: out + "/" + $0.fileName) }
        }
        let kept = shown.indices.filter { !rows[$0].isEmpty }
        guard let firstImage = kept.first.map({ rows[$0][0] }) else { return }
        let scale = max(1, 96 / max(1, firstImage.height))
        let scaled = kept.map { rows[$0].map { $0.upscaled(scale) } }
        let canvas = ImageGrid.compose(rows: scaled, labels: kept.map { names[shown[$0]] }, padding: 2, scale: 1,
                                       title: "\(o.method.rawValue) \(o.steps) steps, cfg \(o.cfgScale)\(guidanceSuffix(cfg: o.cfgScale, low: o.guidanceLow, high: o.guidanceHigh)), seed \(o.seed)")
        try canvas.writePNG(path: out + "/grid.png", text: ["parameters": "grid of \(items.count) images; each file has its own parameters"])
        log("Wrote \(out)/grid.png")
    }

    /// The writer of sampled latents (raw z_q) in the latent-cache format (not mirrored,
    /// preprocessing "sampled"): /latents, /labels, and /paths holding each image's PNG file name
    /// (which carries its seed). `gen info` describes it; h5py reads it. Resumable like a cache.
    static func latentWriter(_ models: GenerationModels, _ o: GenerationOptions, count: Int, to path: String,
                             overwrite: Bool) throws -> LatentCacheWriter {
        let tok = models.tokenizer
        let id = try TokenizerIdentity(folder: models.tokenizerPath)
        let meta = LatentCacheMetadata(tokenizerName: id.name, tokenizerSHA256: id.sha256, vqMean: tok.config.vqMean,
                                       vqStd: tok.config.vqStd, imageSize: tok.imageSize, numTokens: tok.numLatentTokens,
                                       tokenDim: tok.latentDim, numImages: count, preprocessing: "sampled",
                                       dataset: "gen sample --sit \(o.sit) (\(o.method.rawValue) \(o.steps) steps, cfg \(o.cfgScale))",
                                       classNames: models.classNames, mirrored: false)
        return try LatentCacheWriter(path: path, metadata: meta, overwrite: overwrite)
    }
}

extension RGBImage {
    /// Nearest-neighbour enlargement by an integer factor (for grids of small images).
    public func upscaled(_ s: Int) -> RGBImage {
        guard s > 1 else { return self }
        let c = channels
        var out = [UInt8](repeating: 0, count: width * s * height * s * c)
        for y in 0..<(height * s) {
            for x in 0..<(width * s) {
                for k in 0..<c { out[(y * width * s + x) * c + k] = pixels[((y / s) * width + x / s) * c + k] }
            }
        }
        return RGBImage(width: width * s, height: height * s, channels: c, pixels: out)
    }
}
