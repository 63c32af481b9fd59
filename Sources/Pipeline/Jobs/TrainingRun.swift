// One training driver for every model the project trains (SiT, the tokenizer): the rules for an
// existing run folder (refuse, --resume, --overwrite), restoring a checkpoint with a typed
// state, the step loop with its progress bar, windowed logging to log.jsonl, the checkpoint
// cadence, --stop-after, and the loss plot. What differs between models is a `TrainingTask`.
//
// Kill -9 safety: a checkpoint is written into checkpoint.tmp and swapped in by renames
// (RunFolder); the log is truncated back to the checkpoint's step on resume; every random draw
// of a task follows from its saved state, so a resumed run reaches the same weights.
//
// Many processes (mpirun): rank 0 alone reads and writes the run folder (the checks of an
// existing run, the checkpoint, the log and the plot) and sends the options and, on resume, the
// saved step and progress to the others; then all training state (weights, EMA, optimizer
// moments) is broadcast from rank 0, so every rank starts from the same tensors whatever the
// number of ranks that wrote the checkpoint. Each step, every rank trains on its slice of the
// global batch (`--batch-size`) and the gradients are summed (DataParallel); the weights are
// compared by checksum at every checkpoint.

import Cluster
import Foundation
import Formats
import Render
import Tensor

/// Options of a training job, as saved in its state.json.
public protocol TrainingOptions: Codable, Equatable {
    init()
    var steps: Int { get set }
    var batchSize: Int { get }
    var saveEvery: Int { get }
    var logEvery: Int { get }
    /// Decay of the EMA weights that checkpoints hold.
    var emaDecay: Float { get }
}

/// What one step reports: values averaged over the log window, the latest values of others,
/// and the progress-bar fields.
public struct StepReport {
    public var averaged: [String: Double]
    public var latest: [String: Double]
    public var bar: [(String, String)]
    /// The step's total loss (checked for NaN by the driver, printed at the end).
    public var loss: Float

    public init(loss: Float, averaged: [String: Double] = [:], latest: [String: Double] = [:], bar: [(String, String)] = []) {
        self.loss = loss
        self.averaged = averaged
        self.latest = latest
        self.bar = bar
    }
}

/// The model-specific part of a training job.
public protocol TrainingTask: AnyObject {
    associatedtype Options: TrainingOptions
    /// What besides the step makes a resume exact (generator state, data position).
    associatedtype Progress: Codable

    /// Names used in state.json, the progress bar, the log and the plot.
    static var info: TrainingTaskInfo { get }

    /// Builds the task for these options (a fresh model; a resumed one is restored next).
    init(options: Options) throws

    /// The options of a resumed run: the saved ones, with what the user may change on resume
    /// taken from `given` (the step target by default). Throws for a change that is refused.
    static func resumedOptions(given: Options, saved: Options, out: String) throws -> Options

    var options: Options { get }
    /// Steps done so far.
    var step: Int { get }
    /// The line printed before training starts.
    func summary(from start: Int) -> String
    /// One optimisation step (the `step`-th, 0-based) on this rank's share of the global batch,
    /// gradients and reported statistics summed over the ranks by `parallel`.
    func trainStep(_ step: Int, parallel: DataParallel) throws -> StepReport
    /// Extra fields of a log record (e.g. PSNR of the windowed error, the epoch).
    func decorate(_ record: inout [String: Any])
    /// Writes the model files of a checkpoint into `folder` (state.json is the driver's).
    func writeCheckpoint(into folder: String) throws
    var progress: Progress { get }
    /// Restores a checkpoint written by `writeCheckpoint` at `step` with its progress.
    func restore(from folder: String, step: Int, progress: Progress) throws
    /// Every tensor of the training state (weights and buffers, EMA, optimizer moments), in a
    /// fixed order: what rank 0 sends the other ranks at the start.
    var stateTensors: [Tensor] { get }
    /// The tensors every rank must hold identically after each step (the trained weights).
    var replicatedTensors: [Tensor] { get }
    /// Takes over the counters of a resumed run whose tensors arrive by broadcast (ranks > 0).
    func adopt(step: Int, progress: Progress) throws
    /// Sends rank 0's training state that is not a tensor to the other ranks, after the tensors
    /// (default: there is none).
    func broadcastState(_ parallel: DataParallel) throws
}

/// The names a task's run uses.
public struct TrainingTaskInfo: Sendable {
    /// "sit" or "tokenizer": recorded in state.json, checked on resume.
    public var kind: String
    /// Progress-bar label.
    public var label: String
    /// Plot title and the log field the plot draws.
    public var plotTitle: String
    public var plotField: String
    /// The name of the throughput field of the log (items per second).
    public var throughputField: String

