// 2-D max pooling (PyTorch's `nn.MaxPool2d(kernel, stride)`, no padding, floor mode), with its
// backward. Used by the VGG feature stages of LPIPS.
//
// Shapes: N batch, C channels, H x W input, Ho x Wo output with Ho = (H - k) / s + 1.

import Foundation

/// Max over each k x k window of x (N, C, H, W), windows `stride` apart: (N, C, Ho, Wo).
/// The forward saves the flat input index of each window's maximum (the first one in row-major
/// window order on ties, as PyTorch's CPU kernel, which only moves on a strictly larger value);
/// the backward routes each output gradient to that index and adds (windows may overlap when
/// stride < kernel).
public func maxPool2d(_ x: Tensor, kernel: Int = 2, stride: Int = 2) -> Tensor {
    precondition(x.rank == 4, "maxPool2d: input must be (N, C, H, W), got \(x.shape)")
    precondition(kernel >= 1 && stride >= 1, "maxPool2d: kernel \(kernel) and stride \(stride) must be positive")
    let (n, c, h, w) = (x.dim(0), x.dim(1), x.dim(2), x.dim(3))
    precondition(h >= kernel && w >= kernel, "maxPool2d: kernel \(kernel) larger than input \(h)x\(w)")
    let ho = (h - kernel) / stride + 1, wo = (w - kernel) / stride + 1
    let out = Tensor(uninitialized: [n, c, ho, wo])
    var argmax = [Int32](repeating: 0, count: n * c * ho * wo)    // index into one (H, W) plane
    let src = x.pointer, dst = out.pointer
    argmax.withUnsafeMutableBufferPointer { am in
        let amp = am.baseAddress!
        parallelFor(n * c, grain: 8) { lo, hi in
            for plane in lo..<hi {
                let img = src + plane * h * w
                for oy in 0..<ho {
                    for ox in 0..<wo {
                        var best = oy * stride * w + ox * stride
                        var bestValue = img[best]
                        for ky in 0..<kernel {
                            for kx in 0..<kernel {
                                let i = (oy * stride + ky) * w + ox * stride + kx
                                if img[i] > bestValue || img[i].isNaN { best = i; bestValue = img[i] }
                            }
                        }
                        let o = (plane * ho + oy) * wo + ox
                        dst[o] = bestValue
                        amp[o] = Int32(best)
                    }
                }
            }
        }
    }
    let inShape = x.shape
    return out.record("maxPool2d", [x]) { g, _ in
        // dx[plane, argmax[o]] += g[o]
        let dx = Tensor(zeros: inShape)
        let gp = g.pointer, dp = dx.pointer
        argmax.withUnsafeBufferPointer { am in
            parallelFor(n * c, grain: 8) { lo, hi in
                for plane in lo..<hi {
                    for j in 0..<(ho * wo) {
                        let o = plane * ho * wo + j
                        dp[plane * h * w + Int(am[o])] += gp[o]
                    }
                }
            }
        }
        return [dx]
    }
}
