// A training run's folder: the latest checkpoint (written atomically), the JSONL metrics log and
// the loss-curve plot.
//
//   <run>/checkpoint/config.json          official config (of the EMA model)
//   <run>/checkpoint/model.safetensors    EMA weights under the official keys: what users load
//   <run>/checkpoint/README.md            model card (command, data, steps, loss)
//   <run>/checkpoint/training/train-model.safetensors   raw (non-EMA) weights
//   <run>/checkpoint/training/optimizer.safetensors     AdamW moments and step
//   <run>/checkpoint/training/state.json                TrainingState: kind, step, options, progress
//   <run>/log.jsonl, <run>/loss.png
//
// (Runs written before the training/ subfolder kept its files beside the model; they resume.)
//
// A checkpoint is written into checkpoint.tmp, flushed, then swapped in by renames; if a crash
// leaves only checkpoint.old, that one is used. A new run (fresh, or --overwrite of an old one)
// logs into log.jsonl.partial until its first checkpoint replaces the old one; only then does
// its log replace the old log. Nothing else in the folder is touched.

import Formats
import Foundation
import Render
import Tensor

public final class RunFolder {
    public let root: String
    public var checkpoint: String { root + "/checkpoint" }
    /// The log of the run in the folder (the one `appendLog` writes while `replacing` is false).
    public var logPath: String { root + "/log.jsonl" }
    private var pendingLogPath: String { root + "/log.jsonl.partial" }
    /// True for a new run until its first checkpoint: it logs beside the old log.
    public private(set) var replacing = false
    /// The log being written now.
    public var activeLogPath: String { replacing ? pendingLogPath : logPath }
    public var plotPath: String { root + "/loss.png" }
    private var tmp: String { root + "/checkpoint.tmp" }
    private var old: String { root + "/checkpoint.old" }

    public init(_ root: String) { self.root = (root as NSString).standardizingPath }

    /// The folder holding the latest complete checkpoint, if any.
    public var latestCheckpoint: String? {
        let fm = FileManager.default
        for dir in [checkpoint, old] where fm.fileExists(atPath: ((try? trainingFiles(of: dir)) ?? dir) + "/state.json") {
            return dir
        }
        return nil
    }

    /// Creates the folder (refusing a file in its place).
    public func create() throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: root, isDirectory: &isDir), !isDir.boolValue {
            throw PipelineError.invalidArgument("\(root) is a file; the output of a training run is a folder.")
        }
        do { try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true) } catch {
            throw PipelineError.writeFailed(path: root, reason: "cannot create the run folder (\((error as NSError).localizedDescription))")
        }
    }

    /// Starts a new run here: its log goes beside the old one until its first checkpoint.
    public func startNewRun() {
        replacing = true
        try? FileManager.default.removeItem(atPath: pendingLogPath)   // a leftover of a killed new run
    }

    /// Writes a checkpoint with `write(folder)` into a temporary folder, then swaps it in (and,
    /// for a new run, its log in place of the old log). On failure the previous checkpoint is
    /// untouched and the temporary folder removed.
    public func saveCheckpoint(_ write: (String) throws -> Void) throws {
        let fm = FileManager.default
        try? fm.removeItem(atPath: tmp)
        do {
            try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
            try write(tmp)
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw PipelineError.writeFailed(path: checkpoint, reason: "the checkpoint could not be written (\(oneSentence(error))); the previous checkpoint is intact")
        }
        syncDirectory(tmp)
        try? fm.removeItem(atPath: old)
        if fm.fileExists(atPath: checkpoint) { try fm.moveItem(atPath: checkpoint, toPath: old) }
        try fm.moveItem(atPath: tmp, toPath: checkpoint)
        syncDirectory(root)
        try? fm.removeItem(atPath: old)
        if replacing {
            if fm.fileExists(atPath: pendingLogPath) {
                if rename(pendingLogPath, logPath) != 0 { throw PipelineError.writeFailed(path: logPath, reason: String(cString: strerror(errno))) }
            } else {
                try? fm.removeItem(atPath: logPath)   // the replaced run's log
            }
            replacing = false
        }
    }

    /// Appends one JSON object per line (flushed, so a killed run keeps its log).
    public func appendLog(_ record: [String: Any]) throws {
        let data = try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys])
        let path = activeLogPath
        if !FileManager.default.fileExists(atPath: path) {
            guard FileManager.default.createFile(atPath: path, contents: nil) else { throw CheckpointError.io(path, "cannot create the log") }
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw CheckpointError.io(path, "cannot open the log") }
        defer { try? h.close() }
        do {
            try h.seekToEnd()
            try h.write(contentsOf: data + Data("\n".utf8))
        } catch {
            throw CheckpointError.io(path, "cannot append to the log (\(oneSentence(error)))")
        }
    }

    /// Drops log lines beyond `step` (after resuming from an earlier checkpoint).
    public func truncateLog(after step: Int) {
        guard let text = try? String(contentsOfFile: logPath, encoding: .utf8) else { return }
        let kept = text.split(separator: "\n").filter { line in
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let s = obj["step"] as? Int else { return true }
            return s <= step
        }
        try? atomicWrite(Data((kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n")).utf8), to: logPath)
    }

    /// (step, value) pairs of a numeric field of the log.
    public func logSeries(_ field: String) -> [(Double, Double)] {
        guard let text = try? String(contentsOfFile: activeLogPath, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let s = obj["step"] as? Int, let v = (obj[field] as? NSNumber)?.doubleValue else { return nil }
            return (Double(s), v)
        }
    }

    /// Draws the loss curve of the log (raw values and a moving average).
    public func plotLoss(title: String, field: String = "loss") throws {
        let series = logSeries(field)
        guard series.count >= 2 else { return }
        let window = max(1, series.count / 50)
        var smooth: [(Double, Double)] = []
        var acc = 0.0
        for (i, p) in series.enumerated() {
            acc += p.1
            if i >= window { acc -= series[i - window].1 }
            if i >= window - 1 { smooth.append((p.0, acc / Double(window))) }
        }
        // The raw series, and a moving average only where it averages something.
        var lines: [LinePlot.Series] = [.init(name: window > 1 ? field : "", x: series.map(\.0), y: series.map(\.1))]
        if window > 1 { lines.append(.init(name: "moving average of \(window) logs", x: smooth.map(\.0), y: smooth.map(\.1))) }
        let plot = LinePlot(title: title, xLabel: "step", yLabel: field, series: lines, logY: series.allSatisfy { $0.1 > 0 })
        try plot.writePNG(path: plotPath)
    }
}

func syncDirectory(_ path: String) {
    let fd = open(path, O_RDONLY)
    if fd >= 0 { fsync(fd); close(fd) }
}

/// The checkpoint folder a model argument names: the folder itself, or the `checkpoint/` of a
/// training run folder given instead.
public func checkpointFolder(_ path: String) -> String {
    let fm = FileManager.default
    let nested = (path as NSString).appendingPathComponent("checkpoint")
    if !fm.fileExists(atPath: (path as NSString).appendingPathComponent("config.json")),
       fm.fileExists(atPath: (nested as NSString).appendingPathComponent("config.json")) {
        return nested
    }
    return path
}
