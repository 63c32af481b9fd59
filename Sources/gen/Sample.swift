import ArgumentParser
import Cluster
import Formats
import Foundation
import Pipeline
import Sampler

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate class-conditional images: SiT sampling, then tokenizer decoding, to PNGs and a labelled grid.",
        discussion: """
        Image i uses seed (--seed + i) mod 2^64, printed in its file name and stored with every other setting in its PNG 'parameters' chunk; --from-png regenerates one image from that chunk. PNGs are written as each batch finishes; an interrupted run continues with the same command plus --resume.

        Reproducibility: a run is bit-identical to another with the same --batch-size; with --batch-size 1 (the default) every image is bit-identical to itself generated alone; other batch sizes agree within float rounding (a larger batch is faster).

        Examples:
          gen sample --sit Checkpoints/fashion-sit --tokenizer Checkpoints/fashion-tokenizer --per-class 8 -o samples
          gen sample --sit Checkpoints/fashion-sit --tokenizer Checkpoints/fashion-tokenizer --classes Sneaker,Bag --cfg-scale 2 --steps 25 --sampler heun -o s2
          gen sample --sit Checkpoints/fashion-sit --tokenizer Checkpoints/fashion-tokenizer --num-samples 2000 --batch-size 8 --cfg 3 --steps 25 --npz --no-grid -o fid
          gen sample --from-png samples/00003_class0_seed3.png -o again
        """)

    @OptionGroup var compute: ComputeOptions
    @OptionGroup var precision: PrecisionOptions
    @Option(help: "SiT checkpoint folder (config.json + model.safetensors), or a run folder.") var sit: String?
    @Option(help: "Tokenizer checkpoint folder, or a run folder.") var tokenizer: String?
    @Option(help: "Comma-separated class indices or names (default: every class).") var classes: String?
    @Option(name: .customLong("per-class"), parsing: .unconditional, help: "Images per class.") var perClass = 8
    @Option(name: [.customShort("n"), .customLong("num-samples")], parsing: .unconditional,
            help: "Generate this many images with each class drawn from the image's seed (instead of --per-class).") var numSamples: Int?
    @Option(parsing: .unconditional, help: "Seed of the first image (0...2^64-1, or 'random'); image i uses seed + i.") var seed: Seed = Seed(0)
    @Option(help: "euler, heun (ODE) or euler-maruyama (SDE).") var sampler: SamplerMethod = .euler
    @Option(name: [.customLong("steps"), .customLong("num-steps")], parsing: .unconditional, help: "Sampler steps.") var steps = 50
    @Option(name: [.customLong("cfg-scale"), .customLong("cfg")], parsing: .unconditional, help: "Classifier-free guidance scale (1 = off).") var cfg: Double = 1
    @Option(name: .customLong("guidance-low"), parsing: .unconditional, help: "Guidance applies for t >= this.") var guidanceLow: Double = 0
    @Option(name: .customLong("guidance-high"), parsing: .unconditional, help: "Guidance applies for t <= this.") var guidanceHigh: Double = 1
    @Option(name: [.customShort("b"), .customLong("batch-size")], parsing: .unconditional,
            help: "Images integrated together (1: each image bit-identical alone; larger: faster).") var batchSize = 1
    @Option(name: [.customShort("o"), .customLong("out")], help: "Output folder.") var out: String
    @Flag(help: "Also write samples.npz (ADM evaluator format: arr_0 uint8 NHWC), assembled from the PNGs.") var npz = false
    @Flag(name: .customLong("save-latents"), help: "Also write latents.h5: the sampled z_q, labels and PNG names in the latent-cache format (gen info reads it).") var saveLatents = false
    @Flag(name: .customLong("no-grid"), help: "Do not write grid.png.") var noGrid = false
    @Option(name: .customLong("from-png"), help: "Regenerate the image described by this PNG's parameters chunk.") var fromPNG: String?
    @Flag(help: "Finish an interrupted run in --out (existing PNGs are checked and kept).") var resume = false
    @Flag(help: "Write into a non-empty output folder.") var overwrite = false

    func validate() throws {
        if fromPNG == nil && (sit == nil || tokenizer == nil) {
            throw ValidationError("Give --sit and --tokenizer (or --from-png).")
        }
        try require(perClass, "--per-class", in: Limits.images)
        try require(numSamples, "--num-samples", in: Limits.images)
        try require(steps, "--steps", in: Limits.samplerSteps)
        try require(cfg, "--cfg", in: Limits.cfg)
        try require(guidanceLow, "--guidance-low", in: Limits.unitInterval)
        try require(guidanceHigh, "--guidance-high", in: Limits.unitInterval)
        try require(batchSize, "--batch-size", in: 1...4096)
        guard guidanceLow <= guidanceHigh else { throw ValidationError("--guidance-low must not exceed --guidance-high.") }
        guard !(resume && overwrite) else { throw ValidationError("--resume and --overwrite exclude each other.") }
    }

    func run() throws {
        compute.apply()
        try userFacing {
            try precision.apply()
            var o: GenerationOptions
            if let fromPNG {
                guard let text = try ImageIO.readPNGText(path: fromPNG, key: "parameters") else {
                    throw PipelineError.invalidArgument("\(fromPNG) has no parameters chunk.")
                }
                o = try GenerationJob.options(fromParameters: text).0
                if let sit { o.sit = sit }
                if let tokenizer { o.tokenizer = tokenizer }
            } else {
                o = GenerationOptions(sit: checkpointFolder(sit!), tokenizer: checkpointFolder(tokenizer!))
                o.perClass = perClass; o.numSamples = numSamples; o.seed = seed.value; o.method = sampler; o.steps = steps; o.cfgScale = cfg
                o.guidanceLow = guidanceLow; o.guidanceHigh = guidanceHigh; o.batchSize = batchSize
                if let classes { o.classes = try GenerationModels.classIndices(classes, sitFolder: o.sit) }
            }
            if seed.isRandom && fromPNG == nil {
                // Under mpirun every rank drew its own: rank 0's is the job's.
                var v = [Double(bitPattern: o.seed)]
                if Cluster.world.size > 1 { try v.withUnsafeMutableBytes { try Cluster.world.broadcast($0, root: 0) } }
                o.seed = UInt64(v[0].bitPattern)
                if Cluster.world.isRoot { print("Seed: \(o.seed) (random)") }
            }
            try GenerationJob.run(o, out: out, npz: npz, latentsH5: saveLatents, grid: !noGrid, overwrite: overwrite, resume: resume)
        }
    }
}
