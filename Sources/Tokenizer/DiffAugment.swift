// DiffAugment (Zhao et al. 2020, arXiv 2006.10738) as the official tokenizer recipe uses it
// (utils/diff_aug.py): differentiable colour, translation and cutout augmentations applied to
// both the real and the generated images the discriminator sees. Every augmentation is built
// from ops on the tape, so the generator's gradient flows back through the augmentation of its
// reconstruction.
//
// Each augmentation has two forms: one with its random parameters given explicitly (for
// fixtures) and the policy runner that draws them from a RandomGenerator, so the result is a
// pure function of (images, policies, probability, generator state).
//
// Dimension legend: N batch, C channels, H height, W width (images channels-first).

import Foundation
import Tensor

public enum DiffAugment {
    /// One entry of a policy string such as "color,translation,cutout_0.2".
    public enum Policy: Equatable, Sendable {
        /// Brightness, saturation, then contrast (one random factor each per sample).
        case color
        /// Integer shifts of up to round(ratio H) rows and round(ratio W) columns, zero filled.
        case translation(ratio: Float)
        /// A zeroed square of side round(ratio H) x round(ratio W) at a random centre.
        case cutout(ratio: Float)

        /// "color", "translation" (ratio 0.125) or "cutout_<ratio>".
        public init?(_ name: String) {
            switch name {
            case "color": self = .color
            case "translation": self = .translation(ratio: 0.125)
            default:
                guard name.hasPrefix("cutout_"), let r = Float(name.dropFirst("cutout_".count)), r > 0, r <= 1 else { return nil }
                self = .cutout(ratio: r)
            }
        }

        /// Parses a comma-separated policy ("" is no augmentation).
        public static func parse(_ text: String) -> [Policy]? {
            if text.isEmpty { return [] }
            var out: [Policy] = []
            for part in text.split(separator: ",") {
                guard let p = Policy(String(part)) else { return nil }
                out.append(p)
            }
            return out
        }
    }

    /// The official discriminator policy (both the D step and the generator's adversarial term).
    public static let standard: [Policy] = [.color, .translation(ratio: 0.125), .cutout(ratio: 0.2)]
    /// The stronger policy of the consistency regularization (applied with probability 1).
    public static let consistency: [Policy] = [.color, .translation(ratio: 0.125), .cutout(ratio: 0.5)]

    /// Applies each policy entry with probability `probability`, in order: one uniform u per
    /// entry, skipped when u > probability (shared by the whole batch), then the entry's
    /// per-sample parameters. images (N, C, H, W) -> (N, C, H, W).
    public static func apply(_ images: Tensor, policies: [Policy], probability: Float,
                             rng: inout RandomGenerator) -> Tensor {
        var x = images
        let n = images.dim(0)
        for policy in policies {
            if Float(rng.uniform()) > probability { continue }
            switch policy {
            case .color:
                x = brightness(x, uniforms: (0..<n).map { _ in Float(rng.uniform()) })
                x = saturation(x, uniforms: (0..<n).map { _ in Float(rng.uniform()) })
                x = contrast(x, uniforms: (0..<n).map { _ in Float(rng.uniform()) })
            case let .translation(ratio):
                let (sr, sc) = translationRange(x, ratio: ratio)
                let rows = (0..<n).map { _ in rng.below(2 * sr + 1) - sr }
                let cols = (0..<n).map { _ in rng.below(2 * sc + 1) - sc }
                x = translation(x, rows: rows, cols: cols)
            case let .cutout(ratio):
                let (hr, hc) = cutoutSize(x, ratio: ratio)
                let rows = (0..<n).map { _ in rng.below(x.dim(2) + (1 - hr % 2)) }
                let cols = (0..<n).map { _ in rng.below(x.dim(3) + (1 - hc % 2)) }
                x = cutout(x, ratio: ratio, centreRows: rows, centreCols: cols)
            }
        }
        return x
    }

    // MARK: - The augmentations with explicit random parameters

    /// x + (u_n - 0.5): brightness shift in [-0.5, 0.5) per sample.
    public static func brightness(_ x: Tensor, uniforms u: [Float]) -> Tensor {
        x + Tensor(u.map { $0 - 0.5 }, shape: [u.count, 1, 1, 1])
    }

    /// (x - mean_C(x)) 2 u_n + mean_C(x): saturation factor in [0, 2) per sample.
    public static func saturation(_ x: Tensor, uniforms u: [Float]) -> Tensor {
        let mean = x.mean(axes: [1], keepDims: true)                           // (N, 1, H, W)
        return (x - mean) * Tensor(u.map { $0 * 2 }, shape: [u.count, 1, 1, 1]) + mean
    }

    /// (x - mean_CHW(x)) (u_n + 0.5) + mean_CHW(x): contrast factor in [0.5, 1.5) per sample.
    public static func contrast(_ x: Tensor, uniforms u: [Float]) -> Tensor {
        let mean = x.mean(axes: [1, 2, 3], keepDims: true)                     // (N, 1, 1, 1)
        return (x - mean) * Tensor(u.map { $0 + 0.5 }, shape: [u.count, 1, 1, 1]) + mean
    }

    /// The largest shift (rows, columns): int(H ratio + 0.5), int(W ratio + 0.5).
    public static func translationRange(_ x: Tensor, ratio: Float) -> (Int, Int) {
        (Int(Float(x.dim(2)) * ratio + 0.5), Int(Float(x.dim(3)) * ratio + 0.5))
    }

    /// out[n, :, i, j] = x[n, :, i + rows[n], j + cols[n]], zero outside the image.
    public static func translation(_ x: Tensor, rows: [Int], cols: [Int]) -> Tensor {
        x.translated(rows: rows, cols: cols)
    }

    /// The cutout side (rows, columns): int(H ratio + 0.5), int(W ratio + 0.5).
    public static func cutoutSize(_ x: Tensor, ratio: Float) -> (Int, Int) {
        (Int(Float(x.dim(2)) * ratio + 0.5), Int(Float(x.dim(3)) * ratio + 0.5))
    }

    /// Zeroes rows [r - s/2, r - s/2 + s) x columns [c - t/2, c - t/2 + t) of sample n (clipped to
    /// the image), r = centreRows[n] in [0, H + 1 - s % 2), c likewise: x times a 0/1 mask.
    public static func cutout(_ x: Tensor, ratio: Float, centreRows: [Int], centreCols: [Int]) -> Tensor {
        let (n, h, w) = (x.dim(0), x.dim(2), x.dim(3))
        let (s, t) = cutoutSize(x, ratio: ratio)
        let mask = Tensor(repeating: 1, shape: [n, 1, h, w])                   // (N, 1, H, W)
        for b in 0..<n {
            let r0 = max(0, centreRows[b] - s / 2), r1 = min(h, centreRows[b] - s / 2 + s)
            let c0 = max(0, centreCols[b] - t / 2), c1 = min(w, centreCols[b] - t / 2 + t)
            guard r0 < r1, c0 < c1 else { continue }
            for i in r0..<r1 { for j in c0..<c1 { mask.pointer[(b * h + i) * w + j] = 0 } }
        }
        return x * mask
    }
}
