// The ViT branch of the official LPIPSTimm (modelling/lpips/lpips_timm.py), the recipe's
// `perceptual_loss: timm` alternative to VGG LPIPS, over a frozen timm ViT (DINOv2 in the
// official code) loaded from safetensors. For images a, b in [-1, 1] the official forward:
//
//   x = ((a + 1) / 2 - mean) / std                      ImageNet mean / std
//   final, inter = vit.forward_intermediates(x)         inter[i]: block i's output, prefix
//                                                       tokens dropped, (N, D, G, G)
//   logit loss:        mean_D (head(final_a) - head(final_b))^2      (N, 1)
//   intermediate loss: sum_{i in depths} mean_hw lin_i((nt(inter_a[i]) - nt(inter_b[i]))^2)
//
// with nt = normalize_tensor over D. This type covers the variant without trained heads
// (`dino_variants='depth12_no_train'`, lin_i = Identity, so the intermediate term stays
// (N, D, 1, 1) and the trainer's torch.mean averages it over D too) and the logit term for a
// ViT without a classifier head (DINOv2: head = Identity on the class token of the final norm).
// The official sum of the (N, 1) and (N, D, 1, 1) terms broadcasts to (N, D, N, 1), whose mean
// equals mean_n(logit_n) + mean_n(intermediate_n): this type returns that batch mean.
// Not covered: the learned heads of the depth12/6/4 variants (the authors' private files), the
// bicubic resize (`perceptual_resize`), register tokens, and the resnet50 branch.
//
// Dimension legend: N batch, T = G x G patches, D ViT width.

import Foundation
import Tensor

public final class LPIPSTimm: PerceptualLoss {
    public let name = "lpips-timm-vit"
    public let vit: VisionTransformer
    /// Blocks whose outputs enter the intermediate term (all in 'depth12_no_train'); empty for none.
    public let depths: [Int]
    /// Adds the class-token term of the final normalized features.
    public let logitLoss: Bool

    static let mean: [Float] = [0.485, 0.456, 0.406]
    static let std: [Float] = [0.229, 0.224, 0.225]
    /// x_norm = x * a + b per channel, the composition of the official de_scale and Normalize.
    let inputScale: Tensor   // (1, 3, 1, 1)
    let inputShift: Tensor   // (1, 3, 1, 1)

    /// Uses (and freezes) `vit`; `depths` nil means every block.
    public init(vit: VisionTransformer, depths: [Int]? = nil, logitLoss: Bool = false) {
        self.vit = vit
        self.depths = depths ?? Array(0..<vit.blocks.count)
        self.logitLoss = logitLoss
        precondition(self.depths.allSatisfy { $0 >= 0 && $0 < vit.blocks.count }, "LPIPSTimm: depths \(self.depths) outside 0..<\(vit.blocks.count)")
        precondition(!self.depths.isEmpty || logitLoss, "LPIPSTimm: no term selected (the official loss would be 0)")
        inputScale = Tensor(Self.std.map { 0.5 / $0 }, shape: [1, 3, 1, 1])
        inputShift = Tensor(zip(Self.mean, Self.std).map { (0.5 - $0) / $1 }, shape: [1, 3, 1, 1])
        vit.freeze()
    }

    /// A frozen timm ViT from safetensors (see `VisionTransformer.loadFrozen`).
    public convenience init(path: String, prefix: String = "", depths: [Int]? = nil, logitLoss: Bool = false) throws {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw TokenizerError.checkpoint("cannot open the LPIPSTimm ViT: \(error)") }
        self.init(vit: try VisionTransformer.loadFrozen(file: file, prefix: prefix), depths: depths, logitLoss: logitLoss)
    }

    /// The selected block outputs without the class token, (N, D, T) each, and the class token
    /// of the final normalized features (N, D) when the logit term is on.
    func features(_ images: Tensor) -> (inter: [Tensor], cls: Tensor?) {
        let side = vit.spec.imageSize
        precondition(images.rank == 4 && images.dim(1) == 3 && images.dim(2) == side && images.dim(3) == side,
                     "LPIPSTimm: images must be (N, 3, \(side), \(side)) for this ViT (resizing is not implemented), got \(images.shape)")
        let n = images.dim(0), t = vit.spec.numPatches, d = vit.spec.width
        var x = vit.withClassAndPositions(vit.patchEmbed(images * inputScale + inputShift))        // (N, 1 + T, D)
        var inter: [Tensor] = []
        for (i, block) in vit.blocks.enumerated() {
            x = block(x)                                                         // (N, 1 + T, D)
            if depths.contains(i) {
                inter.append(x.slice(axis: 1, 1..<(1 + t)).permuted([0, 2, 1]))  // (N, D, T)
            }
        }
        let cls = logitLoss ? vit.norm(x).slice(axis: 1, 0..<1).reshaped([n, d]) : nil   // (N, D)
        return (inter, cls)
    }

    /// Per-sample distance whose batch mean is the official loss: (N, 3, S, S) x 2 -> (N).
    public func distance(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.shape == b.shape, "LPIPSTimm: shapes \(a.shape) and \(b.shape) differ")
        let fa = features(a), fb = features(b)
        var total: Tensor? = nil
        if let ca = fa.cls, let cb = fb.cls { total = (ca - cb).square().mean(axes: [1]) }        // (N)
        for (x, y) in zip(fa.inter, fb.inter) {
            let r = (x.channelNormalized() - y.channelNormalized()).square().mean(axes: [1, 2])   // (N)
            total = total.map { $0 + r } ?? r
        }
        return total!
    }

    /// The official loss: a scalar.
    public func callAsFunction(_ input: Tensor, _ target: Tensor) -> Tensor { distance(input, target).mean() }
}
