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
    }
}
