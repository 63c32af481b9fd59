// The ViT branch of the official LPIPSTimm (modelling/lpips/lpips_timm.py), the recipe's
// `perceptual_loss: timm` alternative to VGG LPIPS, over a frozen timm ViT (DINOv2 in the
// official code) loaded from safetensors. For images a, b in [-1, 1] the official forward:
//
//   x = ((a + 1) / 2 - mean) / std                      ImageNet mean / std
//   final, inter = vit.forward_intermediates(x)         inter[i]: block i's output, prefix
//                                                       tokens dropped, (N, D, G, G)
//   logit term:        mean_D (head(final_a) - head(final_b))^2                    (N, 1)
//   intermediate term: sum_{i in depths} mean_hw lin_i((nt(inter_a[i]) - nt(inter_b[i]))^2)
//
// with nt = normalize_tensor over D, and the trainer takes torch.mean of the result. lin_i is
// a bias-free 1x1 convolution D -> 1 (keys `lins.i.model.1.weight`; variants depth12 / depth6 /
// depth4 load them from the authors' files, which are not public) or Identity
// ('depth12_no_train': the term keeps its D channels, so torch.mean averages over D too).
// Facts of the official code, checked by tools/fixtures/lpips_timm.py: 'depth12_no_train' with
// the intermediate term raises AttributeError in the constructor (it prints key_depths before
// setting it), and both terms at once raise in forward ((N, 1) += (N, D, 1, 1)); so the terms
// are exclusive here, and Identity heads compute what that variant sets up.
// Not covered: `perceptual_resize` (bicubic), register tokens, the resnet50 branch.
//
// Dimension legend: N batch, T = G x G patches, D ViT width.

import Foundation
import Tensor

public final class LPIPSTimm: PerceptualLoss {
    /// Which official term the loss computes.
    public enum Term {
        /// Block outputs at `depths`, with learned 1x1 heads (one per depth) or Identity (nil).
        case intermediate(depths: [Int], heads: [NetLinLayer]?)
        /// The head output (DINOv2: the class token of the final norm).
        case logit
    }

    /// The official block selections of the ViT-S/B DINOv2 variants (12 blocks).
    public static func officialDepths(_ variant: String) -> [Int]? {
        switch variant {
        case "depth12", "depth12_no_train": return Array(0..<12)
        case "depth6": return [1, 3, 5, 7, 9, 11]
        case "depth4": return [2, 5, 8, 11]
        default: return nil
        }
    }

    public let name = "lpips-timm-vit"
    public let vit: VisionTransformer
    public let term: Term
    /// The learned heads' Dropout as in the official training (see `TrainingDropout`; the
    /// Identity heads and the logit term have none); nil: eval mode.
    public var trainingDropout: TrainingDropout?

    static let mean: [Float] = [0.485, 0.456, 0.406]
    static let std: [Float] = [0.229, 0.224, 0.225]
    /// x_norm = x * inputScale + inputShift per channel: the official de_scale then Normalize.
    let inputScale: Tensor   // (1, 3, 1, 1)
    let inputShift: Tensor   // (1, 3, 1, 1)

    /// Uses (and freezes) `vit` and the heads.
    public init(vit: VisionTransformer, term: Term) {
        if case let .intermediate(depths, heads) = term {
            precondition(!depths.isEmpty && depths.allSatisfy { $0 >= 0 && $0 < vit.blocks.count },
                         "LPIPSTimm: depths \(depths) outside 0..<\(vit.blocks.count)")
            precondition(heads.map { $0.count == depths.count && $0.allSatisfy { $0.conv.weight.dim(1) == vit.spec.width } } ?? true,
                         "LPIPSTimm: need one head of width \(vit.spec.width) per depth")
            heads?.forEach { $0.freeze() }
        }
        self.vit = vit
        self.term = term
        inputScale = Tensor(Self.std.map { 0.5 / $0 }, shape: [1, 3, 1, 1])
        inputShift = Tensor(zip(Self.mean, Self.std).map { (0.5 - $0) / $1 }, shape: [1, 3, 1, 1])
        vit.freeze()
    }

