import ArgumentParser
import Foundation
import Pipeline
import SiT
import Tensor
import Tokenizer

struct Reconstruct: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pass images through a tokenizer and back; writes a side-by-side grid and prints PSNR.",
        discussion: "Example: gen reconstruct --tokenizer Checkpoints/fashion-tokenizer --dataset fashion-mnist:test --count 16 --out recon.png")

    @OptionGroup var compute: ComputeOptions
    @Option(help: "Tokenizer checkpoint folder.") var tokenizer: String
    @Option(help: "fashion-mnist[:test], an image folder, or a single image file.") var dataset = "fashion-mnist:test"
    @Option(help: "How many images (from the start of the dataset).") var count = 16
    @Option(help: "Output PNG (originals on top, reconstructions below).") var out: String
    @Flag(help: "Replace an existing output file.") var overwrite = false

    func run() throws {
        compute.apply()
        try userFacing {
            if FileManager.default.fileExists(atPath: out) && !overwrite {
                throw PipelineError.invalidArgument("\(out) already exists; pass --overwrite to replace it.")
            }
            let model = try SoftVQModel.load(folder: tokenizer)
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

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a checkpoint folder (tokenizer or SiT), a training run, or a latent cache.",
        discussion: "Example: gen info Checkpoints/fashion-sit")

    @Argument(help: "A checkpoint folder, run folder or .h5 cache.") var path: String
    @Flag(help: "For a run folder: redraw loss.png from log.jsonl.") var plot = false

    func run() throws {
        try userFacing {
            if plot {
                let run = RunFolder(path)
                let isTokenizer = (try? String(contentsOfFile: run.logPath, encoding: .utf8))?.contains("reconstruction") ?? false
                try run.plotLoss(title: isTokenizer ? "tokenizer training loss" : "SiT training loss",
                                 field: isTokenizer ? "reconstruction" : "loss")
                print("Wrote \(run.plotPath)")
            }
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw PipelineError.missingFile(path) }
            if !isDir.boolValue {
                let r = try LatentCacheReader(path: path)
                let m = r.metadata
                print("latent cache \(path)")
                print("  images: \(m.numImages) from \(m.dataset) (\(m.preprocessing), \(m.imageSize) px)")
                print("  latents: \(m.numTokens) tokens x \(m.tokenDim) channels (+ mirrored copies)")
                print("  tokenizer: \(m.tokenizerName) (weights sha256 \(m.tokenizerSHA256))")
                print("  normalization: vq_mean \(m.vqMean), vq_std \(m.vqStd)")
                if !m.classNames.isEmpty { print("  classes (\(m.classNames.count)): \(m.classNames.joined(separator: ", "))") }
                return
            }
            var folder = path
            if FileManager.default.fileExists(atPath: path + "/checkpoint/config.json") {
                folder = path + "/checkpoint"
                if let s = try? String(contentsOfFile: folder + "/state.json", encoding: .utf8),
                   let obj = try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any] {
                    print("training run \(path): step \(obj["step"] ?? "?") (\(obj["kind"] ?? "?"))")
                }
            }
            let configPath = folder + "/config.json"
            guard let data = FileManager.default.contents(atPath: configPath),
                  let obj = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw PipelineError.missingFile(configPath)
            }
            let weights = try SafeTensorsFile(path: folder + "/model.safetensors")
            let params = weights.entries.values.reduce(0) { $0 + $1.shape.reduce(1, *) }
            let dtypes = Set(weights.entries.values.map { $0.dtype.rawValue }).sorted().joined(separator: ", ")
            if obj["codebook_size"] != nil {
                let m = try SoftVQModel.load(folder: folder, log: { _ in })
                print("SoftVQ tokenizer \(folder)")
                print("  image \(m.imageSize) px -> \(m.numLatentTokens) tokens x \(m.latentDim) channels")
                print("  encoder \(try m.config.encoderSpec), decoder \(try m.config.decoderSpec)")
                print("  codebooks: \(m.config.numCodebooks) x \(m.config.codebookSize), tau \(m.config.tau); vq_mean \(m.config.vqMean), vq_std \(m.config.vqStd)")
            } else {
                let m = try SiT.load(folder: folder)
                let c = m.config
                print("SiT \(folder)")
                print("  width \(c.hiddenSize), depth \(c.depth), heads \(c.numHeads), \(c.vae1D ? "1-D tokens \(c.inputSize) x \(c.inChannels)" : "2-D \(c.inChannels) x \(c.inputSize) x \(c.inputSize), patch \(c.patchSize)")")
                print("  classes: \(c.numClasses) (+ null)")
            }
            print("  \(weights.names.count) tensors, \(params) values, stored as \(dtypes)")
        }
    }
}
