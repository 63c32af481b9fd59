// Modules: classes that hold parameters under their official PyTorch key fragments, and one
// recursive enumeration of key paths (`blocks.3.attn.qkv.weight`) used by loading, saving and
// the optimizers.

import Foundation

/// One named entry of a module: a tensor (parameter or buffer), a child module, or an indexed
/// list of child modules (`blocks.0`, `blocks.1`, ...).
public enum ModuleEntry {
    case tensor(Tensor)
    case module(any Module)
    case modules([any Module])
}

public protocol Module: AnyObject {
    /// Direct entries under their key fragments, in state-dict order.
    var entries: [(String, ModuleEntry)] { get }
}

extension Module {
    /// Every tensor under its full key path, in state-dict order (parameters and buffers).
    public func namedTensors(prefix: String = "") -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        func walk(_ m: any Module, _ p: String) {
            for (key, entry) in m.entries {
                let path = p.isEmpty ? key : p + "." + key
                switch entry {
                case let .tensor(t): out.append((path, t))
                case let .module(child): walk(child, path)
                case let .modules(list): for (i, child) in list.enumerated() { walk(child, path + ".\(i)") }
                }
            }
        }
        walk(self, prefix)
        return out
    }

    /// Tensors that train (requiresGrad), in state-dict order.
    public func trainableParameters() -> [(String, Tensor)] { namedTensors().filter { $0.1.requiresGrad } }

    public var parameterCount: Int { namedTensors().reduce(0) { $0 + $1.1.count } }

    public func zeroGrad() { for (_, t) in namedTensors() { t.grad = nil } }

    /// Loads every tensor strictly from a safetensors file: every key present, shapes equal,
    /// and no key of the file unused unless `skip` accepts it. Returns the skipped keys.
    /// Tensors whose key `read` rejects are checked but not read (their values stay as they were).
    @discardableResult
    public func load(from file: SafeTensorsFile, prefix: String = "", skip: (String) -> Bool = { _ in false },
                     read: (String) -> Bool = { _ in true }) throws -> [String] {
        let name = (file.path as NSString).lastPathComponent
        let own = namedTensors()
        var used = Set<String>()
        for (key, t) in own {
            let full = prefix + key
            guard let info = file.entries[full] else { throw CheckpointError.missingKey(name, full) }
            guard info.shape == t.shape else {
                throw CheckpointError.shapeMismatch(full, expected: t.shape, found: info.shape, file: name)
            }
            used.insert(full)
        }
        let unused = file.names.filter { $0.hasPrefix(prefix) && !used.contains($0) }
        let skipped = unused.filter(skip)
        let rejected = unused.filter { !skip($0) }
        guard rejected.isEmpty else { throw CheckpointError.unexpectedKeys(name, rejected) }
        // Only write once everything checked out, so a failed load leaves the model untouched.
        for (key, t) in own where read(key) { try file.read(file.entries[prefix + key]!, into: t.pointer) }
        return skipped
    }

    /// Saves every tensor under its key path (atomically).
    public func save(to path: String, dtype: DType = .f32, metadata: [String: String] = [:]) throws {
        try writeSafeTensors(namedTensors(), to: path, dtype: dtype, metadata: metadata)
    }

    /// Copies all tensor values from a module of the same architecture.
    public func copyValues(from other: any Module) {
        let mine = namedTensors(), theirs = other.namedTensors()
        precondition(mine.count == theirs.count, "copyValues: different architectures")
        for ((k1, a), (k2, b)) in zip(mine, theirs) {
            precondition(k1 == k2 && a.shape == b.shape, "copyValues: \(k1) vs \(k2)")
            a.assign(b)
        }
    }
}

// MARK: - Layers

/// y = x W^T + b; `weight` [out, in] as in PyTorch.
public final class Linear: Module {
    public let weight: Tensor
    public let bias: Tensor?

    /// PyTorch's default initialization: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, rng: inout RandomGenerator) {
        let bound = 1 / Float(inFeatures).squareRoot()
        weight = rng.uniformTensor([outFeatures, inFeatures], low: -bound, high: bound)
        weight.requiresGrad = true
        self.bias = bias ? rng.uniformTensor([outFeatures], low: -bound, high: bound) : nil
        self.bias?.requiresGrad = true
    }

    public var entries: [(String, ModuleEntry)] {
        var e: [(String, ModuleEntry)] = [("weight", .tensor(weight))]
        if let bias { e.append(("bias", .tensor(bias))) }
        return e
    }

    public var inFeatures: Int { weight.dim(1) }
    public var outFeatures: Int { weight.dim(0) }

    public func callAsFunction(_ x: Tensor) -> Tensor { linear(x, weight, bias) }

    /// Xavier-uniform weight and zero bias (the DiT / SiT initialization of linear layers).
    public func xavierUniform(rng: inout RandomGenerator) {
        let bound = (6 / Float(inFeatures + outFeatures)).squareRoot()
        weight.assign(rng.uniformTensor(weight.shape, low: -bound, high: bound))
        bias?.fill(0)
    }
}

