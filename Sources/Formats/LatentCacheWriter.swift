// HDF5 latent cache writer (h5py-readable, libhdf5 1.10, float32):
//
//   /latents       f32 (N, L, C)  unnormalized z_q of each image
//   /latents_flip  f32 (N, L, C)  z_q of the horizontally flipped image (only if mirrored = 1)
//   /labels        i64 (N)
//   /paths         variable-length UTF-8 (N), the source of each row
//   root attributes: format, format_version, tokenizer_name, tokenizer_sha256, vq_mean, vq_std,
//   image_size, num_tokens, token_dim, num_images, preprocessing, dataset, class_names (JSON),
//   mirrored (absent = 1), rows_done, complete.
//
// Two kinds of file share this format: caches of a dataset (`gen precompute`: mirrored, paths
// are the source images) and sampled latents (`gen sample --save-latents`: preprocessing
// "sampled", not mirrored, paths are the PNG file names, which carry each image's seed).
//
// Crash safety: rows are written in order into `<out>.partial`, which is created at full size.
// After each batch the data is flushed, then `rows_done` is advanced and flushed again, so after
// `kill -9` a rerun resumes at rows_done and rewrites any half-written batch. libhdf5 1.10
// without SWMR may leave a file killed mid-metadata-write unreadable; such a partial file is
// discarded with a message and the cache is rebuilt. Only a finished cache (complete = 1) is
// renamed to `<out>`, so a file under the final name is always complete.

import CHDF5
import Foundation
import Tensor

/// Identity and shape of a latent cache (its root attributes).
public struct LatentCacheMetadata: Codable, Equatable, Sendable {
    public static let formatName = "softvq-latent-cache"
    public static let formatVersion = 1

    public var tokenizerName: String
    public var tokenizerSHA256: String
    public var vqMean: Double
    public var vqStd: Double
    public var imageSize: Int
    public var numTokens: Int
    public var tokenDim: Int
    /// Number of rows (planned total).
    public var numImages: Int
    public var preprocessing: String
    public var dataset: String
    /// Class names by label index (attribute `class_names`, a JSON array; empty if unknown).
    public var classNames: [String]
    /// Whether `/latents_flip` holds the latents of the mirrored images (attribute `mirrored`).
    public var mirrored: Bool

    public init(tokenizerName: String, tokenizerSHA256: String, vqMean: Double, vqStd: Double, imageSize: Int,
                numTokens: Int, tokenDim: Int, numImages: Int, preprocessing: String, dataset: String,
                classNames: [String] = [], mirrored: Bool = true) {
        self.tokenizerName = tokenizerName
        self.tokenizerSHA256 = tokenizerSHA256
        self.vqMean = vqMean
        self.vqStd = vqStd
        self.imageSize = imageSize
        self.numTokens = numTokens
        self.tokenDim = tokenDim
        self.numImages = numImages
        self.preprocessing = preprocessing
        self.dataset = dataset
        self.classNames = classNames
        self.mirrored = mirrored
    }

    func write(to file: hid_t) throws {
        try H5.setAttribute(file, "format", string: Self.formatName)
        try H5.setAttribute(file, "format_version", int: Self.formatVersion)
        try H5.setAttribute(file, "tokenizer_name", string: tokenizerName)
        try H5.setAttribute(file, "tokenizer_sha256", string: tokenizerSHA256)
        try H5.setAttribute(file, "vq_mean", double: vqMean)
        try H5.setAttribute(file, "vq_std", double: vqStd)
        try H5.setAttribute(file, "image_size", int: imageSize)
        try H5.setAttribute(file, "num_tokens", int: numTokens)
        try H5.setAttribute(file, "token_dim", int: tokenDim)
        try H5.setAttribute(file, "num_images", int: numImages)
        try H5.setAttribute(file, "preprocessing", string: preprocessing)
        try H5.setAttribute(file, "dataset", string: dataset)
        let names = String(data: try JSONSerialization.data(withJSONObject: classNames), encoding: .utf8) ?? "[]"
        try H5.setAttribute(file, "class_names", string: names)
        try H5.setAttribute(file, "mirrored", int: mirrored ? 1 : 0)
    }