    public init(kind: String, label: String, plotTitle: String, plotField: String, throughputField: String) {
        (self.kind, self.label, self.plotTitle, self.plotField, self.throughputField) = (kind, label, plotTitle, plotField, throughputField)
    }
}

extension TrainingTask {
    /// Opens (or resumes) the run in `out` and returns it, ready to `run`.
    public static func open(options: Options, out: String, resume: Bool, overwrite: Bool, precision: Precision? = nil,
                            log: @escaping (String) -> Void = { print($0) }) throws -> TrainingRun<Self> {
        try TrainingRun(out: out, options: options, resume: resume, overwrite: overwrite, precision: precision, log: log) { try Self(options: $0) }
    }

    public static func resumedOptions(given: Options, saved: Options, out: String) throws -> Options {
        var options = saved
        options.steps = resumedSteps(given: given.steps, saved: saved.steps)
        return options
    }

    /// The target of a resumed run: `--steps` when given (longer or shorter: the cosine schedule
    /// is laid over the new total from here on; at or below the step reached the run is done),
    /// else the run's own.
    public static func resumedSteps(given: Int, saved: Int) -> Int { given > 0 ? given : saved }

    public func decorate(_ record: inout [String: Any]) {}

    public func broadcastState(_ parallel: DataParallel) throws {}
}

/// state.json of a checkpoint: kind, step, options and the matmul precision of the run, with
/// the task's progress fields beside them in the same JSON object.
public struct TrainingState<Options: Codable, Progress: Codable>: Codable {
    public var kind: String
    public var step: Int
    public var options: Options
    /// fp32 or bf16 (never auto); nil in runs made before precision was recorded (they are fp32).
    public var precision: Precision?
    public var progress: Progress
    /// The command lines that trained the run, oldest first (empty in older runs).
    public var commands: [String] = []

    enum CodingKeys: String, CodingKey { case kind, step, options, precision, commands }

    public init(kind: String, step: Int, options: Options, precision: Precision?, progress: Progress, commands: [String] = []) {
        self.kind = kind
        self.step = step
        self.options = options
        self.precision = precision
        self.progress = progress
        self.commands = commands
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kind = try c.decode(String.self, forKey: .kind)
        step = try c.decode(Int.self, forKey: .step)
        options = try c.decode(Options.self, forKey: .options)
        commands = try c.decodeIfPresent([String].self, forKey: .commands) ?? []
        precision = try c.decodeIfPresent(Precision.self, forKey: .precision)
        progress = try Progress(from: decoder)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind, forKey: .kind)
        try c.encode(step, forKey: .step)
        try c.encode(options, forKey: .options)
        try c.encodeIfPresent(precision, forKey: .precision)
        if !commands.isEmpty { try c.encode(commands, forKey: .commands) }
        try progress.encode(to: encoder)
    }

    public static func read(_ path: String) throws -> TrainingState {
        guard let data = FileManager.default.contents(atPath: path) else { throw CheckpointError.io(path, "cannot read") }
        do { return try JSONDecoder().decode(TrainingState.self, from: data) } catch {
            throw CheckpointError.io(path, "not a training state of this kind (\(error))")
        }
    }

    public func write(_ path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try atomicWrite(try enc.encode(self), to: path)
    }
}

/// A training job: a run folder and the task that trains in it.
public final class TrainingRun<Task: TrainingTask> {
    public let folder: RunFolder
    public let task: Task
    /// The matmul precision the run trains in (fp32 or bf16), recorded in every state.json.
    public let precision: Precision
    /// The processes training together (one without mpirun).
    public let world: Distributed
    let log: (String) -> Void
    /// The command line of this invocation, recorded in state.json and the model card.
    public var command: String?
    private var earlierCommands: [String] = []

