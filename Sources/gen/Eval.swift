import ArgumentParser
import Foundation
import Pipeline
import Sampler
import Tensor

struct TrainClassifier: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-classifier",
        abstract: "Train the small Fashion-MNIST classifier that gen eval uses for accuracy, class fidelity and feature FD.",
        discussion: "Example: gen train-classifier --out Checkpoints/fashion-classifier --epochs 4")

    @OptionGroup var compute: ComputeOptions
    @Option(help: "Output folder (model.safetensors + README facts in metrics.json).") var out: String
    @Option(help: "Training epochs over the 60k training images.") var epochs = 4
    @Option(name: .customLong("batch-size"), help: "Images per step.") var batchSize = 128
    @Option(help: "Peak learning rate.") var lr: Float = 2e-3
    @Option(help: "Seed.") var seed: UInt64 = 0
    @Flag(help: "Replace an existing classifier.") var overwrite = false

    func run() throws {
        compute.apply()
        try userFacing {
            let path = out + "/model.safetensors"
            if FileManager.default.fileExists(atPath: path) && !overwrite {
                throw PipelineError.invalidArgument("\(path) already exists; pass --overwrite to replace it.")
            }
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let train = try FashionMNIST(split: .train), test = try FashionMNIST(split: .test)
            let images = EvalJob.classifierImages(train)
            let steps = epochs * (train.count / batchSize)
            let bar = ProgressBar(total: steps, label: "train-classifier", unit: "step")
            let t0 = now()
            let model = trainFashionClassifier(images: images, labels: train.labels, epochs: epochs, batch: batchSize, lr: lr, seed: seed) { _, _, loss in
                bar.update(fields: [("loss", String(format: "%.4f", loss))])
            }
            bar.finish()
            let (_, predictions) = model.evaluate(EvalJob.classifierImages(test))
            let accuracy = EvalJob.accuracy(predictions, test.labels)
            try model.save(to: path)
            let facts: [String: Any] = ["test_accuracy": accuracy, "epochs": epochs, "batch_size": batchSize, "lr": Double(lr),
                                        "seed": seed, "seconds": now() - t0, "parameters": model.parameterCount]
            try atomicWrite(JSONSerialization.data(withJSONObject: facts, options: [.prettyPrinted, .sortedKeys]), to: out + "/metrics.json")
            print(String(format: "Test accuracy %.2f%%. Wrote %@ (%d parameters) in %.0f s.", accuracy * 100, path, model.parameterCount, now() - t0))
        }
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure a tokenizer and a SiT on Fashion-MNIST's test split (accuracy, PSNR, SSIM, class fidelity, Frechet distances).",
        discussion: """
        Generation is swept over --cfg-scales x --steps; the table goes to stdout and, with --out, to eval.md / eval.json with plots.

        Example: gen eval --tokenizer Checkpoints/fashion-tokenizer --sit Checkpoints/fashion-sit --classifier Checkpoints/fashion-classifier --out eval
        """)

    @OptionGroup var compute: ComputeOptions
    @Option(help: "Tokenizer checkpoint folder.") var tokenizer: String
    @Option(help: "SiT checkpoint folder (omit to evaluate only the tokenizer).") var sit: String?
    @Option(help: "Classifier folder (from gen train-classifier).") var classifier: String
    @Option(name: .customLong("per-class"), help: "Generated images per class for each setting.") var perClass = 50
    @Option(name: .customLong("cfg-scales"), help: "Comma-separated CFG scales.") var cfgScales = "1,1.5,2,3"
    @Option(help: "Comma-separated sampler step counts.") var steps = "10,25"
    @Option(help: "euler, heun or euler-maruyama.") var sampler: SamplerMethod = .euler
    @Option(name: .customLong("guidance-low"), help: "Guidance applies for t >= this.") var guidanceLow: Double = 0
    @Option(name: .customLong("guidance-high"), help: "Guidance applies for t <= this.") var guidanceHigh: Double = 1
    @Option(help: "Seed of the generated images.") var seed: UInt64 = 0
    @Option(name: .customLong("reconstruction-limit"), help: "Reconstruct only the first N test images.") var reconstructionLimit: Int?
    @Option(help: "Folder for eval.md, eval.json and plots.") var out: String?

    func run() throws {
        compute.apply()
        try userFacing {
            var o = EvalOptions(tokenizer: tokenizer, classifier: classifier + "/model.safetensors")
            o.sit = sit; o.perClass = perClass; o.method = sampler; o.guidanceLow = guidanceLow; o.guidanceHigh = guidanceHigh
            o.seed = seed; o.reconstructionLimit = reconstructionLimit; o.out = out
            o.cfgScales = try cfgScales.split(separator: ",").map {
                guard let v = Double($0) else { throw PipelineError.invalidArgument("'\($0)' is not a CFG scale.") }
                return v
            }
            o.steps = try steps.split(separator: ",").map {
                guard let v = Int($0), v > 0 else { throw PipelineError.invalidArgument("'\($0)' is not a step count.") }
                return v
            }
            let report = try EvalJob.run(o)
            print("")
            print(report.table())
        }
    }
}
