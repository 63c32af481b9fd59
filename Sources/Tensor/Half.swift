// Half-precision conversions for checkpoint I/O: IEEE float16 and bfloat16 <-> float32.

import CKernels
import Foundation

public enum HalfPrecision {
    @inline(__always) public static func f16ToF32(_ bits: UInt16) -> Float {
        Float(Float16(bitPattern: bits))
    }
    @inline(__always) public static func f32ToF16(_ x: Float) -> UInt16 {
        Float16(x).bitPattern   // round to nearest even, overflow to infinity
    }
    @inline(__always) public static func bf16ToF32(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }
    /// Round to nearest even; NaN stays NaN.
    @inline(__always) public static func f32ToBF16(_ x: Float) -> UInt16 {
        let u = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: (u >> 16) | 0x40) }
        let rounding = UInt32(0x7FFF) + ((u >> 16) & 1)
        return UInt16(truncatingIfNeeded: (u &+ rounding) >> 16)
    }
}

extension Tensor {
    /// The values rounded to bfloat16 (nearest even) and widened back to float32: what a bf16
    /// matmul multiplies (the reference of the bf16 engine's tests).
    public func roundedToBF16() -> Tensor {
        let n = count
        let bits = UnsafeMutablePointer<UInt16>.allocate(capacity: Swift.max(n, 1))
        defer { bits.deallocate() }
        let out = Tensor(uninitialized: shape)
        ck_f32_to_bf16(pointer, bits, n)
        ck_bf16_to_f32(bits, out.pointer, n)
        return out
    }
}
