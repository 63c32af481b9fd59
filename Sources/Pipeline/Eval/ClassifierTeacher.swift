// The shipped Fashion-MNIST classifier as a representation-alignment teacher: the features
// gen eval measures Frechet distances with (the 128-d penultimate layer), one token per image.
// With `--align global` the mean latent token is aligned to them (DINOv2's patch tokens play
// this role in the official ImageNet recipe; a 28 x 28 CNN has no patch grid to repeat over).

import Foundation
import Tensor
import Tokenizer

public final class ClassifierTeacher: AlignmentTeacher {
    public let classifier: FashionClassifier
    public let name: String

    /// Loads `folder`/model.safetensors (a gen train-classifier folder).
    public init(folder: String) throws {
        classifier = try FashionClassifier.load(path: (folder as NSString).appendingPathComponent("model.safetensors"))
        classifier.freeze()
        name = "Fashion-MNIST classifier features (\((folder as NSString).lastPathComponent))"
    }

    public var featureDim: Int { 128 }

    /// (N, 3, S, S) in [-1, 1] -> (N, 1, 128): the centre 28 x 28 crop, channel mean, features.
    public func features(_ images: Tensor) -> Tensor {
        Autograd.noGrad {
            let f = classifier.features(ImageMetrics.classifierInput(images))   // (N, 128)
            return f.reshaped([f.dim(0), 1, 128])
        }
    }
}
