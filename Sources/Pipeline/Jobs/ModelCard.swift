// The model card (README.md) of a checkpoint: what the model is, how it was trained (the
// commands, the data, steps, epochs, wall time, options) and what was measured (the last logged
// training metrics, and `gen eval`'s table when the run holds one), with the model's identity
// (name + sha256 of model.safetensors) and, for a SiT, its tokenizer's. Written beside every
// checkpoint and by `gen export`.

import Foundation
import Formats
import SiT
import Tensor
import Tokenizer

public struct ModelCard {
    /// "sit" or "tokenizer".
    public var kind: String
    public var name: String
    /// sha256 of model.safetensors.
    public var sha256: String
    public var step: Int
    public var commands: [String]
    /// The training options as saved in state.json.
    public var options: [String: Any]
    /// The records of log.jsonl up to `step`.
    public var log: [[String: Any]]
    /// config.json of the model.
    public var config: [String: Any]
    /// eval.md of the run, if any.
    public var evaluation: String?

    /// The card of the checkpoint in `checkpoint` (a run's `checkpoint/` with `training/`), or
    /// nil when it holds no training state.
    public static func read(checkpoint: String, name: String, logPath: String) throws -> ModelCard? {
        let statePath = try trainingFiles(of: checkpoint) + "/state.json"
        guard let stateData = FileManager.default.contents(atPath: statePath),
              let state = try? JSONSerialization.jsonObject(with: stateData) as? [String: Any] else { return nil }
        let config = (FileManager.default.contents(atPath: checkpoint + "/config.json"))
            .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        let step = state["step"] as? Int ?? 0
        let records = ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.filter { ($0["step"] as? Int ?? 0) <= step }
        let run = ((checkpoint as NSString).standardizingPath as NSString).deletingLastPathComponent
        let evaluation = ["/eval/eval.md", "/eval.md"].lazy.compactMap { try? String(contentsOfFile: run + $0, encoding: .utf8) }.first
        return ModelCard(kind: state["kind"] as? String ?? "?", name: name,
                         sha256: try SHA256.file(checkpoint + "/model.safetensors"), step: step,
                         commands: state["commands"] as? [String] ?? [], options: state["options"] as? [String: Any] ?? [:],
                         log: records, config: config, evaluation: evaluation)
    }

    /// Wall time of training: the last `elapsed_s` of each invocation (it restarts on resume).
    public var wallSeconds: Double {
        var total = 0.0, last = 0.0
        for r in log {
            guard let e = (r["elapsed_s"] as? NSNumber)?.doubleValue else { continue }
            if e < last { total += last }
            last = e
        }
        return total + last
    }

