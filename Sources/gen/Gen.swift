// gen: the command-line interface. Each command is a thin layer over Pipeline / Sampler.

import ArgumentParser
import Foundation
import Pipeline
import Tensor

@main
struct Gen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gen",
        abstract: "SoftVQ-VAE latent diffusion in Swift: tokenize images, train SiT, sample, benchmark.",
        discussion: """
        Typical flow on the embedded default (Fashion-MNIST):
          gen train-tokenizer --out runs/tok
          gen precompute --tokenizer runs/tok --out runs/latents.h5
          gen train --cache runs/latents.h5 --tokenizer runs/tok --out runs/sit
          gen sample --sit runs/sit --tokenizer runs/tok --out runs/samples
        """,
        subcommands: [Bench.self]
    )
}

/// Options every compute-heavy command shares.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Threads for BLAS and the kernels (default: all cores).")
    var threads: Int?

    func apply() {
        if let threads { Threads.count = threads }
    }
}

/// One clear sentence on stderr and a non-zero exit, for errors the user can act on.
struct UserError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}
