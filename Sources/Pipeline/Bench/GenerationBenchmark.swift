// `gen bench generation` and `gen bench training`: SiT-XL over 64 SoftVQ tokens against the
// 1024-token SD-VAE baseline (and 32 tokens, SiT-XL/2, 512 px), with random weights of the
// released shapes; the variants are timed in interleaved rounds, next to raw sgemm.

import Foundation
import Sampler
import SiT
import Tensor
import Tokenizer

public struct BenchRow: Codable, Sendable {
    public let name: String
    public let tokens: Int
    public let batch: Int
    public let seconds: TimingStats
    public let gflop: Double
    public var imagesPerSecond: Double
    public var gflopPerSecond: Double { gflop / seconds.median }
    public var fractionOfSgemm: Double = 0
    /// The forward's rate over oneDNN's packed matmul at the same row class, same run (nil
    /// without oneDNN).
    public var fractionOfOneDNN: Double? = nil
    public var note: String = ""
    /// The matmul backend of the Linear products ("onednn" / "openblas").
    public var engine: String = ""
}

public struct GenerationBenchReport: Codable, Sendable {
    public var threads: Int
    /// `Engine.summary()` at the start of the run (CPU, oneDNN ISA, precision).
    public var engine: String = ""
    public var sgemm64: Double = 0
    public var sgemmLarge: Double = 0
    /// oneDNN matmul, weight packed once, at the sgemm references' shapes (nil without oneDNN).
    public var onednn64: Double? = nil
    public var onednnLarge: Double? = nil
    public var smallRows = 64
    public var largeRows = 512
    public var rows: [BenchRow] = []
    public var ratios: [String: Double] = [:]
    /// The precision of the oneDNN references ("fp32" / "bf16").
    public var precisionName: String = "fp32"

    public func markdown() -> String {
        var s = engine.isEmpty ? "" : engine + "\n\n"
        s += String(format: "Threads: %d. Raw sgemm in the same run: %.1f GFLOP/s with %d rows, %.1f GFLOP/s with %d rows (x 1152 . 1152 x 4608).", threads, sgemm64, smallRows, sgemmLarge, largeRows)
        if let a = onednn64, let b = onednnLarge {
            s += String(format: " oneDNN matmul (weight packed once, %@): %.1f and %.1f GFLOP/s.", precisionName, a, b)
        }
        s += "\n\n| variant | engine | tokens | batch | s / forward (median) | min..max | images/s | GFLOP/s | of sgemm | of oneDNN matmul | note |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
        for r in rows {
            let ofDNNL = r.fractionOfOneDNN.map { String(format: "%.0f%%", $0 * 100) } ?? "-"
            s += String(format: "| %@ | %@ | %d | %d | %.4f | %.4f..%.4f | %.3f | %.1f | %.0f%% | %@ | %@ |\n", r.name, r.engine, r.tokens, r.batch,
                        r.seconds.median, r.seconds.min, r.seconds.max, r.imagesPerSecond, r.gflopPerSecond, r.fractionOfSgemm * 100, ofDNNL, r.note)
        }
        if !ratios.isEmpty {
            s += "\n| ratio | value |\n|---|---|\n"
            for (k, v) in ratios.sorted(by: { $0.key < $1.key }) { s += String(format: "| %@ | %.1fx |\n", k, v) }
        }
        return s
    }
}

public enum GenerationBenchmark {
    struct Variant {
        let name: String
        let config: SiTConfig
        let batches: [Int]
        /// Images per forward row-group: a guided image is 2 rows.
        let rowsPerImage: Int
    }