    public var markdown: String {
        var s: [String] = []
        let what = kind == "sit"
            ? "a class-conditional SiT (flow matching) over 1-D SoftVQ latent tokens"
            : "a SoftVQ-VAE image tokenizer (ViT encoder with latent tokens, a latent posterior, ViT decoder)"
        s.append("# \(name)")
        s.append("")
        s.append("\(what.prefix(1).uppercased() + what.dropFirst()), trained with softvq-swift (a Swift implementation of SoftVQ-VAE, arXiv 2412.10958; official code github.com/Hhhhhhao/continuous_tokenizer).")
        s.append("")
        s.append("- identity: `\(name)`, model.safetensors sha256 `\(sha256)`")
        if kind == "sit" {
            let block = config[SiTConfig.swiftBlockKey] as? [String: Any] ?? config   // older configs: top level
            if let tok = block["tokenizer"] as? String, let sha = block["tokenizer_sha256"] as? String {
                s.append("- tokenizer: `\(tok)`, model.safetensors sha256 `\(sha)` (decode its latents with it)")
            }
            if let names = block["class_names"] as? [String] {
                s.append("- classes (\(names.count)): \(names.prefix(20).joined(separator: ", "))\(names.count > 20 ? ", ..." : "")")
            }
            s.append("- path: \(config["path_type"] as? String ?? "linear"), velocity prediction")
            if let h = config["hidden_size"], let d = config["depth"], let heads = config["num_heads"],
               let t = config["input_size"], let c = config["in_channels"] {
                s.append("- architecture: width \(h), depth \(d), \(heads) heads, \(t) tokens x \(c) channels")
            }
        } else if kind == "tokenizer", let data = try? JSONSerialization.data(withJSONObject: config),
                  let json = try? JSONDecoder().decode([String: JSONValue].self, from: data),
                  let c = try? TokenizerConfig(json: json) {
            if let e = try? c.encoderSpec, let d = try? c.decoderSpec {
                s.append("- architecture: \(c.imageSize) px, patch \(c.encPatchSize); encoder ViT width \(e.width), depth \(e.depth), \(e.heads) heads; decoder width \(d.width), depth \(d.depth), \(d.heads) heads")
            }
            switch c.quantizer {
            case .softvq:
                s.append("- latent: \(c.numLatentTokens) tokens x \(c.codebookEmbedDim) channels; soft vector quantization over \(c.numCodebooks) codebook(s) of \(c.codebookSize), tau \(c.tau)")
            case .vq:
                s.append("- latent: \(c.numLatentTokens) tokens x \(c.codebookEmbedDim) channels; hard vector quantization (the ablation's VQ baseline, official VQModel) over one codebook of \(c.codebookSize), commitment beta \(c.commitLossBeta)")
            case .kl:
                s.append("- latent: \(c.numLatentTokens) tokens x \(c.codebookEmbedDim) channels; a diagonal Gaussian posterior (the ablation's KL baseline, official KLModel), kl weight \(c.klLossWeight); latents are its mean")
            }
            if c.repa { s.append("- trained with alignment of the latent tokens to `\(c.repaModel)` (\(c.repaAlign), weight \(c.repaLossWeight))") }
        }
        s.append("")
        s.append("## Training")
        s.append("")
        if !commands.isEmpty {
            s.append("```")
            s.append(contentsOf: commands)
            s.append("```")
            s.append("")
        }
        let data = kind == "sit" ? (options["cache"] as? String).map { "latent cache `\($0)`" }
                                 : (options["dataset"] as? String).map { "`\($0)`\((options["limit"] as? Int).map { ", a class-balanced \($0)-image subset" } ?? "")" }
        if let data { s.append("- data: \(data)") }
        let target = options["steps"] as? Int
        s.append("- steps: \(step)\(target.map { $0 > step ? " of \($0) (in progress)" : "" } ?? ""), batch \(options["batchSize"] ?? "?")")
        if let epoch = log.last?["epoch"] { s.append("- epochs: \(epoch) completed") }
        s.append(wallSeconds >= 3600 ? String(format: "- wall time: %.2f h", wallSeconds / 3600)
                                     : String(format: "- wall time: %.0f s", wallSeconds))
        if let ema = options["emaDecay"] { s.append("- EMA decay \(ema) (the weights here are the EMA)") }
        func text(_ v: Any) -> String {
            return "\(v)"
        }
        let keys = options.keys.sorted().filter { !["cache", "dataset", "steps"].contains($0) && text(options[$0]!) != "" }
        s.append("- options: " + keys.map { "\($0) \(text(options[$0]!))" }.joined(separator: ", "))
        s.append("")
        if let last = log.last {
            s.append("## Last logged training metrics (step \(last["step"] ?? "?"))")
            s.append("")
            s.append("| metric | value |")
            s.append("|---|---|")
            for k in last.keys.sorted() where k != "step" {
                if let v = (last[k] as? NSNumber)?.doubleValue { s.append("| \(k) | \(String(format: "%.6g", v)) |") }
            }
            s.append("")
        }
        if let evaluation {
            s.append("## Evaluation (gen eval)")
            s.append("")
            s.append(evaluation.trimmingCharacters(in: .whitespacesAndNewlines))
            s.append("")
        }
        s.append("## Files")
        s.append("")
        s.append("`config.json` holds the official fields (the names the official code writes) and one object of ours, `softvq_swift`: for a tokenizer the ViT width / depth / heads / MLP ratio and LayerScale init that override the timm model named in `encoder_model` / `decoder_model` (as timm keyword overrides would); for a SiT the class names, the tokenizer's identity, its latent statistics (`vq_mean`, `vq_std`) and the prediction type. `model.safetensors` holds float32 weights under the official PyTorch key names.")
        s.append("")
        return s.joined(separator: "\n")
    }
}
