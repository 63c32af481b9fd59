// A small convolutional Fashion-MNIST classifier, trained with the project's own Tensor code.
// It serves the evaluation: test accuracy, class fidelity of generated images, and the
// 128-d penultimate features for Frechet distances.
//
// Input: (N, 1, 28, 28) in [-1, 1].
//   conv 3x3 1->32, ReLU              (N, 32, 28, 28)
//   conv 3x3 s2 32->64, ReLU          (N, 64, 14, 14)
//   conv 3x3 s2 64->64, ReLU          (N, 64, 7, 7)
//   flatten, Linear 3136->128, ReLU   (N, 128)  <- features
//   Linear 128->10                    (N, 10)   <- logits

import Cluster
import Foundation
import Tensor

public final class FashionClassifier: Module {
    public let conv1: Conv2d
    public let conv2: Conv2d
    public let conv3: Conv2d
    public let fc1: Linear
    public let fc2: Linear

    /// PyTorch's default initialization from `seed`.
    public convenience init(seed: UInt64 = 0) { self.init(initialization: .random(seed: seed)) }

    public init(initialization: WeightInit) {
        var f = ParameterFactory(initialization)
        conv1 = Conv2d(1, 32, kernel: 3, padding: 1, &f)
        conv2 = Conv2d(32, 64, kernel: 3, stride: 2, padding: 1, &f)
        conv3 = Conv2d(64, 64, kernel: 3, stride: 2, padding: 1, &f)
        fc1 = Linear(64 * 7 * 7, 128, &f)
        fc2 = Linear(128, 10, &f)
    }

    public var entries: [(String, ModuleEntry)] {
        [("conv1", .module(conv1)), ("conv2", .module(conv2)), ("conv3", .module(conv3)),
         ("fc1", .module(fc1)), ("fc2", .module(fc2))]
    }

    /// (N, 1, 28, 28) -> (N, 128)
    public func features(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4 && x.dim(1) == 1 && x.dim(2) == 28 && x.dim(3) == 28,
                     "classifier input must be (N, 1, 28, 28), got \(x.shape)")
        let h = conv3(conv2(conv1(x).relu()).relu()).relu()      // (N, 64, 7, 7)
        return fc1(h.reshaped([x.dim(0), 64 * 7 * 7])).relu()    // (N, 128)
    }

    public func callAsFunction(_ x: Tensor) -> Tensor { fc2(features(x)) }   // (N, 10)

    /// Features and predicted classes in inference batches.
    public func evaluate(_ images: Tensor, batch: Int = 500) -> (features: Tensor, predictions: [Int]) {
        let n = images.dim(0)
        let feats = Tensor(uninitialized: [n, 128])
        var preds: [Int] = []
        Autograd.noGrad {
            var start = 0
            while start < n {
                let end = Swift.min(n, start + batch)
                let x = images.slice(axis: 0, start..<end)
                let f = features(x)
                (feats.pointer + start * 128).update(from: f.pointer, count: f.count)
                preds += fc2(f).argmaxLastAxis()
                start = end
            }
        }
        return (feats, preds)
    }

    public static func load(path: String) throws -> FashionClassifier {
        let model = FashionClassifier(initialization: .uninitialized)
        try model.load(from: SafeTensorsFile(path: path))
        return model
    }

    /// Mean cross-entropy of logits (N, K) against labels.
    public static func crossEntropy(_ logits: Tensor, _ labels: [Int]) -> Tensor {
        let k = logits.dim(1)
        let onehot = Tensor(zeros: logits.shape)
        for (i, y) in labels.enumerated() { onehot.pointer[i * k + y] = 1 }
        return -(logits.logSoftmax() * onehot).sum() / Float(labels.count)
    }
}

/// Trains the classifier with AdamW and a cosine schedule; deterministic for a seed.
///
/// Data-parallel under `parallel` (mpirun): `batch` is the global batch; every rank walks the
/// same shuffled order and draws every flip of the global batch (so its generator stays where
/// one process's is), trains on its slice, and the slices' gradients, each weighted by its share
/// of the batch, are summed by `DataParallel.sumGradients` before the same AdamW step on every
/// rank. The weights start from rank 0's and are compared by checksum at the end. With one
/// process this is exactly the single-process loop (the weight is 1 and nothing is summed).
/// `progress` receives the step, the total and the global batch's mean loss.
public func trainFashionClassifier(images: Tensor, labels: [Int], epochs: Int = 4, batch: Int = 128, lr: Float = 2e-3,
                                   seed: UInt64 = 0, parallel: DataParallel = DataParallel(world: SingleProcess()),
                                   progress: (Int, Int, Float) -> Void = { _, _, _ in }) throws -> FashionClassifier {
    try parallel.requireShares(of: batch, items: "image")
    let model = FashionClassifier(seed: seed)
    let params = model.trainableParameters().map { $0.1 }
    try parallel.broadcast(params)
    let opt = AdamW(model.trainableParameters(), lr: lr, weightDecay: 1e-4)
    var rng = RandomGenerator(seed: seed &+ 1)
    let n = images.dim(0)
    let stepsPerEpoch = n / batch
    let total = epochs * stepsPerEpoch
    let schedule = LRSchedule.cosine(lr: lr, warmup: 100, total: total, minLR: lr * 0.02)
    let per = 28 * 28
    // This rank's rows of each global batch and their share of its mean.
    let rows = parallel.isParallel ? parallel.share(of: batch) : 0..<batch
    let weight = Float(rows.count) / Float(batch)
    var step = 0
    for _ in 0..<epochs {
        var order = Array(0..<n)
        rng.shuffle(&order)
        for s in 0..<stepsPerEpoch {
            let idx = Array(order[(s * batch)..<((s + 1) * batch)])
            // Random horizontal flip as augmentation, drawn for the whole global batch in order.
            let flips = idx.map { _ in rng.below(2) == 1 }
            let x = Tensor(uninitialized: [rows.count, 1, 28, 28])
            var y: [Int] = []
            for (r, j) in rows.enumerated() {
                let i = idx[j], flip = flips[j]
                let src = images.pointer + i * per, dst = x.pointer + r * per
                for row in 0..<28 { for col in 0..<28 { dst[row * 28 + col] = src[row * 28 + (flip ? 27 - col : col)] } }
                y.append(labels[i])
            }
            model.zeroGrad()
            let loss = FashionClassifier.crossEntropy(model(x), y)   // mean over this rank's rows
            loss.backward()
            try parallel.sumGradients(params, weight: weight)        // gradient of the global batch mean
            opt.lr = schedule.lr(at: step)
            opt.update()
            step += 1
            let mean = try parallel.sumStatistics([Double(loss.item)], weight: Double(weight))[0]
            progress(step, total, Float(mean))
        }
    }
    try parallel.verifyIdentical(params, what: "classifier weights after \(step) steps")
    return model
}
