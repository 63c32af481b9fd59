// A perceptual loss for Fashion-MNIST tokenizers over the shipped classifier's convolutional
// stages (no ImageNet VGG exists for 28 x 28 gray images). It follows LPIPS without learned
// heads (the "lin" layers replaced by a plain channel mean):
//
//   d(a, b) = sum_l mean_{c,h,w} (phi_l(a) - phi_l(b))^2,   loss = mean_n d(a_n, b_n)
//
// phi_l = channel-normalized ReLU outputs of conv1, conv2, conv3 of FashionClassifier on
// `classifierInput` (channel mean, centered 28 x 28 crop, clamp to [-1, 1]).
//
// Dimension legend: N batch, S tokenizer image side (>= 28), C channels.

import Foundation
import Tensor
import Tokenizer

public final class ClassifierFeatureLoss: PerceptualLoss {
    public let name = "classifier-features"
    public let classifier: FashionClassifier

    /// Uses (and freezes) `classifier`.
    public init(classifier: FashionClassifier) {
        self.classifier = classifier
        classifier.freeze()
    }

    /// Loads the classifier's model.safetensors (e.g. Checkpoints/fashion-classifier/).
    public convenience init(path: String) throws { self.init(classifier: try FashionClassifier.load(path: path)) }

    /// Differentiable `ImageMetrics.classifierInput`: (N, 3, S, S) in [-1, 1] -> (N, 1, 28, 28).
    public static func classifierInput(_ images: Tensor) -> Tensor {
        precondition(images.rank == 4 && images.dim(2) == images.dim(3) && images.dim(2) >= 28,
                     "classifier-features: images must be (N, C, S, S) with S >= 28, got \(images.shape)")
        let o = (images.dim(2) - 28) / 2
        return images.mean(axes: [1], keepDims: true)            // (N, 1, S, S)
            .slice(axis: 2, o..<(o + 28)).slice(axis: 3, o..<(o + 28))   // (N, 1, 28, 28)
            .clamped(min: -1, max: 1)
    }

    /// The three stage outputs: (N, 32, 28, 28), (N, 64, 14, 14), (N, 64, 7, 7).
    public func stages(_ images: Tensor) -> [Tensor] {
        let c = classifier
        let h1 = c.conv1(Self.classifierInput(images)).relu()
        let h2 = c.conv2(h1).relu()
        let h3 = c.conv3(h2).relu()
        return [h1, h2, h3]
    }

    /// Per-sample distance: (N, 3, S, S) x 2 -> (N).
    public func distance(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.shape == b.shape, "classifier-features: shapes \(a.shape) and \(b.shape) differ")
        let fa = stages(a), fb = stages(b)
        var total: Tensor? = nil
        for (x, y) in zip(fa, fb) {
            let r = (x.channelNormalized() - y.channelNormalized()).square().mean(axes: [1, 2, 3])   // (N)
            total = total.map { $0 + r } ?? r
        }
        return total!
    }

    /// mean_n d(input_n, target_n): a scalar.
    public func callAsFunction(_ input: Tensor, _ target: Tensor) -> Tensor { distance(input, target).mean() }
}