    /// - steps: sampler steps of the end-to-end guided image.
    /// - tokens: when given, only the variants over these token counts (64, 32, 1024, 256, 4096);
    ///   the end-to-end rows need 64 and 1024.
    /// - endToEnd: include the end-to-end guided image.
    /// - engines: the matmul backends to time; with several, every case runs once per backend in
    ///   each round (interleaved), and the ratios compare them pair by pair.
    public static func run(repeats: Int = 3, steps: Int = 25, include512: Bool = true, smoke: Bool = false,
                           tokens: Set<Int>? = nil, endToEnd: Bool = true, engines: [MatmulBackend] = [Engine.backend],
                           log: (String) -> Void = { print($0) }) throws -> GenerationBenchReport {
        var report = GenerationBenchReport(threads: Threads.count)
        report.engine = Engine.summary()
        let initialBackend = Engine.backend
        defer { Engine.backend = initialBackend }
        let xl = { (tokens: Int) in SiTConfig.xl1SoftVQ(tokens: tokens) }
        var variants: [Variant]
        if smoke {
            let tiny = SiTConfig(hiddenSize: 64, depth: 2, numHeads: 4, patchSize: 1, inChannels: 8, inputSize: 16, vae1D: true)
            variants = [Variant(name: "tiny smoke SiT", config: tiny, batches: [1, 2], rowsPerImage: 1)]
        } else {
            variants = [
                Variant(name: "SiT-XL/1, SoftVQ 64 tokens", config: xl(64), batches: [1, 2, 8], rowsPerImage: 1),
                Variant(name: "SiT-XL/1, SoftVQ 32 tokens", config: xl(32), batches: [1, 8], rowsPerImage: 1),
                Variant(name: "SiT-XL/1, SD-VAE 32x32x4 (1024 tokens)", config: .xl(patch: 1, inputSize: 32, inChannels: 4, vae1D: false), batches: [1, 2], rowsPerImage: 1),
                Variant(name: "SiT-XL/2, SD-VAE 32x32x4 (256 tokens)", config: .xl(patch: 2, inputSize: 32, inChannels: 4, vae1D: false), batches: [1, 8], rowsPerImage: 1),
            ]
            if include512 {
                variants.append(Variant(name: "SiT-XL/1, SD-VAE 64x64x4 (4096 tokens, 512 px)", config: .xl(patch: 1, inputSize: 64, inChannels: 4, vae1D: false), batches: [1], rowsPerImage: 1))
            }
        }
        if let tokens, !smoke { variants = variants.filter { tokens.contains($0.config.numTokens) } }
        report.smallRows = smoke ? 8 : 64
        report.largeRows = smoke ? 16 : 512
        // Build every model once (random weights of the released shapes).
        var models: [(Variant, SiT)] = []
        for v in variants {
            let m = try SiT(config: v.config)
            SiTBenchmark.randomize(m)
            m.freeze()
            models.append((v, m))
            log("built \(v.name): \(m.parameterCount) parameters")
        }
        // Inputs per (variant, batch, engine).
        var cases: [(String, () -> Void, Variant, Int, MatmulBackend)] = []
        for (v, m) in models {
            for b in v.batches {
                var rng = RandomGenerator(seed: 1)
                let x = rng.normalTensor([b] + v.config.latentShape)
                let t = (0..<b).map { Float($0 + 1) / Float(b + 1) }
                let y = (0..<b).map { $0 % v.config.numClasses }
                for e in engines {
                    cases.append(("\(v.name) b\(b) \(e.rawValue)", {
                        Engine.backend = e
                        _ = try? Autograd.noGrad { try m(x, t: t, y: y) }
                    }, v, b, e))
                }
            }
        }
        // The raw sgemm references are cases of the same rounds, so that they see the same machine.
        let sgemmSmall = SgemmReference(m: report.smallRows), sgemmLarge = SgemmReference(m: report.largeRows)
        // And oneDNN's matmul over a weight packed once, in the run's precision: what the
        // forwards' matmul share is held to.
        report.precisionName = Engine.precision == .bf16 ? "bf16" : "fp32"
        let dnnlSmall = OneDNNMatmulReference(m: report.smallRows), dnnlLarge = OneDNNMatmulReference(m: report.largeRows)
        var references: [(String, () -> Void)] = [("sgemm small", sgemmSmall.run), ("sgemm large", sgemmLarge.run)]
        if let dnnlSmall, let dnnlLarge { references += [("onednn small", dnnlSmall.run), ("onednn large", dnnlLarge.run)] }
        // Warm-up, then interleaved rounds: every case once per round.
        log("timing \(cases.count) cases and \(references.count) matmul references in \(repeats) interleaved rounds ...")
        let stats = Autograd.noGrad {
            measureInterleaved(references + cases.map { ($0.0, $0.1) }, warmup: 1, repeats: repeats)
        }
        report.sgemm64 = sgemmSmall.gflops(stats["sgemm small"]!.median)
        report.sgemmLarge = sgemmLarge.gflops(stats["sgemm large"]!.median)
        log(String(format: "raw sgemm: %.1f GFLOP/s (%d rows), %.1f GFLOP/s (%d rows)", report.sgemm64, report.smallRows,
                   report.sgemmLarge, report.largeRows))
        if let dnnlSmall, let dnnlLarge, let a = stats["onednn small"], let b = stats["onednn large"] {
            report.onednn64 = dnnlSmall.gflops(a.median)
            report.onednnLarge = dnnlLarge.gflops(b.median)
            log(String(format: "oneDNN matmul, packed %@: %.1f GFLOP/s (%d rows), %.1f GFLOP/s (%d rows)", report.precisionName,
                       report.onednn64!, report.smallRows, report.onednnLarge!, report.largeRows))
        }
        for (name, _, v, b, e) in cases {
            let s = stats[name]!
            let flops = SiTBenchmark.forwardFLOPs(v.config, batch: b) / 1e9
            var row = BenchRow(name: v.name, tokens: v.config.numTokens, batch: b, seconds: s, gflop: flops,
                               imagesPerSecond: Double(b) / s.median)
            let large = b * v.config.numTokens >= 256
            row.fractionOfSgemm = row.gflopPerSecond / (large ? report.sgemmLarge : report.sgemm64)
            if let d = large ? report.onednnLarge : report.onednn64 { row.fractionOfOneDNN = row.gflopPerSecond / d }
            row.engine = e.rawValue
            report.rows.append(row)
            log(String(format: "%@ batch %d, %@: %.4f s (%.1f GFLOP/s)", v.name, b, e.rawValue, s.median, row.gflopPerSecond))
        }
        if engines.count > 1 {
            // Each engine against the first one listed, per (variant, batch): median over median.
            let base = engines[0]
            for (v, _) in models {
                for b in v.batches {
                    guard let s0 = stats["\(v.name) b\(b) \(base.rawValue)"]?.median else { continue }
                    for e in engines.dropFirst() {
                        guard let s1 = stats["\(v.name) b\(b) \(e.rawValue)"]?.median else { continue }
                        report.ratios["\(v.name) b\(b): \(e.rawValue) speed-up over \(base.rawValue)"] = s0 / s1
                    }
                }
            }
        }
        Engine.backend = engines.last ?? initialBackend
        if !smoke {
            let lastEngine = (engines.last ?? initialBackend).rawValue
            func ips(_ tokens: Int, _ b: Int, _ prefix: String = "SiT-XL/1") -> Double? {
                report.rows.first { $0.tokens == tokens && $0.batch == b && $0.name.hasPrefix(prefix) && $0.engine == lastEngine }?.imagesPerSecond
            }
            if let a = ips(64, 8), let b = ips(1024, 1) { report.ratios["64 vs 1024 tokens, forward images/s (batch 8 vs 1)"] = a / b }
            if let a = ips(64, 1), let b = ips(1024, 1) { report.ratios["64 vs 1024 tokens, forward images/s (batch 1 vs 1)"] = a / b }
            if let a = ips(64, 2), let b = ips(1024, 2) { report.ratios["64 vs 1024 tokens, guided pair (batch 2 vs 2)"] = a / b }
            if let a = ips(64, 8), let b = ips(4096, 1) { report.ratios["64 vs 4096 tokens (512 px), forward images/s (batch 8 vs 1)"] = a / b }
            if let a = ips(64, 1), let b = ips(4096, 1) { report.ratios["64 vs 4096 tokens (512 px), forward images/s (batch 1 vs 1)"] = a / b }

            // End to end for one guided image: the real sampler over SiT-XL/1 (64 tokens, cond +
            // uncond as one batch of 2) plus the SoftVQ-L-64 decode, against the same number of
            // guided steps over 1024 tokens (taken as steps x the measured batch-2 forward; the
            // SD-VAE decoder is not included).
            guard endToEnd, let sit64 = models.first(where: { $0.0.config.numTokens == 64 })?.1 else { return report }
            var tokCfg = try TokenizerConfig.preset("softvq-l-64")
            tokCfg.vqStd = 1
            let tok = try SoftVQModel(config: tokCfg, initialization: .uninitialized)
            TokenizerBenchmark.fillRandom(tok)
            tok.freeze()
            let options = SamplerOptions(method: .euler, steps: steps, guidance: Guidance(scale: 1.5, low: 0, high: 1, nullLabel: 1000))
            var e2e: [Double] = []
            for _ in 0..<max(1, repeats) {
                let t0 = now()
                let run = try SamplingRun(velocity: { x, t, y in try Autograd.noGrad { try sit64(x, t: t, y: y) } },
                                          options: options, shape: [1, 64, 32], labels: [207], generators: [RandomGenerator(seed: 3)])
                let z = try run.run()
                _ = try Autograd.noGrad { try tok.decode(z) }
                e2e.append(now() - t0)
            }
            let e2eStats = TimingStats(e2e)
            var row = BenchRow(name: "end to end: \(steps) guided Euler steps + SoftVQ-L-64 decode", tokens: 64, batch: 1, seconds: e2eStats,
                               gflop: Double(steps) * SiTBenchmark.forwardFLOPs(sit64.config, batch: 2) / 1e9, imagesPerSecond: 1 / e2eStats.median)
            row.note = "measured"
            row.engine = lastEngine
            report.rows.append(row)
            if let f1024 = report.rows.first(where: { $0.tokens == 1024 && $0.batch == 2 && $0.engine == lastEngine }) {
                let est = Double(steps) * f1024.seconds.median
                var r2 = BenchRow(name: "end to end: \(steps) guided steps over 1024 tokens", tokens: 1024, batch: 1,
                                  seconds: TimingStats([est]), gflop: Double(steps) * f1024.gflop, imagesPerSecond: 1 / est)
                r2.note = "steps x measured batch-2 forward; SD-VAE decoder excluded"
                r2.engine = lastEngine
                report.rows.append(r2)
                report.ratios["end to end, one guided image: 64 tokens + decode vs 1024 tokens"] = est / e2eStats.median
            }
        }
        return report
    }

