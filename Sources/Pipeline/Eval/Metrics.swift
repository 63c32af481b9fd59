// Image-quality metrics on gray images in [0, 1]: PSNR and SSIM (Gaussian window 11, sigma 1.5,
// K1 = 0.01, K2 = 0.03, as in Wang et al. 2004), and conversions between the tokenizer's
// (3, S, S) [-1, 1] images and the classifier's (1, 28, 28) input.

import Formats
import Foundation
import Tensor

public enum ImageMetrics {
    /// PSNR in dB of two equal-size gray images with values in [0, 1].
    public static func psnr(_ a: [Float], _ b: [Float]) -> Double {
        var mse = 0.0
        for i in 0..<a.count { let d = Double(a[i] - b[i]); mse += d * d }
        mse /= Double(a.count)
        return mse > 0 ? 10 * log10(1 / mse) : 99
    }

    /// Mean SSIM of two gray images (h, w) with values in [0, 1].
    public static func ssim(_ a: [Float], _ b: [Float], height h: Int, width w: Int) -> Double {
        let radius = 5, sigma = 1.5
        var kernel = (-radius...radius).map { exp(-Double($0 * $0) / (2 * sigma * sigma)) }
        let s = kernel.reduce(0, +)
        kernel = kernel.map { $0 / s }
        // Separable Gaussian filter over the valid region.
        func rowBlur(_ img: [Double]) -> [Double] {
            let hw = w - 2 * radius
            var tmp = [Double](repeating: 0, count: h * hw)
            for y in 0..<h { for x in 0..<hw {
                var acc = 0.0
                for k in 0..<(2 * radius + 1) { acc += kernel[k] * img[y * w + x + k] }
                tmp[y * hw + x] = acc
            } }
            let hh = h - 2 * radius
            var out = [Double](repeating: 0, count: hh * hw)
            for y in 0..<hh { for x in 0..<hw {
                var acc = 0.0
                for k in 0..<(2 * radius + 1) { acc += kernel[k] * tmp[(y + k) * hw + x] }
                out[y * hw + x] = acc
            } }
            return out
        }
        let x = a.map(Double.init), y = b.map(Double.init)
        let mx = rowBlur(x), my = rowBlur(y)
        let sxx = rowBlur(x.map { $0 * $0 }), syy = rowBlur(y.map { $0 * $0 }), sxy = rowBlur(zip(x, y).map { $0 * $1 })
        let c1 = 0.01 * 0.01, c2 = 0.03 * 0.03
        var total = 0.0
        for i in 0..<mx.count {
            let vx = sxx[i] - mx[i] * mx[i], vy = syy[i] - my[i] * my[i], cxy = sxy[i] - mx[i] * my[i]
            total += ((2 * mx[i] * my[i] + c1) * (2 * cxy + c2)) / ((mx[i] * mx[i] + my[i] * my[i] + c1) * (vx + vy + c2))
        }
        return total / Double(mx.count)
    }

    /// Tokenizer images (N, 3, S, S) in [-1, 1] -> classifier input (N, 1, 28, 28) in [-1, 1]:
    /// channel mean, then the centered 28 x 28 crop (the tokenizer pads 28 to S).
    public static func classifierInput(_ images: Tensor) -> Tensor {
        let n = images.dim(0), c = images.dim(1), s = images.dim(2)
        precondition(s >= 28, "images of side \(s) are smaller than 28")
        let o = (s - 28) / 2
        let out = Tensor(uninitialized: [n, 1, 28, 28])
        for b in 0..<n { for y in 0..<28 { for x in 0..<28 {
            var v: Float = 0
            for k in 0..<c { v += images.pointer[((b * c + k) * s + y + o) * s + x + o] }
            out.pointer[(b * 28 + y) * 28 + x] = Swift.max(-1, Swift.min(1, v / Float(c)))
        } } }
        return out
    }

    /// 8-bit RGB images -> classifier input (N, 1, 28, 28).
    public static func classifierInput(_ images: [RGBImage]) -> Tensor {
        let s = images[0].width
        let t = Tensor(uninitialized: [images.count, 3, s, s])
        for (b, img) in images.enumerated() {
            let rgb = img.rgb()
            for i in 0..<(s * s) { for k in 0..<3 { t.pointer[(b * 3 + k) * s * s + i] = Float(rgb.pixels[3 * i + k]) / 127.5 - 1 } }
        }
        return classifierInput(t)
    }
}
