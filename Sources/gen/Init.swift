import ArgumentParser
import Formats
import Foundation
import Pipeline
import SiT
import Tensor
import Tokenizer

/// `gen init`: checkpoints of the released shapes with the official random initialization.
struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a randomly initialized checkpoint of a released shape (no download needed).",
        discussion: """
        For starting a full-size run, or for timing and measuring the memory of the real `gen sample` \
        path at full size before any weights exist (prefix the sample command with /usr/bin/time -v for \
        its peak memory; --size XL and --preset softvq-l-64 give the released SiT-XL and SoftVQ-L).

        Examples:
          gen init sit --size B --tokens 64 --channels 32 --out init/sit-b1-64
          gen init tokenizer --preset softvq-b-64 --out init/softvq-b-64
          gen sample --sit init/sit-b1-64 --tokenizer init/softvq-b-64 --classes golden_retriever --per-class 1 --cfg 1.5 --steps 25 -o init/sample
        """,
        subcommands: [SiTModel.self, TokenizerModel.self])

    struct SiTModel: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sit",
            abstract: "A SiT over 1-D SoftVQ tokens (patch 1) with the official initialization (adaLN-Zero: its velocity is 0 until trained).")
        @OptionGroup var compute: ComputeOptions
        @Option(help: "S, B, L or XL.") var size = "XL"
        @Option(parsing: .unconditional, help: "Latent tokens.") var tokens = 64
        @Option(parsing: .unconditional, help: "Latent channels (the tokenizer's codeword dimension).") var channels = 32
        @Option(parsing: .unconditional, help: "Classes (plus the null class of guidance).") var classes = 1000
        @OptionGroup var output: InitOutput

        func validate() throws {
            try require(tokens, "--tokens", in: 1...65_536)
            try require(channels, "--channels", in: 1...4096)
            try require(classes, "--classes", in: 1...1_000_000)
        }

        func run() throws {
            compute.apply()
            try userFacing {
                guard let s = SiTSize(rawValue: size.uppercased()) else {
                    throw PipelineError.invalidArgument("Unknown SiT size '\(size)'; use S, B, L or XL.")
                }
                try output.refuseExisting()
                let config = SiTConfig.preset(s, patch: 1, inputSize: tokens, inChannels: channels, numClasses: classes, vae1D: true)
                var rng = RandomGenerator(seed: output.seed)
                let model = try SiT(config: config, rng: &rng)
                try model.save(folder: output.out)
                print("Wrote \(output.out): SiT-\(s.rawValue)/1 over \(tokens) tokens x \(channels) channels, \(model.parameterCount) parameters.")
            }
        }
    }

    struct TokenizerModel: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "tokenizer",
            abstract: "A SoftVQ-VAE tokenizer preset with random initialization.")
        @OptionGroup var compute: ComputeOptions
        @Option(help: "Tokenizer preset (softvq-l-64, softvq-b-64, fashion32, ...).") var preset = "softvq-l-64"
        @OptionGroup var output: InitOutput

        func run() throws {
            compute.apply()
            try userFacing {
                try output.refuseExisting()
                let config = try TokenizerConfig.preset(preset)
                let model = try SoftVQModel(config: config, initialization: .random(seed: output.seed))
                try model.save(folder: output.out)
                print("Wrote \(output.out): \(preset), \(model.parameterCount) parameters.")
            }
        }
    }
}

/// Seed and destination, shared by the init subcommands.
struct InitOutput: ParsableArguments {
    @Option(parsing: .unconditional, help: "Seed of the initialization.") var seed: UInt64 = 0
    @Option(name: [.customShort("o"), .customLong("out")], help: "Destination folder (config.json + model.safetensors).") var out: String
    @Flag(help: "Replace an existing checkpoint in --out.") var overwrite = false

    func refuseExisting() throws {
        let weights = (out as NSString).appendingPathComponent("model.safetensors")
        if FileManager.default.fileExists(atPath: weights) && !overwrite {
            throw PipelineError.invalidArgument("\(weights) already exists; pass --overwrite to replace it.")
        }
    }
}
