import ArgumentParser
import Datasets
import Formats
import Foundation
import Pipeline
import Render
import Tensor
import Tokenizer

struct Reconstruct: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pass images through a tokenizer and back; writes a side-by-side grid and prints PSNR.",
        discussion: "Example: gen reconstruct --tokenizer Checkpoints/fashion-tokenizer --dataset fashion-mnist:test --count 16 --out recon.png")

    @OptionGroup var compute: ComputeOptions
    @OptionGroup var precision: PrecisionOptions
    @Option(help: "Tokenizer checkpoint folder.") var tokenizer: String
    @Option(help: "fashion-mnist[:test], an image folder, or a single image file.") var dataset = "fashion-mnist:test"
    @Option(parsing: .unconditional, help: "How many images (from the start of the dataset).") var count = 16
    @Option(name: [.customShort("o"), .customLong("out")], help: "Output PNG (originals on top, reconstructions below).") var out: String
    @Flag(help: "Replace an existing output file.") var overwrite = false

    func validate() throws { try require(count, "--count", in: 1...4096) }

    func run() throws {
        compute.apply()
        try userFacing {
            try precision.apply()
            if FileManager.default.fileExists(atPath: out) && !overwrite {
                throw PipelineError.invalidArgument("\(out) already exists; pass --overwrite to replace it.")
            }
            let model = try SoftVQModel.load(folder: checkpointFolder(tokenizer))
            model.freeze()
            let images: Tensor
            let ext = (dataset as NSString).pathExtension.lowercased()
            if ["png", "jpg", "jpeg"].contains(ext) {
                let t = try ADMPreprocess.load(path: dataset, size: model.imageSize)
                images = t.reshaped([1] + t.shape)
            } else {
                let d = try ImageDataset.open(dataset, size: model.imageSize)
                images = try d.batch(Array(0..<min(count, d.count))).images
            }
            let rec = try Autograd.noGrad { try model.reconstruct(images).0 }
            var mse = 0.0
            for i in 0..<images.count {
                let a = Double(max(-1, min(1, rec.pointer[i]))), b = Double(images.pointer[i])
                mse += (a - b) * (a - b)
            }
            mse /= Double(images.count)
            let originals = ImageGrid.images(fromBatch: images), recs = ImageGrid.images(fromBatch: rec)
            let scale = max(1, 64 / model.imageSize)
            let canvas = ImageGrid.compose(rows: [originals.map { $0.upscaled(scale) }, recs.map { $0.upscaled(scale) }],
                                           labels: ["input", "output"], title: String(format: "PSNR %.2f dB", psnr(mse: mse)))
            try canvas.writePNG(path: out)
            print(String(format: "%d images, PSNR %.2f dB (pixels in [-1, 1]). Wrote %@", images.dim(0), psnr(mse: mse), out))
        }
    }
}
