// SiT: the flow-matching diffusion transformer of the official SoftVQ-VAE code
// (modelling/sit.py), top-down: embedders, block, final layer, model, initialization,
// position tables.
//
// Dimensions: N batch, T tokens, D width, C latent channels, p patch size, H x W a 2-D latent.
// Checkpoint keys are the official state-dict names, written once beside each property.
//
// The layers are the Tensor module's (Linear, Attention, Mlp, Embedding, PatchEmbed), built from
// a zero-filling ParameterFactory, so a 675 M parameter model can be built (and loaded) without
// a random initialization; `SiT.initializeWeights` performs the official one.

import Foundation
import Tensor

// MARK: - Embedders

/// Scalar time -> 256-d frequency embedding [cos, sin] (max period 10000, t used as is) -> MLP.
/// Keys: `mlp.0`, `mlp.2` (index 1 is the SiLU).
public final class TimestepEmbedder: Module {
    public let fc1: Linear
    public let fc2: Linear
    public static let frequencySize = 256

    init(hidden: Int, _ f: inout ParameterFactory) {
        fc1 = Linear(Self.frequencySize, hidden, &f)
        fc2 = Linear(hidden, hidden, &f)
    }

    public var entries: [(String, ModuleEntry)] { [("mlp.0", .module(fc1)), ("mlp.2", .module(fc2))] }

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

/// Class label -> vector; the table has `num_classes + 1` rows when label dropout is on, the last
/// being the null class of classifier-free guidance. Key: `embedding_table.weight`.
public final class LabelEmbedder: Module {
    public let embeddingTable: Embedding

    init(rows: Int, hidden: Int, _ f: inout ParameterFactory) { embeddingTable = Embedding(rows, hidden, &f) }

    public var entries: [(String, ModuleEntry)] { [("embedding_table", .module(embeddingTable))] }

    /// The (rows, D) table.
    public var table: Tensor { embeddingTable.weight }

    /// labels: N -> (N, D). Labels must already be validated.
    public func callAsFunction(_ labels: [Int]) -> Tensor { embeddingTable(labels) }
}

// MARK: - Block and final layer

/// A SiT block with adaLN-Zero conditioning:
///   shift1, scale1, gate1, shift2, scale2, gate2 = adaLN(SiLU(c))
///   x = x + gate1 * attn(modulate(LN(x), shift1, scale1))
///   x = x + gate2 * mlp(modulate(LN(x), shift2, scale2))
public final class SiTBlock: Module {
    public let attn: Attention
    /// fc1 -> tanh-GELU -> fc2 (timm Mlp with `approximate="tanh"`).
    public let mlp: Mlp
    /// The Linear of `nn.Sequential(SiLU, Linear)`; the SiLU of the conditioning is computed once
    /// per forward by the model and shared by every block.
    public let adaLN: Linear

    init(hidden: Int, heads: Int, mlpHidden: Int, qkNorm: Bool, _ f: inout ParameterFactory) {
        attn = Attention(dim: hidden, heads: heads, qkNorm: qkNorm, &f)
        mlp = Mlp(hidden, hidden: mlpHidden, approximateGELU: true, &f)
        adaLN = Linear(hidden, 6 * hidden, &f)
    }

    public var entries: [(String, ModuleEntry)] {
        [("attn", .module(attn)), ("mlp", .module(mlp)), ("adaLN_modulation.1", .module(adaLN))]
    }

    /// x: (N, T, D), siluC: SiLU(c) (N, D) -> (N, T, D)
    public func callAsFunction(_ x: Tensor, _ siluC: Tensor) -> Tensor {
        let d = x.dim(2)
        let m = adaLN(siluC)                                                  // (N, 6D)
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
    public let linear: Linear
    /// The Linear of `adaLN_modulation` (SiLU, Linear).
    public let adaLN: Linear

    init(hidden: Int, outWidth: Int, _ f: inout ParameterFactory) {
        linear = Linear(hidden, outWidth, &f)
        adaLN = Linear(hidden, 2 * hidden, &f)
    }

    public var entries: [(String, ModuleEntry)] {
        [("linear", .module(linear)), ("adaLN_modulation.1", .module(adaLN))]
    }

    /// x: (N, T, D), siluC (N, D) -> (N, T, p p C)
    public func callAsFunction(_ x: Tensor, _ siluC: Tensor) -> Tensor {
        let d = x.dim(2)
        let m = adaLN(siluC)                                                  // (N, 2D)
        let shift = m.slice(axis: 1, 0..<d), scale = m.slice(axis: 1, d..<(2 * d))
        return linear(modulate(x.layerNorm(eps: 1e-6), shift: shift, scale: scale))    // (N, T, p p C)
    }
}

// MARK: - Model

/// The token embedder: a Linear for 1-D tokens (keys `x_embedder.weight/bias`) or a patch
/// convolution for 2-D latents (keys `x_embedder.proj.weight/bias`).
public enum XEmbedder {
    case tokens(Linear)
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
        var f = ParameterFactory(.zeros)
        posEmbed = Tensor(zeros: [1, config.numTokens, d])
        xEmbedder = config.vae1D
            ? .tokens(Linear(config.inChannels, d, &f))
            : .patches(PatchEmbed(channels: config.inChannels, width: d, patch: config.patchSize, &f))
        tEmbedder = TimestepEmbedder(hidden: d, &f)
        yEmbedder = LabelEmbedder(rows: config.labelTableRows, hidden: d, &f)
        var blocks: [SiTBlock] = []
        for _ in 0..<config.depth {
            blocks.append(SiTBlock(hidden: d, heads: config.numHeads, mlpHidden: config.mlpHiddenSize, qkNorm: config.qkNorm, &f))
        }
        self.blocks = blocks
        finalLayer = FinalLayer(hidden: config.decoderHiddenSize, outWidth: config.outputWidth, &f)
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
            var r = next(); p.xavierUniform(rng: &r)
        }
        var r1 = next(); fillNormal(tEmbedder.fc1.weight, std: 0.02, rng: &r1); tEmbedder.fc1.bias?.fill(0)
        var r2 = next(); fillNormal(tEmbedder.fc2.weight, std: 0.02, rng: &r2); tEmbedder.fc2.bias?.fill(0)
        var r3 = next(); fillNormal(yEmbedder.table, std: 0.02, rng: &r3)
        for block in blocks {
            for l in [block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2] {
                var r = next(); l.xavierUniform(rng: &r)
            }
            block.attn.qNorm?.weight?.fill(1); block.attn.qNorm?.bias?.fill(0)
            block.attn.kNorm?.weight?.fill(1); block.attn.kNorm?.bias?.fill(0)
            block.adaLN.weight.fill(0); block.adaLN.bias?.fill(0)   // adaLN-Zero
        }
        finalLayer.adaLN.weight.fill(0); finalLayer.adaLN.bias?.fill(0)
        finalLayer.linear.weight.fill(0); finalLayer.linear.bias?.fill(0)
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
