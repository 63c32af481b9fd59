// SiT: the flow-matching diffusion transformer of the official SoftVQ-VAE code
// (modelling/sit.py), top-down: layers, embedders, block, final layer, model, initialization,
// position tables.
//
// Dimensions: N batch, T tokens, D width, C latent channels, p patch size, H x W a 2-D latent.
// Checkpoint keys are the official state-dict names, written once beside each property.
//
// The layers here hold their parameters as Tensors of the Tensor module and run its kernels
// (`linear`, `packedAttention`, `modulate`, `layerNorm`). They allocate without drawing random
// numbers, so a 675 M parameter model can be built (and loaded) without a random initialization;
// `SiT.initializeWeights` performs the official one.

import Foundation
import Tensor

// MARK: - Layers

/// y = x W^T + b, W in PyTorch's [out, in] layout. Keys: `weight`, `bias`.
public final class SiTLinear: Module {
    public let weight: Tensor
    public let bias: Tensor

    /// Zero-filled parameters (call `SiT.initializeWeights` or load a checkpoint).
    public init(_ inFeatures: Int, _ outFeatures: Int) {
        weight = Tensor(zeros: [outFeatures, inFeatures], requiresGrad: true)
        bias = Tensor(zeros: [outFeatures], requiresGrad: true)
    }

    public var entries: [(String, ModuleEntry)] { [("weight", .tensor(weight)), ("bias", .tensor(bias))] }
    public var inFeatures: Int { weight.dim(1) }
    public var outFeatures: Int { weight.dim(0) }

    public func callAsFunction(_ x: Tensor) -> Tensor { linear(x, weight, bias) }

    /// Xavier-uniform weight, zero bias (the DiT/SiT `_basic_init`).
    func xavierUniform(rng: inout RandomGenerator) {
        fillXavierUniform(weight, fanIn: inFeatures, fanOut: outFeatures, rng: &rng)
        bias.fill(0)
    }
}

/// timm-style attention with packed qkv (bias), optional per-head LayerNorm of q and k
/// (`q_norm`, `k_norm`, nn.LayerNorm eps 1e-5), and `proj`.
public final class SiTAttention: Module {
    public let heads: Int
    public let qkv: SiTLinear
    public let proj: SiTLinear
    public let qNorm: LayerNorm?
    public let kNorm: LayerNorm?

    init(dim: Int, heads: Int, qkNorm: Bool) {
        self.heads = heads
        qkv = SiTLinear(dim, 3 * dim)
        proj = SiTLinear(dim, dim)
        qNorm = qkNorm ? LayerNorm(dim / heads, eps: 1e-5) : nil
        kNorm = qkNorm ? LayerNorm(dim / heads, eps: 1e-5) : nil
    }

    public var entries: [(String, ModuleEntry)] {
        var e: [(String, ModuleEntry)] = [("qkv", .module(qkv))]
        if let qNorm, let kNorm { e += [("q_norm", .module(qNorm)), ("k_norm", .module(kNorm))] }
        e.append(("proj", .module(proj)))
        return e
    }

    /// x: (N, T, D) -> (N, T, D)
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let packed = qkv(x)                                                   // (N, T, 3D)
        guard let qNorm, let kNorm else {
            return proj(packedAttention(packed, heads: heads))                // (N, T, D)
        }
        let (n, t, d) = (x.dim(0), x.dim(1), x.dim(2))
        let split = packed.reshaped([n, t, 3, heads, d / heads]).permuted([2, 0, 3, 1, 4])  // (3, N, H, T, Dh)
        let o = scaledDotProductAttention(qNorm(split[0]), kNorm(split[1]), split[2])      // (N, H, T, Dh)
        return proj(o.permuted([0, 2, 1, 3]).reshaped([n, t, d]))              // (N, T, D)
    }
}

/// The block MLP: fc1 -> tanh-GELU -> fc2 (timm Mlp with `approximate="tanh"`).
public final class SiTMlp: Module {
    public let fc1: SiTLinear
    public let fc2: SiTLinear

