// Perceptual losses of the tokenizer recipe. The official code (modelling/lpips/lpips.py,
// losses/vq_loss.py) computes, for real images x and reconstructions x_hat in [-1, 1]:
//
//   p_loss = mean_n LPIPS(x, x_hat)
//   LPIPS(a, b) = sum_l mean_hw( lin_l( (phi_l(s(a)) - phi_l(s(b)))^2 ) )
//
// with s(v) = (v - shift) / scale (ScalingLayer), phi_l = normalize_tensor of the VGG16 feature
// maps relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, normalize_tensor(v) = v / (||v||_c + 1e-10),
// and lin_l a bias-free 1x1 convolution to one channel (behind a Dropout, hence the key
// `lin0.model.1.weight`; inactive in eval mode, active in the official training: see
// `TrainingDropout`). All weights are frozen.
//
// Dimension legend: N batch, C channels, H x W spatial, S image side.

import Foundation
import Tensor

/// A frozen perceptual distance used as a training loss.
public protocol PerceptualLoss: AnyObject {
    /// Short identifier for logs and configs ("lpips-vgg", ...).
    var name: String { get }
    /// Scalar mean over the batch of the per-sample distance between two image batches of equal
    /// shape. The value is symmetric; the gradient flows to whichever argument is on the tape
    /// (the official trainer passes `(inputs, reconstructions)`, and only the reconstruction is).
    func callAsFunction(_ input: Tensor, _ target: Tensor) -> Tensor
}

/// The official `perceptual_warmup` (losses/vq_loss.py): the perceptual term's weight at
/// `step` is weight * min(1, step / warmup), or weight without a warm-up (nil or 0 steps).
public func perceptualWeight(step: Int, weight: Double, warmup: Int?) -> Double {
    guard let warmup, warmup > 0 else { return weight }
    return min(1, Double(step) / Double(warmup)) * weight
}

/// The learned heads' Dropout in training mode. The official trainer builds `LPIPS().eval()`,
/// then calls `vq_loss.train()` (train/train_tokenizer.py), which puts every submodule back in
/// training mode: the heads' `nn.Dropout()` (p = 0.5) then zeroes each squared feature
/// difference with probability p and scales the rest by 1 / (1 - p) (unbiased; values vary
/// by about 1-2% between calls). nil on a loss is eval mode (deterministic).
public struct TrainingDropout: Sendable {
    public var probability: Float
    public var rng: RandomGenerator

    public init(probability: Float = 0.5, seed: UInt64) {
        precondition(probability >= 0 && probability < 1, "dropout probability \(probability) outside [0, 1)")
        self.probability = probability
        rng = RandomGenerator(seed: seed)
    }

    /// x times a fresh constant mask of zeros and 1 / (1 - p).
    public mutating func apply(_ x: Tensor) -> Tensor {
        let mask = Tensor(uninitialized: x.shape)
        let keep = 1 / (1 - probability), p = Double(probability)
        for i in 0..<mask.count { mask.pointer[i] = rng.uniform() < p ? 0 : keep }
        return x * mask
    }
}

// MARK: - VGG16 feature stages

/// One `net.sliceK` of LPIPS's vgg16: an optional 2x2 max pool first, then 3x3 convolutions
/// (padding 1) each followed by ReLU, registered under their index in torchvision's
/// `vgg16().features` (`net.slice2.5.weight`). Pools and ReLUs carry no weights.
public final class VGGSlice: Module {
    public let poolFirst: Bool
    public let indices: [Int]
    public let convs: [Conv2d]

    init(poolFirst: Bool, indices: [Int], widths: [Int], inChannels: Int, _ f: inout ParameterFactory) {
        self.poolFirst = poolFirst
        self.indices = indices
        var c = inChannels
        var convs: [Conv2d] = []
        for o in widths {
            convs.append(Conv2d(c, o, kernel: 3, padding: 1, &f))
            c = o
        }
        self.convs = convs
    }

    public var entries: [(String, ModuleEntry)] { zip(indices, convs).map { (String($0), .module($1)) } }

    /// (N, C, H, W) -> (N, C', H', W'), H' = H / 2 when the slice pools first.
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var h = poolFirst ? maxPool2d(x) : x
        for conv in convs { h = conv(h).relu() }
        return h
    }
}

/// LPIPS's `vgg16`: torchvision's VGG16 `features[0..<30]` cut into five slices that end at
/// relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3.
public final class VGG16Features: Module {
    /// torchvision indices of the convolutions of each slice (pools at 4, 9, 16, 23).
    public static let convIndices: [[Int]] = [[0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]]
    /// torchvision's VGG16 widths.
    public static let standardWidths: [[Int]] = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]

    public let slices: [VGGSlice]

    /// `widths[k][j]`: output channels of convolution j of slice k (narrow VGGs for fixtures).
    public init(widths: [[Int]] = standardWidths, _ f: inout ParameterFactory) {
        precondition(widths.count == 5 && zip(widths, Self.convIndices).allSatisfy { $0.count == $1.count },
                     "VGG16Features: widths must follow the layout \(Self.convIndices)")
        var c = 3
        var slices: [VGGSlice] = []
        for (k, w) in widths.enumerated() {
            slices.append(VGGSlice(poolFirst: k > 0, indices: Self.convIndices[k], widths: w, inChannels: c, &f))
            c = w.last!
        }
        self.slices = slices
    }

    public var entries: [(String, ModuleEntry)] { slices.enumerated().map { ("slice\($0 + 1)", .module($1)) } }

    /// Widths of the five stage outputs.
    public var stageChannels: [Int] { slices.map { $0.convs.last!.weight.dim(0) } }

    /// (N, 3, H, W) -> the five stage outputs (N, C_l, H / 2^l, W / 2^l).
    public func callAsFunction(_ x: Tensor) -> [Tensor] {
        var h = x
        return slices.map { h = $0(h); return h }
    }
}

