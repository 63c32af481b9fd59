// Seeded, splittable random numbers: Philox-4x32-10, a counter-based generator.
//
// A stream is identified by (seed, stream id); its state is just a counter, so sample i of a
// run with seed s is `RandomGenerator(seed: s, stream: i)` and reproducible on its own, and the
// state saves and restores exactly.

import Foundation

public struct RandomGenerator: Codable, Equatable, Sendable {
    public let seed: UInt64
    public let stream: UInt64
    /// Number of 128-bit blocks consumed so far.
    public private(set) var counter: UInt64
    /// Unused 32-bit words of the current block.
    private var buffered: [UInt32]
    /// A second normal from Box-Muller, kept for the next draw.
    private var spareNormal: Double?

    public init(seed: UInt64, stream: UInt64 = 0) {
        self.seed = seed
        self.stream = stream
        counter = 0
        buffered = []
        spareNormal = nil
    }

    /// An independent generator for sub-stream `i` (e.g. one per sample).
    public func split(_ i: UInt64) -> RandomGenerator {
        RandomGenerator(seed: seed &+ 0x9E37_79B9_7F4A_7C15 &* (stream &+ 1), stream: i)
    }

    private static func philox(_ ctr: (UInt32, UInt32, UInt32, UInt32), _ key: (UInt32, UInt32)) -> [UInt32] {
        var (c0, c1, c2, c3) = ctr
        var (k0, k1) = key
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            let n0 = UInt32(truncatingIfNeeded: p1 >> 32) ^ c1 ^ k0
            let n2 = UInt32(truncatingIfNeeded: p0 >> 32) ^ c3 ^ k1
            c1 = UInt32(truncatingIfNeeded: p1)
            c3 = UInt32(truncatingIfNeeded: p0)
            c0 = n0
            c2 = n2
            k0 = k0 &+ 0x9E37_79B9
            k1 = k1 &+ 0xBB67_AE85
        }
        return [c0, c1, c2, c3]
    }

    public mutating func nextUInt32() -> UInt32 {
        if buffered.isEmpty {
            let ctr = (UInt32(truncatingIfNeeded: counter), UInt32(truncatingIfNeeded: counter >> 32),
                       UInt32(truncatingIfNeeded: stream), UInt32(truncatingIfNeeded: stream >> 32))
            buffered = Array(Self.philox(ctr, (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32))).reversed())
            counter &+= 1
        }
        return buffered.removeLast()
    }

    public mutating func nextUInt64() -> UInt64 {
        (UInt64(nextUInt32()) << 32) | UInt64(nextUInt32())
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func uniform() -> Double {
        Double(nextUInt64() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Standard normal (Box-Muller, both values used).
    public mutating func normal() -> Double {
        if let s = spareNormal { spareNormal = nil; return s }
        var u1 = uniform()
        while u1 <= Double.leastNormalMagnitude { u1 = uniform() }
        let u2 = uniform()
        let r = (-2 * Foundation.log(u1)).squareRoot()
        spareNormal = r * Foundation.sin(2 * .pi * u2)
        return r * Foundation.cos(2 * .pi * u2)
    }

    /// Uniform integer in 0..<n.
    public mutating func below(_ n: Int) -> Int {
        precondition(n > 0)
        return Int(nextUInt64() % UInt64(n))
    }

    public mutating func shuffle<T>(_ a: inout [T]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) { a.swapAt(i, below(i + 1)) }
    }

    public mutating func normalTensor(_ shape: [Int], std: Float = 1) -> Tensor {
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.pointer[i] = Float(normal()) * std }
        return t
    }

    public mutating func uniformTensor(_ shape: [Int], low: Float = 0, high: Float = 1) -> Tensor {
        let t = Tensor(uninitialized: shape)
        for i in 0..<t.count { t.pointer[i] = low + (high - low) * Float(uniform()) }
        return t
    }
}
