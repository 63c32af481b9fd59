// The ViT of the official tokenizer (the repository's own timm vision_transformer.py as built
// for DINOv2 names): patch embedding, class token, learned absolute position table, pre-norm
// blocks with LayerScale, final LayerNorm. No classifier head.
//
// Dimension legend: N batch, T tokens, D width, p patch, H = W image side, G = H / p grid side.

import Foundation
import Tensor

/// How a freshly built model fills its tensors.
public enum WeightInit: Sendable, Equatable {
    /// The official initialisation (timm ViT: trunc-normal 0.02 weights, zero biases, LayerScale
    /// 1e-5 unless `layer_scale_init` says otherwise), from a seeded generator.
    case random(seed: UInt64)
    /// Every tensor zero (cheap, deterministic).
    case zeros
    /// Memory allocated but never touched (fastest: for key enumeration or before a load).
    case uninitialized
}

/// Makes parameter tensors according to a `WeightInit`.
struct ParameterFactory {
    let mode: WeightInit
    var rng: RandomGenerator
    var layerScaleInit: Float

    init(_ mode: WeightInit, layerScaleInit: Float = 1e-5) {
        self.mode = mode
        if case let .random(seed) = mode { rng = RandomGenerator(seed: seed) } else { rng = RandomGenerator(seed: 0) }
        self.layerScaleInit = layerScaleInit
    }

    private func blank(_ shape: [Int]) -> Tensor {
        mode == .uninitialized ? Tensor(uninitialized: shape) : Tensor(zeros: shape)
    }

    /// Normal(0, std) clipped at +-2 std (timm trunc_normal_ for small std).
    mutating func normal(_ shape: [Int], std: Float) -> Tensor {
        guard case .random = mode else { return param(blank(shape)) }
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.pointer[i] = Swift.min(Swift.max(Float(rng.normal()), -2), 2) * std }
        return param(t)
    }

    mutating func uniform(_ shape: [Int], bound: Float) -> Tensor {
        guard case .random = mode else { return param(blank(shape)) }
        return param(rng.uniformTensor(shape, low: -bound, high: bound))
    }

    /// A constant tensor (zeros in `.zeros` mode, untouched in `.uninitialized`).
    func constant(_ shape: [Int], _ value: Float) -> Tensor {
        switch mode {
        case .random: return param(Tensor(repeating: value, shape: shape))
        default: return param(blank(shape))
        }
    }

    private func param(_ t: Tensor) -> Tensor { t.requiresGrad = true; return t }
}

/// y = x W^T + b, PyTorch [out, in] layout (like Tensor.Linear, but built by a ParameterFactory
/// so that huge models can be allocated without drawing random numbers).
public final class Dense: Module {
    public let weight: Tensor
    public let bias: Tensor?

    init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, std: Float? = 0.02, _ f: inout ParameterFactory) {
        if let std {
            weight = f.normal([outFeatures, inFeatures], std: std)
        } else {
            // PyTorch's default nn.Linear initialisation.
            weight = f.uniform([outFeatures, inFeatures], bound: 1 / Float(inFeatures).squareRoot())
        }
        self.bias = bias ? (std == nil ? f.uniform([outFeatures], bound: 1 / Float(inFeatures).squareRoot())
                                       : f.constant([outFeatures], 0)) : nil
    }

    public var entries: [(String, ModuleEntry)] {
        var e: [(String, ModuleEntry)] = [("weight", .tensor(weight))]
        if let bias { e.append(("bias", .tensor(bias))) }
        return e
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { linear(x, weight, bias) }
}

/// `gamma` scaling of a residual branch (DINOv2 LayerScale).
public final class LayerScale: Module {
    public let gamma: Tensor
    init(_ dim: Int, _ f: inout ParameterFactory) { gamma = f.constant([dim], f.layerScaleInit) }
    public var entries: [(String, ModuleEntry)] { [("gamma", .tensor(gamma))] }
    public func callAsFunction(_ x: Tensor) -> Tensor { x * gamma }
}

/// timm attention: packed qkv (with bias), softmax(q k^T / sqrt(Dh)) v, proj.
public final class ViTAttention: Module {
    public let heads: Int
    public let qkv: Dense
    public let proj: Dense
    init(_ dim: Int, heads: Int, _ f: inout ParameterFactory) {
        self.heads = heads
        qkv = Dense(dim, 3 * dim, f: &f)
        proj = Dense(dim, dim, f: &f)
    }
    public var entries: [(String, ModuleEntry)] { [("qkv", .module(qkv)), ("proj", .module(proj))] }
    /// x: (N, T, D) -> (N, T, D)
    public func callAsFunction(_ x: Tensor) -> Tensor {
        proj(packedAttention(qkv(x), heads: heads))
    }
}

