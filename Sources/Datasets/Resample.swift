// Separable resampling of 8-bit images with the arithmetic of PIL's Image.resize
// (libImaging/Resample.c): per-axis filter support widened by the downscale factor
// (antialiasing), weights normalized per output pixel and quantized to 22-bit fixed point,
// horizontal pass first with an 8-bit intermediate, then the vertical pass.

import Formats
import Foundation

public enum ResampleFilter: String, Sendable {
    /// Averages the input pixels each output pixel covers (PIL BOX).
    case box
    /// Keys cubic convolution with a = -0.5 (PIL BICUBIC).
    case bicubic

    var support: Double {
        switch self {
        case .box: return 0.5
        case .bicubic: return 2
        }
    }

    func weight(_ x: Double) -> Double {
        switch self {
        case .box:
            return (x > -0.5 && x <= 0.5) ? 1 : 0
        case .bicubic:
            let a = -0.5
            let x = abs(x)
            if x < 1 { return ((a + 2) * x - (a + 3)) * x * x + 1 }
            if x < 2 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0
        }
    }
}

/// Fixed-point precision of PIL's 8-bit resampling coefficients.
private let precisionBits = 32 - 8 - 2

/// Per output pixel: first input index and integer weights.
private struct Coefficients {
    var start: [Int]
    var weights: [[Int32]]
}

private func coefficients(inSize: Int, outSize: Int, filter: ResampleFilter) -> Coefficients {
    let scale = Double(inSize) / Double(outSize)
    let filterScale = max(scale, 1)
    let support = filter.support * filterScale
    var start = [Int](repeating: 0, count: outSize)
    var weights = [[Int32]](repeating: [], count: outSize)
    for xx in 0..<outSize {
        let center = (Double(xx) + 0.5) * scale
        let ss = 1 / filterScale
        let xmin = max(Int(center - support + 0.5), 0)
        let xmax = min(Int(center + support + 0.5), inSize) - xmin
        var w = [Double](repeating: 0, count: max(xmax, 0))
        var total = 0.0
        for x in 0..<max(xmax, 0) {
            let v = filter.weight((Double(x + xmin) - center + 0.5) * ss)
            w[x] = v
            total += v
        }
        start[xx] = xmin
        weights[xx] = w.map { v in
            let normalized = total != 0 ? v / total : v
            let scaled = normalized * Double(1 << precisionBits)
            return Int32(scaled < 0 ? scaled - 0.5 : scaled + 0.5)
        }
    }
    return Coefficients(start: start, weights: weights)
}

@inline(__always) private func clip8(_ v: Int) -> UInt8 {
    let s = v >> precisionBits
    return s < 0 ? 0 : (s > 255 ? 255 : UInt8(s))
}

extension RGBImage {
    /// Resizes to width x height as PIL's `Image.resize(size, resample)` does for 8-bit images.
    public func resized(width outW: Int, height outH: Int, filter: ResampleFilter) -> RGBImage {
        precondition(outW > 0 && outH > 0, "resize target must be positive")
        let c = channels
        var current = self
        let half = 1 << (precisionBits - 1)
        if outW != width {
            let k = coefficients(inSize: width, outSize: outW, filter: filter)
            var out = [UInt8](repeating: 0, count: outW * height * c)
            pixels.withUnsafeBufferPointer { src in
                for y in 0..<height {
                    let row = y * width * c
                    for xx in 0..<outW {
                        let w = k.weights[xx], x0 = k.start[xx]
                        for ch in 0..<c {
                            var acc = half
                            for (i, wi) in w.enumerated() { acc += Int(src[row + (x0 + i) * c + ch]) * Int(wi) }
                            out[(y * outW + xx) * c + ch] = clip8(acc)
                        }
                    }
                }
            }
            current = RGBImage(width: outW, height: height, channels: c, pixels: out)
        }
        if outH != height {
            let k = coefficients(inSize: height, outSize: outH, filter: filter)
            let w0 = current.width
            var out = [UInt8](repeating: 0, count: w0 * outH * c)
            current.pixels.withUnsafeBufferPointer { src in
                for yy in 0..<outH {
                    let w = k.weights[yy], y0 = k.start[yy]
                    for x in 0..<(w0 * c) {
                        var acc = half
                        for (i, wi) in w.enumerated() { acc += Int(src[(y0 + i) * w0 * c + x]) * Int(wi) }
                        out[yy * w0 * c + x] = clip8(acc)
                    }
                }
            }
            current = RGBImage(width: w0, height: outH, channels: c, pixels: out)
        }
        return current
    }

    /// The sub-image [x, x + w) x [y, y + h).
    public func cropped(x: Int, y: Int, width w: Int, height h: Int) -> RGBImage {
        precondition(x >= 0 && y >= 0 && x + w <= width && y + h <= height, "crop outside the image")
        let c = channels
        var out = [UInt8](repeating: 0, count: w * h * c)
        for row in 0..<h {
            let src = ((y + row) * width + x) * c
            out.replaceSubrange(row * w * c..<(row + 1) * w * c, with: pixels[src..<src + w * c])
        }
        return RGBImage(width: w, height: h, channels: c, pixels: out)
    }
}
