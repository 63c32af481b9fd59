// `gen precompute`: encodes a dataset with a tokenizer into an HDF5 latent cache (latents of
// the image and of its mirror image), in batches, resumably: the writer keeps a flushed
// `rows_done` record in `<out>.partial`, and a rerun continues after the last source image
// that was written.
//
// Many processes (mpirun): the batches (the same as one process's) are dealt out by index, rank r
// encoding batches r, r + N, ... of each round of N batches; rank 0 gathers the latents back into
// order and alone writes the one cache (with the same crash safety and resume as one process).
// A batch is encoded exactly as one process encodes it (the sums inside a matmul depend on the
// rows it holds), so the cache is byte-identical to one process's.

import Cluster
import Datasets
import Formats
import Foundation
import Render
import Tensor
import Tokenizer

public struct PrecomputeOptions: Sendable {
    public var tokenizer: String
    public var dataset: String
    public var out: String
    public var batchSize: Int = 64
    public var limit: Int? = nil
    public var strict: Bool = false
    public var overwrite: Bool = false
    public var deflate: Int? = nil

    public init(tokenizer: String, dataset: String, out: String) {
        self.tokenizer = tokenizer
        self.dataset = dataset
        self.out = out
    }
}

public enum PrecomputeJob {
    @discardableResult
    public static func run(_ o: PrecomputeOptions, world: Distributed = Cluster.world,
                           log: @escaping (String) -> Void = { print($0) }) throws -> LatentCacheMetadata {
        let log = world.isRoot ? log : { _ in }
        guard o.batchSize > 0 else { throw PipelineError.invalidArgument("The batch size must be positive.") }
        if world.isRoot {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: o.out, isDirectory: &isDir) {
                guard !isDir.boolValue else {
                    throw PipelineError.invalidArgument("\(o.out) is a folder; --out takes the path of the .h5 file to write.")
                }
                guard o.overwrite else { throw PipelineError.invalidArgument("\(o.out) already exists; pass --overwrite to replace it.") }
            }
        }
        let model = try SoftVQModel.load(folder: o.tokenizer, log: log)
        model.freeze()
        let identity = try TokenizerIdentity(folder: o.tokenizer)
        // --limit keeps a class-balanced subset (every class present when the limit allows).
        let dataset = try ImageDataset.open(o.dataset, size: model.imageSize, strict: o.strict).limited(to: o.limit)
        let total = dataset.count
        guard total > 0 else { throw PipelineError.dataset("The dataset \(o.dataset) has no images.") }
        let meta = LatentCacheMetadata(
            tokenizerName: identity.name, tokenizerSHA256: identity.sha256,
            vqMean: model.config.vqMean, vqStd: model.config.vqStd, imageSize: model.imageSize,
            numTokens: model.numLatentTokens, tokenDim: model.latentDim, numImages: total,
            preprocessing: dataset.preprocessing, dataset: dataset.name,
            classNames: dataset.classNames)
        // Rank 0 owns the file; the others learn where to continue.
        let writer = world.isRoot ? try LatentCacheWriter(path: o.out, metadata: meta, deflateLevel: o.deflate, overwrite: o.overwrite) : nil
        defer { writer?.close() }
        // Where to continue: after the source image of the last written row.
        var next = [Double(0), Double(total)]
        if let writer, writer.rowsDone > 0 {
            let last = try writer.lastPath()
            guard let i = (0..<total).first(where: { dataset.path($0) == last }) else {
                throw PipelineError.cacheMismatch("The partial cache \(writer.partialPath) ends with \(last), which is not in \(o.dataset); delete it or pass --overwrite.")
            }
            next[0] = Double(i + 1)
            log("Resuming \(writer.partialPath): \(writer.rowsDone) rows already written.")
        }
        if world.size > 1 {
            try next.withUnsafeMutableBytes { try world.broadcast($0, root: 0) }
            guard Int(next[1]) == total else {
                throw ClusterError.divergence("Rank \(world.rank) sees \(total) images in \(o.dataset), rank 0 \(Int(next[1])); every rank must read the same dataset.")
            }
        }
        var start = Int(next[0])
        log("Encoding \(total - start) of \(total) images from \(dataset.name) with \(identity.name) (\(model.numLatentTokens) tokens x \(model.latentDim)) into \(o.out)\(world.size > 1 ? " on \(world.size) ranks" : "").")
        let bar = ProgressBar(total: total - start, label: "precompute", unit: "img", output: world.isRoot ? nil : { _ in })
        let perImage = model.numLatentTokens * model.latentDim
        let round = o.batchSize * world.size
        while start < total {
            // This round's batches; this rank's is the rank-th.
            let lo = min(total, start + world.rank * o.batchSize)
            let mine = Array(lo..<min(total, lo + o.batchSize))
            var encoded: [(index: Int, z: [Float], zf: [Float])] = []
            if !mine.isEmpty {
                let (images, kept) = try dataset.batch(mine)
                if !kept.isEmpty {
                    let (z, zf) = try Autograd.noGrad { () throws -> (Tensor, Tensor) in
                        let z = try model.latents(images)
                        let zf = try model.latents(flipHorizontally(images))
                        return (z, zf)
                    }
                    try checkFinite(z, "latents of images \(kept.first!)...\(kept.last!)")
                    for (k, i) in kept.enumerated() {
                        encoded.append((i, Array(UnsafeBufferPointer(start: z.pointer + k * perImage, count: perImage)),
                                        Array(UnsafeBufferPointer(start: zf.pointer + k * perImage, count: perImage))))
                    }
                }
            }
            if world.size > 1 {
                var m = MessageWriter()
                m.int(encoded.count)
                for e in encoded { m.int(e.index); m.floats(e.z); m.floats(e.zf) }
                var all: [(index: Int, z: [Float], zf: [Float])] = []
                for bytes in try world.gather(m.bytes, root: 0) {
                    var r = MessageReader(bytes)
                    for _ in 0..<(try r.int()) { all.append((try r.int(), try r.floats(), try r.floats())) }
                }
                encoded = all.sorted { $0.index < $1.index }
            }
            // One append per batch, as one process writes them.
            if let writer {
                for batchStart in stride(from: start, to: min(total, start + round), by: o.batchSize) {
                    let rows = encoded.filter { $0.index >= batchStart && $0.index < batchStart + o.batchSize }
                    guard !rows.isEmpty else { continue }
                    let z = Tensor(rows.flatMap(\.z), shape: [rows.count, model.numLatentTokens, model.latentDim])
                    let zf = Tensor(rows.flatMap(\.zf), shape: [rows.count, model.numLatentTokens, model.latentDim])
                    try writer.append(latents: z, flipped: zf, labels: rows.map { dataset.label($0.index) }, paths: rows.map { dataset.path($0.index) })
                }
            }
            let done = min(total, start + round) - start
            start += done
            bar.update(by: done)
        }
        bar.finish()
        guard let writer else { return meta }
        let skipped = total - writer.rowsDone
        if skipped > 0 { log("Skipped \(skipped) unreadable image(s).") }
        try writer.finish(allowFewer: skipped > 0)
        log("Wrote \(o.out): \(writer.rowsDone) images.")
        return meta
    }
}

/// Mirrors a batch (N, C, H, W) left to right.
public func flipHorizontally(_ images: Tensor) -> Tensor {
    let w = images.dim(-1)
    let rows = images.count / w
    let out = Tensor(uninitialized: images.shape)
    let src = images.pointer, dst = out.pointer
    for r in 0..<rows { for x in 0..<w { dst[r * w + x] = src[r * w + w - 1 - x] } }
    return out
}

/// Throws if a tensor holds NaN or infinity.
public func checkFinite(_ t: Tensor, _ what: String) throws {
    for i in 0..<t.count where !t.pointer[i].isFinite {
        throw PipelineError.invalidArgument("Non-finite values appeared in the \(what).")
    }
}
