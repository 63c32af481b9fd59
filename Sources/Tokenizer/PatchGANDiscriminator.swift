// The PatchGAN discriminator of the official tokenizer recipe (modelling/discriminators/
// discriminator_patchgan.py, NLayerDiscriminator from pix2pix via taming-transformers): strided
// 4x4 convolutions with leaky ReLU, a logit per overlapping image patch.
//
//   main.0   Conv(in -> ndf, k4 s2 p1, bias)           main.1  LeakyReLU(0.2)
//   for n in 1..<nLayers (mult = min(2^n, 8)):
//     Conv(ndf*prev -> ndf*mult, k4 s2 p1, no bias*) -> Norm -> LeakyReLU(0.2)
//   Conv(ndf*prev -> ndf*min(2^nLayers, 8), k4 s1 p1, no bias*) -> Norm -> LeakyReLU(0.2)
//   Conv(-> 1, k4 s1 p1, bias)
//   (* with BatchNorm2d; ActNorm keeps the conv biases.)
// Keys follow nn.Sequential's numbering (leaky ReLUs hold no tensors but take an index):
// `main.0.weight`, `main.0.bias`, `main.2.weight`, `main.3.weight`, `main.3.running_mean`, ...
//
// Dimension legend: N batch, C channels, H x W image, h x w patch grid.

import Foundation
import Tensor

/// A per-channel normalization layer of the discriminator (BatchNorm2d or ActNorm).
public protocol ChannelNormalization: Module {
    var training: Bool { get set }
    func callAsFunction(_ x: Tensor, parameterGradients: Bool) -> Tensor
}

extension BatchNorm2d: ChannelNormalization {}
extension ActNorm: ChannelNormalization {}

