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
        subcommands: [TrainTokenizer.self, Ablate.self, Precompute.self, Train.self, Sample.self, Reconstruct.self, Eval.self,
                      TrainClassifier.self, Info.self, PlotRuns.self, Convert.self, Export.self, Init.self, Bench.self]
    )

    /// Exit status: 0 success, 1 a failed job (one sentence from `userFacing`), 2 a usage error
    /// (unknown option, value out of range: ArgumentParser's message and the usage line).
    static func main() {
        OpenMPWaitPolicy.applyBeforeStart()
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

/// oneDNN runs on GNU OpenMP, whose threads by default busy-wait (300,000 spins) after every
/// parallel region. On the shared 2-core machines the spinning thread takes a core from the
/// Dispatch and OpenBLAS threads of the next kernel and from other processes; measured on the
/// AMD EPYC under load (a oneDNN product, one more parallel region, then serial work): 24 us per
/// iteration without a gap, but 307 us with a 200 us gap and 4.65 ms with a 2 ms gap under the
/// default, against 24 / 28 / 37 us with passive waiting (intermediate GOMP_SPINCOUNT values
/// were worse still: 0.6-2.4 ms). libgomp reads its policy from the environment when it loads,
/// before main, so gen re-executes itself once with OMP_WAIT_POLICY=PASSIVE unless
/// OMP_WAIT_POLICY or GOMP_SPINCOUNT is set already.
enum OpenMPWaitPolicy {
    static func applyBeforeStart() {
        let env = ProcessInfo.processInfo.environment
        guard env["OMP_WAIT_POLICY"] == nil, env["GOMP_SPINCOUNT"] == nil else { return }
        setenv("OMP_WAIT_POLICY", "PASSIVE", 1)
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // exec failed (no /proc): carry on with libgomp's default.
    }
}