    /// A frozen timm ViT from safetensors (see `VisionTransformer.loadFrozen`); for the
    /// intermediate term with learned heads, `headsPath` holds `lins.i.model.1.weight`
    /// (1, D, 1, 1) for i over `depths` (the authors' `get_lin_state_dict` keys).
    public convenience init(path: String, prefix: String = "", depths: [Int]? = nil, headsPath: String? = nil,
                            logit: Bool = false) throws {
        func open(_ p: String) throws -> SafeTensorsFile {
            do { return try SafeTensorsFile(path: p) } catch { throw TokenizerError.checkpoint("cannot open \(p): \(error)") }
        }
        let vit = try VisionTransformer.loadFrozen(file: try open(path), prefix: prefix)
        if logit {
            guard depths == nil, headsPath == nil else {
                throw TokenizerError.unsupported("LPIPSTimm: the logit and intermediate terms are exclusive (the official forward fails on both)")
            }
            self.init(vit: vit, term: .logit)
            return
        }
        let d = depths ?? Array(0..<vit.blocks.count)
        guard !d.isEmpty, d.allSatisfy({ $0 >= 0 && $0 < vit.blocks.count }) else {
            throw TokenizerError.config("LPIPSTimm: depths \(d) outside the ViT's \(vit.blocks.count) blocks")
        }
        var heads: [NetLinLayer]? = nil
        if let headsPath {
            var f = ParameterFactory(.uninitialized)
            let h = LPIPSTimmHeads(count: d.count, width: vit.spec.width, &f)
            do { try h.load(from: try open(headsPath)) } catch let e as CheckpointError { throw TokenizerError.checkpoint(e.description) }
            heads = h.lins
        }
        self.init(vit: vit, term: .intermediate(depths: d, heads: heads))
    }

    /// Per-sample distance whose batch mean is the official loss: (N, 3, S, S) x 2 -> (N).
    public func distance(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.shape == b.shape, "LPIPSTimm: shapes \(a.shape) and \(b.shape) differ")
        let side = vit.spec.imageSize
        precondition(a.rank == 4 && a.dim(1) == 3 && a.dim(2) == side && a.dim(3) == side,
                     "LPIPSTimm: images must be (N, 3, \(side), \(side)) for this ViT (resizing is not implemented), got \(a.shape)")
        let n = a.dim(0), t = vit.spec.numPatches, d = vit.spec.width
        switch term {
        case .logit:
            let ca = vit.forwardFeatures(a * inputScale + inputShift).slice(axis: 1, 0..<1).reshaped([n, d])   // (N, D)
            let cb = vit.forwardFeatures(b * inputScale + inputShift).slice(axis: 1, 0..<1).reshaped([n, d])   // (N, D)
            return (ca - cb).square().mean(axes: [1])                                                        // (N)
        case let .intermediate(depths, heads):
            let fa = blockOutputs(a, depths), fb = blockOutputs(b, depths)
            var total: Tensor? = nil
            for (k, (x, y)) in zip(fa, fb).enumerated() {
                let diff = (x.channelNormalized() - y.channelNormalized()).square()          // (N, D, T)
                let r: Tensor
                if let heads {
                    var h = diff.reshaped([n, d, t, 1])                                      // (N, D, T, 1)
                    if trainingDropout != nil { h = trainingDropout!.apply(h) }
                    r = heads[k](h).mean(axes: [1, 2, 3])                                    // (N)
                } else {
                    r = diff.mean(axes: [1, 2])                                              // (N)
                }
                total = total.map { $0 + r } ?? r
            }
            return total!
        }
    }

    /// The outputs of the blocks at `depths`, in the order of `depths` (head k goes with
    /// depths[k], as in the official loop), class token dropped: (N, D, T) each.
    func blockOutputs(_ images: Tensor, _ depths: [Int]) -> [Tensor] {
        let t = vit.spec.numPatches
        var x = vit.withClassAndPositions(vit.patchEmbed(images * inputScale + inputShift))   // (N, 1 + T, D)
        var byBlock: [Int: Tensor] = [:]
        for (i, block) in vit.blocks.enumerated() where i <= depths.max()! {
            x = block(x)                                                                     // (N, 1 + T, D)
            if depths.contains(i) { byBlock[i] = x.slice(axis: 1, 1..<(1 + t)).permuted([0, 2, 1]) }   // (N, D, T)
        }
        return depths.map { byBlock[$0]! }
    }

    /// The official loss: a scalar.
    public func callAsFunction(_ input: Tensor, _ target: Tensor) -> Tensor { distance(input, target).mean() }
}

/// The authors' head file layout: `lins.0.model.1.weight`, `lins.1.model.1.weight`, ...
final class LPIPSTimmHeads: Module {
    let lins: [NetLinLayer]
    init(count: Int, width: Int, _ f: inout ParameterFactory) { lins = (0..<count).map { _ in NetLinLayer(channels: width, &f) } }
    var entries: [(String, ModuleEntry)] { [("lins", .modules(lins))] }
}
