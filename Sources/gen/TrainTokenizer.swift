import ArgumentParser
import Foundation
import Pipeline
import Tokenizer

struct TrainTokenizer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-tokenizer",
        abstract: "Train a SoftVQ tokenizer on images (resumable; checkpoints in the official folder layout).",
        discussion: """
        <out>/checkpoint holds the EMA weights as config.json + model.safetensors (the layout of the released SoftVQVAE/softvq-* folders, with vq_mean / vq_std measured on the data), plus the optimizer and data position for --resume. Metrics go to <out>/log.jsonl, the loss curve to <out>/loss.png.

        The official recipe adds a perceptual loss (--perceptual: LPIPS weights, a ViT, or on Fashion-MNIST the classifier's conv features), a PatchGAN adversarial loss (--disc-weight, --disc-start, LeCAM, DiffAugment, the adaptive weight) and alignment of the latent tokens to a frozen teacher (--align-teacher); --quantizer vq|kl trains the ablation's baselines. The discriminator and projector are saved with the run and resume exactly. See docs/tokenizer-recipe.md.

        Example: gen train-tokenizer --dataset fashion-mnist --preset fashion32-small --steps 8000 --out runs/tok-small
        Example: gen train-tokenizer --preset fashion32-small --perceptual Checkpoints/fashion-classifier --perceptual-warmup 1000 --disc-weight 0.2 --disc-start 2000 --lecam-weight 0.001 --align-teacher Checkpoints/fashion-classifier --align global --steps 8000 --out runs/tok-recipe
        """)

    @OptionGroup var compute: ComputeOptions
    @OptionGroup var precision: PrecisionOptions
    @OptionGroup(title: "Recipe (the official VQLoss terms, the ablation's posteriors, alignment)") var recipe: RecipeOptions
    @Option(help: "fashion-mnist, fashion-mnist:test, or an image folder root/<class>/<image>.") var dataset = "fashion-mnist"
    @Option(help: "Tokenizer preset (fashion32, fashion32-small, softvq-b-64, ...).") var preset = "fashion32"
    @Option(name: [.customShort("o"), .customLong("out")], help: "Output run folder.") var out: String
    @Option(parsing: .unconditional, help: "Override the preset's ViT width (encoder and decoder).") var width: Int?
    @Option(parsing: .unconditional, help: "Override the preset's ViT depth.") var depth: Int?
    @Option(parsing: .unconditional, help: "Override the preset's attention heads.") var heads: Int?
    @Option(name: .customLong("patch-size"), parsing: .unconditional, help: "Override the ViT patch size (encoder and decoder; must divide the image size).") var patchSize: Int?
    @Option(parsing: .unconditional, help: "Override the number of latent tokens.") var tokens: Int?
    @Option(parsing: .unconditional, help: "Override the number of codebooks.") var codebooks: Int?
    @Option(name: .customLong("codebook-size"), parsing: .unconditional, help: "Override the codewords per codebook.") var codebookSize: Int?
    @Option(name: .customLong("codebook-dim"), parsing: .unconditional, help: "Override the codeword (latent channel) dimension.") var codebookDim: Int?
    @Option(parsing: .unconditional, help: "Total optimizer steps (default 8000; with --resume, the run's own target unless given).") var steps: Int?
    @Option(name: [.customShort("b"), .customLong("batch-size")], parsing: .unconditional, help: "Images per step.") var batchSize = 32
    @Option(parsing: .unconditional, help: "Peak learning rate (linear warmup, cosine decay).") var lr: Float = 4e-4
    @Option(parsing: .unconditional, help: "Warmup steps.") var warmup = 500
    @Option(name: .customLong("ema"), parsing: .unconditional, help: "EMA decay of the saved weights.") var emaDecay: Float = 0.999
    @Flag(help: "L1 reconstruction loss instead of L2.") var l1 = false
    @Option(parsing: .unconditional, help: "Seed of initialization, data order and flips.") var seed: UInt64 = 0
    @Option(parsing: .unconditional, help: "Train on a class-balanced subset of N images.") var limit: Int?
    @Option(name: .customLong("save-every"), parsing: .unconditional, help: "Checkpoint every N steps.") var saveEvery = 500
    @Option(name: .customLong("log-every"), parsing: .unconditional, help: "Log every N steps.") var logEvery = 25
    @Option(name: .customLong("stop-after"), parsing: .unconditional, help: "Stop after N steps of this invocation (the run stays resumable).") var stopAfter: Int?
    @Flag(help: "Continue the run in --out from its last checkpoint.") var resume = false
    @Flag(help: "Replace an existing run in --out.") var overwrite = false

    func validate() throws {
        try require(width, "--width", in: Limits.width)
        try require(depth, "--depth", in: Limits.depth)
        try require(heads, "--heads", in: Limits.heads)
        try require(patchSize, "--patch-size", in: 1...64)
        try require(tokens, "--tokens", in: 1...4096)
        try require(codebooks, "--codebooks", in: 1...4096)
        try require(codebookSize, "--codebook-size", in: 1...1_048_576)
        try require(codebookDim, "--codebook-dim", in: 1...4096)
        try require(limit, "--limit", in: Limits.images)
        try recipe.check()
        try validateTrainingLoop(steps: steps, batchSize: batchSize, lr: lr, warmup: warmup, emaDecay: emaDecay,
                                 saveEvery: saveEvery, logEvery: logEvery, stopAfter: stopAfter, resume: resume, overwrite: overwrite)
    }

    func run() throws {
        compute.apply()
        var o = TokenizerTrainingOptions()
        o.dataset = dataset; o.preset = preset; o.steps = steps ?? 0; o.batchSize = batchSize; o.lr = lr
        o.warmup = warmup; o.minLR = lr / 10; o.emaDecay = emaDecay; o.l1 = l1; o.seed = seed; o.limit = limit
        o.saveEvery = saveEvery; o.logEvery = logEvery
        o.width = width; o.depth = depth; o.heads = heads; o.patchSize = patchSize; o.tokens = tokens; o.codebooks = codebooks
        o.codebookSize = codebookSize; o.codebookDim = codebookDim
        o.recipe = recipe.recipe
        o.decayMatricesOnly = true   // the official parameter groups (resumed runs keep their own)
        try userFacing {
            let job = try TokenizerTrainingJob.open(options: o, out: out, resume: resume, overwrite: overwrite, precision: precision.precision)
            job.command = commandLine()
            try job.run(stopAfter: stopAfter)
        }
    }
}

