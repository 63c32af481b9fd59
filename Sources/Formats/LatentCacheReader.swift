// Reading a complete HDF5 latent cache: metadata, labels, rows by hyperslab selection (never
// the whole file), and a seeded, resumable batch loader for SiT training.

import CHDF5
import Foundation
import Tensor

public final class LatentCacheReader {
    public let path: String
    public let metadata: LatentCacheMetadata
    /// All labels (N), loaded at open (8 bytes per row).
    public let labels: [Int]
    public var count: Int { metadata.numImages }
    /// The labels that occur, sorted: the cache's `classes_present` attribute (written when it
    /// was finished; checked against the labels), or computed from the labels for older caches.
    public let classesPresent: [Int]

    private let file: hid_t
    private let latents: hid_t
    private let latentsFlip: hid_t
    private let paths: hid_t

    /// Opens a finished cache. Throws a clear error for a missing, foreign, or unfinished file.
    public init(path: String) throws {
        _ = H5.silenced
        let fm = FileManager.default
        guard fm.fileExists(atPath: path) else {
            if fm.fileExists(atPath: path + ".partial") {
                throw PipelineError.cacheMismatch("The latent cache \(path) is not finished (only \(path).partial exists); rerun the caching command to resume it.")
            }
            throw PipelineError.missingFile(path)
        }
        guard H5Fis_hdf5(path) > 0 else {
            throw PipelineError.corruptFile(path: path, reason: "it is not an HDF5 file")
        }
        let f = try H5.id(H5Fopen(path, h5f_acc_rdonly(), h5_p_default()), "open \(path)")
        var opened: [hid_t] = []
        do {
            let meta = try LatentCacheMetadata.read(from: f, path: path)
            try meta.validate(path: path)
            let complete = H5.attributeExists(f, "complete") ? try H5.intAttribute(f, "complete") : 0
            guard complete == 1 else {
                throw PipelineError.cacheMismatch("The latent cache \(path) is incomplete (complete = \(complete)); rerun the caching command to finish it.")
            }
            for name in Self.datasetNames {
                if name == "latents_flip" && !meta.mirrored { opened.append(-1); continue }
                opened.append(try H5.id(H5Dopen2(f, name, h5_p_default()), "open /\(name) in \(path)"))
            }
            // Check shapes against the attributes before anything is sized from them.
            for (k, d) in opened.enumerated() where d >= 0 {
                let space = try H5.id(H5Dget_space(d), "get a dataspace")
                defer { H5Sclose(space) }
                let rank = Int(H5Sget_simple_extent_ndims(space))
                guard rank >= 0, rank <= 32 else {
                    throw PipelineError.corruptFile(path: path, reason: "dataset \(Self.datasetNames[k]) has an unreadable rank \(rank)")
                }
                var dims = [hsize_t](repeating: 0, count: max(rank, 1))
                H5Sget_simple_extent_dims(space, &dims, nil)
                try Self.checkShape(dataset: Self.datasetNames[k], dims: Array(dims.prefix(rank)).map { UInt64($0) },
                                    metadata: meta, path: path)
            }
            var y = [Int64](repeating: 0, count: meta.numImages)
            try H5.check(H5Dread(opened[3], h5_t_native_int64(), h5_s_all(), h5_s_all(), h5_p_default(), &y),
                         "read /labels of \(path)")
            H5Dclose(opened.removeLast())
            metadata = meta
            labels = try Self.checkLabels(y, classCount: meta.classNames.count, path: path)
            let computed = Array(Set(labels)).sorted()
            if H5.attributeExists(f, "classes_present") {
                let recorded = (try? JSONSerialization.jsonObject(with: Data(try H5.stringAttribute(f, "classes_present").utf8))) as? [Int]
                guard recorded == computed else {
                    throw PipelineError.corruptFile(path: path, reason: "its classes_present attribute does not match its labels")
                }
            }
            classesPresent = computed
        } catch {
            opened.filter { $0 >= 0 }.forEach { H5Dclose($0) }
            H5Fclose(f)
            throw error
        }
        self.path = path
        file = f
        latents = opened[0]
        latentsFlip = opened[1]
        paths = opened[2]
    }