    init(dim: Int, hidden: Int) {
        fc1 = SiTLinear(dim, hidden)
        fc2 = SiTLinear(hidden, dim)
    }

    public var entries: [(String, ModuleEntry)] { [("fc1", .module(fc1)), ("fc2", .module(fc2))] }

    /// (N, T, D) -> (N, T, D)
    public func callAsFunction(_ x: Tensor) -> Tensor { fc2(fc1(x).gelu(approximate: true)) }
}

/// `nn.Sequential(SiLU, Linear)`: the Linear sits at index 1. The SiLU of the conditioning is
/// computed once per forward by the model and shared by every block.
public final class AdaLNModulation: Module {
    public let linear: SiTLinear

    init(_ dim: Int, chunks: Int) { linear = SiTLinear(dim, chunks * dim) }

    public var entries: [(String, ModuleEntry)] { [("1", .module(linear))] }
}

// MARK: - Embedders

/// The 2-D patch embedding: a p x p convolution with stride p (timm PatchEmbed), key `proj`;
/// applied as a Linear on flattened (C, p, p) patches.
public final class PatchEmbed: Module {
    public let proj: PatchConv
    public let patchSize: Int

    init(inChannels: Int, hidden: Int, patchSize: Int) {
        self.patchSize = patchSize
        proj = PatchConv(inChannels: inChannels, hidden: hidden, patchSize: patchSize)
    }

    public var entries: [(String, ModuleEntry)] { [("proj", .module(proj))] }

    /// x: (N, C, H, W) -> (N, T, D) with T = (H/p)(W/p), row-major over the patch grid.
    func callAsFunction(_ x: Tensor) -> Tensor {
        let (n, c, h, w, p) = (x.dim(0), x.dim(1), x.dim(2), x.dim(3), patchSize)
        let patches = x.reshaped([n, c, h / p, p, w / p, p])                  // (N, C, h, p, w, p)
            .permuted([0, 2, 4, 1, 3, 5])                                      // (N, h, w, C, p, p)
            .reshaped([n, (h / p) * (w / p), c * p * p])                       // (N, T, C p p)
        let w2 = proj.weight.reshaped([proj.weight.dim(0), c * p * p])         // (D, C p p)
        return linear(patches, w2, proj.bias)                                  // (N, T, D)
    }
}

/// The convolution parameters: weight [D, C, p, p], bias [D].
public final class PatchConv: Module {
    public let weight: Tensor
    public let bias: Tensor

    init(inChannels: Int, hidden: Int, patchSize: Int) {
        weight = Tensor(zeros: [hidden, inChannels, patchSize, patchSize], requiresGrad: true)
        bias = Tensor(zeros: [hidden], requiresGrad: true)
    }

    public var entries: [(String, ModuleEntry)] { [("weight", .tensor(weight)), ("bias", .tensor(bias))] }
}

/// Scalar time -> 256-d frequency embedding [cos, sin] (max period 10000, t used as is) -> MLP.
/// Keys: `mlp.0`, `mlp.2` (index 1 is the SiLU).
public final class TimestepEmbedder: Module {
    public let fc1: SiTLinear
    public let fc2: SiTLinear
    public static let frequencySize = 256

    init(hidden: Int) {
        fc1 = SiTLinear(Self.frequencySize, hidden)
        fc2 = SiTLinear(hidden, hidden)
    }

    public var entries: [(String, ModuleEntry)] {
        [("mlp", .module(IndexedEntries([(0, fc1), (2, fc2)])))]
    }

    /// The sinusoidal embedding (N, 256), computed in float32 as the official code does.
    public static func frequencyEmbedding(_ t: [Float], dim: Int = frequencySize, maxPeriod: Float = 10000) -> Tensor {
        let half = dim / 2
        let out = Tensor(zeros: [t.count, dim])
        let logP = -Foundation.log(maxPeriod)
        let freqs = (0..<half).map { Foundation.exp(logP * Float($0) / Float(half)) }
        for (r, ti) in t.enumerated() {
            let row = out.pointer + r * dim
            for j in 0..<half {
                let a = ti * freqs[j]
                row[j] = Foundation.cos(a)
                row[half + j] = Foundation.sin(a)
            }
        }
        return out
    }

