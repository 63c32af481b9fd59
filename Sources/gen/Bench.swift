import ArgumentParser
import Formats
import Cluster
import Foundation
import Pipeline
import Render
import Tensor
import Tokenizer

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput (kernels, SiT generation, training steps).",
        subcommands: [Kernels.self, Attention.self, Generation.self, Training.self, TokenizerThroughput.self, Allreduce.self]
    )

    struct Kernels: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "GFLOP/s of the matmul wrapper next to raw cblas_sgemm at the SiT-XL shapes, and GB/s of the row kernels.",
            discussion: "Example: gen bench kernels --repeats 30 --json kernels.json"
        )
        @OptionGroup var compute: ComputeOptions
        @OptionGroup var precision: PrecisionOptions
        @Option(parsing: .unconditional, help: "Timed repetitions per variant (variants alternate).") var repeats = 20
        @Flag(help: "Tiny shapes, two repetitions: proves the command works (used by CI).") var smoke = false
        @Option(help: "Also write the rows as JSON to this path.") var json: String?
        @Option(help: "Products to time instead of the SiT-XL shapes, comma-separated MxKxN (x (M, K) times W^T, W (N, K)), e.g. 1x1152x6912,4x1152x6912.")
        var shapes: String?

        func validate() throws { try require(repeats, "--repeats", in: 1...10_000) }

        func run() throws {
            compute.apply()
            var products: [(Int, Int, Int)]? = nil
            try userFacing {
                if let shapes {
                    products = try shapes.split(separator: ",").map { item in
                        let d = item.split(separator: "x").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
                        guard d.count == 3, d.allSatisfy({ $0 > 0 }) else {
                            throw ValidationError("--shapes takes comma-separated MxKxN products such as 4x1152x6912; got \"\(item)\".")
                        }
                        return (d[0], d[1], d[2])
                    }
                }
                try precision.apply()
                for (m, k, n) in smoke ? [(8, 64, 96)] : [(64, 1152, 4608), (512, 1152, 4608), (8, 1152, 6912)] {
                    if let impl = Engine.implementation(m: m, k: k, n: n, precision: Engine.precision) {
                        print("oneDNN \(Engine.precision.rawValue) matmul \(m)x\(k) . \(k)x\(n): \(impl)")
                    }
                }
            }
            let rows = KernelBenchmark.run(repeats: repeats, quick: smoke, precision: Engine.precision, shapes: products)
            print(KernelBenchmark.table(rows))
            if let json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                try atomicWrite(enc.encode(rows), to: json)
                print("Wrote \(json)")
            }
        }
    }

    struct Attention: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The whole-matrix attention kernel against the blocked (flash-style) one at the SiT-XL head shape (16 x 72), forward and forward+backward.",
            discussion: "Variants are timed in interleaved rounds; the last column is the blocked kernel's speed-up. Sets nothing: the engine's switch-over (blocked from N tokens) is a constant chosen from this measurement.\n\nExample: gen bench attention --tokens 64,256,1024,4096 --repeats 5")
        @OptionGroup var compute: ComputeOptions
        @Option(help: "Comma-separated token counts.") var tokens = "64,256,1024,4096"
        @Option(parsing: .unconditional, help: "Images per call.") var batch = 1
        @Option(parsing: .unconditional, help: "Interleaved timing rounds.") var repeats = 5
        @Option(name: .customLong("backward-up-to"), parsing: .unconditional, help: "Time forward+backward only up to this many tokens.") var backwardUpTo = 1024
        @Flag(help: "Tiny sizes, two rounds: proves the command works (used by CI).") var smoke = false
        @Option(help: "Also write the rows as JSON to this path.") var json: String?

        func validate() throws {
            try require(repeats, "--repeats", in: 1...10_000)
            try require(batch, "--batch", in: 1...1024)
            try require(backwardUpTo, "--backward-up-to", in: 0...1_000_000)
        }

        func run() throws {
            compute.apply()
            try userFacing {
                let counts = try commaList(tokens, "--tokens", in: 1...65_536)
                print("Attention: \(Threads.count) threads, \(Engine.cpuName)")
                let rows = smoke ? AttentionBenchmark.run(tokens: [5, 70], heads: 2, headDim: 8, repeats: 2)
                    : AttentionBenchmark.run(tokens: counts, batch: batch, repeats: repeats, backwardUpTo: backwardUpTo)
                print(smoke ? AttentionBenchmark.table(rows, heads: 2, headDim: 8) : AttentionBenchmark.table(rows))
                if let json {
                    let enc = JSONEncoder()
                    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                    try atomicWrite(try enc.encode(rows), to: json)
                }
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
        @Option(name: [.customLong("num-steps"), .customLong("steps")], parsing: .unconditional, help: "Sampler steps of the end-to-end guided image.") var steps = 25
        @Flag(name: .customLong("skip-512"), help: "Leave out the 4096-token (512 px) forward, which takes about a minute.") var skip512 = false
        @Flag(help: "Tiny model, proves the command works (used by CI).") var smoke = false
        @Option(help: "Only the variants over these token counts, comma-separated (64, 32, 1024, 256, 4096).") var tokens: String?
        @Flag(name: .customLong("no-end-to-end"), help: "Leave out the end-to-end guided image.") var noEndToEnd = false
        @Option(name: [.customShort("o"), .customLong("out")], help: "Output path prefix for the .md, .json and .png files.") var out: String?
        @Option(help: "JSON rows of a reference run to draw and tabulate beside ours (bench/pytorch_reference.py --json).") var compare: String?
        @OptionGroup var precision: PrecisionOptions
        @Option(help: "Matmul backends of the Linear layers, comma-separated (onednn, openblas); with several, each case runs once per backend in every round and the report gives their ratios.")
        var engine: String = "onednn"

        func validate() throws { try require(repeats, "--repeats", in: 1...10_000) }

        func run() throws {
            compute.apply()
            try userFacing {
                try precision.apply()
                var engines: [MatmulBackend] = []
                for name in engine.split(separator: ",") {
                    guard let e = MatmulBackend(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                        throw ValidationError("--engine takes onednn, openblas or both comma-separated; got \"\(engine)\".")
                    }
                    engines.append(e)
                }
                if engines.contains(.onednn) && Engine.backend == .openblas && Engine.implementation(m: 1, k: 8, n: 8) == nil {
                    throw ValidationError("--engine onednn: oneDNN failed to initialize on this machine.")
                }
                if Engine.precision == .bf16 && engines.contains(.openblas) {
                    throw ValidationError("--engine openblas runs fp32 only; use --precision fp32 to compare it with oneDNN.")
                }
                var only: Set<Int>? = nil
                if let tokens { only = Set(try commaList(tokens, "--tokens", in: 1...65_536)) }
                let reference = try compare.map(ReferenceRow.read)
                let report = try GenerationBenchmark.run(repeats: repeats, steps: steps, include512: !skip512, smoke: smoke,
                                                         tokens: only, endToEnd: !noEndToEnd, engines: engines)
                var md = report.markdown()
                if let reference { md += "\n" + Self.comparisonTable(report, reference) }
                print("")
                print(md)
                if let out {
                    let dir = (out as NSString).deletingLastPathComponent
                    if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
                    try atomicWrite(Data(md.utf8), to: out + ".md")
                    let enc = JSONEncoder()
                    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
                    try atomicWrite(try enc.encode(report), to: out + ".json")
                    try Self.chart(report, reference: reference).writePNG(path: out + ".png")
                    print("Wrote \(out).md, \(out).json, \(out).png")
                }
            }
        }
    }

    /// A row of a reference run (bench/pytorch_reference.py --json).
    struct ReferenceRow: Decodable {
        var name: String
        var tokens: Int
        var batch: Int
        var seconds: Double

        static func read(_ path: String) throws -> [ReferenceRow] {
            guard let data = FileManager.default.contents(atPath: path) else { throw PipelineError.missingFile(path) }
            do { return try JSONDecoder().decode([ReferenceRow].self, from: data) } catch {
                throw PipelineError.corruptFile(path: path, reason: "it is not a JSON array of {name, tokens, batch, seconds} rows")
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
        @OptionGroup var precision: PrecisionOptions
        @Flag(help: "SiT-XL/1 (batch 8, about 14 GB of memory) instead of SiT-B/1.") var xl = false

        func validate() throws { try require(repeats, "--repeats", in: 1...10_000) }

        func run() throws {
            compute.apply()
            try userFacing {
                try precision.applyForTraining()
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
            discussion: "Example: gen bench tokenizer --presets softvq-b-64,softvq-l-64 --batch-size 1")
        @OptionGroup var compute: ComputeOptions
        @Option(help: "Comma-separated tokenizer presets.") var presets = "softvq-b-64,softvq-l-64"
        @Option(name: [.customShort("b"), .customLong("batch-size"), .customLong("batch")], parsing: .unconditional, help: "Images per call.") var batch = 1
        @Option(parsing: .unconditional, help: "Timed repetitions (the fastest is reported).") var repeats = 3
        @Flag(help: "A tiny tokenizer, proves the command works (used by CI).") var smoke = false
        @OptionGroup var precision: PrecisionOptions

        func validate() throws { try require(repeats, "--repeats", in: 1...10_000) }

        func run() throws {
            compute.apply()
            try userFacing {
                try precision.apply()
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

extension Bench.Generation {
    /// The forward rows of our run (one engine: the first) as "64 tokens / batch 1" groups,
    /// with the reference's bar beside ours where it measured the same case.
    static func chart(_ report: GenerationBenchReport, reference: [Bench.ReferenceRow]?) -> BarChart {
        let first = report.rows.first?.engine ?? ""
        let rows = report.rows.filter { $0.note.isEmpty && $0.engine == first }
        let labels = rows.map { "\($0.tokens) tokens\nbatch \($0.batch)" }
        var series = [BarChart.Series(name: "this project" + (first.isEmpty ? "" : " (\(first))"), values: rows.map(\.imagesPerSecond))]
        if let reference, let name = reference.first?.name {
            series.append(.init(name: name, values: rows.map { r in
                reference.first { $0.tokens == r.tokens && $0.batch == r.batch }.map { Double($0.batch) / $0.seconds } ?? .nan
            }))
        }
        return BarChart(title: "SiT forward throughput (images per second, higher is better)", yLabel: "images/s",
                        labels: labels, series: series, width: max(640, 90 * labels.count + 200))
    }

    static func comparisonTable(_ report: GenerationBenchReport, _ reference: [Bench.ReferenceRow]) -> String {
        var t = "| case | ours s/forward | \(reference.first?.name ?? "reference") s/forward | speed-up |\n|---|---|---|---|\n"
        for r in report.rows where r.note.isEmpty {
            guard let ref = reference.first(where: { $0.tokens == r.tokens && $0.batch == r.batch }) else { continue }
            t += String(format: "| %@ batch %d%@ | %.4f | %.4f | %.2fx |\n", r.name, r.batch, r.engine.isEmpty ? "" : " (\(r.engine))",
                        r.seconds.median, ref.seconds, ref.seconds / r.seconds.median)
        }
        return t
    }
}
