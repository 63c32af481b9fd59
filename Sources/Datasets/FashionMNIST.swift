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
        let imageData = [UInt8](try Gzip.inflateFile(imagePath))
        let labelData = [UInt8](try Gzip.inflateFile(labelPath))
        func be32(_ d: [UInt8], _ o: Int) -> Int {
            Int(d[o]) << 24 | Int(d[o + 1]) << 16 | Int(d[o + 2]) << 8 | Int(d[o + 3])
        }
        guard imageData.count >= 16, be32(imageData, 0) == 0x0803 else {
            throw PipelineError.corruptFile(path: imagePath, reason: "it is not an IDX3 image file (bad magic number)")
        }
        guard labelData.count >= 8, be32(labelData, 0) == 0x0801 else {
            throw PipelineError.corruptFile(path: labelPath, reason: "it is not an IDX1 label file (bad magic number)")
        }
        let n = be32(imageData, 4), rows = be32(imageData, 8), cols = be32(imageData, 12)
        let nLabels = be32(labelData, 4)
        guard rows == Self.side, cols == Self.side else {
            throw PipelineError.corruptFile(path: imagePath, reason: "images are \(rows)x\(cols), expected 28x28")
        }
        guard n == nLabels else {
            throw PipelineError.corruptFile(path: labelPath, reason: "it holds \(nLabels) labels for \(n) images")
        }
        if checkCounts && n != split.expectedCount {
            throw PipelineError.corruptFile(path: imagePath, reason: "it holds \(n) images, expected \(split.expectedCount)")
        }
        guard imageData.count == 16 + n * rows * cols else {
            throw PipelineError.corruptFile(path: imagePath, reason: "its size does not match \(n) images of 28x28 (truncated?)")
        }
        guard labelData.count == 8 + n else {
            throw PipelineError.corruptFile(path: labelPath, reason: "its size does not match \(n) labels (truncated?)")
        }
        let labels = labelData[8...].map { Int($0) }
        if let bad = labels.first(where: { $0 >= Self.classNames.count }) {
            throw PipelineError.corruptFile(path: labelPath, reason: "it contains label \(bad), outside 0...9")
        }
        self.split = split
        self.images = Array(imageData[16...])
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
