import ArgumentParser
import Foundation
import Pipeline
import SiT

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a class-conditional SiT on a latent cache (flow matching; resumable).",
        discussion: """
        Example: gen train --cache runs/latents.h5 --tokenizer runs/tok --out runs/sit-cosine --path cosine --steps 20000
        Fine-tuning a trained SiT (its weights, a fresh optimizer and schedule):
        Example: gen train --cache runs/latents.h5 --init-from runs/sit-cosine --path cosine --lr 1e-4 --steps 5000 --out runs/sit-tuned
        """)

    @OptionGroup var compute: ComputeOptions
    @OptionGroup var precision: PrecisionOptions
    @Option(help: "Latent cache made by gen precompute (with --resume: the run's own unless given).") var cache: String?
    @Option(help: "Tokenizer folder the cache must come from (checked by weights hash).") var tokenizer: String?
    @Option(name: [.customShort("o"), .customLong("out")], help: "Output run folder.") var out: String
    @Option(parsing: .unconditional, help: "Model width.") var hidden = 256
    @Option(parsing: .unconditional, help: "Number of SiT blocks.") var depth = 6
    @Option(parsing: .unconditional, help: "Attention heads.") var heads = 4
    @Flag(name: .customLong("qk-norm"), help: "LayerNorm on queries and keys.") var qkNorm = false
    @Option(parsing: .unconditional, help: "Total optimizer steps (default 20000; with --resume, the run's own target unless given).") var steps: Int?
    @Option(name: [.customShort("b"), .customLong("batch-size")], parsing: .unconditional, help: "Latents per step.") var batchSize = 64
    @Option(parsing: .unconditional, help: "Peak learning rate (linear warmup, cosine decay).") var lr: Float = 3e-4
    @Option(parsing: .unconditional, help: "Warmup steps.") var warmup = 500
    @Option(name: .customLong("ema"), parsing: .unconditional, help: "EMA decay of the saved weights.") var emaDecay: Float = 0.999
    @Option(name: .customLong("adam-eps"), parsing: .unconditional, help: ArgumentHelp("AdamW's epsilon (default 1e-8, PyTorch's).",
            discussion: "With --resume the run keeps its own.")) var adamEps: Float?
    @Option(parsing: .unconditional, help: "Interpolant path: linear or cosine.") var path: InterpolantPath = .linear
    @Option(name: .customLong("time-sampling"), help: "uniform or lognormal.") var timeSampling: TimeSampling = .uniform
    @Option(parsing: .unconditional, help: "Seed of initialization, data order and noise.") var seed: UInt64 = 0
    @Option(name: .customLong("save-every"), parsing: .unconditional, help: "Checkpoint every N steps.") var saveEvery = 1000
    @Option(name: .customLong("log-every"), parsing: .unconditional, help: "Log every N steps.") var logEvery = 50
    @Option(name: .customLong("stop-after"), parsing: .unconditional, help: "Stop after N steps of this invocation (the run stays resumable).") var stopAfter: Int?
    @Flag(name: .customLong("allow-missing-classes"), help: "Train even if some classes of the cache have no latents.") var allowMissingClasses = false
    @Flag(name: .customLong("no-flip"), help: ArgumentHelp("Train on the latents of the images as they are, never their mirrored latents.",
          discussion: "For data whose orientation matters (Fashion-MNIST's shoes all point left; mirrored ones are out of its distribution). With --resume: for the rest of the run.")) var noFlip = false
    @Option(name: .customLong("init-from"), help: ArgumentHelp("Start from the weights of this SiT folder or run instead of a random initialization (fine-tuning).",
            discussion: "Same architecture and tokenizer (the cache's), or a SiT with fewer blocks than --depth: it fills the first blocks and the further ones start as identities (adaLN-Zero), so the deeper model starts from the source's function. The optimizer, warmup and learning-rate schedule start afresh.")) var initFrom: String?
    @Flag(help: "Continue the run in --out from its last checkpoint.") var resume = false
    @Flag(help: "Replace an existing run in --out.") var overwrite = false

    func validate() throws {
        try require(hidden, "--hidden", in: Limits.width)
        try require(depth, "--depth", in: Limits.depth)
        try require(heads, "--heads", in: Limits.heads)
        guard hidden % heads == 0 else { throw ValidationError("--hidden \(hidden) must be divisible by --heads \(heads).") }
        if initFrom != nil && resume { throw ValidationError("--init-from starts a run; --resume continues one from its own checkpoint: pass one of them.") }
        try validateTrainingLoop(steps: steps, batchSize: batchSize, lr: lr, warmup: warmup, emaDecay: emaDecay,
                                 saveEvery: saveEvery, logEvery: logEvery, stopAfter: stopAfter, resume: resume, overwrite: overwrite)
        try require(adamEps, "--adam-eps", in: Limits.adamEpsilon)
    }

    func run() throws {
        compute.apply()
        var o = SiTTrainingOptions()
        o.adamEps = adamEps
        o.cache = cache ?? ""; o.tokenizer = tokenizer.map(checkpointFolder) ?? ""; o.hiddenSize = hidden; o.depth = depth; o.numHeads = heads
        o.qkNorm = qkNorm; o.steps = steps ?? 0; o.batchSize = batchSize; o.lr = lr; o.warmup = warmup; o.minLR = lr / 10
        o.emaDecay = emaDecay; o.path = path; o.timeSampling = timeSampling; o.seed = seed
        o.saveEvery = saveEvery; o.logEvery = logEvery; o.allowMissingClasses = allowMissingClasses ? true : nil
        o.randomFlip = !noFlip
        o.initFrom = initFrom.map(checkpointFolder)
        try userFacing {
            let job = try SiTTrainingJob.open(options: o, out: out, resume: resume, overwrite: overwrite, precision: precision.precision)
            job.command = commandLine()
            try job.run(stopAfter: stopAfter)
        }
    }
}