    /// t: N times -> (N, D)
    public func callAsFunction(_ t: [Float]) -> Tensor {
        fc2(fc1(Self.frequencyEmbedding(t)).silu())
    }
}

/// Keys `0`, `2`, ... of an `nn.Sequential` whose other entries have no parameters.
final class IndexedEntries: Module {
    let items: [(Int, any Module)]
    init(_ items: [(Int, any Module)]) { self.items = items }
    var entries: [(String, ModuleEntry)] { items.map { (String($0.0), .module($0.1)) } }
}

/// Class label -> vector; the table has `num_classes + 1` rows when label dropout is on, the last
/// being the null class of classifier-free guidance. Key: `embedding_table.weight`.
public final class LabelEmbedder: Module {
    public let table: Tensor

    init(rows: Int, hidden: Int) { table = Tensor(zeros: [rows, hidden], requiresGrad: true) }

    public var entries: [(String, ModuleEntry)] {
        [("embedding_table", .module(WeightOnly(table)))]
    }

    /// labels: N -> (N, D). Labels must already be validated.
    public func callAsFunction(_ labels: [Int]) -> Tensor { embedding(table, labels) }
}

/// A module whose only entry is `weight` (nn.Embedding).
final class WeightOnly: Module {
    let weight: Tensor
    init(_ w: Tensor) { weight = w }
    var entries: [(String, ModuleEntry)] { [("weight", .tensor(weight))] }
}

// MARK: - Block and final layer

/// A SiT block with adaLN-Zero conditioning:
///   shift1, scale1, gate1, shift2, scale2, gate2 = adaLN(SiLU(c))
///   x = x + gate1 * attn(modulate(LN(x), shift1, scale1))
///   x = x + gate2 * mlp(modulate(LN(x), shift2, scale2))
public final class SiTBlock: Module {
    public let attn: SiTAttention
    public let mlp: SiTMlp
    public let adaLN: AdaLNModulation

    init(hidden: Int, heads: Int, mlpHidden: Int, qkNorm: Bool) {
        attn = SiTAttention(dim: hidden, heads: heads, qkNorm: qkNorm)
        mlp = SiTMlp(dim: hidden, hidden: mlpHidden)
        adaLN = AdaLNModulation(hidden, chunks: 6)
    }

    public var entries: [(String, ModuleEntry)] {
        [("attn", .module(attn)), ("mlp", .module(mlp)), ("adaLN_modulation", .module(adaLN))]
    }

    /// x: (N, T, D), siluC: SiLU(c) (N, D) -> (N, T, D)
    public func callAsFunction(_ x: Tensor, _ siluC: Tensor) -> Tensor {
        let d = x.dim(2)
        let m = adaLN.linear(siluC)                                           // (N, 6D)
        let chunk = { (i: Int) in m.slice(axis: 1, (i * d)..<((i + 1) * d)) }  // (N, D)
        let (shift1, scale1, gate1) = (chunk(0), chunk(1), chunk(2))
        let (shift2, scale2, gate2) = (chunk(3), chunk(4), chunk(5))
        let a = attn(modulate(x.layerNorm(eps: 1e-6), shift: shift1, scale: scale1))   // (N, T, D)
        let h = gatedResidual(x, gate: gate1, a)                                         // (N, T, D)
        let f = mlp(modulate(h.layerNorm(eps: 1e-6), shift: shift2, scale: scale2))    // (N, T, D)
        return gatedResidual(h, gate: gate2, f)                                          // (N, T, D)
    }
}

/// LN -> modulate(shift, scale) -> Linear to p * p * C.
public final class FinalLayer: Module {
    public let linear: SiTLinear
    public let adaLN: AdaLNModulation