    /// Reads and checks the format attributes of an open cache file.
    static func read(from file: hid_t, path: String) throws -> LatentCacheMetadata {
        guard H5.attributeExists(file, "format"),
              (try? H5.stringAttribute(file, "format")) == formatName else {
            throw PipelineError.cacheMismatch("The file \(path) is not a SoftVQ latent cache (its format attribute is not \(formatName)).")
        }
        let version = try H5.intAttribute(file, "format_version")
        guard version == formatVersion else {
            throw PipelineError.cacheMismatch("The latent cache \(path) has format version \(version); this build reads version \(formatVersion).")
        }
        return LatentCacheMetadata(
            tokenizerName: try H5.stringAttribute(file, "tokenizer_name"),
            tokenizerSHA256: try H5.stringAttribute(file, "tokenizer_sha256"),
            vqMean: try H5.doubleAttribute(file, "vq_mean"),
            vqStd: try H5.doubleAttribute(file, "vq_std"),
            imageSize: try H5.intAttribute(file, "image_size"),
            numTokens: try H5.intAttribute(file, "num_tokens"),
            tokenDim: try H5.intAttribute(file, "token_dim"),
            numImages: try H5.intAttribute(file, "num_images"),
            preprocessing: try H5.stringAttribute(file, "preprocessing"),
            dataset: try H5.stringAttribute(file, "dataset"),
            classNames: H5.attributeExists(file, "class_names")
                ? ((try? JSONSerialization.jsonObject(with: Data(try H5.stringAttribute(file, "class_names").utf8))) as? [String] ?? [])
                : [],
            mirrored: H5.attributeExists(file, "mirrored") ? try H5.intAttribute(file, "mirrored") != 0 : true)
    }

    /// The first difference from `other`, as a phrase, or nil if they match.
    func difference(from other: LatentCacheMetadata) -> String? {
        if tokenizerName != other.tokenizerName || tokenizerSHA256 != other.tokenizerSHA256 {
            return "tokenizer \(tokenizerName) (sha256 \(tokenizerSHA256.prefix(12))) instead of \(other.tokenizerName) (sha256 \(other.tokenizerSHA256.prefix(12)))"
        }
        if dataset != other.dataset { return "dataset \(dataset) instead of \(other.dataset)" }
        if mirrored != other.mirrored { return mirrored ? "mirrored latents" : "no mirrored latents" }
        if numImages != other.numImages { return "\(numImages) images instead of \(other.numImages)" }
        if preprocessing != other.preprocessing { return "preprocessing \(preprocessing) instead of \(other.preprocessing)" }
        if imageSize != other.imageSize || numTokens != other.numTokens || tokenDim != other.tokenDim {
            return "shape (image \(imageSize), \(numTokens) x \(tokenDim)) instead of (image \(other.imageSize), \(other.numTokens) x \(other.tokenDim))"
        }
        if vqMean != other.vqMean || vqStd != other.vqStd {
            return "vq_mean/vq_std \(vqMean)/\(vqStd) instead of \(other.vqMean)/\(other.vqStd)"
        }
        return nil
    }
}

public final class LatentCacheWriter {
    public enum Start: Equatable, Sendable {
        /// A new partial file was created.
        case fresh
        /// An interrupted run's partial file was reopened; rows before `rowsDone` are kept.
        case resumed(rowsDone: Int)
        /// A partial file existed but could not be used and was replaced.
        case restarted(reason: String)
    }

    /// The final path (appears only when the cache is complete).
    public let path: String
    public var partialPath: String { path + ".partial" }
    public let metadata: LatentCacheMetadata
    public private(set) var start: Start = .fresh
    /// Rows written and flushed so far; the next `append` writes row `rowsDone`.
    public private(set) var rowsDone: Int

    private var file: hid_t = -1
    private var latents: hid_t = -1
    private var latentsFlip: hid_t = -1
    private var labels: hid_t = -1
    private var paths: hid_t = -1