/// LayerNorm over the last axis; affine weight/bias optional.
public final class LayerNorm: Module {
    public let weight: Tensor?
    public let bias: Tensor?
    public let eps: Float

    public init(_ dim: Int, eps: Float = 1e-5, affine: Bool = true) {
        self.eps = eps
        weight = affine ? Tensor(repeating: 1, shape: [dim], requiresGrad: true) : nil
        bias = affine ? Tensor(zeros: [dim], requiresGrad: true) : nil
    }

    public var entries: [(String, ModuleEntry)] {
        guard let weight, let bias else { return [] }
        return [("weight", .tensor(weight)), ("bias", .tensor(bias))]
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { x.layerNorm(weight: weight, bias: bias, eps: eps) }
}

/// A lookup table (count, dim) under the key `weight`.
public final class Embedding: Module {
    public let weight: Tensor

    public init(_ count: Int, _ dim: Int, std: Float = 1, rng: inout RandomGenerator) {
        weight = rng.normalTensor([count, dim], std: std)
        weight.requiresGrad = true
    }

    public var entries: [(String, ModuleEntry)] { [("weight", .tensor(weight))] }

    public func callAsFunction(_ indices: [Int]) -> Tensor { embedding(weight, indices) }
}

/// Multi-head self-attention as in timm: `qkv` (bias optional), optional per-head q/k LayerNorm
/// (`q_norm`, `k_norm`, eps 1e-5 as nn.LayerNorm), `proj`.
public final class Attention: Module {
    public let heads: Int
    public let qkv: Linear
    public let proj: Linear
    public let qNorm: LayerNorm?
    public let kNorm: LayerNorm?

    public init(dim: Int, heads: Int, qkvBias: Bool = true, qkNorm: Bool = false, normEps: Float = 1e-5,
                rng: inout RandomGenerator) {
        precondition(dim % heads == 0, "Attention: width \(dim) is not divisible by \(heads) heads")
        self.heads = heads
        qkv = Linear(dim, 3 * dim, bias: qkvBias, rng: &rng)
        proj = Linear(dim, dim, rng: &rng)
        qNorm = qkNorm ? LayerNorm(dim / heads, eps: normEps) : nil
        kNorm = qkNorm ? LayerNorm(dim / heads, eps: normEps) : nil
    }

    public var entries: [(String, ModuleEntry)] {
        var e: [(String, ModuleEntry)] = [("qkv", .module(qkv))]
        if let qNorm, let kNorm { e += [("q_norm", .module(qNorm)), ("k_norm", .module(kNorm))] }
        e.append(("proj", .module(proj)))
        return e
    }

    /// x: (N, T, D) -> (N, T, D)
    public func callAsFunction(_ x: Tensor) -> Tensor {
        let (n, t, d) = (x.dim(0), x.dim(1), x.dim(2))
        let packed = qkv(x)                                             // (N, T, 3D)
        guard let qNorm, let kNorm else {
            return proj(packedAttention(packed, heads: heads))          // (N, T, D)
        }
        let dh = d / heads
        let split = packed.reshaped([n, t, 3, heads, dh]).permuted([2, 0, 3, 1, 4])  // (3, N, H, T, Dh)
        let q = qNorm(split[0]), k = kNorm(split[1]), v = split[2]      // (N, H, T, Dh)
        let o = scaledDotProductAttention(q, k, v)                       // (N, H, T, Dh)
        return proj(o.permuted([0, 2, 1, 3]).reshaped([n, t, d]))        // (N, T, D)
    }
}

/// Transformer MLP: fc1 -> GELU (exact or tanh) -> fc2.
public final class Mlp: Module {
    public let fc1: Linear
    public let fc2: Linear
    public let approximateGELU: Bool

    public init(_ dim: Int, hidden: Int, out: Int? = nil, approximateGELU: Bool, rng: inout RandomGenerator) {
        fc1 = Linear(dim, hidden, rng: &rng)
        fc2 = Linear(hidden, out ?? dim, rng: &rng)
        self.approximateGELU = approximateGELU
    }

    public var entries: [(String, ModuleEntry)] { [("fc1", .module(fc1)), ("fc2", .module(fc2))] }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        fc2(fc1(x).gelu(approximate: approximateGELU))
    }
}