extension Dense {
    convenience init(_ i: Int, _ o: Int, bias: Bool = true, std: Float? = 0.02, f: inout ParameterFactory) {
        self.init(i, o, bias: bias, std: std, &f)
    }
}

/// fc1 -> exact GELU -> fc2.
public final class ViTMlp: Module {
    public let fc1: Dense
    public let fc2: Dense
    init(_ dim: Int, hidden: Int, _ f: inout ParameterFactory) {
        fc1 = Dense(dim, hidden, f: &f)
        fc2 = Dense(hidden, dim, f: &f)
    }
    public var entries: [(String, ModuleEntry)] { [("fc1", .module(fc1)), ("fc2", .module(fc2))] }
    public func callAsFunction(_ x: Tensor) -> Tensor { fc2(fc1(x).gelu()) }
}

/// Pre-norm block: x + ls1(attn(norm1 x)); x + ls2(mlp(norm2 x)).
public final class ViTBlock: Module {
    public let norm1: LayerNorm
    public let attn: ViTAttention
    public let ls1: LayerScale?
    public let norm2: LayerNorm
    public let mlp: ViTMlp
    public let ls2: LayerScale?

    init(_ spec: ViTSpec, _ f: inout ParameterFactory) {
        norm1 = makeLayerNorm(spec.width, f)
        attn = ViTAttention(spec.width, heads: spec.heads, &f)
        ls1 = spec.layerScale ? LayerScale(spec.width, &f) : nil
        norm2 = makeLayerNorm(spec.width, f)
        mlp = ViTMlp(spec.width, hidden: spec.mlpHidden, &f)
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

/// LayerNorm eps 1e-6 (ones / zeros; left untouched for `.uninitialized`).
func makeLayerNorm(_ dim: Int, _ f: ParameterFactory) -> LayerNorm {
    let ln = LayerNorm(dim, eps: 1e-6)
    if f.mode == .zeros { ln.weight?.fill(0) }
    return ln
}

/// `patch_embed.proj`: a p x p stride-p convolution, weight [D, C, p, p].
public final class PatchEmbed: Module {
    public let weight: Tensor
    public let bias: Tensor
    public let patchSize: Int

    init(channels: Int, width: Int, patch: Int, _ f: inout ParameterFactory) {
        patchSize = patch
        let bound = 1 / Float(channels * patch * patch).squareRoot()
        weight = f.uniform([width, channels, patch, patch], bound: bound)
        bias = f.uniform([width], bound: bound)
    }

    public var entries: [(String, ModuleEntry)] {
        [("proj", .module(TensorGroup([("weight", weight), ("bias", bias)])))]
    }

    /// images (N, C, H, W) -> (N, G*G, D): the convolution as a product over flattened patches
    /// ordered (c, row-in-patch, col-in-patch), like the weight.
    public func callAsFunction(_ images: Tensor) -> Tensor {
        let (n, c, h, w) = (images.dim(0), images.dim(1), images.dim(2), images.dim(3))
        let p = patchSize, gh = h / p, gw = w / p
        let patches = images.reshaped([n, c, gh, p, gw, p])     // (N, C, G, p, G, p)
            .permuted([0, 2, 4, 1, 3, 5])                       // (N, G, G, C, p, p)
            .reshaped([n, gh * gw, c * p * p])                  // (N, T, C p p)
        return linear(patches, weight.reshaped([weight.dim(0), c * p * p]), bias)  // (N, T, D)
    }
}

/// A module that is just named tensors (used for `patch_embed.proj`).
final class TensorGroup: Module {
    let items: [(String, Tensor)]
    init(_ items: [(String, Tensor)]) { self.items = items }
    var entries: [(String, ModuleEntry)] { items.map { ($0.0, .tensor($0.1)) } }
}

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
        clsToken = f.normal([1, 1, spec.width], std: 1e-6)
        posEmbed = f.normal([1, 1 + spec.numPatches, spec.width], std: 0.02)
        patchEmbed = PatchEmbed(channels: channels, width: spec.width, patch: spec.patchSize, &f)
        var b: [ViTBlock] = []
        for _ in 0..<spec.depth { b.append(ViTBlock(spec, &f)) }
        blocks = b
        norm = makeLayerNorm(spec.width, f)
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