    deinit {
        H5Dclose(latents); H5Dclose(paths)
        if latentsFlip >= 0 { H5Dclose(latentsFlip) }
        H5Fclose(file)
    }

    /// Rows (any order, repeats allowed) as (B, L, C); `flipped[i]` picks /latents_flip for
    /// row i; `normalize` applies (z - vq_mean) / vq_std.
    public func read(rows: [Int], flipped: [Bool]? = nil, normalize: Bool = false) throws -> Tensor {
        let l = metadata.numTokens, c = metadata.tokenDim, rowSize = l * c
        let flips = flipped ?? [Bool](repeating: false, count: rows.count)
        precondition(flips.count == rows.count, "one flip flag per row")
        if let bad = rows.first(where: { $0 < 0 || $0 >= count }) {
            throw PipelineError.invalidArgument("Row \(bad) is outside the latent cache (\(count) rows).")
        }
        if !metadata.mirrored && flips.contains(true) {
            throw PipelineError.invalidArgument("The latent cache \(path) has no mirrored latents (\(metadata.preprocessing)).")
        }
        let out = Tensor(uninitialized: [rows.count, l, c])
        for (dataset, wantFlip) in [(latents, false), (latentsFlip, true)] {
            let positions = rows.indices.filter { flips[$0] == wantFlip }
            if positions.isEmpty { continue }
            let unique = Array(Set(positions.map { rows[$0] })).sorted()
            let buffer = try readSorted(dataset, rows: unique, rowSize: rowSize)
            var slot: [Int: Int] = [:]
            for (k, r) in unique.enumerated() { slot[r] = k }
            for pos in positions {
                let src = slot[rows[pos]]! * rowSize
                buffer.withUnsafeBufferPointer { b in
                    (out.pointer + pos * rowSize).update(from: b.baseAddress! + src, count: rowSize)
                }
            }
        }
        if normalize {
            let mean = Float(metadata.vqMean), inv = Float(1 / metadata.vqStd)
            let p = out.pointer
            for i in 0..<out.count { p[i] = (p[i] - mean) * inv }
        }
        return out
    }

    private func readSorted(_ dataset: hid_t, rows: [Int], rowSize: Int) throws -> [Float] {
        let l = hsize_t(metadata.numTokens), c = hsize_t(metadata.tokenDim)
        let fileSpace = try H5.id(H5Dget_space(dataset), "get a dataspace")
        defer { H5Sclose(fileSpace) }
        try H5.selectRows(fileSpace, rows: rows, trailing: [l, c])
        var memDims: [hsize_t] = [hsize_t(rows.count), l, c]
        let memSpace = try H5.id(H5Screate_simple(3, &memDims, nil), "create a memory dataspace")
        defer { H5Sclose(memSpace) }
        var buffer = [Float](repeating: 0, count: rows.count * rowSize)
        try H5.check(H5Dread(dataset, h5_t_native_float(), memSpace, fileSpace, h5_p_default(), &buffer),
                     "read latents from \(path)")
        return buffer
    }

