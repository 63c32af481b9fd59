import XCTest
@testable import Tensor

/// The ops of convolutional discriminators against finite differences: leaky ReLU, softplus,
/// translation, batch norm in training mode, and the PatchGAN convolution shapes.
final class ConvNetOpGradientTests: XCTestCase {
    func testLeakyReLUAndSoftplus() {
        // Keep inputs away from the kink at 0.
        let x = randn([3, 2, 4, 5], seed: 41)
        let signs = Tensor((0..<x.count).map { $0 % 3 == 0 ? -1 : 1 }, shape: x.shape)
        let away = ((x.abs() + 0.1) * signs).detached()
        checkGradients("leaky_relu", [away]) { $0[0].leakyReLU(slope: 0.2) }
        XCTAssertEqual(Tensor([-2, 0, 3], shape: [3]).leakyReLU(slope: 0.2).scalars, [-0.4, 0, 3])
        checkGradients("softplus", [x * 3]) { $0[0].softplus() }
        let big = Tensor([-100, 0, 100], shape: [3]).softplus().scalars
        XCTAssertEqual(big[0], 0, accuracy: 1e-30); XCTAssertEqual(big[1], log(2), accuracy: 1e-7); XCTAssertEqual(big[2], 100)
    }

    func testTranslation() {
        let x = randn([3, 2, 5, 6], seed: 42)
        checkGradients("translate", [x]) { $0[0].translated(rows: [1, -2, 0], cols: [0, 3, -1]) }
        // out[i, j] = x[i + 1, j - 1] for sample 0, zero where that leaves the image.
        let y = x.translated(rows: [1, 0, 0], cols: [-1, 0, 0])
        XCTAssertEqual(y.pointer[0 * 6 + 0], 0)
        XCTAssertEqual(y.pointer[2 * 6 + 3], x.pointer[3 * 6 + 2])
        XCTAssertEqual(y.pointer[4 * 6 + 3], 0)
    }

    func testBatchNormTraining() {
        let x = randn([3, 4, 3, 5], seed: 43, std: 2)
        let w = randn([4], seed: 44), b = randn([4], seed: 45)
        checkGradients("batch_norm", [x, w, b], eps: 1e-2, atol: 3e-3, rtol: 2e-2) {
            batchNormTraining($0[0], weight: $0[1], bias: $0[2], eps: 1e-5).0
        }
        // Normalized output: zero mean, unit (biased) variance per channel with weight 1, bias 0.
        let (y, stats) = batchNormTraining(x, weight: Tensor(repeating: 1, shape: [4]), bias: Tensor(zeros: [4]), eps: 0)
        let perChannel = y.permuted([1, 0, 2, 3]).reshaped([4, 45])
        for ch in 0..<4 {
            let v = perChannel[ch].scalars.map(Double.init)
            let mu = v.reduce(0, +) / 45
            XCTAssertEqual(mu, 0, accuracy: 1e-6)
            XCTAssertEqual(v.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / 45, 1, accuracy: 1e-5)
        }
        XCTAssertEqual(stats.valuesPerChannel, 45)
    }

    func testBatchNormModuleRunningStatistics() {
        var f = ParameterFactory(.random(seed: 1))
        let bn = BatchNorm2d(2, &f)
        let x = randn([2, 2, 2, 3], seed: 46)
        _ = bn(x)
        // Channel 0 by hand: momentum 0.1, unbiased variance for running_var.
        let v = (0..<2).flatMap { b in (0..<6).map { Double(x.pointer[b * 12 + $0]) } }
        let mu = v.reduce(0, +) / 12
        let unbiased = v.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / 11
        XCTAssertEqual(Double(bn.runningMean.pointer[0]), 0.1 * mu, accuracy: 1e-7)
        XCTAssertEqual(Double(bn.runningVar.pointer[0]), 0.9 + 0.1 * unbiased, accuracy: 1e-6)
        XCTAssertEqual(bn.numBatchesTracked.item, 1)
        // Eval mode normalizes with the running statistics (and leaves them alone).
        bn.training = false
        let before = bn.runningMean.scalars
        let y = bn(x)
        XCTAssertEqual(bn.runningMean.scalars, before)
        let expected = (Double(x.pointer[0]) - Double(bn.runningMean.pointer[0])) / (Double(bn.runningVar.pointer[0]) + 1e-5).squareRoot()
            * Double(bn.weight.pointer[0]) + Double(bn.bias.pointer[0])
        XCTAssertEqual(Double(y.pointer[0]), expected, accuracy: 1e-5)
        checkGradients("batch_norm_eval", [x, bn.weight, bn.bias]) { _ in bn(x) }
    }

    /// The PatchGAN convolutions: kernel 4 with stride 2 or 1, padding 1, with and without bias.
    func testPatchGANConvolutions() {
        for (stride, size) in [(2, 8), (2, 7), (1, 5), (1, 4)] {
            let x = randn([2, 3, size, size], seed: UInt64(50 + size))
            let w = randn([4, 3, 4, 4], seed: UInt64(60 + size), std: 0.3)
            let b = randn([4], seed: UInt64(70 + size))
            checkGradients("conv k4 s\(stride) p1 \(size) bias", [x, w, b]) {
                conv2d($0[0], $0[1], $0[2], stride: stride, padding: 1)
            }
            checkGradients("conv k4 s\(stride) p1 \(size) no bias", [x, w]) {
                conv2d($0[0], $0[1], nil, stride: stride, padding: 1)
            }
        }
    }
}
