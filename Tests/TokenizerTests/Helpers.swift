// Shared helpers of the tokenizer tests: fixture paths, the tiny official model, comparisons.

import Foundation
import Tensor
import Tokenizer
import XCTest

enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static var tiny: String { root.appendingPathComponent("tokenizer_tiny").path }
    static var keys: URL { root.appendingPathComponent("keys") }

    /// The ViT overrides of fixture.json (timm_overrides), which config.json cannot record.
    static func tinyOverrides(_ c: inout TokenizerConfig) {
        c.encEmbedDim = 64; c.encDepth = 2; c.encNumHeads = 4
        c.decEmbedDim = 64; c.decDepth = 2; c.decNumHeads = 4
    }

    static func tinyModel() throws -> SoftVQModel {
        try SoftVQModel.load(folder: tiny, log: { _ in }, configure: tinyOverrides)
    }

    static func io() throws -> SafeTensorsFile {
        try SafeTensorsFile(path: (tiny as NSString).appendingPathComponent("io.safetensors"))
    }

    static func tempDir(_ name: String) -> String {
        let d = NSTemporaryDirectory() + "tok-tests-\(getpid())-\(name)"
        try? FileManager.default.removeItem(atPath: d)
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "sizes \(a.count) vs \(b.count)")
    var m: Float = 0
    for i in a.indices { m = max(m, abs(a[i] - b[i])) }
    return m
}

func maxAbsDiff(_ a: [Float], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "sizes \(a.count) vs \(b.count)")
    var m = 0.0
    for i in a.indices { m = max(m, abs(Double(a[i]) - b[i])) }
    return m
}

/// Small structured RGB images in [-1, 1]: gradients, a disk and stripes whose positions,
/// colours and frequencies vary per image.
func structuredImages(count: Int, size: Int, seed: UInt64) -> Tensor {
    var rng = RandomGenerator(seed: seed)
    let t = Tensor(uninitialized: [count, 3, size, size])
    for n in 0..<count {
        let cx = Float(rng.uniform()) * Float(size), cy = Float(rng.uniform()) * Float(size)
        let r = Float(size) * (0.15 + 0.25 * Float(rng.uniform()))
        let colour = (0..<3).map { _ in Float(rng.uniform()) * 2 - 1 }
        let bg = (0..<3).map { _ in Float(rng.uniform()) * 2 - 1 }
        let angle = Float(rng.uniform()) * .pi
        let freq = 1 + Float(rng.below(3))
        for c in 0..<3 {
            for y in 0..<size {
                for x in 0..<size {
                    let fx = Float(x), fy = Float(y)
                    let u = (fx * cos(angle) + fy * sin(angle)) / Float(size)
                    var v = 0.5 * bg[c] + 0.3 * sin(2 * .pi * freq * u)
                    let d = ((fx - cx) * (fx - cx) + (fy - cy) * (fy - cy)).squareRoot()
                    if d < r { v = colour[c] }
                    t.pointer[((n * 3 + c) * size + y) * size + x] = max(-1, min(1, v))
                }
            }
        }
    }
    return t
}