extension QuantizerKind: ExpressibleByArgument {}

/// The recipe's options of `gen train-tokenizer` (recorded in the run; --resume keeps them).
struct RecipeOptions: ParsableArguments {
    @Option(help: "Posterior: softvq (the paper's), vq (hard, straight-through) or kl (Gaussian), for the ablation.") var quantizer: QuantizerKind = .softvq
    @Option(name: .customLong("commit-beta"), parsing: .unconditional, help: "Commitment weight of --quantizer vq (commit_loss_beta).") var commitBeta: Double = 0.25
    @Option(name: .customLong("kl-weight"), parsing: .unconditional, help: "KL weight of --quantizer kl (kl_loss_weight).") var klWeight: Double = 1e-6
    @Option(help: ArgumentHelp("Perceptual loss network: an LPIPS weights file (safetensors, official keys; see docs/perceptual-loss.md), a ViT in safetensors, or a gen train-classifier folder (its conv features).")) var perceptual: String?
    @Option(name: .customLong("perceptual-weight"), parsing: .unconditional, help: "Weight of the perceptual loss.") var perceptualWeight: Float = 1
    @Option(name: .customLong("perceptual-warmup"), parsing: .unconditional, help: "Ramp the perceptual weight up linearly over N steps.") var perceptualWarmup: Int?
    @Option(name: .customLong("disc-weight"), parsing: .unconditional, help: "Adversarial (PatchGAN) loss weight; 0 = off.") var discWeight: Float = 0
    @Option(name: .customLong("disc-start"), parsing: .unconditional, help: "Step at which the discriminator and its loss start.") var discStart = 0
    @Option(name: .customLong("disc-loss"), help: "Discriminator loss: hinge, vanilla or non-saturating.") var discLoss = "hinge"
    @Option(name: .customLong("gen-loss"), help: "Generator adversarial loss: hinge or non-saturating.") var genLoss = "hinge"
    @Option(name: .customLong("disc-dim"), parsing: .unconditional, help: "PatchGAN base channels (ndf).") var discDim = 64
    @Option(name: .customLong("disc-layers"), parsing: .unconditional, help: "PatchGAN stride-2 layers (n_layers).") var discLayers = 3
    @Option(name: .customLong("lecam-weight"), parsing: .unconditional, help: "LeCAM regularization weight (off when not given).") var lecamWeight: Float?
    @Option(name: .customLong("disc-cr-weight"), parsing: .unconditional, help: "Consistency-regularization weight of the discriminator.") var crWeight: Float = 0
    @Flag(name: .customLong("no-diff-augment"), help: "Do not apply DiffAugment (color, translation, cutout) before the discriminator.") var noDiffAugment = false
    @Flag(name: .customLong("no-adaptive-weight"), help: "Use --disc-weight as is, without the gradient-norm ratio at the decoder's last layer.") var noAdaptiveWeight = false
    @Option(name: .customLong("align-teacher"), help: "Align the latent tokens to a frozen teacher: a ViT in safetensors (DINOv2 layout) or a gen train-classifier folder.") var alignTeacher: String?
    @Option(name: .customLong("align-weight"), parsing: .unconditional, help: "Weight of the alignment loss (repa_loss_weight).") var alignWeight: Float = 0.1
    @Option(help: "Alignment: repeat (each token against its patches) or global (mean token against mean feature).") var align = "repeat"
    @Option(name: .customLong("align-proj-dim"), parsing: .unconditional, help: "Hidden width of the alignment projector (repa_proj_dim).") var alignProjDim = 256

