// `gen sample`: class-conditional generation. SiT integrates noise to latents with the chosen
// sampler (Sources/Sampler), the tokenizer decodes them, and the images are written as PNGs
// (each with a `parameters` tEXt chunk that reproduces it), a labelled grid, and optionally an
// ADM-evaluator .npz and the sampled latents in the latent-cache format.
//
// Reproducibility: image i of a run with seed s uses seed s + i for its own noise, and the
// sampler evaluates the model image by image (`Evaluation.perSample`: its conditional and
// unconditional rows together), so an image regenerated alone from its printed seed is
// bit-identical to its copy in the batch.

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
    public var batchSize: Int = 16
    /// Evaluate the model image by image so that results do not depend on the batch (default);
    /// false runs the whole batch in one forward (faster; used by evaluation sweeps).
    public var batchInvariant: Bool = true

    public init(sit: String, tokenizer: String) {
        self.sit = sit
        self.tokenizer = tokenizer
    }
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
        if case let .string(sha)? = c.extra["tokenizer_sha256"],
           let id = try? TokenizerIdentity(folder: tokenizerPath), id.sha256 != sha {
            FileHandle.standardError.write(Data("warning: the SiT was trained on latents of another tokenizer (weights \(sha.prefix(12))…, given \(id.sha256.prefix(12))…)\n".utf8))
        }
        classNames = Self.classNames(c)
    }

    /// The class names a SiT config records (`class_names`), else "class i".
    public static func classNames(_ config: SiTConfig) -> [String] {
        if case let .array(names)? = config.extra["class_names"], names.count == config.numClasses {
            return names.map { if case let .string(s) = $0 { return s } else { return "?" } }
        }
        return (0..<config.numClasses).map { "class \($0)" }
    }

    /// Resolves comma-separated class indices or (case-insensitive) names against the SiT in
    /// `sitFolder`, reading only its config.json (no weights).
    public static func classIndices(_ list: String, sitFolder: String) throws -> [Int] {
        let config = try SiTConfig.read(from: (sitFolder as NSString).appendingPathComponent("config.json"))
        let names = classNames(config)
        return try list.split(separator: ",").map { item in
            let spec = item.trimmingCharacters(in: .whitespaces)
            if let i = Int(spec) {
                guard i >= 0 && i < config.numClasses else {
                    throw PipelineError.invalidArgument("Class \(i) is outside 0..<\(config.numClasses).")
                }
                return i
            }
            if let i = names.firstIndex(where: { $0.lowercased() == spec.lowercased() }) { return i }
            throw PipelineError.invalidArgument("Unknown class '\(spec)'; known: \(names.joined(separator: ", ")).")
        }
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

public enum GenerationJob {
    /// The sampler settings of a job; `batchInvariant` evaluates the model sample by sample.
    public static func samplerOptions(_ o: GenerationOptions, numClasses: Int) -> SamplerOptions {
        let guidance = o.cfgScale == 1 ? nil : Guidance(scale: o.cfgScale, low: o.guidanceLow, high: o.guidanceHigh, nullLabel: numClasses)
        return SamplerOptions(method: o.method, steps: o.steps, guidance: guidance,
                              evaluation: o.batchInvariant ? .perSample : .batch)
    }

    /// Generates images for `items` (label, seed) in batches; `progress` sees each sampler step.
    public static func generate(_ models: GenerationModels, _ o: GenerationOptions, items: [(label: Int, seed: UInt64)],
                                progress: (Int) -> Void = { _ in }) throws -> [GeneratedImage] {
        let sit = models.sit, tok = models.tokenizer
        let options = samplerOptions(o, numClasses: sit.config.numClasses)
        let shape = [sit.config.inputSize, sit.config.inChannels]
        var out: [GeneratedImage] = []
        for start in stride(from: 0, to: items.count, by: max(1, o.batchSize)) {
            let batch = Array(items[start..<min(items.count, start + max(1, o.batchSize))])
            let velocity: VelocityField = { x, t, y in try Autograd.noGrad { try sit(x, t: t, y: y) } }
            let run = try SamplingRun(velocity: velocity, options: options, shape: [batch.count] + shape,
                                      labels: batch.map(\.label), generators: batch.map { RandomGenerator(seed: $0.seed) })
            while try run.nextStep() != nil { progress(batch.count) }
            let z = tok.denormalizeLatents(run.result)                       // (B, L, C)
            try checkFinite(z, "sampled latents")
            let per = z.count / batch.count
            // Decoded one at a time, like the sampler's model calls, for batch independence.
            let decoded: Tensor? = o.batchInvariant ? nil : try Autograd.noGrad { try tok.decode(z) }
            for (k, item) in batch.enumerated() {
                let zi = Tensor(uninitialized: [1] + shape)
                zi.pointer.update(from: z.pointer + k * per, count: per)
                let img = try decoded.map { $0[k] } ?? Autograd.noGrad { try tok.decode(zi) }[0]
                out.append(GeneratedImage(index: start + k, label: item.label, seed: item.seed,
                                          image: ImageGrid.image(fromTensor: img),
                                          latent: Array(UnsafeBufferPointer(start: zi.pointer, count: per))))
            }
        }
        return out
    }

    /// The `parameters` text of one image: what reproduces it.
    public static func parameters(_ o: GenerationOptions, _ img: GeneratedImage, className: String) -> String {
        let obj: [String: Any] = [
            "sit": o.sit, "tokenizer": o.tokenizer, "class": img.label, "class_name": className,
            "seed": img.seed, "sampler": o.method.rawValue, "steps": o.steps, "cfg_scale": o.cfgScale,
            "guidance_interval": [o.guidanceLow, o.guidanceHigh],
            "command": "gen sample --sit \(o.sit) --tokenizer \(o.tokenizer) --classes \(img.label) --per-class 1 --seed \(img.seed) --sampler \(o.method.rawValue) --steps \(o.steps) --cfg \(o.cfgScale) --guidance-low \(o.guidanceLow) --guidance-high \(o.guidanceHigh)",
        ]
        let data = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data()
        return String(data: data, encoding: .utf8) ?? ""
    }

    /// Options that regenerate the image whose PNG `parameters` chunk is `text`.
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
        o.cfgScale = cfg; o.guidanceLow = interval[0]; o.guidanceHigh = interval[1]
        return (o, label, seed)
    }

    /// Runs a whole `gen sample` job into `out` (a folder).
    public static func run(_ o: GenerationOptions, out: String, npz: Bool = false, latentsH5: Bool = false,
                           grid: Bool = true, overwrite: Bool = false, log: (String) -> Void = { print($0) }) throws -> [GeneratedImage] {
        let fm = FileManager.default
        if fm.fileExists(atPath: out) {
            let contents = (try? fm.contentsOfDirectory(atPath: out)) ?? []
            guard contents.isEmpty || overwrite else {
                throw PipelineError.invalidArgument("\(out) already exists and is not empty; pass --overwrite to write into it.")
            }
        }
        try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
        let t0 = now()
        let models = try GenerationModels(sit: o.sit, tokenizer: o.tokenizer, log: log)
        let classes = o.classes.isEmpty ? Array(0..<models.sit.config.numClasses) : o.classes
        var items: [(label: Int, seed: UInt64)] = []
        for c in classes { for _ in 0..<o.perClass { items.append((c, o.seed + UInt64(items.count))) } }
        guard !items.isEmpty else { throw PipelineError.invalidArgument("Nothing to generate (no classes or --per-class 0).") }
        let sampler = samplerOptions(o, numClasses: models.sit.config.numClasses)
        log("Generating \(items.count) images (\(classes.count) classes x \(o.perClass)), \(o.method.rawValue) \(o.steps) steps, cfg \(o.cfgScale) on t in [\(o.guidanceLow), \(o.guidanceHigh)], seeds \(o.seed)...\(o.seed + UInt64(items.count - 1)).")
        let bar = ProgressBar(total: items.count * sampler.steps, label: "sample", unit: "img-step")
        let images = try generate(models, o, items: items) { bar.update(by: $0) }
        bar.finish()
        let names = images.map { String(format: "%05d_class%d_seed%llu.png", $0.index, $0.label, $0.seed) }
        for (img, name) in zip(images, names) {
            try ImageIO.writePNG(path: out + "/" + name, image: img.image,
                                 text: ["parameters": parameters(o, img, className: models.classNames[img.label])])
        }
        if grid {
            let rows = classes.map { c in images.filter { $0.label == c }.map(\.image) }
            let scale = max(1, 96 / max(1, images[0].image.height))
            let scaled = rows.map { $0.map { $0.upscaled(scale) } }
            let canvas = ImageGrid.compose(rows: scaled, labels: classes.map { models.classNames[$0] }, padding: 2, scale: 1,
                                           title: "\(o.method.rawValue) \(o.steps) steps, cfg \(o.cfgScale), seed \(o.seed)")
            try canvas.writePNG(path: out + "/grid.png", text: ["parameters": "grid of \(images.count) images; each file has its own parameters"])
            log("Wrote \(out)/grid.png")
        }
        if npz {
            let h = images[0].image.height, w = images[0].image.width
            var pixels: [UInt8] = []
            pixels.reserveCapacity(images.count * h * w * 3)
            for img in images { pixels += img.image.rgb().pixels }
            try NPZWriter.write(path: out + "/samples.npz", array: pixels, shape: [images.count, h, w, 3])
            log("Wrote \(out)/samples.npz (arr_0: \(images.count) x \(h) x \(w) x 3 uint8)")
        }
        if latentsH5 {
            try writeLatents(images, names: names, models: models, o, to: out + "/latents.h5")
            log("Wrote \(out)/latents.h5")
        }
        log(String(format: "Wrote %d images to %@ in %.1f s.", images.count, out, now() - t0))
        return images
    }

    /// Sampled latents (raw z_q) as a latent cache file (LatentCacheWriter's format, not
    /// mirrored, preprocessing "sampled"): /latents, /labels, and /paths holding each image's PNG
    /// file name (which carries its seed). `gen info` describes it; h5py reads it.
    static func writeLatents(_ images: [GeneratedImage], names: [String], models: GenerationModels,
                             _ o: GenerationOptions, to path: String) throws {
        let tok = models.tokenizer
        let id = try TokenizerIdentity(folder: models.tokenizerPath)
        let meta = LatentCacheMetadata(tokenizerName: id.name, tokenizerSHA256: id.sha256, vqMean: tok.config.vqMean,
                                       vqStd: tok.config.vqStd, imageSize: tok.imageSize, numTokens: tok.numLatentTokens,
                                       tokenDim: tok.latentDim, numImages: images.count, preprocessing: "sampled",
                                       dataset: "gen sample --sit \(o.sit) (\(o.method.rawValue) \(o.steps) steps, cfg \(o.cfgScale))",
                                       classNames: models.classNames, mirrored: false)
        let writer = try LatentCacheWriter(path: path, metadata: meta, overwrite: true)
        let z = Tensor(images.flatMap(\.latent), shape: [images.count, tok.numLatentTokens, tok.latentDim])
        try writer.append(latents: z, flipped: nil, labels: images.map(\.label), paths: names)
        try writer.finish()
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
