// The ViT of the official tokenizer (the repository's own timm vision_transformer.py as built
// for DINOv2 names): patch embedding, class token, learned absolute position table, pre-norm
// blocks with LayerScale, final LayerNorm. No classifier head.
//
// Dimension legend: N batch, T tokens, D width, p patch, H = W image side, G = H / p grid side.

import Foundation
import Tensor

/// `gamma` scaling of a residual branch (DINOv2 LayerScale).
public final class LayerScale: Module {
    public let gamma: Tensor
    init(_ dim: Int, _ f: inout ParameterFactory) { gamma = f.constant([dim], f.layerScaleInit) }
    public var entries: [(String, ModuleEntry)] { [("gamma", .tensor(gamma))] }
    public func callAsFunction(_ x: Tensor) -> Tensor { x * gamma }
}

/// Pre-norm block: x + ls1(attn(norm1 x)); x + ls2(mlp(norm2 x)).
public final class ViTBlock: Module {
    public let norm1: LayerNorm
    /// Packed qkv with bias, softmax(q k^T / sqrt(Dh)) v, proj.
    public let attn: Attention
    public let ls1: LayerScale?
    public let norm2: LayerNorm
    /// fc1 -> exact GELU -> fc2.
    public let mlp: Mlp
    public let ls2: LayerScale?

    init(_ spec: ViTSpec, _ f: inout ParameterFactory) {
        norm1 = LayerNorm(spec.width, eps: 1e-6, &f)
        attn = Attention(dim: spec.width, heads: spec.heads, linear: vitLinear, &f)
        ls1 = spec.layerScale ? LayerScale(spec.width, &f) : nil
        norm2 = LayerNorm(spec.width, eps: 1e-6, &f)
        mlp = Mlp(spec.width, hidden: spec.mlpHidden, approximateGELU: false, linear: vitLinear, &f)
        ls2 = spec.layerScale ? LayerScale(spec.width, &f) : nil
    }

    public var entries: [(String, ModuleEntry)] {
        var e: [(String, ModuleEntry)] = [("norm1", .module(norm1)), ("attn", .module(attn))]
        if let ls1 { e.append(("ls1", .module(ls1))) }
        e += [("norm2", .module(norm2)), ("mlp", .module(mlp))]
        if let ls2 { e.append(("ls2", .module(ls2))) }
        return e
    }

    /// x: (N, T, D) -> (N, T, D)
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var a = attn(norm1(x))                                  // (N, T, D)
        if let ls1 { a = ls1(a) }
        let h = x + a                                           // (N, T, D)
        var m = mlp(norm2(h))                                   // (N, T, D)
        if let ls2 { m = ls2(m) }
        return h + m
    }
}

/// timm's ViT initializes its Linears with a truncated normal (std 0.02) and zero biases.
let vitLinear = LinearInit.truncatedNormal(std: 0.02)

/// The timm VisionTransformer as used by the tokenizer (class token, no head).
public final class VisionTransformer: Module {
    public let spec: ViTSpec
    public let clsToken: Tensor      // (1, 1, D)
    public let posEmbed: Tensor      // (1, 1 + T, D)
    public let patchEmbed: PatchEmbed
    public let blocks: [ViTBlock]
    public let norm: LayerNorm

    init(_ spec: ViTSpec, channels: Int = 3, _ f: inout ParameterFactory) {
        self.spec = spec
        clsToken = f.truncatedNormal([1, 1, spec.width], std: 1e-6)
        posEmbed = f.truncatedNormal([1, 1 + spec.numPatches, spec.width], std: 0.02)
        patchEmbed = PatchEmbed(channels: channels, width: spec.width, patch: spec.patchSize, &f)
        var b: [ViTBlock] = []
        for _ in 0..<spec.depth { b.append(ViTBlock(spec, &f)) }
        blocks = b
        norm = LayerNorm(spec.width, eps: 1e-6, &f)
    }

    /// A randomly initialised ViT (e.g. a stand-in REPA teacher in tests).
    public convenience init(spec: ViTSpec, initialization: WeightInit) {
        var f = ParameterFactory(initialization)
        self.init(spec, &f)
    }

