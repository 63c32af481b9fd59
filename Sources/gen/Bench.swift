import ArgumentParser
import Cluster
import Foundation
import Pipeline
import Render
import Tensor
import Tokenizer

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput (kernels, SiT generation, training steps).",
        subcommands: [Kernels.self, Generation.self, Training.self, TokenizerThroughput.self, Allreduce.self]
    )

    struct Kernels: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "GFLOP/s of the matmul wrapper next to raw cblas_sgemm at the SiT-XL shapes, and GB/s of the row kernels.",
            discussion: "Example: gen bench kernels --repeats 30 --json kernels.json"
        )
        @OptionGroup var compute: ComputeOptions
        @Option(parsing: .unconditional, help: "Timed repetitions per variant (variants alternate).") var repeats = 20
        @Flag(help: "Tiny shapes, two repetitions: proves the command works (used by CI).") var smoke = false
        @Option(help: "Also write the rows as JSON to this path.") var json: String?

        func validate() throws { try require(repeats, "--repeats", in: 1...10_000) }

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

    struct Allreduce: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Time of the data-parallel gradient sum (MPI_Allreduce in buckets) over the ranks of an mpirun job.",
            discussion: "Example: mpirun -np 2 gen bench allreduce --megabytes 256")
        @Option(parsing: .unconditional, help: "Size of the summed float32 buffer.") var megabytes = 64
        @Option(parsing: .unconditional, help: "Timed repetitions.") var repeats = 5

        func validate() throws {
            try require(megabytes, "--megabytes", in: 1...65_536)
            try require(repeats, "--repeats", in: 1...10_000)
        }

        func run() throws {
            try userFacing {
                let m = try AllreduceBenchmark.run(megabytes: megabytes, repeats: repeats)
                guard Cluster.world.isRoot else { return }
                guard m.ranks > 1 else { print("One process: nothing to sum; run it under mpirun, e.g. mpirun -np 2 gen bench allreduce."); return }
                print(String(format: "allreduce of %d MiB over %d rank(s): median %.4f s (min %.4f s), bus bandwidth %.2f GB/s",
                             megabytes, m.ranks, m.secondsMedian, m.secondsMin, m.busGBps))
            }
        }
    }

    struct Generation: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "SiT-XL forward over 64 SoftVQ tokens against the 1024-token SD-VAE baseline (and 32 tokens, SiT-XL/2, 512 px), random weights of the released shapes.",
            discussion: "Variants are timed in interleaved rounds after a warm-up; medians with min..max. Writes <out>.md, <out>.json and <out>.png.\n\nExample: gen bench generation --repeats 3 --out bench/generation")
        @OptionGroup var compute: ComputeOptions
        @Option(parsing: .unconditional, help: "Interleaved timing rounds.") var repeats = 3
        @Option(parsing: .unconditional, help: "Sampler steps of the end-to-end guided image.") var steps = 25
        @Flag(name: .customLong("skip-512"), help: "Leave out the 4096-token (512 px) forward, which takes about a minute.") var skip512 = false
        @Flag(help: "Tiny model, proves the command works (used by CI).") var smoke = false
        @Option(help: "Only the variants over these token counts, comma-separated (64, 32, 1024, 256, 4096).") var tokens: String?
        @Flag(name: .customLong("no-end-to-end"), help: "Leave out the end-to-end guided image.") var noEndToEnd = false
        @Option(help: "Output path prefix for the .md, .json and .png files.") var out: String?

        func validate() throws { try require(repeats, "--repeats", in: 1...10_000) }

        func run() throws {
            compute.apply()
            try userFacing {
                var only: Set<Int>? = nil
                if let tokens {
                    let values = tokens.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                    guard values.allSatisfy({ $0 != nil }), !values.isEmpty else {
                        throw ValidationError("--tokens takes comma-separated token counts such as 64,1024; got \"\(tokens)\".")
                    }
                    only = Set(values.compactMap { $0 })
                }
                let report = try GenerationBenchmark.run(repeats: repeats, steps: steps, include512: !skip512, smoke: smoke,
                                                         tokens: only, endToEnd: !noEndToEnd)
                let md = report.markdown()
                print("")
                print(md)
                if let out {
                    let dir = (out as NSString).deletingLastPathComponent
                    if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
                    try atomicWrite(Data(md.utf8), to: out + ".md")
                    let enc = JSONEncoder()
                    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                    try atomicWrite(try enc.encode(report), to: out + ".json")
                    let rows = report.rows.filter { $0.note.isEmpty }
                    try BarChart(title: "SiT forward throughput (images per second)", yLabel: "images/s",
                                 labels: rows.map { "\($0.tokens)t b\($0.batch)" }, values: rows.map(\.imagesPerSecond))
                        .writePNG(path: out + ".png")
                    print("Wrote \(out).md, \(out).json, \(out).png")
                }
            }
        }
    }

    struct Training: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One SiT-B/1 training step (64 tokens, batch 16, AdamW) and one tokenizer training step.",
            discussion: "Example: gen bench training --repeats 3")
        @OptionGroup var compute: ComputeOptions
        @Option(parsing: .unconditional, help: "Timed repetitions.") var repeats = 3
        @Flag(help: "Tiny models, proves the command works (used by CI).") var smoke = false
        @Flag(name: .customLong("skip-tokenizer"), help: "Only the SiT-B/1 step.") var skipTokenizer = false
        @Flag(help: "SiT-XL/1 (batch 8, about 14 GB of memory) instead of SiT-B/1.") var xl = false

        func validate() throws { try require(repeats, "--repeats", in: 1...10_000) }

        func run() throws {
            compute.apply()
            try userFacing {
                let rows = try GenerationBenchmark.training(repeats: repeats, smoke: smoke, includeTokenizer: !skipTokenizer, xl: xl)
                print("| step | batch | s (median) | min..max | GFLOP/s |\n|---|---|---|---|---|")
                for r in rows {
                    print(String(format: "| %@ | %d | %.3f | %.3f..%.3f | %.1f |", r.name, r.batch, r.seconds.median, r.seconds.min, r.seconds.max, r.gflopPerSecond))
                }
            }
        }
    }

    struct TokenizerThroughput: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "tokenizer",
            abstract: "Encode and decode throughput of released tokenizer shapes (random weights, 256 px).",
            discussion: "Example: gen bench tokenizer --presets softvq-b-64,softvq-l-64 --batch 1")
        @OptionGroup var compute: ComputeOptions
        @Option(help: "Comma-separated tokenizer presets.") var presets = "softvq-b-64,softvq-l-64"
        @Option(parsing: .unconditional, help: "Images per call.") var batch = 1
        @Option(parsing: .unconditional, help: "Timed repetitions (the fastest is reported).") var repeats = 3
        @Flag(help: "A tiny tokenizer, proves the command works (used by CI).") var smoke = false

        func validate() throws { try require(repeats, "--repeats", in: 1...10_000) }

        func run() throws {
            compute.apply()
            try userFacing {
                print("| tokenizer | batch | encode s/img | decode s/img | encode img/s | decode img/s |\n|---|---|---|---|---|---|")
                for name in smoke ? ["fashion32-small"] : presets.split(separator: ",").map(String.init) {
                    let config = try TokenizerConfig.preset(name)
                    let r = try TokenizerBenchmark.encodeDecode(config: config, name: name, batch: batch, iterations: repeats)
                    let e = r.encodeSeconds / Double(batch), d = r.decodeSeconds / Double(batch)
                    print(String(format: "| %@ | %d | %.3f | %.3f | %.2f | %.2f |", name, batch, e, d, 1 / e, 1 / d))
                }
            }
        }
    }
}
