// The adversarial losses of the official tokenizer recipe (losses/vq_loss.py): discriminator
// losses (hinge, vanilla, "non-saturating"), generator losses (hinge, "non-saturating"), the
// LeCAM regularizer with its logit EMAs (Tseng et al. 2021), the adaptive weight of the
// generator's adversarial term (taming-transformers) and adopt_weight (the disc_start switch).
//
// Logits are the discriminator's patch maps (N, 1, h, w); every mean is over all elements.

import Foundation
import Tensor

public enum DiscriminatorLoss: String, Codable, Sendable, CaseIterable {
    case hinge
    case vanilla
    case nonSaturating = "non-saturating"
}

public enum GeneratorLoss: String, Codable, Sendable, CaseIterable {
    case hinge
    case nonSaturating = "non-saturating"
}

public enum AdversarialLoss {
    /// The discriminator loss, 0.5 (loss_real + loss_fake):
    /// - hinge: mean(relu(1 - real)) and mean(relu(1 + fake));
    /// - vanilla: mean(softplus(-real)) and mean(softplus(fake));
    /// - non-saturating, as the official code computes it. It calls
    ///   `binary_cross_entropy_with_logits(ones_like(real), real)`, i.e. with the constant 1 as
    ///   the *logit* and the discriminator's logits as the *target*. BCE(logit z, target t) =
    ///   t softplus(-z) + (1 - t) softplus(z), so with z = 1 the real term is
    ///   softplus(1) - mean(real) (linear in the logits, like hinge without the margin) and with
    ///   z = 0 the fake term is log 2 whatever the logits: no gradient reaches the fake branch.
    ///   We reproduce that value; it is not the textbook non-saturating loss.
    public static func discriminator(_ kind: DiscriminatorLoss, logitsReal real: Tensor, logitsFake fake: Tensor) -> Tensor {
        switch kind {
        case .hinge:
            return ((1 - real).relu().mean() + (1 + fake).relu().mean()) * 0.5
        case .vanilla:
            return ((real * -1).softplus().mean() + fake.softplus().mean()) * 0.5
        case .nonSaturating:
            return (bceWithConstantLogit(1, targets: real) + bceWithConstantLogit(0, targets: fake)) * 0.5
        }
    }

    /// The generator's adversarial loss on the logits of its reconstructions:
    /// - hinge: -mean(fake);
    /// - non-saturating, as the official code computes it: `bce_with_logits(ones_like(fake), fake)`
    ///   (logit 1, target fake) = softplus(1) - mean(fake), i.e. hinge plus log(1 + e).
    public static func generator(_ kind: GeneratorLoss, logitsFake fake: Tensor) -> Tensor {
        switch kind {
        case .hinge: return fake.mean() * -1
        case .nonSaturating: return bceWithConstantLogit(1, targets: fake)
        }
    }

    /// mean(BCE(logit z, target t)) = mean(t softplus(-z) + (1 - t) softplus(z)) for a constant
    /// logit z: softplus(z) - z mean(t) (since softplus(z) - softplus(-z) = z).
    static func bceWithConstantLogit(_ z: Float, targets t: Tensor) -> Tensor {
        let spPos = Float(log1p(exp(Double(z)))), spNeg = Float(log1p(exp(Double(-z))))
        return (t * spNeg + (1 - t) * spPos).mean()
    }

    /// LeCAM regularization against the EMAs (the official order: update the EMAs with this
    /// batch first, then regularize): mean(relu(real - ema_fake)^2) + mean(relu(ema_real - fake)^2).
    public static func lecamRegularization(logitsReal real: Tensor, logitsFake fake: Tensor, ema: LeCAMEMA) -> Tensor {
        (real - Float(ema.logitsFake)).relu().square().mean() + (Float(ema.logitsReal) - fake).relu().square().mean()
    }

    /// taming's adaptive weight ||dNLL/dlast|| / (||dG/dlast|| + 1e-4), clamped to [0, 1e4], from
    /// the gradients of the reconstruction (+ perceptual) loss and of the generator's adversarial
    /// loss with respect to the decoder's last layer. Norms in Double, the ratio in float32.
    public static func adaptiveWeight(nllGradient: Tensor, generatorGradient: Tensor) -> Float {
        func norm(_ t: Tensor) -> Float {
            var s = 0.0
            for i in 0..<t.count { s += Double(t.pointer[i]) * Double(t.pointer[i]) }
            return Float(s.squareRoot())
        }
        let w = norm(nllGradient) / (norm(generatorGradient) + 1e-4)
        return w.isNaN ? w : min(max(w, 0), 1e4)
    }

    /// The official adopt_weight: `weight` from step `threshold` on, `value` (0) before.
    public static func adoptWeight(_ weight: Float, step: Int, threshold: Int, value: Float = 0) -> Float {
        step < threshold ? value : weight
    }
}

/// LeCAM's exponential moving averages of the mean real and fake logits (official LeCAM_EMA:
/// init 0, decay 0.999, updated in Python floats, i.e. Double, from float32 means).
public struct LeCAMEMA: Codable, Equatable, Sendable {
    public var logitsReal: Double
    public var logitsFake: Double
    public var decay: Double

    public init(initial: Double = 0, decay: Double = 0.999) {
        logitsReal = initial
        logitsFake = initial
        self.decay = decay
    }

    /// ema = ema decay + mean(logits) (1 - decay).
    public mutating func update(logitsReal real: Tensor, logitsFake fake: Tensor) {
        update(meanReal: Double(Autograd.noGrad { real.mean() }.item), meanFake: Double(Autograd.noGrad { fake.mean() }.item))
    }

    /// The same update from the batch means (a data-parallel job passes the global batch's).
    public mutating func update(meanReal: Double, meanFake: Double) {
        logitsReal = logitsReal * decay + meanReal * (1 - decay)
        logitsFake = logitsFake * decay + meanFake * (1 - decay)
    }
}
