// Modules: classes that hold parameters under their official PyTorch key fragments, and one
// recursive enumeration of key paths (`blocks.3.attn.qkv.weight`) used by loading, saving and
// the optimizers.

import Foundation

/// One named entry of a module: a tensor (parameter or buffer), a child module, or an indexed
/// list of child modules (`blocks.0`, `blocks.1`, ...).
public enum ModuleEntry {
    case tensor(Tensor)
    case module(any Module)
    case modules([any Module])
}

public protocol Module: AnyObject {
    /// Direct entries under their key fragments, in state-dict order.
    var entries: [(String, ModuleEntry)] { get }
}

extension Module {
    /// Every tensor under its full key path, in state-dict order (parameters and buffers).
    public func namedTensors(prefix: String = "") -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        func walk(_ m: any Module, _ p: String) {
            for (key, entry) in m.entries {
                let path = p.isEmpty ? key : p + "." + key
                switch entry {
                case let .tensor(t): out.append((path, t))
                case let .module(child): walk(child, path)
                case let .modules(list): for (i, child) in list.enumerated() { walk(child, path + ".\(i)") }
                }
            }
        }
        walk(self, prefix)
        return out
    }

    /// Prepares the module for inference: no tensor trains (requiresGrad false, gradients
    /// dropped). Frozen Linear weights run through the matmul engine with weights packed once
    /// (`Engine.swift`); they may still change through the mutation APIs (load, assign, fill,
    /// EMA, `markModified` after raw writes), which repack them.
    public func freeze() {
        for (_, t) in namedTensors() {
            t.requiresGrad = false
            t.grad = nil
        }
    }

    /// Tensors that train (requiresGrad), in state-dict order.
    public func trainableParameters() -> [(String, Tensor)] { namedTensors().filter { $0.1.requiresGrad } }

    public var parameterCount: Int { namedTensors().reduce(0) { $0 + $1.1.count } }

    public func zeroGrad() { for (_, t) in namedTensors() { t.grad = nil } }

    /// Loads every tensor strictly from a safetensors file: every key present, shapes equal,
    /// and no key of the file unused unless `skip` accepts it. Returns the skipped keys.
    /// Tensors whose key `read` rejects are checked but not read (their values stay as they were).
    @discardableResult
    public func load(from file: SafeTensorsFile, prefix: String = "", skip: (String) -> Bool = { _ in false },
                     read: (String) -> Bool = { _ in true }) throws -> [String] {
        let name = (file.path as NSString).lastPathComponent
        let own = namedTensors()
        var used = Set<String>()
        for (key, t) in own {
            let full = prefix + key
            guard let info = file.entries[full] else { throw CheckpointError.missingKey(name, full) }
            guard info.shape == t.shape else {
                throw CheckpointError.shapeMismatch(full, expected: t.shape, found: info.shape, file: name)
            }
            used.insert(full)
        }
        let unused = file.names.filter { $0.hasPrefix(prefix) && !used.contains($0) }
        let skipped = unused.filter(skip)
        let rejected = unused.filter { !skip($0) }
        guard rejected.isEmpty else { throw CheckpointError.unexpectedKeys(name, rejected) }
        // Only write once everything checked out, so a failed load leaves the model untouched.
        for (key, t) in own where read(key) {
            try file.read(file.entries[prefix + key]!, into: t.pointer)
            t.markModified()
        }
        return skipped
    }

    /// Saves every tensor under its key path (atomically).
    public func save(to path: String, dtype: DType = .f32, metadata: [String: String] = [:]) throws {
        try writeSafeTensors(namedTensors(), to: path, dtype: dtype, metadata: metadata)
    }

    /// Copies all tensor values from a module of the same architecture.
    public func copyValues(from other: any Module) {
        let mine = namedTensors(), theirs = other.namedTensors()
        precondition(mine.count == theirs.count, "copyValues: different architectures")
        for ((k1, a), (k2, b)) in zip(mine, theirs) {
            precondition(k1 == k2 && a.shape == b.shape, "copyValues: \(k1) vs \(k2)")
            a.assign(b)
        }
    }
}

/// Where a training checkpoint folder keeps what only training needs (raw weights, optimizer
/// moments, state.json): its `training/` subfolder, so the folder itself holds just the model
/// (config.json, model.safetensors, README.md). Checkpoints written before this layout kept
/// those files beside the model; they are read from there.
public func trainingFiles(of checkpoint: String, creating: Bool = false) throws -> String {
    let nested = checkpoint + "/training"
    if creating {
        try FileManager.default.createDirectory(atPath: nested, withIntermediateDirectories: true)
        return nested
    }
    let legacy = FileManager.default.fileExists(atPath: checkpoint + "/train-model.safetensors")
        || FileManager.default.fileExists(atPath: checkpoint + "/state.json")
    return legacy && !FileManager.default.fileExists(atPath: nested) ? checkpoint : nested
}
