// Kernels added for the SiT model (new file; nothing else in the Tensor module changed).
//
// tanh-GELU through the identity 0.5 (1 + tanh u) = sigmoid(2 u): one expf per element instead of
// tanhf (which calls expm1f and dominated the elementwise cost of a SiT-XL forward: ~14% of the
// time in a profile). Same function as `gelu(approximate: true)` up to float32 rounding.

import Foundation

extension Activation {
    /// 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3).
    @inline(__always) public static func geluTanhSigmoid(_ x: Float) -> Float {
        let u2 = 2 * sqrt2OverPi * (x + 0.044715 * x * x * x)
        return x / (1 + Foundation.exp(-u2))
    }

    /// d/dx: s + x s (1 - s) 2 u'(x), s = sigmoid(2u), u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    @inline(__always) public static func geluTanhSigmoidGrad(_ x: Float) -> Float {
        let u2 = 2 * sqrt2OverPi * (x + 0.044715 * x * x * x)
        let s = 1 / (1 + Foundation.exp(-u2))
        return s + x * s * (1 - s) * 2 * sqrt2OverPi * (1 + 3 * 0.044715 * x * x)
    }
}

extension Activation {
    /// exp on 8 lanes: 2^n p(r), n = round(x log2 e), r = x - n ln 2 (Cody-Waite split), p the
    /// Cephes expf polynomial (about 1 ulp); the input is clamped to [-87.3, 88] (finite, normal).
    /// Rounding and the integer n use the 1.5 * 2^23 trick, so everything stays in vector lanes.
    @inline(__always) static func exp8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let magic = SIMD8<Float>(repeating: 12_582_912)   // 1.5 * 2^23
        let xc = x.clamped(lowerBound: SIMD8(repeating: -87.3), upperBound: SIMD8(repeating: 88))
        let shifted = xc * 1.44269504088896341 + magic     // n sits in the low mantissa bits
        let n = shifted - magic
        let r = xc - n * 0.693359375 + n * 2.12194440e-4
        var p = SIMD8<Float>(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let y = p * (r * r) + r + 1
        let ni = unsafeBitCast(shifted, to: SIMD8<UInt32>.self) &- 0x4B40_0000   // n as an integer
        let scale = unsafeBitCast((ni &+ 127) &<< 23, to: SIMD8<Float>.self)     // 2^n
        return y * scale
    }

    /// `geluTanhSigmoid` on 8 lanes (NaN inputs propagate through x / (...)).
    @inline(__always) static func geluTanh8(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let u2 = 2 * sqrt2OverPi * (x + 0.044715 * x * x * x)
        return x / (1 + exp8(-u2))
    }
}

extension Tensor {
    /// tanh-approximate GELU (PyTorch `approximate='tanh'`) computed with one exponential per
    /// element, 8 lanes at a time; saves nothing beyond its input (backward recomputes the sigmoid).
    public func geluTanhFast() -> Tensor {
        let out = Tensor(uninitialized: shape)
        let px = pointer, po = out.pointer
        let n = count
        parallelFor(n / 8, grain: 1 << 11) { lo, hi in
            let src = UnsafeRawPointer(px), dst = UnsafeMutableRawPointer(po)
            for i in lo..<hi {
                let v = src.loadUnaligned(fromByteOffset: 32 * i, as: SIMD8<Float>.self)
                dst.storeBytes(of: Activation.geluTanh8(v), toByteOffset: 32 * i, as: SIMD8<Float>.self)
            }
        }
        for i in (n / 8 * 8)..<n { po[i] = Activation.geluTanhSigmoid(px[i]) }
        let x = self
        return out.record("gelu_tanh_fast", [self]) { g, _ in
            [zipGrad(g, x, x) { x, _ in Activation.geluTanhSigmoidGrad(x) }]
        }
    }
}
