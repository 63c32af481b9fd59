import ArgumentParser
import Formats
import Foundation
import Pipeline
import SiT
import Tensor
import Tokenizer

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe what gen writes: a checkpoint folder (tokenizer, SiT, classifier), a training run, a latent cache or sampled latents, an .npz of samples.",
        discussion: "Examples:\n  gen info Checkpoints/fashion-sit\n  gen info runs/sit\n  gen info runs/latents.h5")

    @Argument(help: "A checkpoint folder, run folder or .h5 cache.") var path: String
    @Flag(help: "For a run folder: redraw loss.png from log.jsonl.") var plot = false

    func run() throws {
        try userFacing {
            if plot {
                let run = RunFolder(path)
                let isTokenizer = (try? String(contentsOfFile: run.logPath, encoding: .utf8))?.contains("reconstruction") ?? false
                try run.plotLoss(title: isTokenizer ? "tokenizer training loss" : "SiT training loss",
                                 field: isTokenizer ? "reconstruction" : "loss")
                print("Wrote \(run.plotPath)")
            }
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw PipelineError.missingFile(path) }
            if !isDir.boolValue, Self.isZip(path) {
                let z = try NPZArchive(path: path)
                print("npz archive \(path): \(z.arrays.count) array\(z.arrays.count == 1 ? "" : "s"), \(String(format: "%.1f", Double(z.fileSize) / 1e6)) MB\(z.zip64 ? " (Zip64)" : "")")
                for a in z.arrays {
                    let dtype = ["|u1": "uint8", "<f4": "float32", "<f8": "float64", "<i8": "int64", "<i4": "int32", "|b1": "bool"][a.descr] ?? a.descr
                    let shape = "(" + a.shape.map(String.init).joined(separator: ", ") + ")"
                    let method = a.compression == 0 ? "stored" : a.compression == 8 ? "deflated" : "compression \(a.compression)"
                    print("  \(a.name): \(dtype) \(shape)\(a.fortranOrder ? " Fortran order" : ""), \(method)")
                    if a.name == "arr_0", a.descr == "|u1", a.shape.count == 4, a.shape[3] == 3 {
                        print("  ADM evaluator sample batch: \(a.shape[0]) RGB images of \(a.shape[1]) x \(a.shape[2]) (NHWC)")
                    }
                }
                return
            }
            if !isDir.boolValue {
                let r = try LatentCacheReader(path: path)
                let m = r.metadata
                print(m.preprocessing == "sampled" ? "sampled latents \(path)" : "latent cache \(path)")
                print("  images: \(m.numImages) from \(m.dataset) (\(m.preprocessing), \(m.imageSize) px)")
                print("  latents: \(m.numTokens) tokens x \(m.tokenDim) channels\(m.mirrored ? " (+ mirrored copies)" : "")")
                print("  tokenizer: \(m.tokenizerName) (weights sha256 \(m.tokenizerSHA256))")
                print("  normalization: vq_mean \(m.vqMean), vq_std \(m.vqStd)")
                if !m.classNames.isEmpty { print("  classes (\(m.classNames.count)): \(m.classNames.joined(separator: ", "))") }
                let total = max(m.classNames.count, (r.classesPresent.last ?? -1) + 1)
                let missing = (0..<total).filter { !r.classesPresent.contains($0) }
                print("  classes present: \(r.classesPresent.count) of \(total)\(missing.isEmpty ? "" : "; no latents of " + missing.prefix(10).map { m.classNames.indices.contains($0) ? m.classNames[$0] : "class \($0)" }.joined(separator: ", ") + (missing.count > 10 ? ", ..." : ""))")
                return
            }
            var folder = path
            if FileManager.default.fileExists(atPath: path + "/checkpoint/config.json") {
                folder = path + "/checkpoint"
                if let s = try? String(contentsOfFile: ((try? trainingFiles(of: folder)) ?? folder) + "/state.json", encoding: .utf8),
                   let obj = try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any] {
                    let target = (obj["options"] as? [String: Any])?["steps"] as? Int
                    print("training run \(path): \(obj["kind"] ?? "?"), step \(obj["step"] ?? "?")\(target.map { " of \($0)" } ?? "")")
                }
            }
            if !FileManager.default.fileExists(atPath: folder + "/config.json"),
               FileManager.default.fileExists(atPath: folder + "/model.safetensors") {
                // The evaluation classifier: weights (and metrics.json) without config.json.
                let weights = try SafeTensorsFile(path: folder + "/model.safetensors")
                _ = try FashionClassifier.load(path: folder + "/model.safetensors")
                print("Fashion-MNIST classifier \(folder)")
                if let m = FileManager.default.contents(atPath: folder + "/metrics.json"),
                   let obj = try? JSONSerialization.jsonObject(with: m) as? [String: Any], let acc = obj["test_accuracy"] as? Double {
                    print(String(format: "  test accuracy %.2f%%", acc * 100))
                }
                print("  \(weights.names.count) tensors, \(weights.entries.values.reduce(0) { $0 + $1.shape.reduce(1, *) }) values")
                return
            }
            let configPath = folder + "/config.json"
            guard let data = FileManager.default.contents(atPath: configPath) else { throw PipelineError.missingFile(configPath) }
            guard let parsed = try? JSONSerialization.jsonObject(with: data) else {
                throw PipelineError.invalidArgument(data.isEmpty ? "\(configPath) is empty." : "\(configPath) is not valid JSON.")
            }
            guard let obj = parsed as? [String: Any] else { throw PipelineError.invalidArgument("\(configPath) is not a JSON object.") }
            let weights = try SafeTensorsFile(path: folder + "/model.safetensors")
            let params = weights.entries.values.reduce(0) { $0 + $1.shape.reduce(1, *) }
            let dtypes = Set(weights.entries.values.map { $0.dtype.rawValue }).sorted().joined(separator: ", ")
            if obj["codebook_size"] != nil {
                let m = try SoftVQModel.load(folder: folder, log: { _ in })
                let c = m.config
                let kind = ["softvq": "SoftVQ tokenizer", "vq": "hard-VQ tokenizer (ablation baseline)",
                            "kl": "KL (Gaussian) tokenizer (ablation baseline)"][c.quantizer.rawValue]!
                print("\(kind) \(folder)")
                print("  image \(m.imageSize) px -> \(m.numLatentTokens) tokens x \(m.latentDim) channels")
                print("  encoder \(try c.encoderSpec), decoder \(try c.decoderSpec)")
                switch c.quantizer {
                case .softvq: print("  codebooks: \(c.numCodebooks) x \(c.codebookSize), tau \(c.tau); vq_mean \(c.vqMean), vq_std \(c.vqStd)")
                case .vq: print("  codebook: \(c.codebookSize) x \(c.codebookEmbedDim), commitment beta \(c.commitLossBeta); vq_mean \(c.vqMean), vq_std \(c.vqStd)")
                case .kl: print("  Gaussian posterior, kl weight \(c.klLossWeight) (latents: its mean); vq_mean \(c.vqMean), vq_std \(c.vqStd)")
                }
                if c.repa { print("  trained with alignment to \(c.repaModel) (\(c.repaAlign), weight \(c.repaLossWeight))") }
            } else {
                let m = try SiT.load(folder: folder)
                let c = m.config
                print("SiT \(folder)")
                print("  width \(c.hiddenSize), depth \(c.depth), heads \(c.numHeads), \(c.vae1D ? "1-D tokens \(c.inputSize) x \(c.inChannels)" : "2-D \(c.inChannels) x \(c.inputSize) x \(c.inputSize), patch \(c.patchSize)")")
                let names = GenerationModels.classNames(c)
                print("  classes: \(c.numClasses) (+ null): \(names.prefix(12).joined(separator: ", "))\(names.count > 12 ? ", ..." : "")")
                print("  path: \(c.interpolantPath.rawValue), prediction v")
                if case let .string(tok)? = c.swiftField("tokenizer") {
                    let sha: String
                    if case let .string(s)? = c.swiftField("tokenizer_sha256") { sha = String(s.prefix(12)) + "…" } else { sha = "?" }
                    print("  trained on latents of tokenizer \(tok) (weights sha256 \(sha))")
                }
            }
            print("  \(weights.names.count) tensors, \(params) values, stored as \(dtypes)")
        }
    }

    /// Whether the file starts with a zip local header (an .npz).
    static func isZip(_ path: String) -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        return (try? h.read(upToCount: 4)).map { [UInt8]($0 ?? Data()) == [0x50, 0x4B, 0x03, 0x04] } ?? false
    }
}
