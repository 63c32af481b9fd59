// One SiT training step (the official train.py loop body): the flow-matching loss, backward,
// gradient clipping, AdamW and the EMA update; and the trainer's tensors in a checkpoint folder
// (the run folder around them, state.json and atomicity belong to Pipeline's TrainingRun).

import Foundation
import Tensor

/// Statistics of one training step.
public struct TrainStepStats: Sendable {
    public let step: Int
    public let loss: Float
    /// Global gradient norm before clipping.
    public let gradNorm: Float
    public let lr: Float
}

/// One model, its EMA copy, AdamW and the objective. Each sample's noise, time and label dropout
/// come from `rng.split(key)` with the sample's key (its position in the data order), so `step`
/// is deterministic given the keys and does not depend on how a batch is split across processes.
public final class SiTTrainer {
    public let model: SiT
    /// The exponential moving average of the model (nil to skip EMA).
    public let ema: SiT?
    public let optimizer: AdamW
    public var objective: FlowMatchingObjective
    public var schedule: LRSchedule
    public var maxGradNorm: Float
    public var emaDecay: Float
    /// The generator the per-sample generators are split from (it does not advance).
    public var rng: RandomGenerator
    public private(set) var stepCount: Int = 0
    /// Called after backward and before clipping with the parameters whose gradients the step
    /// uses (data-parallel training sums the ranks' gradients here).
    public var reduceGradients: (([Tensor]) throws -> Void)?

    /// Defaults follow the official training script: AdamW lr 1e-4, betas (0.9, 0.999), eps 1e-8,
    /// weight decay 0, gradient clipping at 1, EMA decay 0.9999 (EMA initialized to the model).
    public init(model: SiT, ema: SiT? = nil, objective: FlowMatchingObjective? = nil,
                schedule: LRSchedule = .constant(1e-4), weightDecay: Float = 0,
                betas: (Float, Float) = (0.9, 0.999), eps: Float = 1e-8,
                maxGradNorm: Float = 1, emaDecay: Float = 0.9999, rng: RandomGenerator) {
        self.model = model
        self.ema = ema
        ema?.copyValues(from: model)
        self.objective = objective ?? FlowMatchingObjective(for: model.config)
        self.schedule = schedule
        optimizer = AdamW(model.trainableParameters(), lr: schedule.lr(at: 0), betas: betas, eps: eps,
                          weightDecay: weightDecay)
        self.maxGradNorm = maxGradNorm
        self.emaDecay = emaDecay
        self.rng = rng
    }

    /// Continue from a saved position (step counter for the LR schedule).
    public func restore(step: Int, rng: RandomGenerator) {
        stepCount = step
        self.rng = rng
    }

    /// One step on a batch of (normalized) latents x0 (N, ...) with labels: loss, backward,
    /// clip, AdamW, EMA. `sampleKeys` name each sample's random stream (default: the sample's
    /// index in the run, stepCount * N + i).
    @discardableResult
    public func step(latents x0: Tensor, labels: [Int], sampleKeys: [UInt64]? = nil) throws -> TrainStepStats {
        model.zeroGrad()
        let n = x0.dim(0)
        let keys = sampleKeys ?? (0..<n).map { UInt64(stepCount * n + $0) }
        let (loss, _) = try objective.loss(model: model, x0: x0, labels: labels, generators: keys.map { rng.split($0) })
        let value = loss.item
        guard value.isFinite else { throw SiTError.nonFinite("training loss \(value) at step \(stepCount)") }
        loss.backward()
        let params = optimizer.parameters
        try reduceGradients?(params.compactMap { $0.1.grad == nil ? nil : $0.1 })
        let norm = gradientNorm(params)
        let lr = schedule.lr(at: stepCount)
        optimizer.lr = lr
        Autograd.noGrad {
            optimizer.update(gradientScale: clipCoefficient(norm: norm, maxNorm: maxGradNorm))
            if let ema { EMA.update(ema, from: model, decay: EMA.warmedUp(emaDecay, updates: stepCount)) }
        }
        model.zeroGrad()
        stepCount += 1
        return TrainStepStats(step: stepCount, loss: value, gradNorm: norm, lr: lr)
    }
}

// MARK: - Checkpoint files

extension SiTTrainer {
    /// Writes the trainer's tensors into `folder` (which exists): the EMA model (or the model
    /// without EMA) as `config.json` + `model.safetensors` (what users load),
    /// and, in its `training/` subfolder, `train-model.safetensors` (raw weights) and
    /// `optimizer.safetensors` (AdamW moments).
    public func save(into folder: String) throws {
        try (ema ?? model).save(folder: folder)
        let training = try trainingFiles(of: folder, creating: true)
        try model.save(to: training + "/train-model.safetensors")
        try optimizer.save(to: training + "/optimizer.safetensors")
    }

    /// Restores what `save(into:)` wrote (same architecture), then the step counter and generator.
    public func restore(from folder: String, step: Int, rng: RandomGenerator) throws {
        let training = try trainingFiles(of: folder)
        try model.load(from: SafeTensorsFile(path: training + "/train-model.safetensors"))
        try ema?.load(from: SafeTensorsFile(path: folder + "/model.safetensors"))
        try optimizer.load(from: training + "/optimizer.safetensors")
        restore(step: step, rng: rng)
    }
}
