import XCTest
@testable import Tensor

final class PoolingTests: XCTestCase {
    /// Forward against a hand-computed 4x4 example, including a tie (first maximum wins).
    func testMaxPoolForwardAndTies() {
        let x = Tensor([1, 3, 2, 2,
                        3, 0, 2, 1,
                        -1, -2, 5, 6,
                        -3, -1, 7, 7], shape: [1, 1, 4, 4], requiresGrad: true)
        let y = maxPool2d(x)
        XCTAssertEqual(y.shape, [1, 1, 2, 2])
        XCTAssertEqual(y.scalars, [3, 2, -1, 7])
        y.backward(Tensor([10, 20, 30, 40], shape: [1, 1, 2, 2]))
        // Ties: 3 at (0,1) before (1,0); 2 at (0,2) before (0,3) and (1,2); 7 at (3,2) before (3,3).
        XCTAssertEqual(x.grad!.scalars, [0, 10, 20, 0,
                                         0, 0, 0, 0,
                                         30, 0, 0, 0,
                                         0, 0, 40, 0])
    }

    /// Odd sides drop the last row / column (floor mode), as PyTorch.
    func testMaxPoolOddSide() {
        let x = randn([2, 3, 5, 7], seed: 4)
        let y = maxPool2d(x)
        XCTAssertEqual(y.shape, [2, 3, 2, 3])
        for plane in 0..<6 { for oy in 0..<2 { for ox in 0..<3 {
            var m = -Float.infinity
            for ky in 0..<2 { for kx in 0..<2 { m = max(m, x.pointer[plane * 35 + (2 * oy + ky) * 7 + 2 * ox + kx]) } }
            XCTAssertEqual(y.pointer[(plane * 2 + oy) * 3 + ox], m)
        } } }
    }

    /// Gradient against finite differences (random inputs have no ties within eps), including
    /// overlapping windows (kernel 3, stride 2).
    func testMaxPoolGradient() {
        checkGradients("maxPool2d k2 s2", [randn([2, 3, 6, 6], seed: 5)], eps: 1e-3, maxChecksPerInput: 72) { maxPool2d($0[0]) }
        checkGradients("maxPool2d k3 s2", [randn([1, 2, 7, 7], seed: 6)], eps: 1e-3, maxChecksPerInput: 72) {
            maxPool2d($0[0], kernel: 3, stride: 2)
        }
    }
}