    /// One SiT-B/1 training step (64 tokens x 32 channels, batch 16, AdamW) and one tokenizer
    /// training step, seconds and GFLOP/s (forward matmul FLOPs x 3 for forward + backward).
    /// With `xl`, the SiT step is SiT-XL/1's (64 tokens, batch 8; about 14 GB of weights,
    /// gradients, moments), the compute of one data-parallel rank in docs/scaling.md.
    public static func training(repeats: Int = 3, smoke: Bool = false, includeTokenizer: Bool = true, xl: Bool = false,
                                log: (String) -> Void = { print($0) }) throws -> [BenchRow] {
        var rows: [BenchRow] = []
        let config = smoke ? SiTConfig(hiddenSize: 64, depth: 2, numHeads: 4, patchSize: 1, inChannels: 8, inputSize: 16, vae1D: true)
                           : xl ? SiTConfig.xl(patch: 1, inputSize: 64, inChannels: 32, vae1D: true)
                           : SiTConfig.b(patch: 1, inputSize: 64, inChannels: 32, vae1D: true)
        let batch = smoke ? 4 : xl ? 8 : 16
        let model = try SiT(config: config)
        var rng = RandomGenerator(seed: 0)
        model.initializeWeights(rng: &rng)
        let trainer = SiTTrainer(model: model, rng: RandomGenerator(seed: 1))
        let x = rng.normalTensor([batch] + config.latentShape)
        let y = (0..<batch).map { $0 % config.numClasses }
        let s = try measure(warmup: 1, repeats: repeats) { _ = try trainer.step(latents: x, labels: y) }
        rows.append(BenchRow(name: smoke ? "tiny SiT training step" : xl ? "SiT-XL/1 training step (64 tokens, AdamW)" : "SiT-B/1 training step (64 tokens, AdamW)", tokens: config.numTokens, batch: batch,
                             seconds: s, gflop: 3 * SiTBenchmark.forwardFLOPs(config, batch: batch) / 1e9, imagesPerSecond: Double(batch) / s.median))
        log(String(format: "%@: %.3f s", rows.last!.name, s.median))
        guard includeTokenizer else { return rows }

        var tc = try TokenizerConfig.preset("fashion32")
        if smoke { tc.encEmbedDim = 32; tc.decEmbedDim = 32; tc.encDepth = 1; tc.decDepth = 1; tc.encNumHeads = 1; tc.decNumHeads = 1 }
        let tb = smoke ? 2 : 32
        let images = rng.uniformTensor([tb, 3, tc.imageSize, tc.imageSize], low: -1, high: 1)
        let spec = try tc.encoderSpec
        let tokens = Double(1 + spec.numPatches + tc.numLatentTokens)
        let perBlock = 24 * Double(spec.width * spec.width) * tokens + 4 * tokens * tokens * Double(spec.width)
        let gflop = 3 * Double(tb) * perBlock * Double((try tc.encoderSpec).depth + (try tc.decoderSpec).depth) / 1e9
        // The recipe's terms, interleaved step by step: reconstruction only, + the classifier-
        // feature perceptual loss, + the PatchGAN (hinge, LeCAM, CR, DiffAugment, adaptive
        // weight), and both. The classifier and discriminator have random weights (their cost
        // does not depend on the values).
        func recipeTrainer(perceptual: Bool, adversarial: Bool) throws -> TokenizerTrainer {
            let t = try TokenizerTrainer(model: try SoftVQModel(config: tc, initialization: .random(seed: 0)))
            if perceptual {
                let loss = ClassifierFeatureLoss(classifier: FashionClassifier(seed: 1))
                t.perceptual = PerceptualTerm(name: loss.name, weight: 1, warmup: nil) { loss($0, $1) }
            }
            if adversarial {
                var a = AdversarialOptions()
                a.discriminator = PatchGANDiscriminator.Config(ndf: smoke ? 8 : 64, nLayers: smoke ? 2 : 3)
                a.discStart = 0; a.discWeight = 0.2; a.lecamWeight = 0.001; a.crWeight = 4; a.diffAugment = true
                t.adversarial = AdversarialTraining(a)
            }
            return t
        }
        let variants: [(String, TokenizerTrainer)] = [
            ("reconstruction + entropy", try recipeTrainer(perceptual: false, adversarial: false)),
            ("+ perceptual (classifier features)", try recipeTrainer(perceptual: true, adversarial: false)),
            ("+ PatchGAN (LeCAM, CR, DiffAugment, adaptive weight)", try recipeTrainer(perceptual: false, adversarial: true)),
            ("+ perceptual + PatchGAN", try recipeTrainer(perceptual: true, adversarial: true)),
        ]
        var failure: Error?
        let times = measureInterleaved(variants.map { name, t in (name, { do { try t.trainStep(images) } catch { failure = error } }) },
                                       warmup: 1, repeats: repeats)
        if let failure { throw failure }
        for (name, _) in variants {
            let st = times[name]!
            rows.append(BenchRow(name: "tokenizer training step (\(smoke ? "tiny" : "fashion32"), AdamW + EMA): \(name)", tokens: tc.numLatentTokens,
                                 batch: tb, seconds: st, gflop: gflop, imagesPerSecond: Double(tb) / st.median))
            log(String(format: "%@: %.3f s (%.2f steps/s)", rows.last!.name, st.median, 1 / st.median))
        }
        return rows
    }
}
