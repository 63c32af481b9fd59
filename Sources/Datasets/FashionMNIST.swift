// Fashion-MNIST from the gzipped IDX files of Debian's dataset-fashion-mnist package, and the
// conversion of its 28x28 gray images to the tokenizer's (3, S, S) input in [-1, 1].

import Formats
import Foundation
import Tensor

public struct FashionMNIST: Sendable {
    public enum Split: String, Sendable, CaseIterable {
        case train, test
        var filePrefix: String { self == .train ? "train" : "t10k" }
        var expectedCount: Int { self == .train ? 60000 : 10000 }
    }

    public static let defaultRoot = "/usr/share/datasets/fashion-mnist"
    public static let classNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    public static let side = 28

    public let split: Split
    /// count x 28 x 28 gray bytes (0 = black background), row-major.
    public let images: [UInt8]
    public let labels: [Int]
    public var count: Int { labels.count }

    /// Whether the four files of the dataset are present.
    public static func isAvailable(root: String = defaultRoot) -> Bool {
        Split.allCases.allSatisfy { s in
            FileManager.default.fileExists(atPath: paths(root: root, split: s).images)
                && FileManager.default.fileExists(atPath: paths(root: root, split: s).labels)
        }
    }

    static func paths(root: String, split: Split) -> (images: String, labels: String) {
        ("\(root)/\(split.filePrefix)-images-idx3-ubyte.gz", "\(root)/\(split.filePrefix)-labels-idx1-ubyte.gz")
    }

    /// Loads one split; the counts must be the official ones unless `checkCounts` is false.
    public init(root: String = FashionMNIST.defaultRoot, split: Split, checkCounts: Bool = true) throws {
        let (imagePath, labelPath) = Self.paths(root: root, split: split)
        for p in [imagePath, labelPath] where !FileManager.default.fileExists(atPath: p) {
            throw PipelineError.dataset("Fashion-MNIST file \(p) is missing (install the Debian package dataset-fashion-mnist or pass the folder holding the IDX .gz files).")
        }
        let imageData = [UInt8](try Gzip.inflateFile(imagePath, limit: IDX.maxBytes))
        let labelData = [UInt8](try Gzip.inflateFile(labelPath, limit: IDX.maxBytes))
        try self.init(imageIDX: imageData, labelIDX: labelData, split: split, checkCounts: checkCounts,
                      imagePath: imagePath, labelPath: labelPath)
    }

    /// Builds the split from the decompressed IDX bytes (the paths name the files in errors).
    public init(imageIDX imageData: [UInt8], labelIDX labelData: [UInt8], split: Split, checkCounts: Bool = true,
                imagePath: String = "images.idx", labelPath: String = "labels.idx") throws {
        let images: IDX, labelFile: IDX
        do { images = try IDX(imageData, path: imagePath) } catch PipelineError.corruptFile(let p, let r) where r.contains("magic") {
            throw PipelineError.corruptFile(path: p, reason: "it is not an IDX3 image file (\(r))")
        }
        do { labelFile = try IDX(labelData, path: labelPath) } catch PipelineError.corruptFile(let p, let r) where r.contains("magic") {
            throw PipelineError.corruptFile(path: p, reason: "it is not an IDX1 label file (\(r))")
        }
        guard images.dims.count == 3 else {
            throw PipelineError.corruptFile(path: imagePath, reason: "it is not an IDX3 image file (bad magic number: \(images.dims.count) dimensions)")
        }
        guard labelFile.dims.count == 1 else {
            throw PipelineError.corruptFile(path: labelPath, reason: "it is not an IDX1 label file (bad magic number: \(labelFile.dims.count) dimensions)")
        }
        let n = images.dims[0], rows = images.dims[1], cols = images.dims[2]
        let nLabels = labelFile.dims[0]
        guard rows == Self.side, cols == Self.side else {
            throw PipelineError.corruptFile(path: imagePath, reason: "images are \(rows)x\(cols), expected 28x28")
        }
        guard n == nLabels else {
            throw PipelineError.corruptFile(path: labelPath, reason: "it holds \(nLabels) labels for \(n) images")
        }
        if checkCounts && n != split.expectedCount {
            throw PipelineError.corruptFile(path: imagePath, reason: "it holds \(n) images, expected \(split.expectedCount)")
        }
        let labels = labelData[labelFile.payloadOffset...].map { Int($0) }
        if let bad = labels.first(where: { $0 >= Self.classNames.count }) {
            throw PipelineError.corruptFile(path: labelPath, reason: "it contains label \(bad), outside 0...9")
        }
        self.split = split
        self.images = Array(imageData[images.payloadOffset...])
        self.labels = labels
    }