/// LPIPS's NetLinLayer: a bias-free 1x1 convolution C -> 1 under `model.1` (index 0 is the
/// weightless Dropout).
public final class NetLinLayer: Module {
    public let conv: Conv2d

    public init(channels: Int, _ f: inout ParameterFactory) { conv = Conv2d(channels, 1, kernel: 1, bias: false, &f) }

    public var entries: [(String, ModuleEntry)] { [("model.1", .module(conv))] }

    /// (N, C, H, W) -> (N, 1, H, W)
    public func callAsFunction(_ x: Tensor) -> Tensor { conv(x) }
}

// MARK: - LPIPS

/// The official LPIPS (VGG16 variant) under the official state-dict keys:
/// `scaling_layer.shift`, `scaling_layer.scale` (buffers (1, 3, 1, 1)), `net.slice1.0.weight`
/// ... `net.slice5.28.bias`, `lin0.model.1.weight` ... `lin4.model.1.weight`.
public final class LPIPS: Module, PerceptualLoss {
    public let name = "lpips-vgg"
    /// ScalingLayer buffers: ImageNet statistics expressed in [-1, 1] units.
    public let shift: Tensor   // (1, 3, 1, 1)
    public let scale: Tensor   // (1, 3, 1, 1)
    public let net: VGG16Features
    public let lins: [NetLinLayer]
    /// The heads' Dropout as in the official training (see `TrainingDropout`); nil: eval mode.
    public var trainingDropout: TrainingDropout?

    /// The official ScalingLayer constants.
    public static let officialShift: [Float] = [-0.030, -0.088, -0.188]
    public static let officialScale: [Float] = [0.458, 0.448, 0.450]

    /// A model of the given VGG widths with weights from `initialization` (use `load` for real
    /// weights); the scaling buffers hold the official constants. The model is frozen.
    public init(widths: [[Int]] = VGG16Features.standardWidths, initialization: WeightInit) {
        var f = ParameterFactory(initialization)
        shift = Tensor(Self.officialShift, shape: [1, 3, 1, 1])
        scale = Tensor(Self.officialScale, shape: [1, 3, 1, 1])
        net = VGG16Features(widths: widths, &f)
        lins = net.stageChannels.map { NetLinLayer(channels: $0, &f) }
        freeze()
    }

    public var entries: [(String, ModuleEntry)] {
        [("scaling_layer.shift", .tensor(shift)), ("scaling_layer.scale", .tensor(scale)), ("net", .module(net))]
            + lins.enumerated().map { ("lin\($0)", .module($1)) }
    }

    /// Loads a converted LPIPS file (tools/convert_lpips.py): VGG widths come from the file's
    /// shapes, then every key and shape is checked strictly.
    public static func load(path: String) throws -> LPIPS {
        let file = try SafeTensorsFile(path: path)
        let fileName = (path as NSString).lastPathComponent
        // Every convolution's shape is checked against the chain (O, C_previous, 3, 3) before
        // anything is allocated, so no width of a malformed file is trusted further than its data.
        var widths: [[Int]] = []
        var channels = 3
        for (k, indices) in VGG16Features.convIndices.enumerated() {
            widths.append(try indices.map { i in
                let key = "net.slice\(k + 1).\(i).weight"
                guard let info = file.entries[key] else {
                    throw CheckpointError.config("\(fileName) is not an LPIPS-VGG16 weights file: it has no tensor '\(key)' (convert one with tools/convert_lpips.py)")
                }
                guard info.shape.count == 4, info.shape[0] > 0, info.shape[1...] == [channels, 3, 3] else {
                    throw CheckpointError.config("\(fileName): tensor '\(key)' has shape \(info.shape), but the VGG16 layout expects (O, \(channels), 3, 3)")
                }
                channels = info.shape[0]
                return channels
            })
        }
        let model = LPIPS(widths: widths, initialization: .uninitialized)
        try model.load(from: file)
        model.freeze()
        return model
    }

    /// Per-sample LPIPS(a, b): (N, 3, H, W) x 2 -> (N).
    public func distance(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.shape == b.shape && a.rank == 4 && a.dim(1) == 3,
                     "LPIPS: images must be two (N, 3, H, W) batches of one shape, got \(a.shape) and \(b.shape)")
        let n = a.dim(0)
        let fa = net((a - shift) / scale), fb = net((b - shift) / scale)    // 5 x (N, C_l, H_l, W_l)
        var total: Tensor? = nil
        for l in 0..<5 {
            var d = (fa[l].channelNormalized() - fb[l].channelNormalized()).square()   // (N, C_l, H_l, W_l)
            if trainingDropout != nil { d = trainingDropout!.apply(d) }
            let r = lins[l](d).mean(axes: [2, 3]).reshaped([n])                     // (N)
            total = total.map { $0 + r } ?? r
        }
        return total!
    }

    /// mean_n LPIPS(input_n, target_n): a scalar.
    public func callAsFunction(_ input: Tensor, _ target: Tensor) -> Tensor { distance(input, target).mean() }
}
