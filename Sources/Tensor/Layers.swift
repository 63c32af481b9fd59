// The layer library: one class per layer kind, each holding its parameters under the PyTorch
// key fragments (`weight`, `bias`, `qkv`, `proj`, `fc1`, ...) and built through a
// `ParameterFactory` (seeded random, zeros, or uninitialized before a load). SiT, the
// tokenizer's ViTs, the REPA projector and the evaluation classifier are all made of these.
//
// Dimension legend: N batch, T tokens, D width, H heads, Dh = D / H, C channels, p patch.

import Foundation

/// How a Linear draws its parameters when the factory is random.
public enum LinearInit: Sendable, Equatable {
    /// PyTorch's nn.Linear default: weight and bias U(-1/sqrt(in), 1/sqrt(in)).
    case pytorch
    /// timm's ViT: weight truncated normal(0, std) clipped at +-2 std, bias zero.
    case truncatedNormal(std: Float)
}

// MARK: - Linear

/// y = x W^T + b; `weight` [out, in] as in PyTorch. Keys: `weight`, `bias`. In inference (no
/// tape) the product runs through the matmul engine (`Engine.swift`) with the weight packed once
/// in `packed`; training and backward use the OpenBLAS `linear`.
public final class Linear: Module {
    public let weight: Tensor
    public let bias: Tensor?
    /// The weight in the engine's layout and precision, rebuilt when the weight changes.
    public let packed = PackedWeight()

    /// Draws weight then bias from `f` (in that order) when it is random.
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, initialization: LinearInit = .pytorch,
                _ f: inout ParameterFactory) {
        switch initialization {
        case .pytorch:
            let bound = 1 / Float(inFeatures).squareRoot()
            weight = f.uniform([outFeatures, inFeatures], bound: bound)
            self.bias = bias ? f.uniform([outFeatures], bound: bound) : nil
        case let .truncatedNormal(std):
            weight = f.truncatedNormal([outFeatures, inFeatures], std: std)
            self.bias = bias ? f.zeros([outFeatures]) : nil
        }
    }

    /// PyTorch's default initialization, drawn from `rng`.
    public convenience init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, rng: inout RandomGenerator) {
        var f = ParameterFactory(rng: rng)
        self.init(inFeatures, outFeatures, bias: bias, initialization: .pytorch, &f)
        rng = f.rng
    }

    public var entries: [(String, ModuleEntry)] {
        var e: [(String, ModuleEntry)] = [("weight", .tensor(weight))]
        if let bias { e.append(("bias", .tensor(bias))) }
        return e
    }

    public var inFeatures: Int { weight.dim(1) }
    public var outFeatures: Int { weight.dim(0) }

    /// (..., in) -> (..., out)
    public func callAsFunction(_ x: Tensor) -> Tensor { engineLinear(x, weight, bias, packed: packed) }

    /// Xavier-uniform weight and zero bias (the DiT / SiT `_basic_init`).
    public func xavierUniform(rng: inout RandomGenerator) {
        fillXavierUniform(weight, fanIn: inFeatures, fanOut: outFeatures, rng: &rng)
        bias?.fill(0)
    }
}

// MARK: - LayerNorm

/// LayerNorm over the last axis; affine weight/bias optional. Keys: `weight`, `bias`.
public final class LayerNorm: Module {
    public let weight: Tensor?
    public let bias: Tensor?
    public let eps: Float

    /// Ones and zeros (PyTorch's initialization).
    public init(_ dim: Int, eps: Float = 1e-5, affine: Bool = true) {
        self.eps = eps
        weight = affine ? Tensor(repeating: 1, shape: [dim], requiresGrad: true) : nil
        bias = affine ? Tensor(zeros: [dim], requiresGrad: true) : nil
    }

    /// Ones and zeros from `f` (zeros in `.zeros` mode, untouched in `.uninitialized`).
    public init(_ dim: Int, eps: Float = 1e-5, affine: Bool = true, _ f: inout ParameterFactory) {
        self.eps = eps
        weight = affine ? f.constant([dim], 1) : nil
        bias = affine ? f.zeros([dim]) : nil
    }

    public var entries: [(String, ModuleEntry)] {
        guard let weight, let bias else { return [] }
        return [("weight", .tensor(weight)), ("bias", .tensor(bias))]
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { x.layerNorm(weight: weight, bias: bias, eps: eps) }
}

// MARK: - Embedding

/// A lookup table (count, dim) under the key `weight` (nn.Embedding).
public final class Embedding: Module {
    public let weight: Tensor

    /// Normal(0, std) rows drawn from `f` when it is random.
    public init(_ count: Int, _ dim: Int, std: Float = 1, _ f: inout ParameterFactory) {
        weight = f.normal([count, dim], std: std)
    }

    public convenience init(_ count: Int, _ dim: Int, std: Float = 1, rng: inout RandomGenerator) {
        var f = ParameterFactory(rng: rng)
        self.init(count, dim, std: std, &f)
        rng = f.rng
    }

    public var entries: [(String, ModuleEntry)] { [("weight", .tensor(weight))] }

    /// indices: N -> (N, dim). Indices must already be validated.
    public func callAsFunction(_ indices: [Int]) -> Tensor { embedding(weight, indices) }
}

// MARK: - Attention

/// Multi-head self-attention as in timm: packed `qkv` (bias optional), optional per-head q/k
/// LayerNorm (`q_norm`, `k_norm`), `proj`. Without q/k norm the heads are read straight from
/// the packed projection (no permutes).
public final class Attention: Module {
    public let heads: Int
    public let qkv: Linear
    public let proj: Linear
    public let qNorm: LayerNorm?
    public let kNorm: LayerNorm?

