// How freshly built layers fill their parameters. Every layer of the library takes a
// `ParameterFactory`, so a model decides once whether it is drawn at random (and from which
// seed, in construction order), zero-filled, or only allocated (the fast path before a
// checkpoint is loaded into a 675 M parameter model: no random draws, no page touched).

import Foundation

/// What a freshly built model holds.
public enum WeightInit: Sendable, Equatable {
    /// Random draws from a generator seeded with `seed`, in construction order; each layer says
    /// which distribution (PyTorch's default, truncated normal, ...).
    case random(seed: UInt64)
    /// Every tensor zero (deterministic; a model's own init pass may follow, as SiT's does).
    case zeros
    /// Memory allocated but never touched (fastest: for key enumeration or before a load).
    case uninitialized
}

/// Makes parameter tensors (requiresGrad) according to a `WeightInit`.
public struct ParameterFactory {
    public let mode: WeightInit
    public var rng: RandomGenerator
    /// The initial value of LayerScale `gamma` parameters (timm: 1e-5).
    public var layerScaleInit: Float

    public init(_ mode: WeightInit, layerScaleInit: Float = 1e-5) {
        self.mode = mode
        if case let .random(seed) = mode { rng = RandomGenerator(seed: seed) } else { rng = RandomGenerator(seed: 0) }
        self.layerScaleInit = layerScaleInit
    }

    /// Random draws continuing from an existing generator (read `rng` back afterwards).
    public init(rng: RandomGenerator) {
        mode = .random(seed: 0)
        self.rng = rng
        layerScaleInit = 1e-5
    }

    public var isRandom: Bool { if case .random = mode { return true } else { return false } }

    private func blank(_ shape: [Int]) -> Tensor {
        mode == .uninitialized ? Tensor(uninitialized: shape) : Tensor(zeros: shape)
    }

    /// Normal(0, std).
    public mutating func normal(_ shape: [Int], std: Float) -> Tensor {
        guard isRandom else { return param(blank(shape)) }
        return param(rng.normalTensor(shape, std: std))
    }

    /// Normal(0, std) clipped at +-2 std (timm `trunc_normal_` for small std).
    public mutating func truncatedNormal(_ shape: [Int], std: Float) -> Tensor {
        guard isRandom else { return param(blank(shape)) }
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.pointer[i] = Swift.min(Swift.max(Float(rng.normal()), -2), 2) * std }
        return param(t)
    }

    /// Uniform(-bound, bound).
    public mutating func uniform(_ shape: [Int], bound: Float) -> Tensor {
        guard isRandom else { return param(blank(shape)) }
        return param(rng.uniformTensor(shape, low: -bound, high: bound))
    }

    /// A constant tensor (zeros in `.zeros` mode, untouched in `.uninitialized`).
    public func constant(_ shape: [Int], _ value: Float) -> Tensor {
        isRandom ? param(Tensor(repeating: value, shape: shape)) : param(blank(shape))
    }

    /// Zeros in every mode but `.uninitialized`.
    public func zeros(_ shape: [Int]) -> Tensor { param(blank(shape)) }

    private func param(_ t: Tensor) -> Tensor { t.requiresGrad = true; return t }
}

// MARK: - Fills used by models' own initialization passes

/// Xavier (Glorot) uniform: U(-b, b) with b = sqrt(6 / (fan_in + fan_out)), drawn in Double.
public func fillXavierUniform(_ t: Tensor, fanIn: Int, fanOut: Int, rng: inout RandomGenerator) {
    let bound = (6 / Double(fanIn + fanOut)).squareRoot()
    let p = t.pointer
    for i in 0..<t.count { p[i] = Float((2 * rng.uniform() - 1) * bound) }
    t.markModified()
}

/// Normal(0, std), in place.
public func fillNormal(_ t: Tensor, std: Float, rng: inout RandomGenerator) {
    let p = t.pointer
    for i in 0..<t.count { p[i] = Float(rng.normal()) * std }
    t.markModified()
}
