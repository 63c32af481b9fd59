// The classifier-features perceptual loss over the shipped Fashion-MNIST classifier.

import Foundation
import Pipeline
import Tensor
import XCTest

final class ClassifierFeatureLossTests: XCTestCase {
    static let weights = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Checkpoints/fashion-classifier/model.safetensors").path

    /// Images (N, 3, 32, 32) in [-0.9, 0.9]: away from the clamp of classifierInput.
    static func images(_ n: Int, seed: UInt64) -> Tensor {
        var rng = RandomGenerator(seed: seed)
        return rng.uniformTensor([n, 3, 32, 32], low: -0.9, high: 0.9)
    }

    func testInputMatchesImageMetrics() throws {
        let x = Self.images(2, seed: 1)
        for c in 0..<3 { x.pointer[c * 1024 + 10 * 32 + 8] = 5 }   // outside [-1, 1]: clamped alike
        let ours = ClassifierFeatureLoss.classifierInput(x), reference = ImageMetrics.classifierInput(x)
        XCTAssertEqual(ours.shape, [2, 1, 28, 28])
        XCTAssertLessThan(zip(ours.scalars, reference.scalars).map { abs($0 - $1) }.max()!, 1e-6)
        XCTAssertEqual(ours.pointer[(10 - 2) * 28 + 8 - 2], 1)   // the clamped pixel
    }

    /// Against the definition written out: normalized conv stages, squared differences,
    /// mean over (C, H, W), sum over stages, mean over the batch.
    func testValueMatchesDefinition() throws {
        let loss = try ClassifierFeatureLoss(path: Self.weights)
        XCTAssertEqual(loss.name, "classifier-features")
        let a = Self.images(3, seed: 2), b = Self.images(3, seed: 3)
        let value = Autograd.noGrad { loss(a, b).item }
        let c = loss.classifier
        var expected = 0.0
        for n in 0..<3 {
            var xa = ImageMetrics.classifierInput(a.slice(axis: 0, n..<(n + 1)))
            var xb = ImageMetrics.classifierInput(b.slice(axis: 0, n..<(n + 1)))
            for conv in [c.conv1, c.conv2, c.conv3] {
                xa = Autograd.noGrad { conv(xa).relu() }
                xb = Autograd.noGrad { conv(xb).relu() }
                let (ch, p) = (xa.dim(1), xa.dim(2) * xa.dim(3))
                var s = 0.0
                for j in 0..<p {
                    var na = 0.0, nb = 0.0
                    for k in 0..<ch { na += Double(xa.pointer[k * p + j] * xa.pointer[k * p + j]); nb += Double(xb.pointer[k * p + j] * xb.pointer[k * p + j]) }
                    na = na.squareRoot() + 1e-10; nb = nb.squareRoot() + 1e-10
                    for k in 0..<ch { let d = Double(xa.pointer[k * p + j]) / na - Double(xb.pointer[k * p + j]) / nb; s += d * d }
                }
                expected += s / Double(ch * p) / 3
            }
        }
        XCTAssertEqual(Double(value), expected, accuracy: 1e-5 * expected)
        XCTAssertGreaterThan(value, 0.01)
        XCTAssertEqual(Autograd.noGrad { loss(a, a).item }, 0, accuracy: 1e-9)
        XCTAssertTrue(loss.classifier.trainableParameters().isEmpty, "the classifier must be frozen")
    }

    /// Directional derivatives against central finite differences (accumulated in Double), and
    /// no gradient on the padding outside the classifier's centered 28 x 28 crop.
    func testGradient() throws {
        let loss = try ClassifierFeatureLoss(path: Self.weights)
        let target = Self.images(2, seed: 4), x = Self.images(2, seed: 5)
        x.requiresGrad = true
        loss(x, target).backward()
        let g = x.grad!
        x.requiresGrad = false
        func value(_ t: Tensor) -> Double {
            Autograd.noGrad { Double(loss.distance(t, target).scalars.reduce(0) { $0 + Double($1) } / 2) }
        }
        // Along the gradient itself (scaled to a largest pixel step of 1) the change is largest
        // against float32 noise: relative tolerance 1%. The loss is only piecewise smooth (ReLU
        // kinks, normalization), so along random directions, whose derivatives are 40-200x
        // smaller, the tolerance is absolute: 0.2% of the derivative along the gradient.
        let gmax = g.scalars.map(abs).max()!
        let along = Tensor(g.scalars.map { $0 / gmax }, shape: g.shape)
        let alongDerivative = g.scalars.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(gmax)
        var rng = RandomGenerator(seed: 6)
        var directions = [(along, 1e-2 * alongDerivative)]
        for _ in 0..<3 { directions.append((rng.normalTensor(x.shape), 2e-3 * alongDerivative)) }
        for (trial, (v, atol)) in directions.enumerated() {
            var analytic = 0.0
            for i in 0..<x.count { analytic += Double(g.pointer[i]) * Double(v.pointer[i]) }
            for eps: Float in [3e-3, 1e-3] {
                let plus = x.copy(), minus = x.copy()
                for i in 0..<x.count { plus.pointer[i] += eps * v.pointer[i]; minus.pointer[i] -= eps * v.pointer[i] }
                let numeric = (value(plus) - value(minus)) / (2 * Double(eps))
                print("classifier-features direction \(trial) eps \(eps): analytic \(analytic) numeric \(numeric)")
                XCTAssertEqual(analytic, numeric, accuracy: atol, "direction \(trial), eps \(eps)")
            }
        }
        // Row 0 and column 31 lie outside the crop 2..<30.
        for b in 0..<2 { for c in 0..<3 {
            XCTAssertEqual(g.pointer[(b * 3 + c) * 1024 + 0 * 32 + 5], 0)
            XCTAssertEqual(g.pointer[(b * 3 + c) * 1024 + 10 * 32 + 31], 0)
        } }
        XCTAssertGreaterThan(g.scalars.map(abs).max()!, 0)
    }
}
