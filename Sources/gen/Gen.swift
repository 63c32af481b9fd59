// gen: the command-line interface. Each command is a thin layer over Pipeline / Sampler, one
// command per file named after it; shared options and helpers are in Options.swift.

import ArgumentParser

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
        subcommands: [TrainTokenizer.self, Precompute.self, Train.self, Sample.self, Reconstruct.self, Eval.self,
                      TrainClassifier.self, Info.self, Convert.self, Init.self, Bench.self]
    )
}