    public init(dim: Int, heads: Int, qkvBias: Bool = true, qkNorm: Bool = false, normEps: Float = 1e-5,
                linear initialization: LinearInit = .pytorch, _ f: inout ParameterFactory) {
        precondition(dim % heads == 0, "Attention: width \(dim) is not divisible by \(heads) heads")
        self.heads = heads
        qkv = Linear(dim, 3 * dim, bias: qkvBias, initialization: initialization, &f)
        proj = Linear(dim, dim, initialization: initialization, &f)
        qNorm = qkNorm ? LayerNorm(dim / heads, eps: normEps, &f) : nil
        kNorm = qkNorm ? LayerNorm(dim / heads, eps: normEps, &f) : nil
    }

    public convenience init(dim: Int, heads: Int, qkvBias: Bool = true, qkNorm: Bool = false, normEps: Float = 1e-5,
                            rng: inout RandomGenerator) {
        var f = ParameterFactory(rng: rng)
        self.init(dim: dim, heads: heads, qkvBias: qkvBias, qkNorm: qkNorm, normEps: normEps, &f)
        rng = f.rng
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

// MARK: - Mlp

/// Transformer MLP: fc1 -> GELU (exact, or tanh-approximated) -> fc2. Keys: `fc1`, `fc2`.
public final class Mlp: Module {
    public let fc1: Linear
    public let fc2: Linear
    public let approximateGELU: Bool

    public init(_ dim: Int, hidden: Int, out: Int? = nil, approximateGELU: Bool, linear initialization: LinearInit = .pytorch,
                _ f: inout ParameterFactory) {
        fc1 = Linear(dim, hidden, initialization: initialization, &f)
        fc2 = Linear(hidden, out ?? dim, initialization: initialization, &f)
        self.approximateGELU = approximateGELU
    }

    public convenience init(_ dim: Int, hidden: Int, out: Int? = nil, approximateGELU: Bool, rng: inout RandomGenerator) {
        var f = ParameterFactory(rng: rng)
        self.init(dim, hidden: hidden, out: out, approximateGELU: approximateGELU, &f)
        rng = f.rng
    }

    public var entries: [(String, ModuleEntry)] { [("fc1", .module(fc1)), ("fc2", .module(fc2))] }

    /// (N, T, D) -> (N, T, out)
    public func callAsFunction(_ x: Tensor) -> Tensor {
        fc2(fc1(x).gelu(approximate: approximateGELU))
    }
}

// MARK: - Convolutions

/// A square-kernel Conv2d layer (`weight` (O, C, k, k), `bias` (O)); PyTorch's default
/// initialization U(-1/sqrt(C k k), 1/sqrt(C k k)) for both, weight first.
public final class Conv2d: Module {
    public let weight: Tensor
    public let bias: Tensor?
    public let stride: Int
    public let padding: Int

    public init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                bias: Bool = true, _ f: inout ParameterFactory) {
        let bound = 1 / Float(inChannels * kernel * kernel).squareRoot()
        weight = f.uniform([outChannels, inChannels, kernel, kernel], bound: bound)
        self.bias = bias ? f.uniform([outChannels], bound: bound) : nil
        self.stride = stride
        self.padding = padding
    }

    public convenience init(_ inChannels: Int, _ outChannels: Int, kernel: Int, stride: Int = 1, padding: Int = 0,
                            bias: Bool = true, rng: inout RandomGenerator) {
        var f = ParameterFactory(rng: rng)
        self.init(inChannels, outChannels, kernel: kernel, stride: stride, padding: padding, bias: bias, &f)
        rng = f.rng
    }

    public var entries: [(String, ModuleEntry)] {
        var e: [(String, ModuleEntry)] = [("weight", .tensor(weight))]
        if let bias { e.append(("bias", .tensor(bias))) }
        return e
    }

    /// (N, C, H, W) -> (N, O, Ho, Wo)
    public func callAsFunction(_ x: Tensor) -> Tensor { conv2d(x, weight, bias, stride: stride, padding: padding) }
}

/// timm's PatchEmbed: a p x p convolution with stride p under the key `proj`, applied as one
/// Linear over the flattened (C, p, p) patches and returned as tokens.
public final class PatchEmbed: Module {
    public let proj: Conv2d
    public let patchSize: Int

    public init(channels: Int, width: Int, patch: Int, _ f: inout ParameterFactory) {
        patchSize = patch
        proj = Conv2d(channels, width, kernel: patch, stride: patch, &f)
    }

    public var entries: [(String, ModuleEntry)] { [("proj", .module(proj))] }

    /// images (N, C, H, W) -> (N, T, D), T = (H/p)(W/p) row-major over the patch grid.
    public func callAsFunction(_ images: Tensor) -> Tensor {
        let (n, c, h, w, p) = (images.dim(0), images.dim(1), images.dim(2), images.dim(3), patchSize)
        let patches = images.reshaped([n, c, h / p, p, w / p, p])            // (N, C, h, p, w, p)
            .permuted([0, 2, 4, 1, 3, 5])                                      // (N, h, w, C, p, p)
            .reshaped([n, (h / p) * (w / p), c * p * p])                       // (N, T, C p p)
        let weight = proj.weight.reshaped([proj.weight.dim(0), c * p * p])     // (D, C p p)
        return linear(patches, weight, proj.bias)                              // (N, T, D)
    }

    /// Xavier-uniform on the weight viewed as [D, C p p], zero bias (DiT / SiT).
    public func xavierUniform(rng: inout RandomGenerator) {
        let w = proj.weight
        fillXavierUniform(w, fanIn: w.count / w.dim(0), fanOut: w.dim(0), rng: &rng)
        proj.bias?.fill(0)
    }
}
