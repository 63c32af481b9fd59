// Replays the inputs kept under Fuzz/regressions/ (crashes found by scripts/fuzz.sh and the
// crash cases of issue 17) through the fuzz targets' own code, linked in from Tests/TensorTests/Fuzz.

import Foundation
import XCTest

final class FuzzRegressionTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func testSafetensorsRegressionsReplay() throws {
        let count = try replayRegressions("safetensors", repository: Self.repository, fuzzSafeTensors)
        XCTAssertGreaterThan(count, 0, "no inputs under Fuzz/regressions/safetensors")
    }

}
