// The official tokenizer recipe's optional terms, as a run records them (state.json) and the
// job builds them: the posterior (SoftVQ or a baseline of the ablation), the perceptual and
// adversarial losses of VQLoss (losses/vq_loss.py, configs/softvq-l-64.yaml) and representation
// alignment. A run without a recipe (older runs) trains reconstruction + entropy only.

import Formats
import Foundation
import Tensor
import Tokenizer

public struct TokenizerRecipe: Codable, Equatable, Sendable {
    /// softvq (the paper's), vq or kl.
    public var quantizer: QuantizerKind = .softvq
    /// commit_loss_beta of hard VQ (the official ModelArgs default).
    public var commitBeta: Double = 0.25
    /// kl_loss_weight of the Gaussian (the official default).
    public var klWeight: Double = 1e-6

    /// Perceptual network: nil (off), an LPIPS weights file (safetensors, official keys), a
    /// ViT in safetensors (LPIPSTimm-style), or a gen train-classifier folder (its conv stages).
    public var perceptual: String? = nil
    public var perceptualWeight: Float = 1
    /// perceptual_warmup: the weight ramps linearly over this many steps (nil: none).
    public var perceptualWarmup: Int? = nil

    /// disc_weight; 0 turns the adversarial loss off.
    public var discWeight: Float = 0
    public var discStart: Int = 0
    public var discLoss: String = "hinge"
    public var genLoss: String = "hinge"
    public var discDim: Int = 64
    public var discLayers: Int = 3
    /// lecam_loss_weight (nil: off).
    public var lecamWeight: Float? = nil
    /// disc_cr_loss_weight (0: off).
    public var crWeight: Float = 0
    public var diffAugment: Bool = true
    public var adaptiveWeight: Bool = true

    /// Alignment teacher: a ViT in safetensors (DINOv2 layout) or a gen train-classifier folder.
    public var alignTeacher: String? = nil
    public var alignWeight: Float = 0.1
    public var align: String = "repeat"
    /// repa_proj_dim: the projector's hidden width.
    public var alignProjectorWidth: Int = 256

    public init() {}

    /// One line for the run's summary.
    public var summary: String {
        var parts = ["quantizer \(quantizer.rawValue)"]
        if let perceptual { parts.append("perceptual \((perceptual as NSString).lastPathComponent) x\(perceptualWeight)") }
        if discWeight > 0 { parts.append("adversarial x\(discWeight) from step \(discStart)") }
        if let alignTeacher { parts.append("alignment (\(align)) to \((alignTeacher as NSString).lastPathComponent) x\(alignWeight)") }
        return parts.joined(separator: ", ")
    }

    /// The config fields the recipe fixes.
    public func apply(to c: inout TokenizerConfig) {
        c.quantizer = quantizer
        c.commitLossBeta = quantizer == .vq ? commitBeta : c.commitLossBeta
        c.klLossWeight = klWeight
        if quantizer != .softvq { c.numCodebooks = 1 }
        if let alignTeacher {
            c.repa = true
            c.repaModel = (alignTeacher as NSString).lastPathComponent
            c.repaLossWeight = Double(alignWeight)
            c.repaAlign = align
            c.repaProjDim = alignProjectorWidth
        }
    }

    /// The perceptual network at `path`: an LPIPS file (official keys), a ViT in safetensors
    /// (LPIPSTimm-style) or a gen train-classifier folder (its conv features).
    func perceptualLoss(_ path: String) throws -> any PerceptualLoss {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw PipelineError.invalidArgument("The perceptual network \(path) does not exist.")
        }
        let file = isDir.boolValue ? path + "/model.safetensors" : path
        guard FileManager.default.fileExists(atPath: file) else {
            throw PipelineError.invalidArgument("The perceptual network folder \(path) has no model.safetensors.")
        }
        let names = Set(try SafeTensorsFile(path: file).names)
        if names.contains("conv1.weight") && names.contains("fc1.weight") { return try ClassifierFeatureLoss(path: file) }
        if names.contains("net.slice1.0.weight") { return try LPIPS.load(path: file) }
        if names.contains("pos_embed") { return try LPIPSTimm(path: file) }
        throw PipelineError.invalidArgument("\(file) is neither LPIPS weights (net.slice1.0.weight, see docs/perceptual-loss.md), a ViT (pos_embed) nor a gen train-classifier model (conv1.weight).")
    }

    /// The aligner of this recipe (nil without a teacher).
    func aligner(config: TokenizerConfig, seed: UInt64) throws -> RepaAligner? {
        guard let path = alignTeacher else { return nil }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw PipelineError.invalidArgument("The alignment teacher \(path) does not exist.")
        }
        if isDir.boolValue {
            guard FileManager.default.fileExists(atPath: path + "/model.safetensors") else {
                throw PipelineError.invalidArgument("The alignment teacher folder \(path) has no model.safetensors.")
            }
            let names = try SafeTensorsFile(path: path + "/model.safetensors").names
            if names.contains("conv1.weight") && names.contains("fc1.weight") {
                if align != "global" {
                    throw PipelineError.invalidArgument("The classifier teacher gives one feature vector per image; use --align global with it (repeat needs a grid of patch features).")
                }
                return try RepaAligner(teacher: ClassifierTeacher(folder: path), config: config, seed: seed)
            }
            return try RepaAligner.load(teacher: path + "/model.safetensors", config: config, seed: seed)
        }
        return try RepaAligner.load(teacher: path, config: config, seed: seed)
    }
}
