import Tensor

extension TokenizerTrainer {
    /// Continues from a saved step (the learning-rate schedule position); weights and optimizer
    /// state are loaded separately.
    public func restore(step: Int) { self.step = step }
}
