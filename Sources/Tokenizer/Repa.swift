// Representation alignment (REPA) of the official tokenizer training: a projector from the
// latent tokens to the patch features of a frozen ViT teacher (DINOv2 in the official recipe),
// and the negative-cosine alignment loss.
//
// Dimension legend: N batch, L latent tokens, E codebook dim, T teacher patches,
// Dz teacher width, P projector width.

import Foundation
import Tensor

/// The official REPA projector `projection`: Linear(E, P) - SiLU - Linear(P, P) - SiLU -
/// Linear(P, Dz), keys projection.0 / .2 / .4.
public final class RepaProjector: Module {
    public let l0: Linear
    public let l2: Linear
    public let l4: Linear

    /// PyTorch's default initialization from `seed`.
    public init(inDim: Int, hidden: Int, outDim: Int, seed: UInt64 = 1) {
        var f = ParameterFactory(.random(seed: seed))
        l0 = Linear(inDim, hidden, &f)
        l2 = Linear(hidden, hidden, &f)
        l4 = Linear(hidden, outDim, &f)
    }

    public var entries: [(String, ModuleEntry)] { [("0", .module(l0)), ("2", .module(l2)), ("4", .module(l4))] }

    /// (..., E) -> (..., Dz)
    public func callAsFunction(_ x: Tensor) -> Tensor { l4(l2(l0(x).silu()).silu()) }
}

/// A frozen network whose features the latent tokens are aligned to.
public protocol AlignmentTeacher: AnyObject {
    /// What it is, for logs and model cards.
    var name: String { get }
    /// Width Dz of its features.
    var featureDim: Int { get }
    /// Features (N, T, Dz) of images (N, 3, H, W) in [-1, 1], without gradients.
    func features(_ images: Tensor) -> Tensor
}

/// A frozen timm-layout ViT (DINOv2 in the official recipe): its patch tokens.
public final class ViTTeacher: AlignmentTeacher {
    public let model: VisionTransformer
    public let name: String

    public init(_ model: VisionTransformer, name: String) {
        self.model = model
        self.name = name
        for (_, t) in model.namedTensors() { t.requiresGrad = false }
    }

    public var featureDim: Int { model.spec.width }

    /// Mapped to [0, 1], ImageNet mean/std normalised, forward_features, class token dropped.
    public func features(_ images: Tensor) -> Tensor {
        Autograd.noGrad {
            let x = images.copy()
            let (n, c, hw) = (x.dim(0), x.dim(1), x.dim(2) * x.dim(3))
            let mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225]
            for i in 0..<n {
                for ch in 0..<c {
                    let p = x.pointer + (i * c + ch) * hw
                    for j in 0..<hw { p[j] = ((p[j] + 1) * 0.5 - mean[ch]) / std[ch] }
                }
            }
            let f = model.forwardFeatures(x)                        // (N, 1 + T, Dz)
            return f.slice(axis: 1, 1..<f.dim(1)).copy()            // (N, T, Dz)
        }
    }
}

/// Representation alignment: negative cosine similarity between the projected latent tokens
/// and the features of a frozen teacher (DINOv2's patch tokens in the official recipe).
public final class RepaAligner {
    public enum Alignment: String, Sendable {
        /// Each projected token repeated T / L times along the sequence, compared per patch.
        case `repeat`
        /// Mean over tokens vs mean over patches.
        case global
    }

    public let teacher: any AlignmentTeacher
    public let projection: RepaProjector
    public let alignment: Alignment
    public let weight: Float

    public init(teacher: any AlignmentTeacher, projection: RepaProjector, alignment: Alignment, weight: Float) {
        self.teacher = teacher
        self.projection = projection
        self.alignment = alignment
        self.weight = weight
    }

    /// An aligner for `config` (codebook dim, repa_proj_dim, repa_align, repa_loss_weight)
    /// with a fresh projector drawn from `seed`.
    public convenience init(teacher: any AlignmentTeacher, config: TokenizerConfig, seed: UInt64 = 1) throws {
        guard let align = Alignment(rawValue: config.repaAlign) else {
            throw TokenizerError.unsupported("repa_align '\(config.repaAlign)': only 'repeat' and 'global' are implemented")
        }
        let proj = RepaProjector(inDim: config.codebookEmbedDim, hidden: config.repaProjDim, outDim: teacher.featureDim, seed: seed)
        self.init(teacher: teacher, projection: proj, alignment: align, weight: Float(config.repaLossWeight))
    }

    /// Builds the aligner from a frozen ViT in safetensors (timm key names, optionally under
    /// `prefix`, e.g. "repa_model."). The ViT's width, depth, patch size, image size and
    /// LayerScale are read from the tensors; heads = width / 64. Extra keys outside the ViT
    /// (a classifier head, ...) are ignored.
    public static func load(teacher path: String, prefix: String = "", config: TokenizerConfig, seed: UInt64 = 1) throws -> RepaAligner {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw TokenizerError.checkpoint("cannot open REPA teacher: \(error)") }
        let teacher = try VisionTransformer.loadFrozen(file: file, prefix: prefix)
        guard teacher.spec.imageSize == config.imageSize else {
            throw TokenizerError.config("\((path as NSString).lastPathComponent): the teacher's position table covers \(teacher.spec.imageSize)px at patch \(teacher.spec.patchSize), but images are \(config.imageSize)px (position-table resampling is not implemented)")
        }
        return try RepaAligner(teacher: ViTTeacher(teacher, name: (path as NSString).lastPathComponent), config: config, seed: seed)
    }

    /// weight * mean over images and positions of -cos(teacher feature, projected token).
    public func loss(images: Tensor, zq: Tensor) throws -> Tensor {
        let z = teacher.features(images)                            // (N, T, Dz)
        var zHat = projection(zq)                                   // (N, L, Dz)
        var target = z
        switch alignment {
        case .repeat:
            let (n, l, d) = (zHat.dim(0), zHat.dim(1), zHat.dim(2))
            let t = z.dim(1)
            guard t % l == 0 else {
                throw TokenizerError.config("REPA 'repeat' alignment needs the teacher's \(t) patches to be a multiple of \(l) latent tokens")
            }
            let r = t / l
            if r > 1 {
                zHat = (zHat.reshaped([n, l, 1, d]) + Tensor(zeros: [1, 1, r, 1]))  // (N, L, r, Dz)
                    .reshaped([n, l * r, d])                                       // (N, T, Dz)
            }
        case .global:
            target = Autograd.noGrad { z.mean(axes: [1]) }              // (N, Dz)
            zHat = zHat.mean(axes: [1])                                 // (N, Dz)
        }
        let cos = (target.l2Normalized() * zHat.l2Normalized()).sum(axes: [-1])  // (N, T) or (N)
        return -cos.mean() * weight
    }
}
