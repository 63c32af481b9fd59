// `gen bench allreduce`: the gradient sum of data-parallel training, alone. Under mpirun every rank
// sums a buffer of the given size through DataParallel.sumGradients (the buckets of training)
// and rank 0 reports the time per sum and the ring-allreduce bus bandwidth, 2 (N - 1) / N x bytes
// / time (what each rank sends and receives per second in a bandwidth-optimal allreduce; the
// figure the ring cost model in docs/scaling.md takes as the link speed).

import Cluster
import Foundation
import Tensor

public struct AllreduceMeasurement: Codable, Sendable {
    public var ranks: Int
    public var bytes: Int
    public var secondsMedian: Double
    public var secondsMin: Double
    public var busGBps: Double
}

public enum AllreduceBenchmark {
    public static func run(megabytes: Int, repeats: Int, world: Distributed = Cluster.world) throws -> AllreduceMeasurement {
        let count = megabytes * (1 << 20) / 4
        let t = Tensor(zeros: [count])
        t.grad = Tensor(uninitialized: [count])
        for i in 0..<count { t.grad!.pointer[i] = Float(i % 1000) * 1e-3 }
        let parallel = DataParallel(world: world)
        try world.barrier()
        try parallel.sumGradients([t], weight: 1)   // warm-up (connections, pages)
        var times: [Double] = []
        for _ in 0..<repeats {
            try world.barrier()
            let t0 = now()
            try parallel.sumGradients([t], weight: 0.5)
            times.append(now() - t0)
        }
        // Every rank must see the slowest rank's time: take the maximum over ranks per repeat.
        let all = try times.map { x in try world.allgather(x).max()! }.sorted()
        let n = Double(world.size), bytes = Double(count * 4)
        let median = all[all.count / 2]
        return AllreduceMeasurement(ranks: world.size, bytes: count * 4, secondsMedian: median, secondsMin: all[0],
                                    busGBps: world.size > 1 ? 2 * (n - 1) / n * bytes / median / 1e9 : 0)
    }
}