    /// Opens the run in `out`. An existing run is refused unless `resume` (continue it with its
    /// own options; see `Task.resumedOptions`) or `overwrite` (start over). `make` builds the
    /// task from the options in force; a resumed task is then restored from its checkpoint.
    /// `precision` (nil: auto for a new run, the recorded one on resume) is resolved and set on
    /// the engine; a resumed run refuses one that differs from its own. The first line logged
    /// names the engine, the precision and why.
    public init(out: String, options given: Task.Options, resume: Bool, overwrite: Bool, precision requested: Precision? = nil,
                log: @escaping (String) -> Void = { print($0) }, world: Distributed = Cluster.world,
                make: (Task.Options) throws -> Task) throws {
        self.world = world
        self.log = world.isRoot ? log : { _ in }
        folder = RunFolder(out)
        // Rank 0 decides (its file system holds the run); the others take its decision.
        typealias Saved = TrainingState<Task.Options, Task.Progress>
        var decision: (options: Task.Options, saved: Saved?) = (given, nil)
        if world.isRoot { decision = try Self.decide(folder: folder, out: out, given: given, resume: resume, overwrite: overwrite) }
        if world.size > 1 {
            let bytes = try world.broadcast(bytes: world.isRoot ? Array(try JSONEncoder().encode(Decision(options: decision.options, saved: decision.saved))) : [])
            let d = try JSONDecoder().decode(Decision<Task.Options, Task.Progress>.self, from: Data(bytes))
            decision = (d.options, d.saved)
        }
        let (options, saved) = decision
        precision = try TrainingRun.resolvePrecision(requested, saved: saved.map { $0.precision ?? .fp32 }, out: out)
        try Engine.setPrecision(precision)
        self.log(Engine.summary(requested: requested ?? .auto, reason: saved == nil ? nil : requested == nil ? .recorded : .requested, training: true))
        task = try make(options)
        let parallel = DataParallel(world: world)
        if world.isRoot {
            try folder.create()
            // A new run (fresh or --overwrite) replaces nothing until its first checkpoint exists.
            if saved == nil { folder.startNewRun() }
            if let saved, let existing = folder.latestCheckpoint {
                try task.restore(from: existing, step: saved.step, progress: saved.progress)
                earlierCommands = saved.commands
                folder.truncateLog(after: saved.step)
                self.log("Resuming \(folder.root) at step \(saved.step) of \(options.steps)\(world.size > 1 ? " on \(world.size) ranks" : "").")
            }
        } else if let saved {
            try task.adopt(step: saved.step, progress: saved.progress)
        }
        try parallel.broadcast(task.stateTensors)
        if parallel.isParallel { try task.broadcastState(parallel) }
        try parallel.verifyIdentical(task.replicatedTensors, what: "weights at the start")
    }

    /// What rank 0 sends the others: the options in force and the resumed state.
    struct Decision<O: Codable, P: Codable>: Codable {
        var options: O
        var saved: TrainingState<O, P>?
    }

