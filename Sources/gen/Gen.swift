// gen: the command-line interface. Each command is a thin layer over Pipeline / Sampler, one
// command per file named after it; shared options and helpers are in Options.swift.

import ArgumentParser
import Cluster
import Foundation

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
                      TrainClassifier.self, Info.self, PlotRuns.self, Convert.self, Init.self, Bench.self]
    )

    /// Exit status: 0 success, 1 a failed job (one sentence from `userFacing`), 2 a usage error
    /// (unknown option, value out of range: ArgumentParser's message and the usage line).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
            Cluster.finalize()   // MPI_Finalize when mpirun started the process (a no-op otherwise)
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure || (code != .success && code != .failure && !(error is ExitCode)) {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}
