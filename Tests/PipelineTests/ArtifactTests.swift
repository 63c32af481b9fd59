import Foundation
@testable import Datasets
@testable import Formats
@testable import Pipeline
@testable import Render
import Tensor
import XCTest

/// Writes files for manual checks with outside tools (numpy, h5py, PIL, an image viewer).
/// Runs only when PIPELINE_ARTIFACTS names an output folder.
final class ArtifactTests: XCTestCase {
    func testWriteArtifacts() throws {
        guard let out = ProcessInfo.processInfo.environment["PIPELINE_ARTIFACTS"] else {
            throw XCTSkip("set PIPELINE_ARTIFACTS=<folder> to write files for manual checks")
        }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let array = (0..<(3 * 5 * 4 * 3)).map { UInt8($0 % 251) }
        try NPZWriter.write(path: out + "/small.npz", array: array, shape: [3, 5, 4, 3])
        try NPZWriter.write(path: out + "/zip64.npz", array: array, shape: [3, 5, 4, 3], forceZip64: true)

        // Pseudo-random test image for resampling parity with PIL.
        var rng = RandomGenerator(seed: 7)
        let w = 517, h = 389
        let noise = RGBImage(width: w, height: h, pixels: (0..<(w * h * 3)).map { i in
            let x = (i / 3) % w, y = (i / 3) / w
            return UInt8((x * 3 + y * 2 + (i % 3) * 60 + rng.below(40)) % 256)
        })
        try ImageIO.writePNG(path: out + "/noise.png", image: noise)
        for s in [32, 64, 256] {
            try ImageIO.writePNG(path: out + "/adm\(s).png", image: ADMPreprocess.centerCrop(noise, size: s))
        }
        try ImageIO.writePNG(path: out + "/bicubic_600x450.png", image: noise.resized(width: 600, height: 450, filter: .bicubic))
        try ImageIO.writePNG(path: out + "/bicubic_100x77.png", image: noise.resized(width: 100, height: 77, filter: .bicubic))
        try ImageIO.writePNG(path: out + "/box_258x194.png", image: noise.resized(width: 258, height: 194, filter: .box))

        // Font sheet, grid, plots.
        var sheet = Canvas(width: 6 * 32 * 2 + 8, height: 3 * 10 * 2 + 8)
        let ascii = (0x20...0x7E).map { String(UnicodeScalar(UInt8($0))) }
        for r in 0..<3 { sheet.text(ascii[(r * 32)..<min(95, r * 32 + 32)].joined(), x: 4, y: 4 + r * 20, scale: 2) }
        try sheet.writePNG(path: out + "/font.png")
        if FashionMNIST.isAvailable() {
            let ds = try FashionMNIST(split: .test)
            var rows: [[RGBImage]] = Array(repeating: [], count: 10)
            for i in 0..<ds.count where rows[ds.labels[i]].count < 8 {
                rows[ds.labels[i]].append(ImageGrid.image(fromTensor: ds.tensor(i, mode: .pad(size: 32))))
            }
            try ImageGrid.compose(rows: rows, labels: FashionMNIST.classNames, scale: 1, title: "Fashion-MNIST test")
                .writePNG(path: out + "/grid.png", text: ["parameters": "dataset=fashion-mnist"])
        }
        try LinePlot(title: "Training loss", xLabel: "step", yLabel: "loss",
                     series: [.init(name: "train", y: (0..<300).map { 0.1 + 2 / Double($0 + 3) + 0.02 * sin(Double($0)) }),
                              .init(name: "ema", y: (0..<300).map { 0.1 + 2 / Double($0 + 3) })], logY: true)
            .writePNG(path: out + "/plot.png")
        try BarChart(title: "Throughput (img/s)", yLabel: "img/s", labels: ["SiT-64", "SiT-1024", "PyTorch"],
                     values: [12.5, 0.7, 3.1]).writePNG(path: out + "/bar.png")

        // A small complete cache for h5py.
        let meta = LatentCacheMetadata(tokenizerName: "softvq-l-64", tokenizerSHA256: String(repeating: "ab", count: 32),
                                       vqMean: 0.1, vqStd: 1.5, imageSize: 256, numTokens: 64, tokenDim: 32,
                                       numImages: 5, preprocessing: ADMPreprocess.name(size: 256), dataset: "imagefolder:/data/x")
        try? FileManager.default.removeItem(atPath: out + "/cache.h5")
        let writer = try LatentCacheWriter(path: out + "/cache.h5", metadata: meta, deflateLevel: 4)
        let z = Tensor((0..<(5 * 64 * 32)).map { Float($0) }, shape: [5, 64, 32])
        try writer.append(latents: z, flipped: z, labels: [0, 1, 2, 3, 4], paths: ["a/ü.png", "b", "c", "d", "e"])
        try writer.finish()
    }
}

/// A long cache write to be killed with `kill -9` from outside and rerun (manual crash check):
/// PIPELINE_KILL_TARGET=<file.h5> swift test --filter KillTargetTests; rerunning resumes.
final class KillTargetTests: XCTestCase {
    func testWriteSlowly() throws {
        guard let path = ProcessInfo.processInfo.environment["PIPELINE_KILL_TARGET"] else {
            throw XCTSkip("set PIPELINE_KILL_TARGET=<file.h5> for the manual kill -9 check")
        }
        let n = 4000, l = 64, c = 32
        let meta = LatentCacheMetadata(tokenizerName: "kill-test", tokenizerSHA256: "0", vqMean: 0, vqStd: 1, imageSize: 32,
                                       numTokens: l, tokenDim: c, numImages: n, preprocessing: "none", dataset: "synthetic")
        let w = try LatentCacheWriter(path: path, metadata: meta, deflateLevel: 1)
        print("start: \(w.start)")
        while w.rowsDone < n {
            let r0 = w.rowsDone, b = min(16, n - r0)
            let z = Tensor((0..<(b * l * c)).map { Float((r0 + $0 / (l * c)) * 1000 + $0 % (l * c)) }, shape: [b, l, c])
            try w.append(latents: z, flipped: z, labels: Array(r0..<r0 + b), paths: (r0..<r0 + b).map { "row\($0)" })
            usleep(2000)
        }
        try w.finish()
        print("finished")
    }
}
