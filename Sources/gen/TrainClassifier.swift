import ArgumentParser
import Datasets
import Formats
import Foundation
import Pipeline
import Render
import Tensor

struct TrainClassifier: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-classifier",
        abstract: "Train the small Fashion-MNIST classifier that gen eval uses for accuracy, class fidelity and feature FD.",
        discussion: "Example: gen train-classifier --out classifier --epochs 4")

    @OptionGroup var compute: ComputeOptions
    @Option(name: [.customShort("o"), .customLong("out")], help: "Output folder (model.safetensors + README facts in metrics.json).") var out: String
    @Option(parsing: .unconditional, help: "Training epochs over the 60k training images.") var epochs = 4
    @Option(name: [.customShort("b"), .customLong("batch-size")], parsing: .unconditional, help: "Images per step.") var batchSize = 128
    @Option(parsing: .unconditional, help: "Peak learning rate.") var lr: Float = 2e-3
    @Option(parsing: .unconditional, help: "Seed.") var seed: UInt64 = 0
    @Option(parsing: .unconditional, help: "Train on the first N training images only (a quick run; Fashion-MNIST's order mixes the classes).") var limit: Int?
    @Flag(help: "Replace an existing classifier.") var overwrite = false

    func validate() throws {
        try require(epochs, "--epochs", in: 1...10_000)
        try require(batchSize, "--batch-size", in: Limits.batch)
        try require(lr, "--lr", in: Limits.learningRate)
        try require(limit, "--limit", in: batchSize...60_000)
    }

    func run() throws {
        compute.apply()
        try userFacing {
            let path = out + "/model.safetensors"
            if FileManager.default.fileExists(atPath: path) && !overwrite {
                throw PipelineError.invalidArgument("\(path) already exists; pass --overwrite to replace it.")
            }
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let train = try FashionMNIST(split: .train), test = try FashionMNIST(split: .test)
            let images = EvalJob.classifierImages(train, limit: limit)
            let labels = Array(train.labels.prefix(images.shape[0]))
            let steps = epochs * (labels.count / batchSize)
            let bar = ProgressBar(total: steps, label: "train-classifier", unit: "step")
            let t0 = now()
            let model = trainFashionClassifier(images: images, labels: labels, epochs: epochs, batch: batchSize, lr: lr, seed: seed) { _, _, loss in
                bar.update(fields: [("loss", String(format: "%.4f", loss))])
            }
            bar.finish()
            let (_, predictions) = model.evaluate(EvalJob.classifierImages(test))
            let accuracy = EvalJob.accuracy(predictions, test.labels)
            try model.save(to: path)
            let facts: [String: Any] = ["test_accuracy": accuracy, "epochs": epochs, "batch_size": batchSize, "lr": Double(lr),
                                        "seed": seed, "training_images": labels.count, "seconds": now() - t0, "parameters": model.parameterCount]
            try atomicWrite(JSONSerialization.data(withJSONObject: facts, options: [.prettyPrinted, .sortedKeys]), to: out + "/metrics.json")
            print(String(format: "Test accuracy %.2f%%. Wrote %@ (%d parameters) in %.0f s.", accuracy * 100, path, model.parameterCount, now() - t0))
        }
    }
}
