// Timing helpers for the benchmarks: warm-up, repetitions, median and spread.

import Foundation

/// Wall-clock statistics of repeated runs, in seconds.
public struct TimingStats: Codable, Sendable {
    public let median: Double
    public let min: Double
    public let max: Double
    public let runs: Int

    public init(_ samples: [Double]) {
        let s = samples.sorted()
        runs = s.count
        median = s.isEmpty ? .nan : (s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2)
        min = s.first ?? .nan
        max = s.last ?? .nan
    }

    /// Spread as a fraction of the median ((max - min) / median).
    public var spread: Double { (max - min) / median }
}

@inline(__always)
public func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Runs `body` `warmup` times untimed, then `repeats` times timed.
public func measure(warmup: Int = 1, repeats: Int = 5, _ body: () throws -> Void) rethrows -> TimingStats {
    for _ in 0..<warmup { try body() }
    var samples: [Double] = []
    for _ in 0..<repeats {
        let t0 = now()
        try body()
        samples.append(now() - t0)
    }
    return TimingStats(samples)
}

/// Runs several variants interleaved (A B C A B C ...) so that machine noise hits them alike.
/// - primed: run each variant once untimed right before each timed run, so that every variant
///   starts from its own state (threads awake in its own runtime) rather than the previous one's.
public func measureInterleaved(_ variants: [(String, () -> Void)], warmup: Int = 1, repeats: Int = 5,
                               primed: Bool = false) -> [String: TimingStats] {
    for (_, body) in variants { for _ in 0..<warmup { body() } }
    var samples = [String: [Double]]()
    for _ in 0..<repeats {
        for (name, body) in variants {
            if primed { body() }
            let t0 = now()
            body()
            samples[name, default: []].append(now() - t0)
        }
    }
    return samples.mapValues(TimingStats.init)
}
