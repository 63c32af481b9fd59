// The SiT-XL/1 forward benchmark; runs only with SIT_BENCH=1 (use a release build:
// `SIT_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter SiTBenchmarkTests`).

import Foundation
import XCTest
import Tensor
import Pipeline
import SiT

final class SiTBenchmarkTests: XCTestCase {
    func testFLOPCount() {
        // ~57.5 GFLOP per 64-token SiT-XL/1 forward (DESIGN.md).
        XCTAssertEqual(SiTBenchmark.forwardFLOPs(.xl1SoftVQ(tokens: 64), batch: 1) / 1e9, 58, accuracy: 1)
    }

    func testXL1Forward() throws {
        guard ProcessInfo.processInfo.environment["SIT_BENCH"] == "1" else { throw XCTSkip("set SIT_BENCH=1 to run") }
        print("threads: \(Threads.count)")
        let gemm = SiTBenchmark.sgemmGFLOPs()
        print(String(format: "raw sgemm 64x1152 . 1152x4608: %.1f GFLOP/s", gemm))
        let results = try SiTBenchmark.forward()
        for r in results {
            print(String(format: "SiT-XL/1 batch %d: %.3f s/forward, %.1f GFLOP/s = %.0f%% of sgemm", r.batch,
                         r.secondsPerForward, r.gflopPerSecond, 100 * r.gflopPerSecond / gemm))
        }
        print(String(format: "raw sgemm again: %.1f GFLOP/s; with 512 rows (batch 8 x 64): %.1f GFLOP/s",
                     SiTBenchmark.sgemmGFLOPs(), SiTBenchmark.sgemmGFLOPs(m: 512, repeats: 5)))
    }
}
