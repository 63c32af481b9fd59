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
        subcommands: [TrainTokenizer.self, Precompute.self, Train.self, Sample.self, Reconstruct.self, Eval.self,
                      TrainClassifier.self, Info.self, Convert.self, Init.self, Bench.self]
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

/// Runs a job; any error reaches the user as one sentence ("error: ...") and exit code 1.
func userFacing(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch {
        var text = "\(error)"
        if let e = error as? LocalizedError, let d = e.errorDescription { text = d }
        FileHandle.standardError.write(Data("error: \(text)\n".utf8))
        throw ExitCode.failure
    }
}
