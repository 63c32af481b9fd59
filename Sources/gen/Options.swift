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