    /// Source paths of some rows.
    public func paths(rows: [Int]) throws -> [String] {
        if rows.isEmpty { return [] }
        let sorted = Array(Set(rows)).sorted()
        let fileSpace = try H5.id(H5Dget_space(paths), "get a dataspace")
        defer { H5Sclose(fileSpace) }
        try H5.selectRows(fileSpace, rows: sorted, trailing: [])
        var memDims: [hsize_t] = [hsize_t(sorted.count)]
        let memSpace = try H5.id(H5Screate_simple(1, &memDims, nil), "create a memory dataspace")
        defer { H5Sclose(memSpace) }
        let t = try H5.stringType()
        defer { H5Tclose(t) }
        var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: sorted.count)
        try H5.check(H5Dread(paths, t, memSpace, fileSpace, h5_p_default(), &pointers), "read /paths of \(path)")
        let strings = pointers.map { $0.map { String(cString: $0) } ?? "" }
        H5Dvlen_reclaim(t, memSpace, h5_p_default(), &pointers)
        var byRow: [Int: String] = [:]
        for (k, r) in sorted.enumerated() { byRow[r] = strings[k] }
        return rows.map { byRow[$0]! }
    }

    /// Every row (N, L, C); for small caches.
    public func readAll(flipped: Bool = false, normalize: Bool = false) throws -> Tensor {
        try read(rows: Array(0..<count), flipped: [Bool](repeating: flipped, count: count), normalize: normalize)
    }
}

// MARK: - Validation of the attributes and datasets (pure functions, fuzzed in Fuzz/latentcache)

extension LatentCacheMetadata {
    /// Bounds of a readable cache (ImageNet-21k has 14 M images; SoftVQ latents are 32 or 64 x
    /// 32; an SD-VAE 64 x 64 x 4 latent is 4096 x 4).
    public enum Limits {
        public static let numImages = 100_000_000
        public static let numTokens = 65536
        public static let tokenDim = 16384
        /// Values in one row (tokens x channels).
        public static let rowValues = 1 << 24
        public static let imageSize = 65536
        /// Labels must lie in 0..<numClasses (the recorded class names when there are any).
        public static let numClasses = 1_000_000
    }

    /// Refuses negative or absurd sizes and non-finite normalization with one sentence.
    public func validate(path: String) throws {
        func bad(_ why: String) -> PipelineError { .corruptFile(path: path, reason: why) }
        for (name, value, limit) in [("num_images", numImages, Limits.numImages), ("num_tokens", numTokens, Limits.numTokens),
                                     ("token_dim", tokenDim, Limits.tokenDim), ("image_size", imageSize, Limits.imageSize)] {
            guard value >= (name == "num_images" ? 0 : 1) else { throw bad("its attribute \(name) is \(value), not a positive count") }
            guard value <= limit else { throw bad("its attribute \(name) is \(value), above the limit of \(limit)") }
        }
        guard numTokens * tokenDim <= Limits.rowValues else {
            throw bad("a row of \(numTokens) x \(tokenDim) values is above the limit of \(Limits.rowValues)")
        }
        guard vqMean.isFinite, vqStd.isFinite, vqStd != 0 else {
            throw bad("its normalization vq_mean \(vqMean), vq_std \(vqStd) is not finite (or vq_std is 0)")
        }
        guard classNames.count <= Limits.numClasses else {
            throw bad("it records \(classNames.count) class names, above the limit of \(Limits.numClasses)")
        }
    }
}

extension LatentCacheReader {
    static let datasetNames = ["latents", "latents_flip", "paths", "labels"]

    /// Checks the shape of one dataset against the (validated) attributes.
    public static func checkShape(dataset: String, dims: [UInt64], metadata m: LatentCacheMetadata, path: String) throws {
        let expected: [UInt64] = dataset == "latents" || dataset == "latents_flip"
            ? [UInt64(max(m.numImages, 0)), UInt64(max(m.numTokens, 0)), UInt64(max(m.tokenDim, 0))]
            : [UInt64(max(m.numImages, 0))]
        guard dims == expected else {
            throw PipelineError.corruptFile(path: path, reason: "dataset \(dataset) has shape \(dims), expected \(expected)")
        }
    }

    /// Labels as Ints, each in 0..<classCount when class names are recorded (else in
    /// 0..<Limits.numClasses); the first offending row is named.
    public static func checkLabels(_ raw: [Int64], classCount: Int, path: String) throws -> [Int] {
        let limit = classCount > 0 ? classCount : LatentCacheMetadata.Limits.numClasses
        if let i = raw.firstIndex(where: { $0 < 0 || $0 >= Int64(limit) }) {
            let range = classCount > 0 ? "0...\(limit - 1) (its \(classCount) recorded class names)" : "0...\(limit - 1)"
            throw PipelineError.corruptFile(path: path, reason: "row \(i) has label \(raw[i]), outside \(range)")
        }
        return raw.map { Int($0) }
    }
}

