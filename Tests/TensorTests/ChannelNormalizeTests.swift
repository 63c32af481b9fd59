import XCTest
@testable import Tensor

final class ChannelNormalizeTests: XCTestCase {
    /// Forward against the composed formula x / (sqrt(sum_c x^2) + eps).
    func testForwardMatchesFormula() {
        let x = randn([2, 5, 3, 4], seed: 7)
        let y = x.channelNormalized()
        let ref = Autograd.noGrad { x / (x.square().sum(axes: [1], keepDims: true).sqrt() + 1e-10) }
        XCTAssertLessThan(maxAbsDiff(y.scalars, ref.scalars), 1e-6)
    }

    func testGradient() {
        checkGradients("channelNormalized", [randn([2, 4, 3, 3], seed: 8)], eps: 1e-3, maxChecksPerInput: 72) {
            $0[0].channelNormalized()
        }
    }

    /// A position whose channels are all zero gets the gradient g / eps-limited 1/d, never NaN.
    func testZeroVectorGradientIsFinite() {
        let x = Tensor([0, 1, 0, 2], shape: [1, 2, 2], requiresGrad: true)   // position 0 is all zero
        let y = x.channelNormalized(eps: 1e-3)
        y.backward(Tensor([1, 1, 1, 1], shape: [1, 2, 2]))
        let g = x.grad!.scalars
        XCTAssertTrue(g.allSatisfy { $0.isFinite }, "\(g)")
        XCTAssertEqual(g[0], 1 / 1e-3, accuracy: 1e-2)
        XCTAssertEqual(g[2], 1 / 1e-3, accuracy: 1e-2)
    }
}