    init(hidden: Int, outWidth: Int) {
        linear = SiTLinear(hidden, outWidth)
        adaLN = AdaLNModulation(hidden, chunks: 2)
    }

    public var entries: [(String, ModuleEntry)] {
        [("linear", .module(linear)), ("adaLN_modulation", .module(adaLN))]
    }

    /// x: (N, T, D), siluC (N, D) -> (N, T, p p C)
    public func callAsFunction(_ x: Tensor, _ siluC: Tensor) -> Tensor {
        let d = x.dim(2)
        let m = adaLN.linear(siluC)                                           // (N, 2D)
        let shift = m.slice(axis: 1, 0..<d), scale = m.slice(axis: 1, d..<(2 * d))
        return linear(modulate(x.layerNorm(eps: 1e-6), shift: shift, scale: scale))    // (N, T, p p C)
    }
}

// MARK: - Model

/// The token embedder: a Linear for 1-D tokens (keys `x_embedder.weight/bias`) or a patch
/// convolution for 2-D latents (keys `x_embedder.proj.weight/bias`).
public enum XEmbedder {
    case tokens(SiTLinear)
    case patches(PatchEmbed)

    var module: any Module {
        switch self {
        case let .tokens(l): return l
        case let .patches(p): return p
        }
    }
}

public final class SiT: Module {
    public let config: SiTConfig
    /// Fixed sin-cos position table (1, T, D); in the state dict, never trained.
    public let posEmbed: Tensor
    public let xEmbedder: XEmbedder
    public let tEmbedder: TimestepEmbedder
    public let yEmbedder: LabelEmbedder
    public let blocks: [SiTBlock]
    public let finalLayer: FinalLayer
    /// After `SiT.load`: the largest |stored pos_embed - computed sin-cos table|.
    public internal(set) var posEmbedMaxDifference: Float?

    /// Builds the architecture with the official random initialization.
    public convenience init(config: SiTConfig, rng: inout RandomGenerator) throws {
        try self.init(config: config, initialize: false)
        initializeWeights(rng: &rng)
    }

    /// Builds the architecture with zero parameters and the computed position table (fast; for
    /// loading a checkpoint next), or with the official initialization from seed 0.
    public init(config: SiTConfig, initialize: Bool = false) throws {
        try config.validate()
        self.config = config
        let d = config.hiddenSize
        posEmbed = Tensor(zeros: [1, config.numTokens, d])
        xEmbedder = config.vae1D
            ? .tokens(SiTLinear(config.inChannels, d))
            : .patches(PatchEmbed(inChannels: config.inChannels, hidden: d, patchSize: config.patchSize))
        tEmbedder = TimestepEmbedder(hidden: d)
        yEmbedder = LabelEmbedder(rows: config.labelTableRows, hidden: d)
        blocks = (0..<config.depth).map { _ in
            SiTBlock(hidden: d, heads: config.numHeads, mlpHidden: config.mlpHiddenSize, qkNorm: config.qkNorm)
        }
        finalLayer = FinalLayer(hidden: config.decoderHiddenSize, outWidth: config.outputWidth)
        posEmbed.assign(SiT.positionTable(config))
        if initialize {
            var rng = RandomGenerator(seed: 0)
            initializeWeights(rng: &rng)
        }
    }

    public var entries: [(String, ModuleEntry)] {
        [("pos_embed", .tensor(posEmbed)),
         ("x_embedder", .module(xEmbedder.module)),
         ("t_embedder", .module(tEmbedder)),
         ("y_embedder", .module(yEmbedder)),
         ("blocks", .modules(blocks)),
         ("final_layer", .module(finalLayer))]
    }

