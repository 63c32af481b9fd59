// Replays the inputs kept under Fuzz/regressions/ (crashes found by scripts/fuzz.sh and the
// crash cases of issue 17) through the fuzz targets' own code, linked in from Tests/TokenizerTests/Fuzz.

import Foundation
import XCTest

final class FuzzRegressionTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func testTokconfigRegressionsReplay() throws {
        let count = try replayRegressions("tokconfig", repository: Self.repository, fuzzTokenizerConfig)
        XCTAssertGreaterThan(count, 0, "no inputs under Fuzz/regressions/tokconfig")
    }

}
