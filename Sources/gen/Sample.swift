import ArgumentParser
import Formats
import Foundation
import Pipeline
import Sampler

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate class-conditional images: SiT sampling, then tokenizer decoding, to PNGs and a labelled grid.",
        discussion: """
        Image i uses seed (--seed + i), printed in its file name and stored with every other setting in its PNG 'parameters' chunk; --from-png regenerates one image from that chunk.

        Examples:
          gen sample --sit Checkpoints/fashion-sit --tokenizer Checkpoints/fashion-tokenizer --per-class 8 --out samples
          gen sample --sit ... --tokenizer ... --classes Sneaker,Bag --cfg 2 --steps 25 --sampler heun --out s2
          gen sample --from-png samples/00003_class0_seed3.png --out again
        """)

    @OptionGroup var compute: ComputeOptions
    @OptionGroup var precision: PrecisionOptions
    @Option(help: "SiT checkpoint folder (config.json + model.safetensors).") var sit: String?
    @Option(help: "Tokenizer checkpoint folder.") var tokenizer: String?
    @Option(help: "Comma-separated class indices or names (default: every class).") var classes: String?
    @Option(name: .customLong("per-class"), help: "Images per class.") var perClass = 8
    @Option(help: "Seed of the first image; image i uses seed + i.") var seed: UInt64 = 0
    @Option(help: "euler, heun (ODE) or euler-maruyama (SDE).") var sampler: SamplerMethod = .euler
    @Option(help: "Sampler steps.") var steps = 50
    @Option(help: "Classifier-free guidance scale (1 = off).") var cfg: Double = 1
    @Option(name: .customLong("guidance-low"), help: "Guidance applies for t >= this.") var guidanceLow: Double = 0
    @Option(name: .customLong("guidance-high"), help: "Guidance applies for t <= this.") var guidanceHigh: Double = 1
    @Option(name: .customLong("batch-size"), help: "Images integrated together.") var batchSize = 16
    @Option(help: "Output folder.") var out: String
    @Flag(help: "Also write samples.npz (ADM evaluator format: arr_0 uint8 NHWC).") var npz = false
    @Flag(name: .customLong("save-latents"), help: "Also write latents.h5: the sampled z_q, labels and PNG names in the latent-cache format (gen info reads it).") var saveLatents = false
    @Option(name: .customLong("from-png"), help: "Regenerate the image described by this PNG's parameters chunk.") var fromPNG: String?
    @Flag(help: "Write into a non-empty output folder.") var overwrite = false

    func validate() throws {
        if fromPNG == nil && (sit == nil || tokenizer == nil) {
            throw ValidationError("Give --sit and --tokenizer (or --from-png).")
        }
        guard perClass >= 0, steps >= 1, batchSize >= 1 else { throw ValidationError("--per-class, --steps and --batch-size must be positive.") }
        guard guidanceLow <= guidanceHigh else { throw ValidationError("--guidance-low must not exceed --guidance-high.") }
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
                o = GenerationOptions(sit: sit!, tokenizer: tokenizer!)
                o.perClass = perClass; o.seed = seed; o.method = sampler; o.steps = steps; o.cfgScale = cfg
                o.guidanceLow = guidanceLow; o.guidanceHigh = guidanceHigh; o.batchSize = batchSize
                if let classes { o.classes = try GenerationModels.classIndices(classes, sitFolder: o.sit) }
            }
            _ = try GenerationJob.run(o, out: out, npz: npz, latentsH5: saveLatents, overwrite: overwrite)
        }
    }
}
