// Tensor: float32, contiguous, row-major storage with a shape.
//
// A Tensor is a reference (like a PyTorch tensor): layers hold their parameters as Tensors and
// loading a checkpoint copies new values into the same storage. Every tensor is contiguous;
// `reshape` and leading-axis slices are views on the same storage, everything else that changes
// the layout (permute, transpose) materializes a new buffer.

import Foundation

/// Aligned float buffer shared by a tensor and its views.
public final class Storage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int
    /// Bumped by every mutation API (`assign`, `fill`, `markModified`, loading, AdamW, EMA, the
    /// initialization fills): copies derived from the values (the packed weights of the matmul
    /// engine) are rebuilt when it changed. Code that writes parameters through `pointer` calls
    /// `markModified()` afterwards.
    public private(set) var version: UInt64 = 0

    public func markModified() { version &+= 1 }

    public init(count: Int) {
        self.count = count
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }
}

public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let storage: Storage
    /// Element offset of this view into `storage`.
    public let offset: Int
    /// Whether gradients flow to this tensor (parameters set it; op outputs inherit it while
    /// the tape records).
    public var requiresGrad: Bool
    /// Accumulated gradient of a leaf after `backward()`.
    public var grad: Tensor?
    /// The tape node that produced this tensor (nil for leaves and in inference).
    var node: TapeNode?

    public var count: Int { shape.reduce(1, *) }
    public var rank: Int { shape.count }
    public var pointer: UnsafeMutablePointer<Float> { storage.pointer + offset }

    public init(storage: Storage, shape: [Int], offset: Int = 0, requiresGrad: Bool = false) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in shape \(shape)")
        precondition(offset + shape.reduce(1, *) <= storage.count, "view exceeds storage")
        self.storage = storage
        self.shape = shape
        self.offset = offset
        self.requiresGrad = requiresGrad
    }

    /// Uninitialized tensor (callers fill every element).
    public convenience init(uninitialized shape: [Int]) {
        self.init(storage: Storage(count: shape.reduce(1, *)), shape: shape)
    }

    public convenience init(zeros shape: [Int], requiresGrad: Bool = false) {
        self.init(repeating: 0, shape: shape, requiresGrad: requiresGrad)
    }

    public convenience init(repeating value: Float, shape: [Int], requiresGrad: Bool = false) {
        let n = shape.reduce(1, *)
        let s = Storage(count: n)
        s.pointer.initialize(repeating: value, count: n)
        self.init(storage: s, shape: shape, requiresGrad: requiresGrad)
    }

    public convenience init(_ values: [Float], shape: [Int], requiresGrad: Bool = false) {
        precondition(values.count == shape.reduce(1, *),
                     "\(values.count) values do not fill shape \(shape)")
        let s = Storage(count: values.count)
        values.withUnsafeBufferPointer { s.pointer.initialize(from: $0.baseAddress!, count: values.count) }
        self.init(storage: s, shape: shape, requiresGrad: requiresGrad)
    }

    public convenience init(scalar: Float) { self.init([scalar], shape: []) }

    public var scalars: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
    public var item: Float {
        precondition(count == 1, "item() needs a one-element tensor, got shape \(shape)")
        return pointer[0]
    }
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }

    /// A copy with its own storage, outside the tape.
    public func copy() -> Tensor {
        let out = Tensor(uninitialized: shape)
        out.pointer.update(from: pointer, count: count)
        return out
    }

    /// The same values, cut from the tape (PyTorch's `detach`).
    public func detached() -> Tensor { Tensor(storage: storage, shape: shape, offset: offset) }

    /// Overwrites the values in place (shapes must hold the same number of elements).
    public func assign(_ other: Tensor) {
        precondition(other.count == count, "assign: \(other.shape) into \(shape)")
        pointer.update(from: other.pointer, count: count)
        markModified()
    }

    public func fill(_ value: Float) {
        pointer.update(repeating: value, count: count)
        markModified()
    }

    /// Declares that the values were changed through `pointer` (invalidates packed copies).
    public func markModified() { storage.markModified() }

    public func zeroGrad() { grad = nil }

    /// Size of axis `i`, negative counting from the end.
    public func dim(_ i: Int) -> Int { shape[i < 0 ? shape.count + i : i] }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = scalars.prefix(8).map { String(format: "%.5g", $0) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(head)\(count > 8 ? ", ..." : "")])"
    }
}

/// Strides of a contiguous row-major shape.
@inline(__always)
public func contiguousStrides(_ shape: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: shape.count)
    var acc = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
        strides[i] = acc
        acc *= shape[i]
    }
    return strides
}
