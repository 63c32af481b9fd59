// Options and helpers the commands share.

import ArgumentParser
import Cluster
import Formats
import Foundation
import Pipeline
import Sampler
import SiT
import Tensor

/// Options every compute-heavy command shares.
struct ComputeOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Threads for BLAS and the kernels (default: all cores).")
    var threads: Int?

    func validate() throws { try require(threads, "--threads", in: 1...256) }

    func apply() {
        if let threads { Threads.count = threads }
    }
}

/// `--precision`, shared by every command that runs a model. Inference commands apply it
/// before they load anything; training commands hand it to the run, which records it and keeps
/// a resumed run at its own precision.
struct PrecisionOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Matmul precision: auto (default: bf16 where the CPU has AVX512-BF16 or AMX, else fp32), fp32, or bf16 (bf16 products with fp32 accumulation; activations, LayerNorm, softmax statistics, sampler state and losses stay fp32; in training also fp32 master weights and AdamW state).",
                               discussion: "bf16 is refused on a CPU without bf16 hardware. A training run records its precision; --resume keeps it (a different one is refused)."))
    var precision: Precision?

    /// For inference commands: sets the engine's precision (nil: auto; bf16 refused with one
    /// sentence where it cannot run) and prints the engine line that starts the output.
    func apply() throws {
        let requested = precision ?? .auto
        try Engine.setPrecision(requested)
        print(Engine.summary(requested: requested))
        fflush(stdout)
    }

    /// For `gen bench training`: the same, with the engine line of training products.
    func applyForTraining() throws {
        let requested = precision ?? .auto
        try Engine.setPrecision(requested)
        print(Engine.summary(requested: requested, training: true))
        fflush(stdout)
    }
}

extension Precision: ExpressibleByArgument {}
extension MatmulBackend: ExpressibleByArgument {}

/// Runs a job; any error reaches the user as one sentence ("error: ...") and exit code 1. Under
/// mpirun, a rank other than 0 names itself and waits a moment first (`Cluster.beforeFailing`), so
/// an error all ranks meet is printed once; the failed process's exit makes mpirun end the job.
func userFacing(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch {
        Cluster.beforeFailing()
        FileHandle.standardError.write(Data("error: \(Cluster.rankPrefix)\(oneSentence(error))\n".utf8))
        throw ExitCode.failure
    }
}

extension SamplerMethod: ExpressibleByArgument {}
extension InterpolantPath: ExpressibleByArgument {}
extension TimeSampling: ExpressibleByArgument {}

// MARK: - Option ranges

/// Every numeric option is checked at parse time: one sentence naming the option and its range
/// (a usage error: exit status 2). Negative numbers reach these checks (`parsing: .unconditional`).
func require<T: Comparable>(_ value: T, _ option: String, in range: ClosedRange<T>) throws {
    guard range.contains(value) else {
        throw ValidationError("\(option) must be between \(range.lowerBound) and \(range.upperBound); got \(value).")
    }
}

func require<T: Comparable>(_ value: T?, _ option: String, in range: ClosedRange<T>) throws {
    if let value { try require(value, option, in: range) }
}

/// A comma-separated list of values of `option`, each within `range`.
func commaList<T: LosslessStringConvertible & Comparable>(_ text: String, _ option: String, in range: ClosedRange<T>) throws -> [T] {
    try commaItems(text, option) {
        guard let v = T($0) else { throw ValidationError("\(option): '\($0)' is not a number.") }
        try require(v, option, in: range)
        return v
    }
}

/// The items of a comma-separated option, each read by `parse`; empty items are refused.
func commaItems<T>(_ text: String, _ option: String, _ parse: (String) throws -> T) throws -> [T] {
    let items = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    guard !items.isEmpty, !items.contains(where: \.isEmpty) else {
        throw ValidationError("\(option) takes a comma-separated list of values; got '\(text)'.")
    }
    return try items.map(parse)
}

/// Limits shared by the commands.
enum Limits {
    static let steps = 1...1_000_000_000
    static let batch = 1...65_536
    static let every = 1...1_000_000_000
    static let width = 1...16_384
    static let depth = 1...256
    static let heads = 1...256
    static let images = 1...10_000_000
    static let learningRate: ClosedRange<Float> = 1e-12...10
    static let emaDecay: ClosedRange<Float> = 0...0.999_999_9
    static let adamEpsilon: ClosedRange<Float> = 1e-30...10
    static let samplerSteps = 1...100_000
    static let cfg: ClosedRange<Double> = -1000...1000
    static let unitInterval: ClosedRange<Double> = 0...1
}

/// A seed option: a number in 0...2^64-1, or `random` (drawn once and printed).
struct Seed: ExpressibleByArgument {
    let value: UInt64
    let isRandom: Bool

    init(_ value: UInt64) { self.value = value; isRandom = false }

    init?(argument: String) {
        if argument.lowercased() == "random" {
            var g = SystemRandomNumberGenerator()
            value = g.next()
            isRandom = true
        } else if let v = UInt64(argument) {
            value = v
            isRandom = false
        } else {
            return nil
        }
    }

    var defaultValueDescription: String { isRandom ? "random" : String(value) }
}

/// The checks of the options both training commands share.
func validateTrainingLoop(steps: Int?, batchSize: Int, lr: Float, warmup: Int, emaDecay: Float, saveEvery: Int,
                          logEvery: Int, stopAfter: Int?, resume: Bool, overwrite: Bool) throws {
    try require(steps, "--steps", in: Limits.steps)
    try require(batchSize, "--batch-size", in: Limits.batch)
    try require(lr, "--lr", in: Limits.learningRate)
    try require(warmup, "--warmup", in: 0...Limits.steps.upperBound)
    try require(emaDecay, "--ema", in: Limits.emaDecay)
    try require(saveEvery, "--save-every", in: Limits.every)
    try require(logEvery, "--log-every", in: Limits.every)
    try require(stopAfter, "--stop-after", in: Limits.steps)
    guard !(resume && overwrite) else { throw ValidationError("--resume and --overwrite exclude each other.") }
}

/// This invocation as a shell command line (`gen` and its arguments, quoted where needed).
func commandLine() -> String {
    (["gen"] + CommandLine.arguments.dropFirst()).map { arg in
        arg.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=,:@+".contains($0) }) && !arg.isEmpty ? arg : "'" + arg.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }.joined(separator: " ")
}
