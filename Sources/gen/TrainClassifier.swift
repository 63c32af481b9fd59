import ArgumentParser
import Cluster
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
    @Option(name: .customLong("test-limit"), parsing: .unconditional, help: "Measure the test accuracy on the first N of the 10,000 test images only (a quick run).") var testLimit: Int?
    @Flag(help: "Replace an existing classifier.") var overwrite = false

    func validate() throws {
        try require(epochs, "--epochs", in: 1...10_000)
        try require(batchSize, "--batch-size", in: Limits.batch)
        try require(lr, "--lr", in: Limits.learningRate)
        try require(limit, "--limit", in: batchSize...60_000)
        try require(testLimit, "--test-limit", in: 1...10_000)
    }

    /// Under mpirun the training is data-parallel (`--batch-size` is the global batch); rank 0
    /// alone checks and writes the output folder and evaluates on the test split.
    func run() throws {
        compute.apply()
        try userFacing {
            let world = Cluster.world
            try DataParallel(world: world).requireShares(of: batchSize, items: "image")   // on every rank, before any loading
            let path = out + "/model.safetensors"
            if world.isRoot {
                if FileManager.default.fileExists(atPath: path) && !overwrite {
                    throw PipelineError.invalidArgument("\(path) already exists; pass --overwrite to replace it.")
                }
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            }
            let train = try FashionMNIST(split: .train), test = world.isRoot ? try FashionMNIST(split: .test) : nil
            let images = EvalJob.classifierImages(train, limit: limit)
            let labels = Array(train.labels.prefix(images.shape[0]))
            let steps = epochs * (labels.count / batchSize)
            if world.size > 1 && world.isRoot {
                print("Data-parallel on \(world.size) ranks: \(world.slice(of: batchSize).count) of the \(batchSize) images of a step on rank 0.")
            }
            let bar = ProgressBar(total: steps, label: "train-classifier", unit: "step", output: world.isRoot ? nil : { _ in })
            let t0 = now()
            var lastLoss: Float = .nan
            let model = try trainFashionClassifier(images: images, labels: labels, epochs: epochs, batch: batchSize, lr: lr, seed: seed,
                                                   parallel: DataParallel(world: world)) { _, _, loss in
                lastLoss = loss
                bar.update(fields: [("loss", String(format: "%.4f", loss))])
            }
            bar.finish()
            guard let test else { return }   // ranks > 0
            let testImages = EvalJob.classifierImages(test, limit: testLimit)
            let (_, predictions) = model.evaluate(testImages)
            let accuracy = EvalJob.accuracy(predictions, Array(test.labels.prefix(testImages.shape[0])))
            try model.save(to: path)
            var facts: [String: Any] = ["test_accuracy": accuracy, "epochs": epochs, "batch_size": batchSize, "lr": Double(lr),
                                        "seed": seed, "training_images": labels.count, "test_images": testImages.shape[0], "seconds": now() - t0, "parameters": model.parameterCount,
                                        "final_loss": Double(lastLoss)]
            if world.size > 1 { facts["ranks"] = world.size }
            try atomicWrite(JSONSerialization.data(withJSONObject: facts, options: [.prettyPrinted, .sortedKeys]), to: out + "/metrics.json")
            print(String(format: "Test accuracy %.2f%%%@. Wrote %@ (%d parameters) in %.0f s.", accuracy * 100, testLimit == nil ? "" : " (first \(testImages.shape[0]) test images)", path, model.parameterCount, now() - t0))
        }
    }
}
