// One knob for the thread count: BLAS threads and the parallel-for of the elementwise and
// row-wise kernels.

import CBLAS
import Dispatch
import Foundation

public enum Threads {
    nonisolated(unsafe) private static var current: Int = {
        let env = ProcessInfo.processInfo.environment["GEN_THREADS"].flatMap { Int($0) }
        let n = max(1, env ?? ProcessInfo.processInfo.activeProcessorCount)
        openblas_set_num_threads(Int32(n))
        return n
    }()

    /// Threads used by BLAS and by `parallelFor` (default: all cores, or `GEN_THREADS`).
    public static var count: Int {
        get { current }
        set {
            current = max(1, newValue)
            openblas_set_num_threads(Int32(current))
        }
    }
}

extension Threads {
    /// Runs `body` with BLAS limited to the calling thread, for work that parallelizes over many
    /// small products itself (one product per thread: no hand-off between BLAS threads for
    /// products of a few hundred kFLOP, which OpenBLAS would otherwise split).
    public static func withSerialBLAS<R>(_ body: () throws -> R) rethrows -> R {
        let n = count
        guard n > 1 else { return try body() }
        openblas_set_num_threads(1)
        defer { openblas_set_num_threads(Int32(n)) }
        return try body()
    }
}

/// Splits `0..<n` into at most `Threads.count` contiguous chunks of at least `grain` items and
/// runs `body(lo, hi)` on each, in parallel when there is enough work.
@inline(__always)
public func parallelFor(_ n: Int, grain: Int = 1, _ body: (Int, Int) -> Void) {
    let threads = Threads.count
    let chunks = min(threads, max(1, n / max(grain, 1)))
    if chunks <= 1 {
        if n > 0 { body(0, n) }
        return
    }
    withoutActuallyEscaping(body) { body in
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let lo = n * c / chunks
            let hi = n * (c + 1) / chunks
            if hi > lo { body(lo, hi) }
        }
    }
}