    func check() throws {
        for (name, v) in [("--commit-beta", commitBeta), ("--kl-weight", klWeight), ("--perceptual-weight", Double(perceptualWeight)),
                          ("--disc-weight", Double(discWeight)), ("--disc-cr-weight", Double(crWeight)),
                          ("--align-weight", Double(alignWeight)), ("--lecam-weight", Double(lecamWeight ?? 0))]
        where !(v.isFinite && v >= 0 && v <= 1e6) {
            throw ValidationError("\(name) must be a number between 0 and 1e6, got \(v).")
        }
        try require(perceptualWarmup, "--perceptual-warmup", in: 0...100_000_000)
        try require(discStart, "--disc-start", in: 0...100_000_000)
        try require(discDim, "--disc-dim", in: 1...1024)
        try require(discLayers, "--disc-layers", in: 1...6)
        try require(alignProjDim, "--align-proj-dim", in: 1...65536)
        guard ["hinge", "vanilla", "non-saturating"].contains(discLoss) else {
            throw ValidationError("--disc-loss must be hinge, vanilla or non-saturating, got '\(discLoss)'.")
        }
        guard ["hinge", "non-saturating"].contains(genLoss) else {
            throw ValidationError("--gen-loss must be hinge or non-saturating, got '\(genLoss)'.")
        }
        guard ["repeat", "global"].contains(align) else {
            throw ValidationError("--align must be repeat or global, got '\(align)'.")
        }
    }

    var recipe: TokenizerRecipe {
        var r = TokenizerRecipe()
        r.quantizer = quantizer; r.commitBeta = commitBeta; r.klWeight = klWeight
        r.perceptual = perceptual; r.perceptualWeight = perceptualWeight; r.perceptualWarmup = perceptualWarmup
        r.discWeight = discWeight; r.discStart = discStart; r.discLoss = discLoss; r.genLoss = genLoss
        r.discDim = discDim; r.discLayers = discLayers; r.lecamWeight = lecamWeight; r.crWeight = crWeight
        r.diffAugment = !noDiffAugment; r.adaptiveWeight = !noAdaptiveWeight
        r.alignTeacher = alignTeacher; r.alignWeight = alignWeight; r.align = align; r.alignProjectorWidth = alignProjDim
        return r
    }
}