    /// The official initialization (modelling/sit.py `initialize_weights`), in one place:
    /// - every Linear: xavier-uniform weight, zero bias;
    /// - the patch/token embedder: xavier-uniform on the weight viewed as [D, C p p], zero bias;
    /// - label table: normal(0, 0.02); timestep MLP weights: normal(0, 0.02);
    /// - adaLN-Zero: every block's adaLN Linear and the final layer's adaLN and output Linear are zero;
    /// - pos_embed: the fixed sin-cos table (frozen).
    /// One 64-bit draw from `rng` seeds the initialization; each random tensor then uses its own
    /// stream (`split(i)`, i in state-dict order).
    public func initializeWeights(rng: inout RandomGenerator) {
        let base = RandomGenerator(seed: rng.nextUInt64())
        var stream: UInt64 = 0
        func next() -> RandomGenerator { defer { stream += 1 }; return base.split(stream) }

        switch xEmbedder {
        case let .tokens(l):
            var r = next(); l.xavierUniform(rng: &r)
        case let .patches(p):
            var r = next()
            let w = p.proj.weight
            fillXavierUniform(w, fanIn: w.count / w.dim(0), fanOut: w.dim(0), rng: &r)
            p.proj.bias.fill(0)
        }
        var r1 = next(); fillNormal(tEmbedder.fc1.weight, std: 0.02, rng: &r1); tEmbedder.fc1.bias.fill(0)
        var r2 = next(); fillNormal(tEmbedder.fc2.weight, std: 0.02, rng: &r2); tEmbedder.fc2.bias.fill(0)
        var r3 = next(); fillNormal(yEmbedder.table, std: 0.02, rng: &r3)
        for block in blocks {
            for l in [block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2] {
                var r = next(); l.xavierUniform(rng: &r)
            }
            block.attn.qNorm?.weight?.fill(1); block.attn.qNorm?.bias?.fill(0)
            block.attn.kNorm?.weight?.fill(1); block.attn.kNorm?.bias?.fill(0)
            block.adaLN.linear.weight.fill(0); block.adaLN.linear.bias.fill(0)   // adaLN-Zero
        }
        finalLayer.adaLN.linear.weight.fill(0); finalLayer.adaLN.linear.bias.fill(0)
        finalLayer.linear.weight.fill(0); finalLayer.linear.bias.fill(0)
        posEmbed.assign(SiT.positionTable(config))
    }

    // MARK: forward

    /// Velocity prediction. x: (N, T, C) tokens for 1-D models or (N, C, H, W) for 2-D models;
    /// t: N times in [0, 1] (t = 1 noise, t = 0 data; not scaled); y: N labels in
    /// 0...num_classes (num_classes = the null class). Returns the velocity, shaped like x.
    /// Records the tape when called outside `Autograd.noGrad`.
    public func callAsFunction(_ x: Tensor, t: [Float], y: [Int]) throws -> Tensor {
        try validate(x, t: t, y: y)
        let n = x.dim(0)
        let tokens: Tensor                                                   // (N, T, D)
        switch xEmbedder {
        case let .tokens(l): tokens = l(x)
        case let .patches(p): tokens = p(x)
        }
        var h = tokens + posEmbed                                            // (N, T, D)
        let c = tEmbedder(t) + yEmbedder(y)                                  // (N, D)
        let siluC = c.silu()                                                 // (N, D)
        for block in blocks { h = block(h, siluC) }                          // (N, T, D)
        let out = finalLayer(h, siluC)                                       // (N, T, p p C)
        guard !config.vae1D else { return out }                             // (N, T, C)
        return unpatchify(out, batch: n)                                     // (N, C, H, W)
    }

    /// The same with times as a tensor (N,) (any values; no gradient flows to t).
    public func callAsFunction(_ x: Tensor, t: Tensor, y: [Int]) throws -> Tensor {
        try callAsFunction(x, t: t.scalars, y: y)
    }

