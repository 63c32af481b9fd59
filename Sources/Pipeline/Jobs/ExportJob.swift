// `gen export`: a clean, shareable model folder (Hugging Face layout) from a run or checkpoint:
//
//   config.json        the official fields, and ours only inside `softvq_swift`
//   model.safetensors  the weights under the official keys, with __metadata__ (format, kind,
//                      name, step, source sha256)
//   README.md          the model card: training commands, data, steps, epochs, wall time,
//                      measured metrics, identity (name + sha256)
//
// The folder is assembled beside the destination and renamed into place when complete; with
// --overwrite into an existing folder, only these three files are replaced (each atomically).

import Foundation
import Formats
import SiT
import Tensor
import Tokenizer

public enum ExportJob {
    /// Keys of ours that configs written before the `softvq_swift` block kept at the top level.
    static let legacySiTKeys = ["class_names", "prediction", "tokenizer", "tokenizer_sha256", "vq_mean", "vq_std"]

    public struct Result: Sendable {
        public var kind: String
        public var name: String
        public var sha256: String
        public var folder: String
    }

    /// Exports the model of `source` (a run folder or a checkpoint folder) into `dest`.
    public static func run(source: String, to dest: String, name given: String? = nil, overwrite: Bool = false) throws -> Result {
        let fm = FileManager.default
        let checkpoint = checkpointFolder(source)
        for f in ["config.json", "model.safetensors"] where !fm.fileExists(atPath: checkpoint + "/" + f) {
            throw PipelineError.missingFile(checkpoint + "/" + f)
        }
        let full = (checkpoint as NSString).standardizingPath as NSString
        let name = given ?? (full.lastPathComponent == "checkpoint"
            ? (full.deletingLastPathComponent as NSString).lastPathComponent : full.lastPathComponent)
        let destination = (dest as NSString).standardizingPath
        guard destination != full as String else {
            throw PipelineError.invalidArgument("The export folder is the checkpoint itself; choose another folder.")
        }
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: destination, isDirectory: &isDir) {
            guard isDir.boolValue else { throw PipelineError.invalidArgument("\(dest) is a file; gen export writes a folder.") }
            let contents = (try? fm.contentsOfDirectory(atPath: destination)) ?? []
            if !contents.isEmpty && !overwrite {
                throw PipelineError.invalidArgument("\(dest) is not empty; pass --overwrite to replace its config.json, model.safetensors and README.md.")
            }
        }

        // The model must load strictly (every key, every shape) before anything is written.
        let configPath = checkpoint + "/config.json"
        let raw = try JSONFile.readObject(at: configPath)
        let kind = raw["codebook_size"] != nil ? "tokenizer" : "sit"
        let configData: Data
        if kind == "tokenizer" {
            _ = try SoftVQModel.load(folder: checkpoint, log: { _ in })
            configData = try TokenizerConfig.load(path: configPath).jsonData()
        } else {
            _ = try SiT.load(folder: checkpoint)
            var config = try SiTConfig.read(from: configPath)
            for key in legacySiTKeys { if let v = config.extra[key] { config.setSwiftField(key, v) } }
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            configData = try enc.encode(config)
        }

        let parent = (destination as NSString).deletingLastPathComponent
        try fm.createDirectory(atPath: parent.isEmpty ? "." : parent, withIntermediateDirectories: true)
        let staging = destination + ".export-\(getpid())"
        removeAbandonedStaging(of: destination)
        try? fm.removeItem(atPath: staging)
        try fm.createDirectory(atPath: staging, withIntermediateDirectories: true)
        defer { try? fm.removeItem(atPath: staging) }

        do {
            let weights = try SafeTensorsFile(path: checkpoint + "/model.safetensors")
            let tensors = try weights.names.map { ($0, try weights.tensor($0)) }
            let dtypes = Set(weights.entries.values.map(\.dtype))
            let dtype: DType = dtypes.count == 1 && [.f16, .bf16].contains(dtypes.first!) ? dtypes.first! : .f32
            let card = try ModelCard.read(checkpoint: checkpoint, name: name,
                                          logPath: (full.deletingLastPathComponent as NSString).appendingPathComponent("log.jsonl"))
            var metadata = ["format": "pt", "softvq_swift_kind": kind, "name": name,
                            "source_sha256": try SHA256.file(checkpoint + "/model.safetensors")]
            if let card { metadata["step"] = String(card.step) }
            try writeSafeTensors(tensors, to: staging + "/model.safetensors", dtype: dtype, metadata: metadata)
            try atomicWrite(configData, to: staging + "/config.json")
            let sha = try SHA256.file(staging + "/model.safetensors")
            let readme: String
            if var card {
                card.sha256 = sha
                readme = card.markdown
            } else if let existing = try? String(contentsOfFile: checkpoint + "/README.md", encoding: .utf8) {
                readme = existing.trimmingCharacters(in: .whitespacesAndNewlines)
                    + "\n\n## Identity\n\n`\(name)`, model.safetensors sha256 `\(sha)` (exported by gen export).\n"
            } else {
                readme = "# \(name)\n\nA \(kind == "sit" ? "SiT" : "SoftVQ tokenizer") exported by gen export from \(checkpoint) (no training record found).\n\n- identity: `\(name)`, model.safetensors sha256 `\(sha)`\n"
            }
            try atomicWrite(Data(readme.utf8), to: staging + "/README.md")
            syncDirectory(staging)
            if fm.fileExists(atPath: destination) {
                for f in ["config.json", "model.safetensors", "README.md"] {
                    if rename(staging + "/" + f, destination + "/" + f) != 0 {
                        throw PipelineError.writeFailed(path: destination + "/" + f, reason: String(cString: strerror(errno)))
                    }
                }
            } else if rename(staging, destination) != 0 {
                throw PipelineError.writeFailed(path: destination, reason: String(cString: strerror(errno)))
            }
            syncDirectory(destination)
            return Result(kind: kind, name: name, sha256: sha, folder: destination)
        } catch let e as PipelineError {
            throw e
        } catch {
            throw PipelineError.writeFailed(path: destination, reason: oneSentence(error))
        }
    }
}

/// Staging folders `<destination>.export-<pid>` that an earlier export left behind when it was
/// killed: removed when their process is gone and they hold only what an export writes (its
/// three files and their `.tmp-<pid>` partials), so nothing else is ever deleted.
func removeAbandonedStaging(of destination: String) {
    let fm = FileManager.default
    let parent = (destination as NSString).deletingLastPathComponent
    let prefix = (destination as NSString).lastPathComponent + ".export-"
    guard let names = try? fm.contentsOfDirectory(atPath: parent.isEmpty ? "." : parent) else { return }
    let ours = ["config.json", "model.safetensors", "README.md"]
    for name in names where name.hasPrefix(prefix) {
        guard let pid = Int32(name.dropFirst(prefix.count)), pid > 0, pid != getpid() else { continue }
        if kill(pid, 0) == 0 || errno != ESRCH { continue }   // still running (or not ours to ask)
        let folder = parent.isEmpty ? name : parent + "/" + name
        guard let files = try? fm.contentsOfDirectory(atPath: folder),
              files.allSatisfy({ f in ours.contains { f == $0 || f.hasPrefix($0 + ".tmp-") } }) else { continue }
        try? fm.removeItem(atPath: folder)
    }
}
