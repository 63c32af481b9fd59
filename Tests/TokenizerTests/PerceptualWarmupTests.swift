import Tokenizer
import XCTest

final class PerceptualWarmupTests: XCTestCase {
    /// softvq-l-64.yaml: perceptual_weight 1.0, perceptual_warmup 10000.
    func testOfficialSchedule() {
        XCTAssertEqual(perceptualWeight(step: 0, weight: 1, warmup: 10_000), 0)
        XCTAssertEqual(perceptualWeight(step: 2_500, weight: 1, warmup: 10_000), 0.25)
        XCTAssertEqual(perceptualWeight(step: 10_000, weight: 1, warmup: 10_000), 1)
        XCTAssertEqual(perceptualWeight(step: 50_000, weight: 0.5, warmup: 10_000), 0.5)
        XCTAssertEqual(perceptualWeight(step: 0, weight: 0.5, warmup: nil), 0.5)
    }
}
