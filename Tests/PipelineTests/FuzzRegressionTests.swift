// Replays the inputs kept under Fuzz/regressions/ (crashes found by scripts/fuzz.sh and the
// crash cases of issue 17) through the fuzz targets' own code, linked in from Tests/PipelineTests/Fuzz.

import Foundation
import XCTest

final class FuzzRegressionTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func testIdxRegressionsReplay() throws {
        let count = try replayRegressions("idx", repository: Self.repository, fuzzIDX)
        XCTAssertGreaterThan(count, 0, "no inputs under Fuzz/regressions/idx")
    }

    func testLatentcacheRegressionsReplay() throws {
        let count = try replayRegressions("latentcache", repository: Self.repository, fuzzLatentCache)
        XCTAssertGreaterThan(count, 0, "no inputs under Fuzz/regressions/latentcache")
    }

    func testImageheaderRegressionsReplay() throws {
        let count = try replayRegressions("imageheader", repository: Self.repository, fuzzImageHeader)
        XCTAssertGreaterThan(count, 0, "no inputs under Fuzz/regressions/imageheader")
    }

}
