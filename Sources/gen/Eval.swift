import ArgumentParser
import Formats
import Foundation
import Pipeline
import Sampler

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure a tokenizer and a SiT on Fashion-MNIST's test split (accuracy, PSNR, SSIM, class fidelity, Frechet distances).",
        discussion: """
        Generation is swept over --sampler x --num-steps x --guidance-high x --cfg-scale (comma-separated lists; cfg 1 has no guidance and is measured once per sampler and step count); the table goes to stdout and, with --out, to eval.md / eval.json with plots, rewritten after every setting.

        Examples:
          gen eval --tokenizer Checkpoints/fashion-tokenizer --sit Checkpoints/fashion-sit --classifier Checkpoints/fashion-classifier --out eval
          gen eval --tokenizer Checkpoints/fashion-tokenizer --sit Checkpoints/fashion-sit --classifier Checkpoints/fashion-classifier --per-class 100 --sampler euler,heun --num-steps 10 --cfg 1,2,3 --guidance-high 1,0.7 --out sweep
        """)

    @OptionGroup var compute: ComputeOptions
    @OptionGroup var precision: PrecisionOptions
    @Option(help: "Tokenizer checkpoint folder, or a run folder.") var tokenizer: String
    @Option(help: "SiT checkpoint folder or run folder (omit to evaluate only the tokenizer).") var sit: String?
    @Option(help: "Classifier folder (from gen train-classifier).") var classifier: String
    @Option(name: .customLong("per-class"), parsing: .unconditional, help: "Generated images per class for each setting.") var perClass = 50
    @Option(name: [.customLong("cfg-scale"), .customLong("cfg"), .customLong("cfg-scales")],
            help: "Comma-separated classifier-free guidance scales (1 = off).") var cfgScales = "1,1.5,2,3"
    @Option(name: [.customLong("num-steps"), .customLong("steps")], help: "Comma-separated sampler step counts.") var steps = "10,25"
    @Option(name: [.customLong("sampler"), .customLong("samplers")], help: "Comma-separated samplers: euler, heun, euler-maruyama.") var sampler = "euler"
    @Option(name: .customLong("guidance-low"), parsing: .unconditional, help: "Guidance applies for t >= this.") var guidanceLow: Double = 0
    @Option(name: .customLong("guidance-high"), parsing: .unconditional, help: "Comma-separated upper ends of the guidance interval: guidance applies for t <= this (t = 1 is noise; 1: at every t).") var guidanceHigh = "1"
    @Option(parsing: .unconditional, help: "Seed of the first generated image (0...2^64-1, or 'random').") var seed: Seed = Seed(0)
    @Option(name: .customLong("reconstruction-limit"), parsing: .unconditional, help: "Reconstruct only the first N test images.") var reconstructionLimit: Int?
    @Option(name: [.customShort("o"), .customLong("out")], help: "Folder for eval.md, eval.json and plots.") var out: String?

    func validate() throws {
        try require(perClass, "--per-class", in: 1...1_000_000)
        try require(guidanceLow, "--guidance-low", in: Limits.unitInterval)
        let highs = try commaList(guidanceHigh, "--guidance-high", in: Limits.unitInterval)
        try require(reconstructionLimit, "--reconstruction-limit", in: 1...Limits.images.upperBound)
        _ = try commaList(cfgScales, "--cfg-scale", in: Limits.cfg)
        _ = try commaList(steps, "--num-steps", in: Limits.samplerSteps)
        _ = try samplerList(sampler)
        guard highs.allSatisfy({ guidanceLow <= $0 }) else { throw ValidationError("--guidance-low must not exceed any --guidance-high.") }
        guard Set(highs).count == highs.count else { throw ValidationError("--guidance-high names a value twice: '\(guidanceHigh)'.") }
    }

    func run() throws {
        compute.apply()
        try userFacing {
            try precision.apply()
            var o = EvalOptions(tokenizer: checkpointFolder(tokenizer), classifier: classifier + "/model.safetensors")
            o.sit = sit.map(checkpointFolder); o.perClass = perClass; o.methods = try samplerList(sampler); o.guidanceLow = guidanceLow
            o.guidanceHighs = try commaList(guidanceHigh, "--guidance-high", in: Limits.unitInterval)
            o.seed = seed.value; o.reconstructionLimit = reconstructionLimit; o.out = out
            if seed.isRandom { print("Seed: \(seed.value) (random)") }
            o.cfgScales = try commaList(cfgScales, "--cfg-scale", in: Limits.cfg)
            o.steps = try commaList(steps, "--num-steps", in: Limits.samplerSteps)
            let report = try EvalJob.run(o)
            print("")
            print(report.table())
        }
    }
}

/// `--sampler euler,heun`: each a sampler name, none twice.
func samplerList(_ text: String) throws -> [SamplerMethod] {
    let methods = try commaItems(text, "--sampler") { item in
        guard let m = SamplerMethod(rawValue: item) else {
            throw ValidationError("--sampler: '\(item)' is not a sampler (euler, heun, euler-maruyama).")
        }
        return m
    }
    guard Set(methods).count == methods.count else { throw ValidationError("--sampler names a sampler twice: '\(text)'.") }
    return methods
}
