// Replays the inputs kept under Fuzz/regressions/ (crashes found by scripts/fuzz.sh and the
// crash cases of issue 17) through the fuzz targets' own code, linked in from Tests/SiTTests/Fuzz.

import Foundation
import XCTest

final class FuzzRegressionTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func testSitconfigRegressionsReplay() throws {
        let count = try replayRegressions("sitconfig", repository: Self.repository, fuzzSiTConfig)
        XCTAssertGreaterThan(count, 0, "no inputs under Fuzz/regressions/sitconfig")
    }

}
