// Reverse-mode automatic differentiation.
//
// An op records a `TapeNode` on its output only while recording is on (`Autograd.isRecording`)
// and at least one input requires a gradient; in inference no node is allocated. A node keeps
// the op's inputs, whatever the forward saved (captured by the closure) and its backward. The
// backward pass is a topological sort from the loss plus a reverse walk; gradients of a tensor
// used several times are summed before its own backward runs.

import Foundation

final class TapeNode {
    let inputs: [Tensor]
    /// Given dL/d(output) and which inputs need a gradient, returns dL/d(input) for those
    /// (nil elsewhere). Each returned gradient has exactly its input's shape.
    let backward: (Tensor, [Bool]) -> [Tensor?]
    let name: String

    init(name: String, inputs: [Tensor], backward: @escaping (Tensor, [Bool]) -> [Tensor?]) {
        self.name = name
        self.inputs = inputs
        self.backward = backward
    }
}

public enum Autograd {
    @TaskLocal static var disabled = false

    /// True when ops record the tape (the default).
    public static var isRecording: Bool { !disabled }

    /// Runs `body` without recording the tape (inference, EMA updates, optimizer steps).
    public static func noGrad<T>(_ body: () throws -> T) rethrows -> T {
        try $disabled.withValue(true) { try body() }
    }
}

extension Tensor {
    /// Attaches a tape node to `self` (an op's fresh output) if recording and any input needs it.
    @inline(__always)
    func record(_ name: String, _ inputs: [Tensor], _ backward: @escaping (Tensor, [Bool]) -> [Tensor?]) -> Tensor {
        guard !Autograd.disabled, inputs.contains(where: { $0.requiresGrad }) else { return self }
        requiresGrad = true
        node = TapeNode(name: name, inputs: inputs, backward: backward)
        return self
    }

    /// Back-propagates from this tensor. A scalar uses dL/dself = 1; otherwise pass `gradient`.
    /// Leaf tensors with `requiresGrad` accumulate into `.grad`.
    public func backward(_ gradient: Tensor? = nil) {
        let seed = gradient ?? Tensor(repeating: 1, shape: shape)
        precondition(seed.shape == shape, "backward: gradient shape \(seed.shape) for tensor \(shape)")

        // Topological order (iterative DFS; models are deep enough to overflow a recursive one).
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [(Tensor, Bool)] = [(self, false)]
        while let (t, expanded) = stack.popLast() {
            if expanded { order.append(t); continue }
            let id = ObjectIdentifier(t)
            if visited.contains(id) { continue }
            visited.insert(id)
            stack.append((t, true))
            if let node = t.node {
                for input in node.inputs where input.requiresGrad && !visited.contains(ObjectIdentifier(input)) {
                    stack.append((input, false))
                }
            }
        }

        var grads: [ObjectIdentifier: Tensor] = [ObjectIdentifier(self): seed]
        Autograd.noGrad {
            for t in order.reversed() {
                let id = ObjectIdentifier(t)
                guard let g = grads.removeValue(forKey: id) else { continue }
                guard let node = t.node else {
                    // Leaf: accumulate.
                    if let existing = t.grad { t.grad = existing.adding(g) } else { t.grad = g.isolated() }
                    continue
                }
                let needs = node.inputs.map { $0.requiresGrad }
                let inputGrads = node.backward(g, needs)
                t.node = nil   // free what the forward saved as soon as it has been used
                precondition(inputGrads.count == node.inputs.count, "\(node.name): wrong number of gradients")
                for (input, ig) in zip(node.inputs, inputGrads) {
                    guard input.requiresGrad, let ig else { continue }
                    precondition(ig.shape == input.shape,
                                 "\(node.name): gradient shape \(ig.shape) for input \(input.shape)")
                    let iid = ObjectIdentifier(input)
                    if let existing = grads[iid] {
                        grads[iid] = existing.adding(ig)
                    } else {
                        grads[iid] = ig
                    }
                }
            }
        }
    }

    /// A tensor that owns its storage (so later in-place accumulation cannot alias a view).
    func isolated() -> Tensor { storage.count == count && offset == 0 ? self.detached() : copy() }

    /// Elementwise sum of equal shapes into a new tensor, never recorded.
    func adding(_ other: Tensor) -> Tensor {
        precondition(shape == other.shape)
        let out = Tensor(uninitialized: shape)
        let a = pointer, b = other.pointer, o = out.pointer
        parallelFor(count, grain: 1 << 15) { lo, hi in
            for i in lo..<hi { o[i] = a[i] + b[i] }
        }
        return out
    }
}
