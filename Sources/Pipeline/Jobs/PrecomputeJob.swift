// `gen precompute`: encodes a dataset with a tokenizer into an HDF5 latent cache (latents of
// the image and of its mirror image), in batches, resumably: the writer keeps a flushed
// `rows_done` record in `<out>.partial`, and a rerun continues after the last source image
// that was written.

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
    public static func run(_ o: PrecomputeOptions, log: (String) -> Void = { print($0) }) throws -> LatentCacheMetadata {
        guard o.batchSize > 0 else { throw PipelineError.invalidArgument("The batch size must be positive.") }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: o.out, isDirectory: &isDir) {
            guard !isDir.boolValue else {
                throw PipelineError.invalidArgument("\(o.out) is a folder; --out takes the path of the .h5 file to write.")
            }
            guard o.overwrite else { throw PipelineError.invalidArgument("\(o.out) already exists; pass --overwrite to replace it.") }
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
        let writer = try LatentCacheWriter(path: o.out, metadata: meta, deflateLevel: o.deflate, overwrite: o.overwrite)
        defer { writer.close() }
        // Where to continue: after the source image of the last written row.
        var next = 0
        if writer.rowsDone > 0 {
            let last = try writer.lastPath()
            guard let i = (0..<total).first(where: { dataset.path($0) == last }) else {
                throw PipelineError.cacheMismatch("The partial cache \(writer.partialPath) ends with \(last), which is not in \(o.dataset); delete it or pass --overwrite.")
            }
            next = i + 1
            log("Resuming \(writer.partialPath): \(writer.rowsDone) rows already written.")
        }
        log("Encoding \(total - next) of \(total) images from \(dataset.name) with \(identity.name) (\(model.numLatentTokens) tokens x \(model.latentDim)) into \(o.out).")
        let bar = ProgressBar(total: total - next, label: "precompute", unit: "img")
        while next < total {
            let indices = Array(next..<min(total, next + o.batchSize))
            let (images, kept) = try dataset.batch(indices)
            if !kept.isEmpty {
                let (z, zf) = try Autograd.noGrad { () throws -> (Tensor, Tensor) in
                    let z = try model.latents(images)
                    let zf = try model.latents(flipHorizontally(images))
                    return (z, zf)
                }
                try checkFinite(z, "latents of images \(kept.first!)...\(kept.last!)")
                try writer.append(latents: z, flipped: zf, labels: kept.map(dataset.label), paths: kept.map(dataset.path))
            }
            next = indices.last! + 1
            bar.update(by: indices.count)
        }
        bar.finish()
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
