// Mixed-precision training numerics: the tiny SiT of SiTTrainingTests trained 300 steps with
// bf16 products (forward and backward; the software reference, so this runs on any CPU; on bf16
// hardware the engine's oneDNN products equal it within summation order, MixedPrecisionTests)
// against the same run in fp32.

import Foundation
import XCTest
import Tensor
@testable import SiT

final class MixedPrecisionTrainingTests: XCTestCase {
    override func tearDown() { try? Engine.setPrecision(.fp32) }

    func train(bf16: Bool, steps: Int) throws -> (losses: [Float], trainer: SiTTrainer) {
        if bf16 { Engine.useBF16Reference() } else { try Engine.setPrecision(.fp32) }
        defer { try? Engine.setPrecision(.fp32) }
        let trainer = try SiTTrainingTests.makeTrainer(seed: 5)
        let (x, y) = SiTTrainingTests.batch()
        var losses: [Float] = []
        for _ in 0..<steps { losses.append(try trainer.step(latents: x, labels: y).loss) }
        return (losses, trainer)
    }

    func testBF16TrainingReachesTheFP32Loss() throws {
        let fp32 = try train(bf16: false, steps: 300), bf16 = try train(bf16: true, steps: 300)
        func tail(_ l: [Float]) -> Float { l.suffix(50).reduce(0, +) / 50 }
        let a = tail(fp32.losses), b = tail(bf16.losses)
        print(String(format: "mean loss of steps 250-300: fp32 %.5f, bf16 %.5f (%.2f%%); step 2 %.6f / %.6f", a, b, 100 * (b - a) / a, fp32.losses[2], bf16.losses[2]))
        XCTAssertLessThan(Swift.abs(b - a) / a, 0.05, "bf16 training ends more than 5% away from fp32")
        // The products really were bf16: the losses part within a few steps (not at step 0: the
        // adaLN-Zero output is zero whatever the products).
        let parted = zip(fp32.losses, bf16.losses).prefix(5).contains { $0 != $1 }
        XCTAssertTrue(parted, "bf16 and fp32 losses agree bit for bit over the first 5 steps")
        XCTAssertGreaterThan(bf16.losses.prefix(10).reduce(0, +) / tail(bf16.losses), 5, "bf16 training did not learn")
        // Master weights stay fp32: after AdamW's small updates most weights are not bf16 values.
        let w = bf16.trainer.model.blocks[1].mlp.fc2.weight
        let rounded = roundedToBF16(w).scalars
        let offGrid = zip(w.scalars, rounded).filter { $0 != $1 }.count
        XCTAssertGreaterThan(Double(offGrid) / Double(w.count), 0.9, "master weights were stored in bf16")
    }
}
