import XCTest
@testable import Datasets
@testable import Pipeline
@testable import Render
import Tensor

final class FrechetDistanceTests: XCTestCase {
    func testSetWithItselfIsZero() throws {
        var rng = RandomGenerator(seed: 3)
        let f = rng.normalTensor([500, 16])
        XCTAssertEqual(try FrechetDistance.distance(features: f, f), 0, accuracy: 1e-8)
    }

    func testClosedFormDiagonal() throws {
        // Diagonal covariances: FD = |mu1 - mu2|^2 + sum (sigma1 - sigma2)^2.
        let d = 4
        let var1: [Double] = [1, 4, 9, 0.25], var2: [Double] = [4, 1, 1, 1]
        func diag(_ v: [Double]) -> [Double] { (0..<(d * d)).map { $0 % (d + 1) == 0 ? v[$0 / (d + 1)] : 0 } }
        let a = GaussianStats(mean: [0, 1, 2, 3], covariance: diag(var1), count: 10)
        let b = GaussianStats(mean: [1, 1, 0, 3], covariance: diag(var2), count: 10)
        let expected = 1.0 + 4.0 + zip(var1, var2).map { pow($0.squareRoot() - $1.squareRoot(), 2) }.reduce(0, +)
        XCTAssertEqual(try FrechetDistance.distance(a, b), expected, accuracy: 1e-9)
    }

    func testClosedFormRotated() throws {
        // S1 = I, S2 = R diag(l) R^T: FD = sum (1 + l - 2 sqrt(l)), whatever the rotation R.
        let c = cos(0.7), s = sin(0.7)
        let l: [Double] = [3, 0.5]
        let r = [c, -s, s, c]
        var s2 = [Double](repeating: 0, count: 4)
        for i in 0..<2 { for j in 0..<2 { for k in 0..<2 { s2[i * 2 + j] += r[i * 2 + k] * l[k] * r[j * 2 + k] } } }
        let a = GaussianStats(mean: [0, 0], covariance: [1, 0, 0, 1], count: 10)
        let b = GaussianStats(mean: [0, 0], covariance: s2, count: 10)
        let expected = l.map { 1 + $0 - 2 * $0.squareRoot() }.reduce(0, +)
        XCTAssertEqual(try FrechetDistance.distance(a, b), expected, accuracy: 1e-9)
        // Symmetric in its arguments.
        XCTAssertEqual(try FrechetDistance.distance(b, a), expected, accuracy: 1e-9)
    }

    func testSampleStatistics() {
        let f = Tensor([1, 2, 3, 4, 5, 9], shape: [3, 2])
        let g = GaussianStats(features: f)
        XCTAssertEqual(g.mean, [3, 5])
        XCTAssertEqual(g.covariance[0], 4, accuracy: 1e-12)       // var of 1,3,5
        XCTAssertEqual(g.covariance[3], 13, accuracy: 1e-12)      // var of 2,4,9
        XCTAssertEqual(g.covariance[1], 7, accuracy: 1e-12)
    }
}

final class ClassFidelityTests: XCTestCase {
    /// Class fidelity of real test images, passed through the same path as generated ones
    /// (tokenizer-space 32 x 32 RGB, 8-bit, back to the classifier's 28 x 28), equals the
    /// classifier's test accuracy.
    func testFidelityOfRealImagesEqualsAccuracy() throws {
        try XCTSkipUnless(FashionMNIST.isAvailable(), "Fashion-MNIST is not installed")
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let weights = root.appendingPathComponent("Checkpoints/fashion-classifier/model.safetensors").path
        try XCTSkipUnless(FileManager.default.fileExists(atPath: weights), "no shipped classifier")
        let classifier = try FashionClassifier.load(path: weights)
        let test = try FashionMNIST(split: .test)
        let n = 2000
        let (_, direct) = classifier.evaluate(EvalJob.classifierImages(test, limit: n))
        let accuracy = EvalJob.accuracy(direct, Array(test.labels.prefix(n)))
        let rgb = (0..<n).map { ImageGrid.image(fromTensor: test.tensor($0, mode: .pad(size: 32))) }
        let (_, viaImages) = classifier.evaluate(ImageMetrics.classifierInput(rgb))
        let fidelity = EvalJob.accuracy(viaImages, Array(test.labels.prefix(n)))
        XCTAssertEqual(fidelity, accuracy, accuracy: 1e-12)
        XCTAssertGreaterThan(accuracy, 0.88)
    }
}

final class EvalSweepTests: XCTestCase {
    /// The grid's title and the sweep's progress name a limited guidance interval, nothing else.
    func testGuidanceSuffixNamesOnlyALimitedInterval() {
        XCTAssertEqual(GenerationJob.guidanceSuffix(cfg: 2, low: 0, high: 0.7), " on t in [0, 0.7]")
        XCTAssertEqual(GenerationJob.guidanceSuffix(cfg: 2, low: 0.1, high: 1), " on t in [0.1, 1]")
        XCTAssertEqual(GenerationJob.guidanceSuffix(cfg: 2, low: 0, high: 1), "")
        XCTAssertEqual(GenerationJob.guidanceSuffix(cfg: 1, low: 0, high: 0.7), "", "cfg 1 has no guidance")
    }

    /// sampler x steps x interval x cfg, with cfg 1 (no guidance) measured once per sampler and
    /// step count whatever the intervals.
    func testSweepSettingsMeasureCfgOneOnce() {
        var o = EvalOptions(tokenizer: "t", classifier: "c")
        o.methods = [.euler, .heun]; o.steps = [10]; o.cfgScales = [1, 2]; o.guidanceHighs = [1, 0.7]
        let s = EvalJob.sweepSettings(o)
        XCTAssertEqual(s.map { "\($0.method.rawValue) \($0.steps) \($0.guidanceHigh) \($0.cfg)" },
                       ["euler 10 1.0 1.0", "euler 10 1.0 2.0", "euler 10 0.7 2.0", "heun 10 1.0 1.0", "heun 10 1.0 2.0", "heun 10 0.7 2.0"])
    }

    /// A report written part-way says how many settings it holds; the finished one does not.
    func testPartialReportSaysHowManySettingsItHolds() {
        var r = EvalReport()
        r.settingsPlanned = 3
        r.generation = [GenerationScore(sampler: "euler", cfgScale: 2, steps: 10, guidanceInterval: [0, 0.7], classFidelity: 0.9, fd: 5, seconds: 1)]
        XCTAssertTrue(r.table().contains("| euler | 2.00 | 10 | [0, 0.7] | 90.00% |"), r.table())
        XCTAssertTrue(r.table().contains("1 of 3 settings measured"), r.table())
        r.settingsPlanned = 1
        XCTAssertFalse(r.table().contains("settings measured"), r.table())
    }
}
