import ArgumentParser
import Foundation
import Pipeline

struct Precompute: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode a dataset into an HDF5 latent cache (latents and mirrored latents); resumable.",
        discussion: """
        Rerun the same command after an interruption (even kill -9) to finish the cache; the file appears under its final name only when complete.

        Example: gen precompute --tokenizer runs/tok --dataset fashion-mnist:test --out runs/test-latents.h5
        """)

    @OptionGroup var compute: ComputeOptions
    @OptionGroup var precision: PrecisionOptions
    @Option(help: "Tokenizer checkpoint folder (config.json + model.safetensors).") var tokenizer: String
    @Option(help: "fashion-mnist, fashion-mnist:test, or an image folder root/<class>/<image>.") var dataset = "fashion-mnist"
    @Option(name: [.customShort("o"), .customLong("out")], help: "Output .h5 file.") var out: String
    @Option(name: [.customShort("b"), .customLong("batch-size")], parsing: .unconditional, help: "Images per batch.") var batchSize = 64
    @Option(parsing: .unconditional, help: "Encode a class-balanced subset of N images.") var limit: Int?
    @Option(parsing: .unconditional, help: "Compress with shuffle + deflate at this level (1-9).") var deflate: Int?
    @Flag(help: "Stop at the first unreadable image instead of skipping it.") var strict = false
    @Flag(help: "Replace an existing cache.") var overwrite = false

    func validate() throws {
        try require(batchSize, "--batch-size", in: 1...4096)
        try require(limit, "--limit", in: Limits.images)
        try require(deflate, "--deflate", in: 1...9)
    }

    func run() throws {
        compute.apply()
        var o = PrecomputeOptions(tokenizer: checkpointFolder(tokenizer), dataset: dataset, out: out)
        o.batchSize = batchSize; o.limit = limit; o.strict = strict; o.overwrite = overwrite; o.deflate = deflate
        try userFacing {
            try precision.apply()
            try PrecomputeJob.run(o)
        }
    }
}