    public var entries: [(String, ModuleEntry)] {
        [("cls_token", .tensor(clsToken)), ("pos_embed", .tensor(posEmbed)), ("patch_embed", .module(patchEmbed)),
         ("blocks", .modules(blocks)), ("norm", .module(norm))]
    }

    /// Prepends the class token to image tokens and adds the position table:
    /// (N, T, D) -> (N, 1 + T, D).
    public func withClassAndPositions(_ tokens: Tensor) -> Tensor {
        let n = tokens.dim(0)
        let cls = repeatBatch(clsToken, n)                      // (N, 1, D)
        return concat([cls, tokens], axis: 1) + posEmbed        // (N, 1 + T, D)
    }

    public func runBlocks(_ x: Tensor) -> Tensor {
        var x = x
        for b in blocks { x = b(x) }
        return x
    }

    /// forward_features: patch embed, class token + positions, blocks, final norm:
    /// images (N, C, H, W) -> (N, 1 + T, D).
    public func forwardFeatures(_ images: Tensor) -> Tensor {
        norm(runBlocks(withClassAndPositions(patchEmbed(images))))
    }
}

/// (1, T, D) -> (N, T, D) by concatenation (gradients of the copies sum up on the tape).
func repeatBatch(_ t: Tensor, _ n: Int) -> Tensor {
    n == 1 ? t : concat(Array(repeating: t, count: n), axis: 0)
}

extension VisionTransformer {
    /// A frozen ViT from safetensors (timm key names under `prefix`, e.g. "repa_model."): width,
    /// depth, patch size, image size (grid x patch) and LayerScale are read from the tensors;
    /// heads = width / 64 (DINOv2's convention; the weights cannot tell). Keys outside the ViT
    /// (a classifier head, ...) are ignored; every ViT key is checked strictly.
    public static func loadFrozen(file: SafeTensorsFile, prefix: String = "") throws -> VisionTransformer {
        let name = (file.path as NSString).lastPathComponent
        guard let pos = file.entries[prefix + "pos_embed"]?.shape, pos.count == 3,
              let pw = file.entries[prefix + "patch_embed.proj.weight"]?.shape, pw.count == 4 else {
            throw TokenizerError.checkpoint("\(name) does not hold a ViT under '\(prefix)' (no pos_embed / patch_embed.proj.weight)")
        }
        var depth = 0
        while file.entries["\(prefix)blocks.\(depth).norm1.weight"] != nil { depth += 1 }
        let width = pos[2], patch = pw[2]
        let grid = Int(Double(pos[1] - 1).squareRoot().rounded())
        guard grid * grid == pos[1] - 1, file.entries[prefix + "cls_token"] != nil else {
            throw TokenizerError.unsupported("\(name): only ViTs with one class token and a square position table are supported")
        }
        let hidden = file.entries["\(prefix)blocks.0.mlp.fc1.weight"]?.shape.first ?? 4 * width
        let spec = ViTSpec(width: width, depth: depth, heads: max(1, width / 64), mlpRatio: Double(hidden) / Double(width),
                           layerScale: file.entries["\(prefix)blocks.0.ls1.gamma"] != nil, patchSize: patch, imageSize: grid * patch)
        // The shapes above come from a few header entries: allocate only what the file can fill.
        let d = width, t = grid * grid, h = hidden
        let perBlock = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (spec.layerScale ? 2 * d : 0) + (h * d + h) + (d * h + d)
        let (needed, overflow) = perBlock.multipliedReportingOverflow(by: max(depth, 1))
        let held = file.entries.values.reduce(0) { $0 + $1.shape.reduce(1, *) }
        guard !overflow, needed + (3 * patch * patch + 1) * d + (1 + t) * d + 3 * d <= held else {
            throw TokenizerError.checkpoint("\(name): its shapes describe a ViT of width \(d), depth \(depth) larger than the values the file holds")
        }
        let vit = VisionTransformer(spec: spec, initialization: .uninitialized)
        let own = ["cls_token", "pos_embed", "patch_embed.", "blocks.", "norm."].map { prefix + $0 }
        do {
            try vit.load(from: file, prefix: prefix, skip: { key in !own.contains { key.hasPrefix($0) } })
        } catch let e as CheckpointError {
            throw TokenizerError.checkpoint(e.description)
        }
        vit.freeze()
        return vit
    }
}