    /// Opens `<path>.partial` for writing, resuming it when it belongs to the same job.
    /// - chunkRows: rows per HDF5 chunk of the latent datasets.
    /// - deflateLevel: nil for no compression, else shuffle + deflate at this level (1...9).
    /// - overwrite: replace an existing complete cache at `path` when the new one is complete
    ///   (else an existing file is an error); the old file stays untouched until then.
    public init(path: String, metadata: LatentCacheMetadata, chunkRows: Int = 64, deflateLevel: Int? = nil,
                overwrite: Bool = false) throws {
        _ = H5.silenced
        guard metadata.numImages > 0, metadata.numTokens > 0, metadata.tokenDim > 0 else {
            throw PipelineError.invalidArgument("A latent cache needs at least one image, token and channel.")
        }
        self.path = path
        self.metadata = metadata
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDir) {
            guard !isDir.boolValue else {
                throw PipelineError.invalidArgument("\(path) is a folder; the output of a latent cache is a .h5 file path.")
            }
            guard overwrite else {
                throw PipelineError.invalidArgument("The latent cache \(path) already exists; remove it or choose another output path.")
            }
            // Kept until the new cache is complete: `finish` renames the new file over it.
        }
        let partial = path + ".partial"
        var start = Start.fresh
        rowsDone = 0
        if fm.fileExists(atPath: partial) {
            do {
                try openExisting(partial)
                start = .resumed(rowsDone: rowsDone)
            } catch PipelineError.cacheMismatch(let message) {
                closeHandles()
                throw PipelineError.cacheMismatch(message)
            } catch {
                closeHandles()
                let reason = "the partial cache \(partial) from an interrupted run is unreadable (\(error)); starting over"
                warn(reason)
                try? fm.removeItem(atPath: partial)
                start = .restarted(reason: reason)
                rowsDone = 0
            }
        }
        if file < 0 {
            do { try create(partial, chunkRows: chunkRows, deflateLevel: deflateLevel) } catch {
                closeHandles()
                try? fm.removeItem(atPath: partial)   // ours, and empty: nothing to resume
                throw error
            }
        }
        self.start = start
    }

    deinit { closeHandles() }

    private func openExisting(_ partial: String) throws {
        file = try H5.id(H5Fopen(partial, h5f_acc_rdwr(), h5_p_default()), "open \(partial)")
        // A partial file whose header never got written (killed, or a full disk, during create)
        // holds nothing: start over. One with another job's header is refused below.
        guard H5.attributeExists(file, "format"), H5.attributeExists(file, "rows_done") else {
            throw PipelineError.hdf5("its header was never completed")
        }
        let existing = try LatentCacheMetadata.read(from: file, path: partial)
        if let diff = existing.difference(from: metadata) {
            throw PipelineError.cacheMismatch("The partial cache \(partial) was started with \(diff); delete it or rerun with the same settings.")
        }
        latents = try H5.id(H5Dopen2(file, "latents", h5_p_default()), "open /latents")
        if metadata.mirrored { latentsFlip = try H5.id(H5Dopen2(file, "latents_flip", h5_p_default()), "open /latents_flip") }
        labels = try H5.id(H5Dopen2(file, "labels", h5_p_default()), "open /labels")
        paths = try H5.id(H5Dopen2(file, "paths", h5_p_default()), "open /paths")
        let done = try H5.intAttribute(file, "rows_done")
        guard done >= 0, done <= metadata.numImages else {
            throw PipelineError.hdf5("rows_done \(done) is out of range")
        }
        // Mark incomplete in case a finish was interrupted between attribute and rename.
        try H5.setAttribute(file, "complete", int: 0)
        rowsDone = done
    }

    private func create(_ partial: String, chunkRows: Int, deflateLevel: Int?) throws {
        let n = metadata.numImages, l = metadata.numTokens, c = metadata.tokenDim
        file = try H5.id(H5Fcreate(partial, h5f_acc_trunc(), h5_p_default(), h5_p_default()),
                         "create \(partial) (is the folder writable?)")
        try metadata.write(to: file)
        try H5.setAttribute(file, "rows_done", int: 0)
        try H5.setAttribute(file, "complete", int: 0)

        func makeDataset(_ name: String, type: hid_t, dims: [hsize_t], chunk: [hsize_t]) throws -> hid_t {
            var d = dims
            // Extendible along N so that a run that skipped unreadable images can shrink to size.
            var maxd = dims
            maxd[0] = h5s_unlimited()
            let space = try H5.id(H5Screate_simple(Int32(d.count), &d, &maxd), "create the dataspace of /\(name)")
            defer { H5Sclose(space) }
            let dcpl = try H5.id(H5Pcreate(h5_p_dataset_create()), "create a dataset property list")
            defer { H5Pclose(dcpl) }
            var ch = chunk
            try H5.check(H5Pset_chunk(dcpl, Int32(ch.count), &ch), "set the chunking of /\(name)")
            if let level = deflateLevel {
                try H5.check(H5Pset_shuffle(dcpl), "enable the shuffle filter")
                try H5.check(H5Pset_deflate(dcpl, UInt32(max(1, min(9, level)))), "enable deflate compression")
            }
            return try H5.id(H5Dcreate2(file, name, type, space, h5_p_default(), dcpl, h5_p_default()), "create /\(name)")
        }
        let rows = hsize_t(max(1, min(chunkRows, n)))
        let dims: [hsize_t] = [hsize_t(n), hsize_t(l), hsize_t(c)]
        latents = try makeDataset("latents", type: h5_t_ieee_f32le(), dims: dims, chunk: [rows, hsize_t(l), hsize_t(c)])
        if metadata.mirrored {
            latentsFlip = try makeDataset("latents_flip", type: h5_t_ieee_f32le(), dims: dims, chunk: [rows, hsize_t(l), hsize_t(c)])
        }
        let rowChunk = hsize_t(max(1, min(4096, n)))
        labels = try makeDataset("labels", type: h5_t_std_i64le(), dims: [hsize_t(n)], chunk: [rowChunk])
        let stringType = try H5.stringType()
        defer { H5Tclose(stringType) }
        paths = try makeDataset("paths", type: stringType, dims: [hsize_t(n)], chunk: [rowChunk])
        try H5.check(H5Fflush(file, H5F_SCOPE_LOCAL), "flush \(partial)")
    }

    /// Writes the next B rows: latents and flipped latents (B, L, C) (flipped: nil exactly when
    /// the cache is not mirrored), labels and source paths.
    public func append(latents z: Tensor, flipped zf: Tensor?, labels y: [Int], paths p: [String]) throws {
        guard file >= 0 else { throw PipelineError.invalidArgument("The latent cache writer is closed.") }
        let b = y.count
        let l = metadata.numTokens, c = metadata.tokenDim
        guard z.shape == [b, l, c], (zf?.shape ?? [b, l, c]) == [b, l, c], p.count == b, (zf != nil) == metadata.mirrored else {
            throw PipelineError.invalidArgument("append expects latents of shape (\(b), \(l), \(c))\(metadata.mirrored ? " with their mirrored latents" : "") and \(b) labels and paths; got \(z.shape), \(zf.map { "\($0.shape)" } ?? "no mirrored latents"), \(p.count) paths.")
        }
        guard rowsDone + b <= metadata.numImages else {
            throw PipelineError.invalidArgument("append would write past the planned \(metadata.numImages) rows.")
        }
        if b == 0 { return }
        let rows = Array(rowsDone..<rowsDone + b)
        try writeRows(latents, rows: rows, trailing: [hsize_t(l), hsize_t(c)], memType: h5_t_native_float(), z.pointer)
        if let zf { try writeRows(latentsFlip, rows: rows, trailing: [hsize_t(l), hsize_t(c)], memType: h5_t_native_float(), zf.pointer) }
        let y64 = y.map { Int64($0) }
        try y64.withUnsafeBufferPointer { try writeRows(labels, rows: rows, trailing: [], memType: h5_t_native_int64(), $0.baseAddress!) }
        let strings = p.map { strdup($0) }
        defer { strings.forEach { free($0) } }
        let pointers: [UnsafePointer<CChar>?] = strings.map { UnsafePointer($0) }
        let stringType = try H5.stringType()
        defer { H5Tclose(stringType) }
        try pointers.withUnsafeBufferPointer { try writeRows(paths, rows: rows, trailing: [], memType: stringType, $0.baseAddress!) }
        // Data first, then the progress record: rows_done never runs ahead of flushed data.
        try H5.check(H5Fflush(file, H5F_SCOPE_LOCAL), "flush \(partialPath)")
        try H5.setAttribute(file, "rows_done", int: rowsDone + b)
        try H5.check(H5Fflush(file, H5F_SCOPE_LOCAL), "flush \(partialPath)")
        rowsDone += b
    }

    private func writeRows(_ dataset: hid_t, rows: [Int], trailing: [hsize_t], memType: hid_t, _ data: UnsafeRawPointer) throws {
        let fileSpace = try H5.id(H5Dget_space(dataset), "get a dataspace")
        defer { H5Sclose(fileSpace) }
        try H5.selectRows(fileSpace, rows: rows, trailing: trailing)
        var memDims = [hsize_t(rows.count)] + trailing
        let memSpace = try H5.id(H5Screate_simple(Int32(memDims.count), &memDims, nil), "create a memory dataspace")
        defer { H5Sclose(memSpace) }
        try H5.check(H5Dwrite(dataset, memType, memSpace, fileSpace, h5_p_default(), data),
                     "write rows \(rows.first!)...\(rows.last!) of \(partialPath) (disk full?)")
    }

    /// Moves the write position back to `row` (<= rowsDone): later rows will be written again.
    public func rewind(to row: Int) throws {
        guard row < rowsDone else { return }
        guard row >= 0 else { throw PipelineError.invalidArgument("Cannot rewind a latent cache to row \(row).") }
        try H5.setAttribute(file, "rows_done", int: row)
        try H5.check(H5Fflush(file, H5F_SCOPE_LOCAL), "flush \(partialPath)")
        rowsDone = row
    }

    /// The source path of the last written row (to find where a resumed job continues).
    public func lastPath() throws -> String {
        guard rowsDone > 0 else { throw PipelineError.invalidArgument("The latent cache has no rows yet.") }
        let fileSpace = try H5.id(H5Dget_space(paths), "get a dataspace")
        defer { H5Sclose(fileSpace) }
        try H5.selectRows(fileSpace, rows: [rowsDone - 1], trailing: [])
        var one: [hsize_t] = [1]
        let memSpace = try H5.id(H5Screate_simple(1, &one, nil), "create a memory dataspace")
        defer { H5Sclose(memSpace) }
        let stringType = try H5.stringType()
        defer { H5Tclose(stringType) }
        var out: [UnsafeMutablePointer<CChar>?] = [nil]
        try H5.check(H5Dread(paths, stringType, memSpace, fileSpace, h5_p_default(), &out), "read /paths of \(partialPath)")
        defer { H5Dvlen_reclaim(stringType, memSpace, h5_p_default(), &out) }
        return out[0].map { String(cString: $0) } ?? ""
    }

    /// Marks the cache complete and moves it to its final name. Every planned row must be
    /// written, unless `allowFewer` (unreadable source images were skipped): then the datasets
    /// shrink to the rows written and `num_images` says so.
    public func finish(allowFewer: Bool = false) throws {
        if allowFewer && rowsDone < metadata.numImages && rowsDone > 0 {
            for (d, trailing) in [(latents, [hsize_t(metadata.numTokens), hsize_t(metadata.tokenDim)]),
                                  (latentsFlip, [hsize_t(metadata.numTokens), hsize_t(metadata.tokenDim)]),
                                  (labels, []), (paths, [])] where d >= 0 {
                var dims = [hsize_t(rowsDone)] + trailing
                try H5.check(H5Dset_extent(d, &dims), "shrink \(partialPath)")
            }
            try H5.setAttribute(file, "num_images", int: rowsDone)
        } else {
            guard rowsDone == metadata.numImages else {
                throw PipelineError.invalidArgument("The latent cache has \(rowsDone) of \(metadata.numImages) rows; it cannot be finished yet.")
            }
        }
        // The classes that occur (a class-balanced --limit, or skipped images, may leave some out).
        var y = [Int64](repeating: 0, count: rowsDone)
        if rowsDone > 0 {
            try H5.check(H5Dread(labels, h5_t_native_int64(), h5_s_all(), h5_s_all(), h5_p_default(), &y), "read /labels of \(partialPath)")
        }
        let present = Array(Set(y.map { Int($0) })).sorted()
        try H5.setAttribute(file, "classes_present", string: String(data: try JSONSerialization.data(withJSONObject: present), encoding: .utf8) ?? "[]")
        try H5.setAttribute(file, "complete", int: 1)
        try H5.check(H5Fflush(file, H5F_SCOPE_LOCAL), "flush \(partialPath)")
        closeHandles()
        let fd = open(partialPath, O_RDONLY)
        if fd >= 0 { fsync(fd); Foundation.close(fd) }
        if rename(partialPath, path) != 0 {
            throw PipelineError.writeFailed(path: path, reason: String(cString: strerror(errno)))
        }
    }

    /// Closes without finishing; the partial file stays resumable.
    public func close() { closeHandles() }

    private func closeHandles() {
        for d in [latents, latentsFlip, labels, paths] where d >= 0 { H5Dclose(d) }
        latents = -1; latentsFlip = -1; labels = -1; paths = -1
        if file >= 0 { H5Fclose(file); file = -1 }
    }
}