    /// Image i as an 8-bit gray image.
    public func image(_ i: Int) -> RGBImage {
        let n = Self.side * Self.side
        return RGBImage(width: Self.side, height: Self.side, channels: 1, pixels: Array(images[i * n..<(i + 1) * n]))
    }

    /// Image i as the tokenizer input (3, S, S) in [-1, 1].
    public func tensor(_ i: Int, mode: GrayConversion, flip: Bool = false) -> Tensor {
        mode.convert(image(i), flip: flip)
    }
}

/// The header of an IDX file of unsigned bytes (the MNIST format): two zero bytes, type 0x08,
/// the number of dimensions, then each dimension as a big-endian UInt32; the payload size must
/// equal the product of the dimensions exactly (computed with overflow checks).
public struct IDX: Equatable, Sendable {
    /// The largest decompressed IDX file read (Fashion-MNIST's training images are 47 MB).
    public static let maxBytes = 1 << 30
    public let dims: [Int]
    /// Offset of the first payload byte (4 + 4 * dims).
    public let payloadOffset: Int

    public init(_ data: [UInt8], path: String) throws {
        func bad(_ why: String) -> PipelineError { .corruptFile(path: path, reason: why) }
        guard data.count >= 4, data[0] == 0, data[1] == 0 else { throw bad("bad magic number") }
        guard data[2] == 0x08 else { throw bad("bad magic number: element type 0x\(String(data[2], radix: 16)) is not unsigned bytes (0x08)") }
        let rank = Int(data[3])
        guard (1...4).contains(rank) else { throw bad("bad magic number: \(rank) dimensions") }
        let header = 4 + 4 * rank
        guard data.count >= header else { throw bad("its header is truncated (\(data.count) bytes)") }
        var dims: [Int] = []
        var product = 1
        for k in 0..<rank {
            let o = 4 + 4 * k
            let d = Int(data[o]) << 24 | Int(data[o + 1]) << 16 | Int(data[o + 2]) << 8 | Int(data[o + 3])
            let (p, overflow) = product.multipliedReportingOverflow(by: d)
            guard !overflow else { throw bad("its dimensions \(dims + [d]) overflow") }
            dims.append(d)
            product = p
        }
        guard data.count - header == product else {
            throw bad("its size does not match its dimensions \(dims) (\(data.count - header) data bytes for \(product); truncated?)")
        }
        self.dims = dims
        payloadOffset = header
    }
}

/// How a small gray image becomes the tokenizer's (3, S, S) input.
public enum GrayConversion: Equatable, Sendable {
    /// Center in an S x S canvas filled with -1 (black background, like the data's border).
    case pad(size: Int)
    /// PIL-style bicubic resize (antialiased when shrinking) to S x S.
    case bicubic(size: Int)

    public var size: Int {
        switch self { case .pad(let s), .bicubic(let s): return s }
    }

    /// The string stored in the latent cache's `preprocessing` attribute.
    public var name: String {
        switch self {
        case .pad(let s): return "gray-pad-black-\(s)"
        case .bicubic(let s): return "gray-bicubic-\(s)"
        }
    }

    /// Parses `name` back.
    public init?(name: String) {
        let parts = name.split(separator: "-")
        guard let last = parts.last, let s = Int(last), s > 0 else { return nil }
        if name == "gray-pad-black-\(s)" { self = .pad(size: s) }
        else if name == "gray-bicubic-\(s)" { self = .bicubic(size: s) }
        else { return nil }
    }

    public func convert(_ image: RGBImage, flip: Bool = false) -> Tensor {
        let gray = image.channels == 1 ? image : toGray(image)
        switch self {
        case .bicubic(let s):
            return ADMPreprocess.toTensor(gray.resized(width: s, height: s, filter: .bicubic), flip: flip)
        case .pad(let s):
            precondition(s >= gray.width && s >= gray.height, "pad size \(s) is smaller than the image")
            let t = Tensor(repeating: -1, shape: [3, s, s])
            let p = t.pointer
            let x0 = (s - gray.width) / 2, y0 = (s - gray.height) / 2
            for y in 0..<gray.height {
                for x in 0..<gray.width {
                    let v = Float(gray.pixels[y * gray.width + (flip ? gray.width - 1 - x : x)]) / 127.5 - 1
                    for c in 0..<3 { p[(c * s + y0 + y) * s + x0 + x] = v }
                }
            }
            return t
        }
    }

    private func toGray(_ image: RGBImage) -> RGBImage {
        // ITU-R 601-2 luma, as PIL's convert('L').
        var out = [UInt8](repeating: 0, count: image.width * image.height)
        for i in 0..<out.count {
            let r = Int(image.pixels[3 * i]), g = Int(image.pixels[3 * i + 1]), b = Int(image.pixels[3 * i + 2])
            out[i] = UInt8((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16)
        }
        return RGBImage(width: image.width, height: image.height, channels: 1, pixels: out)
    }
}
