// The SiT-specific kernel (Sources/Tensor/SiTKernels.swift) against the Tensor module's tanh-GELU.

import Foundation
import XCTest
import Tensor

final class SiTKernelTests: XCTestCase {
    func testFastGeluMatchesTanhGeluForwardAndBackward() {
        var values: [Float] = stride(from: -12, through: 12, by: 0.01).map { Float($0) }
        values += [-1e4, -100, -30, 30, 100, 1e4, 0, -0.0, 1e-8, -1e-8]
        let x = Tensor(values, shape: [values.count], requiresGrad: true)
        let fast = x.geluTanhFast(), ref = x.gelu(approximate: true)
        var worst: Float = 0
        for i in 0..<values.count {
            let a = fast.pointer[i], b = ref.pointer[i]
            worst = max(worst, abs(a - b) / max(1, abs(b)))
        }
        print("fast GELU forward: worst relative difference \(worst)")
        XCTAssertLessThan(worst, 1e-6)
        let g = Tensor((0..<values.count).map { Float($0 % 7) - 3 }, shape: [values.count])
        fast.backward(g)
        let gFast = x.grad!.scalars
        x.grad = nil
        ref.backward(g)
        let gRef = x.grad!.scalars
        let gradWorst = zip(gFast, gRef).reduce(Float(0)) { max($0, abs($1.0 - $1.1) / max(1, abs($1.1))) }
        print("fast GELU backward: worst relative difference \(gradWorst)")
        XCTAssertLessThan(gradWorst, 1e-5)
        XCTAssertTrue(Tensor([.nan], shape: [1]).geluTanhFast().item.isNaN)
        XCTAssertTrue(Tensor([Float](repeating: .nan, count: 9), shape: [9]).geluTanhFast().scalars.allSatisfy(\.isNaN))

        // Speed beside the Tensor module's tanh-GELU (informative).
        var rng = RandomGenerator(seed: 3)
        let big = rng.normalTensor([8 * 64, 4608], std: 2)
        func best(_ f: () -> Tensor) -> (Double, Tensor) {
            var out = f(), t = Double.infinity
            for _ in 0..<3 {
                let c0 = DispatchTime.now().uptimeNanoseconds
                out = Autograd.noGrad { f() }
                t = min(t, Double(DispatchTime.now().uptimeNanoseconds - c0) / 1e6)
            }
            return (t, out)
        }
        let (ta, a) = best { big.geluTanhFast() }
        let (tb, b) = best { big.gelu(approximate: true) }
        print(String(format: "GELU over 2.4M values: fast %.1f ms, tanh %.1f ms", ta, tb))
        let big2 = maxAbsDiff(a.scalars, b.scalars)
        XCTAssertLessThan(big2, 2e-6)
    }
}