    /// (N, T, p p C) -> (N, C, H, W), the inverse of the patch grid order.
    func unpatchify(_ x: Tensor, batch n: Int) -> Tensor {
        let p = config.patchSize, c = config.inChannels, g = config.inputSize / p
        return x.reshaped([n, g, g, p, p, c])                                // (N, h, w, p, q, C)
            .permuted([0, 5, 1, 3, 2, 4])                                    // (N, C, h, p, w, q)
            .reshaped([n, c, g * p, g * p])                                  // (N, C, H, W)
    }

    /// Throws a clear error for a latent of the wrong shape, a time count that differs from the
    /// batch, or a label outside the table.
    public func validate(_ x: Tensor, t: [Float], y: [Int]) throws {
        let expected = config.latentShape
        guard x.rank == expected.count + 1, Array(x.shape.dropFirst()) == expected, x.dim(0) > 0 else {
            let layout = config.vae1D ? "(N, tokens, channels)" : "(N, channels, height, width)"
            throw SiTError.badLatentShape(expected: "\(layout) = (N, \(expected.map(String.init).joined(separator: ", ")))",
                                          found: x.shape)
        }
        let n = x.dim(0)
        guard t.count == n else { throw SiTError.batchMismatch("\(t.count) times for a batch of \(n)") }
        guard y.count == n else { throw SiTError.batchMismatch("\(y.count) labels for a batch of \(n)") }
        let maxLabel = config.labelTableRows - 1
        for (i, label) in y.enumerated() where label < 0 || label > maxLabel {
            throw SiTError.labelOutOfRange(label: label, index: i, validRange: 0...maxLabel)
        }
        for (i, ti) in t.enumerated() where !ti.isFinite {
            throw SiTError.nonFinite("time \(ti) at batch entry \(i)")
        }
    }

    /// The null (unconditional) class label.
    public var nullLabel: Int { config.numClasses }

    // MARK: position tables

    /// The fixed sin-cos table (1, T, D) the official code computes: 1-D interleaved (sin at even
    /// channels, cos at odd, in float32) or MAE 2-D ([sin, cos] of the column, then of the row).
    public static func positionTable(_ config: SiTConfig) -> Tensor {
        let d = config.hiddenSize
        let t = config.numTokens
        let out = Tensor(zeros: [1, t, d])
        let p = out.pointer
        if config.vae1D {
            // torch float32: div = exp(arange(0, d, 2) * -(ln 10000 / d)); pe = sin/cos(pos * div)
            let k = -Float(Foundation.log(10000.0) / Double(d))
            for pos in 0..<t {
                for i in stride(from: 0, to: d, by: 2) {
                    let a = Float(pos) * Foundation.exp(Float(i) * k)
                    p[pos * d + i] = Foundation.sin(a)
                    if i + 1 < d { p[pos * d + i + 1] = Foundation.cos(a) }
                }
            }
        } else {
            // numpy float64: omega_j = 1 / 10000^(j / (D/4)), j < D/4; half 1 = column, half 2 = row.
            let g = config.inputSize / config.patchSize
            let quarter = d / 4
            for row in 0..<g {
                for col in 0..<g {
                    let base = p + (row * g + col) * d
                    for (half, pos) in [(0, Double(col)), (1, Double(row))] {
                        for j in 0..<quarter {
                            let omega = 1 / Foundation.pow(10000.0, Double(j) / Double(quarter))
                            base[half * 2 * quarter + j] = Float(Foundation.sin(pos * omega))
                            base[half * 2 * quarter + quarter + j] = Float(Foundation.cos(pos * omega))
                        }
                    }
                }
            }
        }
        return out
    }
}

// MARK: - Initialization helpers

func fillXavierUniform(_ t: Tensor, fanIn: Int, fanOut: Int, rng: inout RandomGenerator) {
    let bound = (6 / Double(fanIn + fanOut)).squareRoot()
    let p = t.pointer
    for i in 0..<t.count { p[i] = Float((2 * rng.uniform() - 1) * bound) }
}

func fillNormal(_ t: Tensor, std: Float, rng: inout RandomGenerator) {
    let p = t.pointer
    for i in 0..<t.count { p[i] = Float(rng.normal()) * std }
}
