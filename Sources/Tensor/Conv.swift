// 2-D convolution as im2col + one sgemm, with its backward (col2im). Used by the evaluation
// classifier and by patch embeddings (a p x p, stride p convolution).

import Foundation

/// Gathers (N, C, H, W) into columns (N, Ho * Wo, C * k * k) with zero padding.
private func im2col(_ x: UnsafePointer<Float>, n: Int, c: Int, h: Int, w: Int, k: Int, stride: Int, pad: Int,
                    ho: Int, wo: Int, out: UnsafeMutablePointer<Float>) {
    let rowLen = c * k * k
    parallelFor(n * ho, grain: 4) { lo, hi in
        for nr in lo..<hi {
            let b = nr / ho, oy = nr % ho
            let img = x + b * c * h * w
            for ox in 0..<wo {
                let dst = out + (nr * wo + ox) * rowLen
                var idx = 0
                for ch in 0..<c {
                    for ky in 0..<k {
                        let iy = oy * stride - pad + ky
                        for kx in 0..<k {
                            let ix = ox * stride - pad + kx
                            dst[idx] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? img[(ch * h + iy) * w + ix] : 0
                            idx += 1
                        }
                    }
                }
            }
        }
    }
}

/// Scatter-adds columns back into (N, C, H, W) (the adjoint of im2col).
private func col2im(_ cols: UnsafePointer<Float>, n: Int, c: Int, h: Int, w: Int, k: Int, stride: Int, pad: Int,
                    ho: Int, wo: Int, out: UnsafeMutablePointer<Float>) {
    let rowLen = c * k * k
    out.update(repeating: 0, count: n * c * h * w)
    parallelFor(n, grain: 1) { lo, hi in
        for b in lo..<hi {
            let img = out + b * c * h * w
            for oy in 0..<ho {
                for ox in 0..<wo {
                    let src = cols + ((b * ho + oy) * wo + ox) * rowLen
                    var idx = 0
                    for ch in 0..<c {
                        for ky in 0..<k {
                            let iy = oy * stride - pad + ky
                            for kx in 0..<k {
                                let ix = ox * stride - pad + kx
                                if iy >= 0 && iy < h && ix >= 0 && ix < w { img[(ch * h + iy) * w + ix] += src[idx] }
                                idx += 1
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Convolution of x (N, C, H, W) with weight (O, C, k, k) (PyTorch layout) and optional bias
/// (O), square kernel, given stride and zero padding: (N, O, Ho, Wo).
public func conv2d(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, stride: Int = 1, padding: Int = 0) -> Tensor {
    precondition(x.rank == 4 && weight.rank == 4 && weight.dim(1) == x.dim(1) && weight.dim(2) == weight.dim(3),
                 "conv2d: input \(x.shape) and weight \(weight.shape) do not match")
    let (n, c, h, w) = (x.dim(0), x.dim(1), x.dim(2), x.dim(3))
    let o = weight.dim(0), k = weight.dim(2)
    let ho = (h + 2 * padding - k) / stride + 1, wo = (w + 2 * padding - k) / stride + 1
    precondition(ho > 0 && wo > 0, "conv2d: kernel \(k) larger than padded input \(h)x\(w)")
    let rowLen = c * k * k
    let cols = Tensor(uninitialized: [n * ho * wo, rowLen])
    im2col(x.pointer, n: n, c: c, h: h, w: w, k: k, stride: stride, pad: padding, ho: ho, wo: wo, out: cols.pointer)
    // (N*Ho*Wo, O) = cols W^T + b, then to channels-first.
    let flat = Autograd.noGrad { linear(cols, weight.reshaped([o, rowLen]), bias) }
    let out = Autograd.noGrad { flat.reshaped([n, ho * wo, o]).permuted([0, 2, 1]).reshaped([n, o, ho, wo]) }.detached()
    let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
    return out.record("conv2d", inputs) { g, needs in
        // g (N, O, Ho, Wo) -> (N*Ho*Wo, O)
        let g2 = g.reshaped([n, o, ho * wo]).permuted([0, 2, 1]).reshaped([n * ho * wo, o])
        var grads: [Tensor?] = [nil, nil]
        if needs[0] {
            let dcols = matmul(g2, weight.reshaped([o, rowLen]))            // (N*Ho*Wo, C*k*k)
            let dx = Tensor(uninitialized: x.shape)
            col2im(dcols.pointer, n: n, c: c, h: h, w: w, k: k, stride: stride, pad: padding, ho: ho, wo: wo, out: dx.pointer)
            grads[0] = dx
        }
        if needs[1] { grads[1] = matmul(g2, cols, transposeA: true).reshaped(weight.shape) }   // (O, C*k*k)
        if inputs.count == 3 { grads.append(needs[2] ? g2.sum(axes: [0]).reshaped([o]) : nil) }
        return grads
    }
}
