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

extension Tensor {
    /// tanh-approximate GELU (PyTorch `approximate='tanh'`) computed with one exponential per
    /// element; saves nothing beyond its input (backward recomputes the sigmoid).
    public func geluTanhFast() -> Tensor {
        mapOp("gelu_tanh_fast", self, Activation.geluTanhSigmoid) { x, y, g in
            zipGrad(g, x, y) { x, _ in Activation.geluTanhSigmoidGrad(x) }
        }
    }
}