public final class PatchGANDiscriminator: Module {
    /// The NLayerDiscriminator arguments; coding keys are its parameter names.
    public struct Config: Codable, Equatable, Sendable {
        public var inputChannels = 3
        public var ndf = 64
        public var nLayers = 3
        public var useActNorm = false
        public init(inputChannels: Int = 3, ndf: Int = 64, nLayers: Int = 3, useActNorm: Bool = false) {
            self.inputChannels = inputChannels; self.ndf = ndf; self.nLayers = nLayers; self.useActNorm = useActNorm
        }
        enum CodingKeys: String, CodingKey {
            case inputChannels = "input_nc", ndf, nLayers = "n_layers", useActNorm = "use_actnorm"
        }
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            inputChannels = try c.decodeIfPresent(Int.self, forKey: .inputChannels) ?? 3
            ndf = try c.decodeIfPresent(Int.self, forKey: .ndf) ?? 64
            nLayers = try c.decodeIfPresent(Int.self, forKey: .nLayers) ?? 3
            useActNorm = try c.decodeIfPresent(Bool.self, forKey: .useActNorm) ?? false
        }
    }

    public static let leakySlope: Float = 0.2
    public let config: Config
    /// The convolutions in order (main.0, main.2, main.5, ...).
    public let convs: [Conv2d]
    /// norms[i] follows convs[i + 1] (there is none after the first and the last conv).
    public let norms: [any ChannelNormalization]
    /// Sequential index of each conv and norm, for the keys.
    private let convIndex: [Int]
    private let normIndex: [Int]

    /// Official initialization when `f` is random: conv weights N(0, 0.02), conv biases
    /// PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)), BatchNorm weight N(1, 0.02), bias 0;
    /// drawn per layer in construction order.
    public init(_ config: Config, _ f: inout ParameterFactory) {
        precondition(config.nLayers >= 1 && config.ndf >= 1, "PatchGAN: need n_layers >= 1 and ndf >= 1")
        self.config = config
        let ndf = config.ndf, convBias = config.useActNorm
        var convs: [Conv2d] = [], norms: [any ChannelNormalization] = []
        var convIndex: [Int] = [], normIndex: [Int] = []
        var index = 0
        func conv(_ cin: Int, _ cout: Int, stride: Int, bias: Bool) {
            let c = Conv2d(cin, cout, kernel: 4, stride: stride, padding: 1, bias: bias, &f)
            if f.isRandom { fillNormal(c.weight, std: 0.02, rng: &f.rng) }
            convs.append(c); convIndex.append(index)
            index += 1
        }
        func norm(_ channels: Int) {
            if config.useActNorm {
                norms.append(ActNorm(channels, &f))
            } else {
                let bn = BatchNorm2d(channels, &f)
                if f.isRandom {
                    fillNormal(bn.weight, std: 0.02, rng: &f.rng)
                    for i in 0..<channels { bn.weight.pointer[i] += 1 }
                    bn.weight.markModified()
                }
                norms.append(bn)
            }
            normIndex.append(index)
            index += 2   // the norm and its leaky ReLU
        }
        conv(config.inputChannels, ndf, stride: 2, bias: true)
        index += 1   // leaky ReLU
        var mult = 1
        for n in 1..<config.nLayers {
            let prev = mult
            mult = min(1 << n, 8)
            conv(ndf * prev, ndf * mult, stride: 2, bias: convBias)
            norm(ndf * mult)
        }
        let prev = mult
        mult = min(1 << config.nLayers, 8)
        conv(ndf * prev, ndf * mult, stride: 1, bias: convBias)
        norm(ndf * mult)
        conv(ndf * mult, 1, stride: 1, bias: true)
        self.convs = convs; self.norms = norms
        self.convIndex = convIndex; self.normIndex = normIndex
    }

    public var entries: [(String, ModuleEntry)] {
        var e: [(String, ModuleEntry)] = []
        for (i, c) in convs.enumerated() {
            e.append(("main.\(convIndex[i])", .module(c)))
            if i >= 1 && i - 1 < norms.count { e.append(("main.\(normIndex[i - 1])", .module(norms[i - 1]))) }
        }
        return e
    }

    /// Training mode (batch statistics, running averages, ActNorm's first-batch init) or eval.
    public var training: Bool {
        get { norms.first?.training ?? true }
        set { for n in norms { n.training = newValue } }
    }

    /// Parameters that train (the `ndim >= 2` ones take weight decay in the official AdamW).
    public var parameters: [(String, Tensor)] {
        namedTensors().filter { key, _ in !key.hasSuffix("running_mean") && !key.hasSuffix("running_var")
            && !key.hasSuffix("num_batches_tracked") && !key.hasSuffix("initialized") }
    }

    /// images (N, C, H, W) -> patch logits (N, 1, h, w) (h = H/8 - 2 for three layers).
    /// With `parameterGradients` false the weights enter as constants: gradients reach only the
    /// input (the generator's step), and no weight gradient is computed.
    public func callAsFunction(_ x: Tensor, parameterGradients: Bool = true) -> Tensor {
        func weights(_ c: Conv2d) -> (Tensor, Tensor?) {
            parameterGradients ? (c.weight, c.bias) : (c.weight.detached(), c.bias?.detached())
        }
        var h = x
        for (i, c) in convs.enumerated() {
            let (w, b) = weights(c)
            h = conv2d(h, w, b, stride: c.stride, padding: c.padding)         // (N, C_i, H_i, W_i)
            if i == convs.count - 1 { break }                                  // the logits (N, 1, h, w)
            if i >= 1 { h = norms[i - 1](h, parameterGradients: parameterGradients) }
            h = h.leakyReLU(slope: Self.leakySlope)
        }
        return h
    }

    /// Loads a state dict strictly (official keys); `num_batches_tracked` may have shape [] or [1].
    public func load(file: SafeTensorsFile, prefix: String = "") throws {
        for (i, n) in norms.enumerated() {
            (n as? BatchNorm2d)?.adoptCounterShape(from: file, key: prefix + "main.\(normIndex[i]).num_batches_tracked")
        }
        try load(from: file, prefix: prefix)
    }
}
