import ArgumentParser
import Foundation
import Pipeline
import Tokenizer

struct Ablate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The paper's ablation on Fashion-MNIST: KL vs hard VQ vs SoftVQ tokenizers, and SiT with and without alignment (resumable).",
        discussion: """
        Trains one tokenizer per posterior x token count x seed with the same budget, scores the reconstructions of the test split (PSNR, SSIM, Frechet distance of classifier features), then trains a SiT on the latents of a SoftVQ tokenizer (first token count) trained with and without alignment to the classifier's features, and scores its samples (Frechet distance, class fidelity). Writes <out>/ablation.md, ablation.json and ablation.png. Run it again with the same arguments to continue an interrupted ablation.

        Example: gen ablate --classifier Checkpoints/fashion-classifier --tokens 16,32 --seeds 0,1 --steps 1000 --out runs/ablation
        """)

    @OptionGroup var compute: ComputeOptions
    @Option(help: "Classifier folder (from gen train-classifier): scores, and the default alignment teacher.") var classifier: String
    @Option(name: [.customShort("o"), .customLong("out")], help: "Ablation folder (run folders and the table).") var out: String
    @Option(help: "Tokenizer preset the posteriors share.") var preset = "fashion32-small"
    @Option(help: "Comma-separated posteriors (kl, vq, softvq).") var quantizers = "kl,vq,softvq"
    @Option(help: "Comma-separated latent token counts.") var tokens = "16,32"
    @Option(help: "Comma-separated seeds (two or more give the seed-to-seed spread).") var seeds = "0,1"
    @Option(parsing: .unconditional, help: "Override the preset's ViT width.") var width: Int?
    @Option(parsing: .unconditional, help: "Override the preset's ViT depth.") var depth: Int?
    @Option(parsing: .unconditional, help: "Override the preset's attention heads.") var heads: Int?
    @Option(parsing: .unconditional, help: "Optimizer steps per tokenizer.") var steps = 1000
    @Option(parsing: .unconditional, help: "Peak learning rate of the tokenizers.") var lr: Float = 1e-3
    @Option(name: [.customShort("b"), .customLong("batch-size")], parsing: .unconditional, help: "Images per tokenizer step.") var batchSize = 32
    @Option(name: .customLong("eval-images"), parsing: .unconditional, help: "Test images the reconstructions are scored on.") var evalImages = 2000
    @Option(name: .customLong("align-teacher"), help: "Alignment teacher (default: the classifier).") var alignTeacher: String?
    @Option(name: .customLong("align-weight"), parsing: .unconditional, help: "Alignment loss weight.") var alignWeight: Float = 0.1
    @Option(help: "Alignment: global or repeat.") var align = "global"
    @Option(name: .customLong("sit-steps"), parsing: .unconditional, help: "SiT steps of the generation half (0 skips it).") var sitSteps = 3000
    @Option(name: .customLong("sit-hidden"), parsing: .unconditional, help: "SiT width of the generation half.") var sitHidden = 256
    @Option(name: .customLong("sit-depth"), parsing: .unconditional, help: "SiT depth of the generation half.") var sitDepth = 6
    @Option(name: .customLong("per-class"), parsing: .unconditional, help: "Generated images per class for the generation scores.") var perClass = 100
    @Option(name: [.customLong("cfg-scale"), .customLong("cfg")], parsing: .unconditional, help: "Guidance scale of the generation scores.") var cfgScale: Double = 1.5
    @Option(name: .customLong("limit"), parsing: .unconditional, help: "Encode only N training images for the SiT (quick runs).") var limit: Int?

    func validate() throws {
        _ = try parse()
        try require(steps, "--steps", in: 1...10_000_000)
        try require(width, "--width", in: Limits.width)
        try require(depth, "--depth", in: Limits.depth)
        try require(heads, "--heads", in: Limits.heads)
        try require(lr, "--lr", in: 1e-8...1)
        try require(sitHidden, "--sit-hidden", in: Limits.width)
        try require(sitDepth, "--sit-depth", in: Limits.depth)
        try require(batchSize, "--batch-size", in: 1...4096)
        try require(evalImages, "--eval-images", in: 1...10_000)
        try require(sitSteps, "--sit-steps", in: 0...10_000_000)
        try require(perClass, "--per-class", in: 1...100_000)
        try require(cfgScale, "--cfg-scale", in: Limits.cfg)
        try require(limit, "--limit", in: Limits.images)
        guard ["global", "repeat"].contains(align) else { throw ValidationError("--align must be global or repeat, got '\(align)'.") }
    }

    func parse() throws -> (quantizers: [QuantizerKind], tokens: [Int], seeds: [UInt64]) {
        let q = try quantizers.split(separator: ",").map { s -> QuantizerKind in
            guard let k = QuantizerKind(rawValue: s.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--quantizers: '\(s)' is not kl, vq or softvq.")
            }
            return k
        }
        guard !q.isEmpty else { throw ValidationError("--quantizers needs at least one of kl, vq, softvq.") }
        return (q, try commaList(tokens, "--tokens", in: 1...4096), try commaList(seeds, "--seeds", in: 0...UInt64.max))
    }

    func run() throws {
        compute.apply()
        let (q, t, s) = try parse()
        var o = AblationOptions(out: out, classifier: classifier)
        o.preset = preset; o.width = width; o.depth = depth; o.heads = heads; o.lr = lr
        o.sitHidden = sitHidden; o.sitDepth = sitDepth; o.quantizers = q; o.tokens = t; o.seeds = s; o.steps = steps; o.batchSize = batchSize
        o.evalImages = evalImages; o.alignTeacher = alignTeacher; o.alignWeight = alignWeight; o.align = align
        o.sitSteps = sitSteps; o.samplesPerClass = perClass; o.cfgScale = cfgScale; o.precomputeLimit = limit
        try userFacing { try AblationJob.run(o, command: commandLine()) }
    }
}