    /// The rules for an existing run folder: the options in force and the state to resume.
    static func decide(folder: RunFolder, out: String, given: Task.Options, resume: Bool, overwrite: Bool) throws
        -> (options: Task.Options, saved: TrainingState<Task.Options, Task.Progress>?) {
        guard !(resume && overwrite) else {
            throw PipelineError.invalidArgument("--resume and --overwrite exclude each other: --resume continues the run in \(out), --overwrite starts a new one there.")
        }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder.root, isDirectory: &isDir), !isDir.boolValue {
            throw PipelineError.invalidArgument("\(out) is a file; the output of a training run is a folder.")
        }
        var options = given
        var saved: TrainingState<Task.Options, Task.Progress>? = nil
        if let existing = folder.latestCheckpoint {
            guard resume || overwrite else {
                throw PipelineError.invalidArgument("\(out) already holds a training run; pass --resume to continue it or --overwrite to start over.")
            }
            if resume {
                let state = try TrainingState<Task.Options, Task.Progress>.read(try trainingFiles(of: existing) + "/state.json")
                guard state.kind == Task.info.kind else {
                    throw PipelineError.invalidArgument("\(out) holds a \(state.kind) run, not a \(Task.info.kind) run.")
                }
                options = try Task.resumedOptions(given: given, saved: state.options, out: out)
                saved = state
            }
        } else if resume {
            let contents = ((try? FileManager.default.contentsOfDirectory(atPath: folder.root)) ?? []).sorted()
            let what = !isDir.boolValue ? "it does not exist"
                : contents.isEmpty ? "it is empty" : "it holds \(contents.prefix(5).joined(separator: ", "))\(contents.count > 5 ? ", ..." : "")"
            throw PipelineError.invalidArgument("Nothing to resume: \(out) has no checkpoint (\(what)); leave out --resume to start a new run.")
        }
        if options.steps <= 0 { options.steps = Task.Options().steps }   // a fresh run given no target
        return (options, saved)
    }

    public var options: Task.Options { task.options }

    /// The precision a run trains in: a new run resolves `requested` (nil: auto); a resumed one
    /// keeps its recorded precision and refuses a request that resolves to another here.
    static func resolvePrecision(_ requested: Precision?, saved: Precision?, out: String) throws -> Precision {
        guard let saved else { return try Engine.resolve(requested ?? .auto) }
        guard let requested else {
            if saved == .bf16 && !Engine.bf16Available {
                throw PipelineError.invalidArgument("The run in \(out) trains in bf16 (recorded in its state.json), and this \(Engine.cpuName) has no AVX512-BF16 or AMX; resume it on a CPU with bf16 hardware.")
            }
            return saved
        }
        let resolved = try Engine.resolve(requested)
        guard resolved == saved else {
            throw PipelineError.invalidArgument("The run in \(out) trains in \(saved.rawValue), not \(resolved.rawValue)\(requested == .auto ? " (what auto picks on this CPU)" : ""); leave out --precision to resume it in \(saved.rawValue).")
        }
        return saved
    }

    /// Writes a checkpoint (model files and state.json) atomically, then redraws the loss plot;
    /// with several ranks, first checks that they hold the same weights, and only rank 0 writes.
    public func saveCheckpoint() throws {
        try DataParallel(world: world).verifyIdentical(task.replicatedTensors, what: "weights at step \(task.step)")
        guard world.isRoot else { return }
        let commands = earlierCommands + (command.map { [$0] } ?? [])
        let state = TrainingState(kind: Task.info.kind, step: task.step, options: task.options, precision: precision,
                                  progress: task.progress, commands: commands)
        let name = (folder.root as NSString).lastPathComponent
        try folder.saveCheckpoint { dir in
            try task.writeCheckpoint(into: dir)
            try state.write(try trainingFiles(of: dir, creating: true) + "/state.json")
            if let card = try ModelCard.read(checkpoint: dir, name: name, logPath: folder.activeLogPath) {
                try atomicWrite(Data(card.markdown.utf8), to: dir + "/README.md")
            }
        }
        try? folder.plotLoss(title: Task.info.plotTitle, field: Task.info.plotField)
    }

    /// Trains until `options.steps`, checkpointing every `saveEvery` steps and at the end;
    /// `stopAfter` ends this invocation early with a checkpoint (the run stays resumable).
    public func run(stopAfter: Int? = nil) throws {
        let total = options.steps
        let start = task.step
        guard start < total else {
            log("Already trained for \(start) steps (target \(total)).")
            return
        }
        let parallel = DataParallel(world: world)
        log(task.summary(from: start) + (world.size > 1 ? " Data-parallel on \(world.size) ranks: \(parallel.share(of: options.batchSize).count) samples per rank (rank 0)." : ""))
        let bar = ProgressBar(total: total - start, label: Task.info.label, unit: "step", output: world.isRoot ? nil : { _ in })
        let t0 = now()
        var window: [StepReport] = []
        var last = StepReport(loss: .nan)
        for step in start..<total {
            let report = try task.trainStep(step, parallel: parallel)
            guard report.loss.isFinite else {
                throw PipelineError.invalidArgument("The training loss became \(report.loss) at step \(step); lower --lr. The last checkpoint is intact.")
            }
            last = report
            window.append(report)
            let done = step + 1
            if done % options.logEvery == 0 || done == total {
                let elapsed = now() - t0
                var record: [String: Any] = ["step": done, "elapsed_s": elapsed,
                                             Task.info.throughputField: Double((done - start) * options.batchSize) / elapsed]
                for (k, v) in report.latest { record[k] = v }
                for k in report.averaged.keys {
                    record[k] = window.reduce(0) { $0 + ($1.averaged[k] ?? 0) } / Double(window.count)
                }
                task.decorate(&record)
                window.removeAll()
                if world.isRoot { try folder.appendLog(record) }
            }
            bar.update(fields: report.bar)
            let saveNow = done % options.saveEvery == 0 || done == total
            if saveNow { try saveCheckpoint() }
            if let stopAfter, done - start >= stopAfter {
                if !saveNow { try saveCheckpoint() }   // --stop-after always leaves a checkpoint to resume
                break
            }
        }
        bar.finish()
        guard world.isRoot else { return }
        try folder.plotLoss(title: Task.info.plotTitle, field: Task.info.plotField)
        log(String(format: "Done: step %d, last loss %.5f. Checkpoint: %@", task.step, last.loss, folder.checkpoint))
        let horizon = EMA.horizon(options.emaDecay)
        if task.step < horizon {
            log("Note: the checkpoint holds EMA weights (decay \(options.emaDecay)) after \(task.step) updates, fewer than the ~\(horizon) it averages over; with its warm-up it follows the recent weights, but a longer run (or a lower --ema) gives the intended average.")
        }
    }
}
