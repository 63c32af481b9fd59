// Data-parallel training over the ranks of a job (Cluster): each rank computes the gradient of
// its slice of the global batch; `sumGradients` adds the ranks' gradients (each weighted by its
// share of the batch, so the sum is the gradient of the global batch mean) with MPI_Allreduce
// in fixed-size buckets, the parameters always packed in the same order; then every rank makes
// the same AdamW and EMA step and the weights stay identical (checked by `verifyIdentical`).
//
// Reduction order: one process sums a weight's gradient over the whole batch inside one
// matmul; N ranks sum it over their slices, then add the N partial sums. Float addition is not
// associative, so the two agree within float32 rounding of those sums, not bit for bit (the
// tests derive the tolerance); N ranks always reproduce themselves exactly.

import Cluster
import Formats
import Foundation
import Tensor

public struct DataParallel {
    public let world: Distributed
    /// Floats per MPI_Allreduce (16 MiB): large enough to reach the link's bandwidth, small
    /// enough not to double the memory of a big model.
    public var bucketElements = 1 << 22

    public init(world: Distributed) { self.world = world }

    public var isParallel: Bool { world.size > 1 }

    /// Refuses a global batch of fewer `items` than the job has ranks (a rank would train on none).
    public func requireShares(of batchSize: Int, items: String) throws {
        guard batchSize < world.size else { return }
        throw PipelineError.invalidArgument("The batch size \(batchSize) is smaller than the \(world.size) ranks of the job; --batch-size is the global batch, at least one \(items) per rank.")
    }

    /// This rank's rows of a global batch of `batchSize`.
    public func share(of batchSize: Int) -> Range<Int> { world.slice(of: batchSize) }

    /// Sums every rank's `weight * grad` into each tensor's gradient, in place, in buckets.
    public func sumGradients(_ tensors: [Tensor], weight: Float) throws {
        guard isParallel else { return }
        var bucket = [Float](repeating: 0, count: bucketElements)
        // (tensor, offset in the tensor, count, offset in the bucket) of what the bucket holds.
        var pending: [(Tensor, Int, Int, Int)] = []
        var filled = 0
        func flush() throws {
            guard filled > 0 else { return }
            try bucket.withUnsafeMutableBufferPointer { try world.allreduceSum(UnsafeMutableBufferPointer(rebasing: $0[0..<filled])) }
            bucket.withUnsafeBufferPointer { b in
                for (t, offset, count, at) in pending {
                    (t.grad!.pointer + offset).update(from: b.baseAddress! + at, count: count)
                }
            }
            pending.removeAll(keepingCapacity: true)
            filled = 0
        }
        for t in tensors {
            guard let g = t.grad else { continue }
            var offset = 0
            while offset < g.count {
                let count = min(g.count - offset, bucketElements - filled)
                let src = g.pointer + offset
                bucket.withUnsafeMutableBufferPointer { b in
                    let dst = b.baseAddress! + filled
                    if weight == 1 { dst.update(from: src, count: count) } else { for i in 0..<count { dst[i] = src[i] * weight } }
                }
                pending.append((t, offset, count, filled))
                filled += count
                offset += count
                if filled == bucketElements { try flush() }
            }
        }
        try flush()
    }

    /// The batch-weighted sum of per-rank statistics (each rank passes its own values).
    public func sumStatistics(_ values: [Double], weight: Double) throws -> [Double] {
        guard isParallel else { return values }
        var v = values.map { $0 * weight }
        try world.allreduceSum(&v)
        return v
    }

    /// Rank 0's values of `tensors` on every rank (weights, EMA, optimizer moments at the start
    /// of a run, fresh or resumed).
    public func broadcast(_ tensors: [Tensor]) throws {
        guard isParallel else { return }
        for t in tensors where t.count > 0 {
            try world.broadcast(UnsafeMutableRawBufferPointer(start: t.pointer, count: t.count * MemoryLayout<Float>.size), root: 0)
        }
    }

    /// An order-sensitive checksum of the tensors' bits (wrapping sum of bits x odd weights).
    public static func checksum(_ tensors: [Tensor]) -> UInt64 {
        var h: UInt64 = 0
        var k: UInt64 = 0
        for t in tensors {
            let p = UnsafeRawPointer(t.pointer).assumingMemoryBound(to: UInt32.self)
            var s: UInt64 = 0
            for i in 0..<t.count { s &+= UInt64(p[i]) &* (2 &* UInt64(i) &+ 1) }
            k &+= 1
            h = (h &* 0x100_0000_01B3) ^ (s &+ k)
        }
        return h
    }

    /// Throws on rank 0 if any rank's tensors differ from rank 0's (compared by checksum).
    public func verifyIdentical(_ tensors: [Tensor], what: String) throws {
        guard isParallel else { return }
        var sum = Self.checksum(tensors)
        let all = try world.gather(withUnsafeBytes(of: &sum) { Array($0) }, root: 0)
        guard world.isRoot else { return }
        let sums = all.map { $0.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }
        if let bad = sums.firstIndex(where: { $0 != sums[0] }) {
            throw ClusterError.divergence("The \(what) of rank \(bad) differ from rank 0's (checksum \(String(sums[bad], radix: 16)) against \(String(sums[0], radix: 16))); the ranks no longer train the same model. The last checkpoint is intact.")
        }
    }
}