/// Position of a `LatentBatchLoader` (saved with training state).
public struct LatentLoaderPosition: Codable, Equatable, Sendable {
    public var epoch: Int
    /// Index of the next sample within the epoch's permutation.
    public var index: Int
    public init(epoch: Int = 0, index: Int = 0) { self.epoch = epoch; self.index = index }
}

/// Shuffled, normalized training batches from a latent cache. Epoch e uses a permutation and
/// per-sample flip choices drawn from streams split off the seed generator, so a position
/// fully determines the rest of the run.
public final class LatentBatchLoader {
    public let reader: LatentCacheReader
    public let batchSize: Int
    /// Pick /latents_flip with probability 1/2 (else always /latents); off for a cache without
    /// mirrored latents.
    public let randomFlip: Bool
    /// Drop the last incomplete batch of each epoch (as the official DataLoader does).
    public let dropLast: Bool
    public var position: LatentLoaderPosition
    private let base: RandomGenerator
    private var cachedEpoch = -1
    private var order: [Int] = []
    private var flips: [Bool] = []

    public init(reader: LatentCacheReader, batchSize: Int, rng: RandomGenerator, randomFlip: Bool = true,
                dropLast: Bool = true, position: LatentLoaderPosition = LatentLoaderPosition()) throws {
        guard batchSize > 0 else { throw PipelineError.invalidArgument("The batch size must be positive.") }
        if dropLast && batchSize > reader.count {
            throw PipelineError.invalidArgument("The batch size \(batchSize) exceeds the \(reader.count) rows of the latent cache.")
        }
        self.reader = reader
        self.batchSize = batchSize
        self.randomFlip = randomFlip && reader.metadata.mirrored
        self.dropLast = dropLast
        self.base = rng
        self.position = position
    }

    public var batchesPerEpoch: Int {
        dropLast ? reader.count / batchSize : (reader.count + batchSize - 1) / batchSize
    }

    private func prepare(epoch: Int) {
        guard epoch != cachedEpoch else { return }
        var permRng = base.split(UInt64(2 * epoch))
        var flipRng = base.split(UInt64(2 * epoch + 1))
        var perm = Array(0..<reader.count)
        permRng.shuffle(&perm)
        order = perm
        flips = (0..<reader.count).map { _ in randomFlip && flipRng.nextUInt32() & 1 == 1 }
        cachedEpoch = epoch
    }

    /// The next batch: normalized latents (B, L, C), labels, and each sample's key (its epoch
    /// and position in the epoch's order, `epoch << 32 | position`: what its random draws are
    /// keyed by). With `slice`, only those rows of the batch are read (a data-parallel rank's
    /// share); the position advances by the whole batch either way.
    public func next(slice: Range<Int>? = nil) throws -> (latents: Tensor, labels: [Int], keys: [UInt64]) {
        let n = reader.count
        let remaining = n - position.index
        if remaining <= 0 || (dropLast && remaining < batchSize) {
            position = LatentLoaderPosition(epoch: position.epoch + 1, index: 0)
        }
        prepare(epoch: position.epoch)
        let end = min(position.index + batchSize, n)
        var range = position.index..<end
        if let slice {
            range = (position.index + min(slice.lowerBound, range.count))..<(position.index + min(slice.upperBound, range.count))
        }
        let rows = Array(order[range])
        let f = Array(flips[range])
        let keys = range.map { UInt64(position.epoch) << 32 | UInt64($0) }
        position.index = end
        let z = try reader.read(rows: rows, flipped: f, normalize: true)
        return (z, rows.map { reader.labels[$0] }, keys)
    }
}
