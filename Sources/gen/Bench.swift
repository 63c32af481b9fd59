import ArgumentParser
import Foundation
import Pipeline
import Tensor

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput (kernels, SiT generation, training steps).",
        subcommands: [Kernels.self]
    )

    struct Kernels: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "GFLOP/s of the matmul wrapper next to raw cblas_sgemm at the SiT-XL shapes, and GB/s of the row kernels.",
            discussion: "Example: gen bench kernels --repeats 30 --json kernels.json"
        )
        @OptionGroup var compute: ComputeOptions
        @Option(help: "Timed repetitions per variant (variants alternate).") var repeats = 20
        @Flag(help: "Tiny shapes, two repetitions: proves the command works (used by CI).") var smoke = false
        @Option(help: "Also write the rows as JSON to this path.") var json: String?

        func run() throws {
            compute.apply()
            print("Threads: \(Threads.count)")
            let rows = KernelBenchmark.run(repeats: repeats, quick: smoke)
            print(KernelBenchmark.table(rows))
            if let json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                try atomicWrite(enc.encode(rows), to: json)
                print("Wrote \(json)")
            }
        }
    }
}
