// One view of the image datasets the jobs consume: Fashion-MNIST (embedded default) or an
// ImageNet-style folder, each turned into tokenizer inputs (3, S, S) in [-1, 1].

import Formats
import Foundation
import Tensor

public final class ImageDataset {
    public enum Source {
        case fashionMNIST(FashionMNIST, GrayConversion)
        case folder(ImageFolder, size: Int, policy: CorruptImagePolicy)
    }

    public let source: Source
    /// Human-readable identity stored in caches and logs ("fashion-mnist:train", "folder:/data").
    public let name: String
    /// For a subset: the source index of each of its images.
    private let indices: [Int]?

    public init(source: Source, name: String) {
        self.source = source
        self.name = name
        indices = nil
    }

    private init(source: Source, name: String, indices: [Int]) {
        self.source = source
        self.name = name
        self.indices = indices
    }

    /// A class-balanced subset of at most `n` images (nil: all): round-robin over the classes, the
    /// first images of each class in dataset order, kept in dataset order. With `n` at least the
    /// number of classes every class is present.
    public func limited(to n: Int?) -> ImageDataset {
        guard let n, n < count else { return self }
        var byClass: [Int: [Int]] = [:]
        for i in 0..<count { byClass[label(i), default: []].append(i) }
        let classes = byClass.keys.sorted()
        var chosen: [Int] = []
        var round = 0
        while chosen.count < n {
            for c in classes where chosen.count < n {
                if let list = byClass[c], round < list.count { chosen.append(list[round]) }
            }
            round += 1
        }
        return ImageDataset(source: source, name: name + " (\(n) images, class-balanced)", indices: chosen.sorted().map(src))
    }

    /// The source index of image i.
    @inline(__always) private func src(_ i: Int) -> Int { indices?[i] ?? i }

    /// Opens `spec`: "fashion-mnist" / "fashion-mnist:test" or a folder path.
    /// `size` is the tokenizer's image size; small gray images are padded when they fit.
    public static func open(_ spec: String, size: Int, strict: Bool = false, limit: Int? = nil) throws -> ImageDataset {
        if spec == "fashion-mnist" || spec.hasPrefix("fashion-mnist:") {
            let splitName = spec.split(separator: ":").dropFirst().first.map(String.init) ?? "train"
            guard let split = FashionMNIST.Split(rawValue: splitName) else {
                throw PipelineError.invalidArgument("Unknown Fashion-MNIST split '\(splitName)'; use fashion-mnist:train or fashion-mnist:test.")
            }
            guard FashionMNIST.isAvailable() else {
                throw PipelineError.missingFile("\(FashionMNIST.defaultRoot) (install the Debian package dataset-fashion-mnist)")
            }
            let data = try FashionMNIST(split: split)
            let mode: GrayConversion = size >= FashionMNIST.side ? .pad(size: size) : .bicubic(size: size)
            return ImageDataset(source: .fashionMNIST(data, mode), name: "fashion-mnist:\(split.rawValue)")
        }
        let folder = try ImageFolder(root: spec)
        return ImageDataset(source: .folder(folder, size: size, policy: CorruptImagePolicy(strict: strict)),
                            name: "folder:" + (spec as NSString).standardizingPath)
    }

    public var count: Int {
        if let indices { return indices.count }
        switch source {
        case let .fashionMNIST(d, _): return d.count
        case let .folder(f, _, _): return f.count
        }
    }

    public var classNames: [String] {
        switch source {
        case .fashionMNIST: return FashionMNIST.classNames
        case let .folder(f, _, _): return f.classes
        }
    }

    public func label(_ i: Int) -> Int {
        let i = src(i)
        switch source {
        case let .fashionMNIST(d, _): return d.labels[i]
        case let .folder(f, _, _): return f.samples[i].label
        }
    }

    public func path(_ i: Int) -> String {
        let i = src(i)
        switch source {
        case .fashionMNIST: return "\(name)/\(i)"
        case let .folder(f, _, _): return f.samples[i].relativePath
        }
    }

    /// The preprocessing recorded in caches.
    public var preprocessing: String {
        switch source {
        case let .fashionMNIST(_, mode): return mode.name
        case let .folder(_, size, _): return ADMPreprocess.name(size: size)
        }
    }

    /// Image i as (3, S, S) in [-1, 1] (nil when a corrupt file is skipped).
    public func tensor(_ i: Int, flip: Bool = false) throws -> Tensor? {
        let i = src(i)
        switch source {
        case let .fashionMNIST(d, mode): return d.tensor(i, mode: mode, flip: flip)
        case let .folder(f, size, policy):
            guard let image = try policy.decode(path: f.path(i)) else { return nil }
            let t = ADMPreprocess.toTensor(ADMPreprocess.centerCrop(image, size: size))
            return flip ? ADMPreprocess.flipHorizontally(t) : t
        }
    }

    /// Stacks images into a batch (N, 3, S, S); skipped (corrupt) images are left out.
    public func batch(_ indices: [Int], flips: [Bool]? = nil) throws -> (images: Tensor, kept: [Int]) {
        var tensors: [Tensor] = []
        var kept: [Int] = []
        for (k, i) in indices.enumerated() {
            if let t = try tensor(i, flip: flips?[k] ?? false) { tensors.append(t); kept.append(i) }
        }
        guard let first = tensors.first else { return (Tensor(zeros: [0]), []) }
        let per = first.count
        let out = Tensor(uninitialized: [tensors.count] + first.shape)
        for (k, t) in tensors.enumerated() { (out.pointer + k * per).update(from: t.pointer, count: per) }
        return (out, kept)
    }

    public var skippedCount: Int {
        if case let .folder(_, _, policy) = source { return policy.skippedCount }
        return 0
    }
}
