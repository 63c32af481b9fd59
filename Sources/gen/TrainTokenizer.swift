import ArgumentParser
import Foundation
import Pipeline

struct TrainTokenizer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-tokenizer",
        abstract: "Train a SoftVQ tokenizer on images (resumable; checkpoints in the official folder layout).",
        discussion: """
        <out>/checkpoint holds the EMA weights as config.json + model.safetensors (the layout of the released SoftVQVAE/softvq-* folders, with vq_mean / vq_std measured on the data), plus the optimizer and data position for --resume. Metrics go to <out>/log.jsonl, the loss curve to <out>/loss.png.

        Example: gen train-tokenizer --dataset fashion-mnist --preset fashion32-small --steps 8000 --out runs/tok-small
        """)

    @OptionGroup var compute: ComputeOptions
    @OptionGroup var precision: PrecisionOptions
    @Option(help: "fashion-mnist, fashion-mnist:test, or an image folder root/<class>/<image>.") var dataset = "fashion-mnist"
    @Option(help: "Tokenizer preset (fashion32, fashion32-small, softvq-b-64, ...).") var preset = "fashion32"
    @Option(name: [.customShort("o"), .customLong("out")], help: "Output run folder.") var out: String
    @Option(parsing: .unconditional, help: "Override the preset's ViT width (encoder and decoder).") var width: Int?
    @Option(parsing: .unconditional, help: "Override the preset's ViT depth.") var depth: Int?
    @Option(parsing: .unconditional, help: "Override the preset's attention heads.") var heads: Int?
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
        try require(tokens, "--tokens", in: 1...4096)
        try require(codebooks, "--codebooks", in: 1...4096)
        try require(codebookSize, "--codebook-size", in: 1...1_048_576)
        try require(codebookDim, "--codebook-dim", in: 1...4096)
        try require(limit, "--limit", in: Limits.images)
        try validateTrainingLoop(steps: steps, batchSize: batchSize, lr: lr, warmup: warmup, emaDecay: emaDecay,
                                 saveEvery: saveEvery, logEvery: logEvery, stopAfter: stopAfter, resume: resume, overwrite: overwrite)
    }

    func run() throws {
        compute.apply()
        var o = TokenizerTrainingOptions()
        o.dataset = dataset; o.preset = preset; o.steps = steps ?? 0; o.batchSize = batchSize; o.lr = lr
        o.warmup = warmup; o.minLR = lr / 10; o.emaDecay = emaDecay; o.l1 = l1; o.seed = seed; o.limit = limit
        o.saveEvery = saveEvery; o.logEvery = logEvery
        o.width = width; o.depth = depth; o.heads = heads; o.tokens = tokens; o.codebooks = codebooks
        o.codebookSize = codebookSize; o.codebookDim = codebookDim
        try userFacing {
            let job = try TokenizerTrainingJob.open(options: o, out: out, resume: resume, overwrite: overwrite, precision: precision.precision)
            job.command = commandLine()
            try job.run(stopAfter: stopAfter)
        }
    }
}
