// Encode/decode timing of a SoftVQ tokenizer with cheap random weights.

import Foundation
import Tensor
import Tokenizer

/// Timing of the tokenizer with random weights.
public enum TokenizerBenchmark {
    /// Cheap pseudo-random weights of a sensible scale, for timing only.
    public static func fillRandom(_ model: SoftVQModel) { fillQuickRandom(model) }

    public struct Result: Sendable, CustomStringConvertible {
        public var name: String
        public var batch: Int
        public var encodeSeconds: Double
        public var decodeSeconds: Double
        public var encodeImagesPerSecond: Double { Double(batch) / encodeSeconds }
        public var decodeImagesPerSecond: Double { Double(batch) / decodeSeconds }
        public var description: String {
            String(format: "%@ batch %d: encode %.3f s (%.2f img/s), decode %.3f s (%.2f img/s)",
                   name, batch, encodeSeconds, encodeImagesPerSecond, decodeSeconds, decodeImagesPerSecond)
        }
    }

    /// Builds the model with random weights, warms up once, then times `iterations` runs of
    /// encode (encoder + quant_conv + soft quantizer) and decode; returns the best time.
    public static func encodeDecode(config: TokenizerConfig, name: String = "tokenizer", batch: Int = 1,
                                    iterations: Int = 2) throws -> Result {
        let model = try SoftVQModel(config: config, initialization: .uninitialized)
        fillQuickRandom(model)
        model.freeze()
        var rng = RandomGenerator(seed: 7)
        let images = rng.uniformTensor([batch, 3, config.imageSize, config.imageSize], low: -1, high: 1)
        return try Autograd.noGrad {
            var zq = try model.latents(images)
            _ = try model.decode(zq)
            var enc = Double.infinity, dec = Double.infinity
            for _ in 0..<max(1, iterations) {
                let t0 = DispatchTime.now().uptimeNanoseconds
                zq = try model.latents(images)
                let t1 = DispatchTime.now().uptimeNanoseconds
                _ = try model.decode(zq)
                let t2 = DispatchTime.now().uptimeNanoseconds
                enc = min(enc, Double(t1 - t0) / 1e9)
                dec = min(dec, Double(t2 - t1) / 1e9)
            }
            return Result(name: name, batch: batch, encodeSeconds: enc, decodeSeconds: dec)
        }
    }
}

/// Fills a model with cheap pseudo-random values of a sensible scale (uniform +-0.03, norm
/// weights 1, LayerScale 0.1): for timing only; drawing 600 M seeded normals would take minutes.
func fillQuickRandom(_ model: any Module) {
    for (i, (key, t)) in model.namedTensors().enumerated() {
        let p = t.pointer
        if key.hasSuffix("norm1.weight") || key.hasSuffix("norm2.weight") || key.hasSuffix("norm.weight") {
            t.fill(1); continue
        }
        if key.hasSuffix(".gamma") { t.fill(0.1); continue }
        if key.hasSuffix("codebook_used") { t.fill(0); continue }
        let seed = UInt64(i + 1) &* 0x9E37_79B9_7F4A_7C15
        parallelFor(t.count, grain: 1 << 16) { lo, hi in
            var x = seed ^ UInt64(lo) &* 0xBF58_476D_1CE4_E5B9 | 1
            for j in lo..<hi {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17
                p[j] = (Float(x >> 40) / Float(1 << 24) - 0.5) * 0.06
            }
        }
        t.markModified()
    }
}

