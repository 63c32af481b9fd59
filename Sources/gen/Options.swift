// Options and helpers the commands share.

import ArgumentParser
import Foundation
import Sampler
import SiT
import Tensor

/// Options every compute-heavy command shares.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Threads for BLAS and the kernels (default: all cores).")
    var threads: Int?

    func apply() {
        if let threads { Threads.count = threads }
    }
}

/// The matmul precision of inference (`--precision`), applied to the engine.
struct PrecisionOptions: ParsableArguments {
    @Option(help: "Matmul precision: auto (bf16 where the CPU has AVX512-BF16 or AMX, else fp32), fp32 or bf16 (bf16 weights, fp32 accumulation and activations).")
    var precision: Precision = .auto

    /// Sets the engine's precision (bf16 is refused with one sentence where it cannot run) and
    /// prints the engine line (CPU, oneDNN ISA, precision, threads) that starts the output.
    func apply() throws {
        try Engine.setPrecision(precision)
        print(Engine.summary(requested: precision))
        fflush(stdout)
    }
}

extension Precision: ExpressibleByArgument {}
extension MatmulBackend: ExpressibleByArgument {}

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

extension SamplerMethod: ExpressibleByArgument {}
extension InterpolantPath: ExpressibleByArgument {}
extension TimeSampling: ExpressibleByArgument {}
