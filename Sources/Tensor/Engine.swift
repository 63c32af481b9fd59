// The matmul engine of inference: oneDNN 2.6 matmul primitives, cached per shape, over weights
// packed once into the layout the primitive asks for (oneDNN's `format_tag::any`), in the
// precision the CPU computes fastest.
//
// - Where packed weights live: each `Linear` owns a `PackedWeight` handle holding the weight in
//   oneDNN's layout and data type (or, when that layout is the weight's own [out, in] float32
//   layout, nothing but a reference to it: no copy).
// - Invalidation: a pack remembers the weight's storage `version` (bumped by every mutation API:
//   assign, fill, markModified, Module.load, AdamW, EMA, the initialization fills) and a
//   fingerprint of 64 sampled values; either changing repacks before the next product. The
//   fingerprint only catches whole-tensor rewrites that forgot `markModified()`, not single edits.
// - When it is used: a Linear's forward when its weight is frozen (requiresGrad false: a model
//   prepared for inference with `Module.freeze()`), no tape records and the backend is oneDNN.
//   In fp32, trainable weights never get a pack: training and finite-difference checks edit
//   them through `pointer` at any time, and they always take the OpenBLAS path, which reads them
//   afresh. (bf16 training on bf16 hardware does pack them, see below: there only the optimizer
//   changes them, and it bumps the version.) fp32 training forwards and every fp32 backward
//   stay on OpenBLAS sgemm, and so do products of at most
//   `streamingRowLimit` rows in fp32, where the few-rows kernel that streams each weight row
//   once is faster (measured: `gen bench kernels`).
// - Mixed-precision training (precision bf16 with the tape recording, or a trainable weight):
//   the three products of a Linear take bf16 operands with fp32 accumulation, forward
//   y = bf16(x) bf16(W)^T + b and backward dX = bf16(dY) bf16(W), dW = bf16(dY)^T bf16(X)
//   (db = column sums of dY in fp32). The master weights, AdamW state, bias, activations and
//   loss stay fp32. On bf16 hardware they run on oneDNN: the forward over the weight packed
//   in bf16 (repacked after each optimizer step, which bumps the weight's version), the
//   backward over bf16 copies made per call (dY, W, and dY^T, X in plain row-major layouts).
//   `Engine.bf16Reference` computes the same products in software instead (operands rounded
//   to bf16 with round-to-nearest-even, then sgemm in fp32: products of two bf16 values are
//   exact in fp32, so only the summation order differs from the hardware): the oracle of the
//   hardware path and what the mixed-precision tests run on CPUs without bf16.
// - Threads: Debian's libdnnl runs on GNU OpenMP; every call sets OpenMP's thread count of the
//   calling thread to `Threads.count`.
// - Concurrency: primitive creation, packing and execution are serialized by one lock (oneDNN's
//   library-managed scratchpad is per primitive; no caller runs models concurrently).

import CDNNL
import CKernels
import Foundation

/// Matmul precision of inference. `auto` resolves to bf16 where the CPU has AVX512-BF16 or AMX
/// (oneDNN's effective ISA, or the cpuid flags) and oneDNN builds bf16 matmuls, else to fp32.
public enum Precision: String, CaseIterable, Sendable, Codable {
    case auto, fp32, bf16
}

/// Which library runs the inference Linear products (`GEN_ENGINE=openblas` selects the old path).
public enum MatmulBackend: String, CaseIterable, Sendable, Codable {
    case openblas, onednn
}

public struct EngineError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum Engine {
    /// The backend of inference Linears (default oneDNN when it initializes; `GEN_ENGINE`).
    nonisolated(unsafe) public static var backend: MatmulBackend = {
        let env = ProcessInfo.processInfo.environment["GEN_ENGINE"].flatMap(MatmulBackend.init(rawValue:))
        return OneDNN.shared == nil ? .openblas : (env ?? .onednn)
    }()

    /// The resolved precision of inference matmuls (never `.auto`); set with `setPrecision`.
    nonisolated(unsafe) public private(set) static var precision: Precision = .fp32

    /// bf16 products computed by the software reference instead of oneDNN (set by
    /// `useBF16Reference`; for tests and numerics studies on any CPU, never by the CLI).
    nonisolated(unsafe) public private(set) static var bf16Reference = false

    /// Switches to bf16 products computed by the software reference (any CPU); `setPrecision`
    /// switches back.
    public static func useBF16Reference() {
        precision = .bf16
        bf16Reference = true
    }

    /// In fp32, products of at most this many rows (and a weight of at least 64 Ki values) use the
    /// streaming few-rows kernel instead of oneDNN. At 1-2 rows the product is bound by reading
    /// the weight, which that kernel does once at full bandwidth; from 4 rows oneDNN's
    /// register-blocked kernel wins (`gen bench kernels`, AMD EPYC Zen and Intel Sapphire Rapids).
    nonisolated(unsafe) public static var streamingRowLimit = 2

    /// Resolves `auto` and checks that bf16 can run here; throws one sentence otherwise.
    public static func resolve(_ requested: Precision) throws -> Precision {
        switch requested {
        case .fp32: return .fp32
        case .auto: return bf16Available ? .bf16 : .fp32
        case .bf16:
            guard let dnnl = OneDNN.shared else {
                throw EngineError("--precision bf16 needs oneDNN, which failed to initialize on this machine; use --precision fp32.")
            }
            guard bf16Available else {
                throw EngineError("--precision bf16 needs a CPU with AVX512-BF16 or AMX, and this \(cpuName) has neither (oneDNN \(dnnl.version) dispatches to \(dnnl.isaName) and has no bf16 matmul for it); use --precision fp32 or auto.")
            }
            return .bf16
        }
    }

    /// Sets the precision of inference matmuls (resolving `auto`); bf16 also selects oneDNN.
    @discardableResult
    public static func setPrecision(_ requested: Precision) throws -> Precision {
        let p = try resolve(requested)
        precision = p
        bf16Reference = false
        if p == .bf16 { backend = .onednn }
        return p
    }

    /// The CPU's model name (`/proc/cpuinfo`).
    public static let cpuName: String = {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            if let v = line.split(separator: ":", maxSplits: 1).last { return v.trimmingCharacters(in: .whitespaces) }
        }
        return "unknown CPU"
    }()

    /// The cpuid flags `avx512_bf16` / `amx_bf16` (whether the hardware has bf16 arithmetic).
    public static let cpuBF16Flags: [String] = {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
        let flags = Set(line.split(separator: " ").map(String.init))
        return ["avx512_bf16", "amx_bf16"].filter(flags.contains)
    }()

    /// oneDNN's effective ISA (`dnnl_get_effective_cpu_isa`), or "none" without oneDNN.
    public static var isa: String { OneDNN.shared?.isaName ?? "none" }

    /// Whether bf16 matmuls run here: oneDNN's ISA includes AVX512-BF16 (or AMX), or the cpuid
    /// flags say so, and oneDNN builds a bf16 matmul primitive.
    public static let bf16Available: Bool = {
        guard let dnnl = OneDNN.shared else { return false }
        guard dnnl.isaHasBF16 || !cpuBF16Flags.isEmpty else { return false }
        return dnnl.canBuildBF16
    }()

    /// Why a precision was picked, for the engine line.
    public enum PrecisionReason: Sendable {
        /// `--precision auto` (or no option): from the CPU.
        case auto
        /// `--precision fp32|bf16` as given.
        case requested
        /// A resumed training run keeps the precision recorded in its state.
        case recorded
    }

    /// One line for the top of a command's output: which engine runs the products, in which
    /// precision and why, with the ISA, threads and CPU. `training`: the line of a training
    /// command (its products run on trainable weights).
    public static func summary(requested: Precision? = nil, reason: PrecisionReason? = nil, training: Bool = false) -> String {
        let dnnl = OneDNN.shared
        let why: String
        switch reason ?? (requested == .auto ? .auto : requested == nil ? nil : .requested) {
        case .auto?: why = bf16Available ? "auto: the CPU has bf16 hardware" : "auto: no AVX512-BF16 or AMX on this CPU"
        case .requested?: why = "--precision \(precision.rawValue)"
        case .recorded?: why = "recorded in the run being resumed"
        case nil: why = ""
        }
        var s = "Engine: ", tail = ""
        if training {
            if precision == .bf16 {
                s += bf16Reference ? "training products in the software bf16 reference, bf16 operands with fp32 sums"
                    : "training products on oneDNN \(dnnl?.version ?? "?") (ISA \(isa)), bf16 with fp32 accumulation"
                tail = "; attention, master weights, AdamW state and losses in fp32"
            } else {
                s += "training products on OpenBLAS sgemm, fp32"
                if let dnnl { tail = "; oneDNN \(dnnl.version) (ISA \(dnnl.isaName)) runs frozen models" }
            }
        } else {
            switch backend {
            case .onednn: s += "oneDNN \(dnnl?.version ?? "?") (ISA \(isa))"
            case .openblas: s += "OpenBLAS sgemm" + (dnnl.map { " (oneDNN \($0.version) available, ISA \($0.isaName))" } ?? "")
            }
            s += ", \(precision.rawValue) matmuls"
        }
        if !why.isEmpty { s += " (\(why))" }
        s += ", \(Threads.count) threads, \(cpuName)" + tail
        return s
    }

    /// OpenMP's thread count for oneDNN on the calling thread (set to `Threads.count` by every
    /// product).
    public static var openMPThreads: Int { Int(omp_get_max_threads()) }

    /// The oneDNN implementation chosen for an (m, k) x (k, n) product (e.g. "gemm:jit",
    /// "brg:avx512_core_amx"), for the benchmarks' reports.
    public static func implementation(m: Int, k: Int, n: Int, precision: Precision = .fp32) -> String? {
        guard let dnnl = OneDNN.shared else { return nil }
        return dnnl.withLock { try? dnnl.primitive(m: m, k: k, n: n, bf16: precision == .bf16, bias: false, layout: nil).impl }
    }
}

// MARK: - Packed weights

/// A weight reordered once into the layout and data type of oneDNN's matmul primitive, owned by
/// the Linear whose weight it mirrors (only while that weight is frozen). Rebuilt when the
/// weight's storage version or fingerprint changed, or the precision did.
public final class PackedWeight: @unchecked Sendable {
    fileprivate var layout = dnnl_memory_desc_t()
    fileprivate var bf16 = false
    /// The packed copy; nil when the weight's own storage is the packed layout (fp32 [out, in]).
    fileprivate var buffer: UnsafeMutableRawPointer?
    fileprivate var bufferBytes = 0
    fileprivate var source: Storage?
    fileprivate var offset = 0
    fileprivate var version: UInt64 = 0
    fileprivate var fingerprint: UInt64 = 0
    /// How many times the weight was packed (tests check that an update repacks).
    public fileprivate(set) var packCount = 0

    public init() {}

    /// Bytes of the packed copy (0 when none is held).
    public var bytes: Int { bufferBytes }

    /// Drops the packed copy (it is rebuilt on the next inference product).
    public func invalidate() {
        buffer?.deallocate()
        buffer = nil
        bufferBytes = 0
        source = nil
    }

    deinit { buffer?.deallocate() }

    fileprivate func isCurrent(for weight: Tensor, bf16: Bool) -> Bool {
        guard let source, source === weight.storage, offset == weight.offset, self.bf16 == bf16,
              version == weight.storage.version else { return false }
        return fingerprint == PackedWeight.fingerprint(weight)
    }

    /// 64 values sampled evenly (the first and last included), hashed (FNV-1a over the bits).
    static func fingerprint(_ t: Tensor) -> UInt64 {
        let n = t.count, p = t.pointer
        guard n > 0 else { return 0 }
        let samples = Swift.min(n, 64)
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for s in 0..<samples {
            let i = samples == 1 ? 0 : s * (n - 1) / (samples - 1)
            h = (h ^ UInt64(p[i].bitPattern)) &* 0x0000_0100_0000_01B3
        }
        return h
    }

    /// The data pointer oneDNN reads.
    fileprivate func data(_ weight: Tensor) -> UnsafeRawPointer {
        UnsafeRawPointer(buffer ?? UnsafeMutableRawPointer(weight.pointer))
    }
}

// MARK: - The Linear forward through the engine

/// y = x W^T + b for a Linear layer. In bf16: mixed-precision products when training (the tape
/// records or the weight is trainable), else oneDNN over the weight packed in bf16; either in
/// the software reference under `Engine.bf16Reference`. In fp32: through oneDNN with the packed
/// weight when the weight is frozen, no tape records and the backend is oneDNN; otherwise (and
/// for few rows) the OpenBLAS `linear`.
public func engineLinear(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, packed: PackedWeight) -> Tensor {
    let inF = weight.dim(1), outF = weight.dim(0)
    let rows = x.count / Swift.max(inF, 1)
    let recording = Autograd.isRecording && (x.requiresGrad || weight.requiresGrad || bias?.requiresGrad == true)
    let precision = Engine.precision
    if precision == .bf16 && x.dim(-1) == inF && rows > 0 && inF > 0 && outF > 0 {
        if Engine.bf16Reference || OneDNN.shared == nil { return bf16ReferenceLinear(x, weight, bias) }
        if recording || weight.requiresGrad { return oneDNNTrainingLinear(x, weight, bias, packed: packed, bf16: true) }
    }
    guard !weight.requiresGrad, !recording, Engine.backend == .onednn, let dnnl = OneDNN.shared, x.dim(-1) == inF, rows > 0, inF > 0, outF > 0,
          !(precision == .fp32 && rows <= Engine.streamingRowLimit && inF * outF >= 1 << 16) else {
        return linear(x, weight, bias)
    }
    if let bias { precondition(bias.count == outF, "linear: bias \(bias.shape) for \(outF) outputs") }
    let out = Tensor(uninitialized: Array(x.shape.dropLast()) + [outF])
    do {
        try dnnl.linear(x: x, rows: rows, weight: weight, bias: bias, packed: packed, bf16: precision == .bf16, out: out)
    } catch {
        fatalError("oneDNN matmul (\(rows) x \(inF) . \(inF) x \(outF), \(precision.rawValue)): \(error)")
    }
    return out
}

/// A copy of `t` rounded to bf16 (round to nearest even), as float32 values.
public func roundedToBF16(_ t: Tensor) -> Tensor {
    let out = Tensor(uninitialized: t.shape)
    let px = t.pointer, po = out.pointer
    parallelFor(t.count, grain: 1 << 15) { lo, hi in ck_round_bf16(px + lo, po + lo, hi - lo) }
    return out
}

/// The software reference of a mixed-precision Linear: forward bf16(x) bf16(W)^T + b, backward
/// dX = bf16(dY) bf16(W), dW = bf16(dY)^T bf16(X), db = colsum(dY), each product summed in
/// fp32 by sgemm (exact products of bf16 operands; only the summation order differs from
/// oneDNN's bf16 kernels).
public func bf16ReferenceLinear(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?) -> Tensor {
    let inF = weight.dim(1), outF = weight.dim(0)
    let rows = x.count / inF
    let xr = roundedToBF16(x), wr = roundedToBF16(weight)
    let out = Autograd.noGrad { linear(xr, wr, bias) }
    let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
    return out.record("linear_bf16_reference", inputs) { g, needs in
        let gr = roundedToBF16(g)
        var grads: [Tensor?] = [nil, nil]
        if needs[0] {
            let dx = Tensor(uninitialized: x.shape)   // (rows, out) x (out, in)
            sgemm(transA: false, transB: false, m: rows, n: inF, k: outF, a: gr.pointer, lda: outF,
                  b: wr.pointer, ldb: inF, c: dx.pointer, ldc: inF)
            grads[0] = dx
        }
        if needs[1] {
            let dw = Tensor(uninitialized: weight.shape)   // (out, rows) x (rows, in)
            sgemm(transA: true, transB: false, m: outF, n: inF, k: rows, a: gr.pointer, lda: outF,
                  b: xr.pointer, ldb: inF, c: dw.pointer, ldc: inF)
            grads[1] = dw
        }
        if inputs.count == 3 {
            grads.append(needs[2] ? columnSums(g.pointer, rows: rows, width: outF).reshaped(bias!.shape) : nil)
        }
        return grads
    }
}

/// A Linear whose three products run on oneDNN (mixed-precision training when `bf16`; fp32
/// runs the same code, which is how CPUs without bf16 test it): the forward over the weight
/// packed in `packed` (repacked when the optimizer changed it), the backward dX = dY W and
/// dW = dY^T X over plain row-major operands (in bf16: dY, W, dY^T and X converted per call).
func oneDNNTrainingLinear(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, packed: PackedWeight, bf16: Bool) -> Tensor {
    guard let dnnl = OneDNN.shared else { fatalError("oneDNN is not available") }
    let inF = weight.dim(1), outF = weight.dim(0)
    let rows = x.count / inF
    if let bias { precondition(bias.count == outF, "linear: bias \(bias.shape) for \(outF) outputs") }
    let out = Tensor(uninitialized: Array(x.shape.dropLast()) + [outF])
    let what = bf16 ? "bf16" : "fp32"
    do {
        try dnnl.linear(x: x, rows: rows, weight: weight, bias: bias, packed: packed, bf16: bf16, out: out)
    } catch {
        fatalError("oneDNN training matmul (\(rows) x \(inF) . \(inF) x \(outF), \(what)): \(error)")
    }
    let inputs = bias.map { [x, weight, $0] } ?? [x, weight]
    return out.record(bf16 ? "linear_bf16" : "linear_onednn", inputs) { g, needs in
        var grads: [Tensor?] = [nil, nil]
        do {
            if needs[0] {
                // dX = dY W : (rows, out) x (out, in)
                let dx = Tensor(uninitialized: x.shape)
                try dnnl.plainProduct(m: rows, k: outF, n: inF, a: .rowMajor(g), b: .rowMajor(weight), bf16: bf16, out: dx)
                grads[0] = dx
            }
            if needs[1] {
                // dW = dY^T X : (out, rows) x (rows, in)
                let dw = Tensor(uninitialized: weight.shape)
                try dnnl.plainProduct(m: outF, k: rows, n: inF, a: .transposed(g, rows: rows, cols: outF), b: .rowMajor(x), bf16: bf16, out: dw)
                grads[1] = dw
            }
        } catch {
            fatalError("oneDNN training matmul backward (\(rows) x \(inF) . \(inF) x \(outF), \(what)): \(error)")
        }
        if inputs.count == 3 {
            grads.append(needs[2] ? columnSums(g.pointer, rows: rows, width: outF).reshaped(bias!.shape) : nil)
        }
        return grads
    }
}

// MARK: - oneDNN state

/// A cached matmul primitive with its memory objects.
final class MatmulPrimitive {
    var m: cd_matmul
    /// Created with format_tag any (oneDNN's preferred layout) rather than a given layout.
    let preferred: Bool
    let impl: String

    init(_ m: cd_matmul, preferred: Bool) {
        self.m = m
        self.preferred = preferred
        impl = m.impl.map { String(cString: $0) } ?? "?"
    }

    deinit { cd_matmul_destroy(&m) }

    func hasLayout(_ layout: dnnl_memory_desc_t) -> Bool {
        var a = m.weights_md, b = layout
        return cd_same_layout(&a, &b) != 0
    }
}

final class OneDNN: @unchecked Sendable {
    static let shared: OneDNN? = OneDNN()

    let engine: dnnl_engine_t
    let stream: dnnl_stream_t
    let version: String
    let isaName: String
    let isaHasBF16: Bool
    private let lock = NSLock()

    struct Key: Hashable {
        let m, k, n: Int
        let bf16, bias: Bool
    }
    private var cache: [Key: [MatmulPrimitive]] = [:]
    private var cached = 0
    /// bf16 copy of the activations (grow-only).
    private var scratch: UnsafeMutableRawPointer?
    private var scratchBytes = 0

    private init?() {
        var e: dnnl_engine_t?
        guard dnnl_engine_create(&e, dnnl_cpu, 0) == dnnl_success, let e else { return nil }
        var s: dnnl_stream_t?
        guard dnnl_stream_create(&s, e, dnnl_stream_default_flags.rawValue) == dnnl_success, let s else {
            dnnl_engine_destroy(e)
            return nil
        }
        engine = e
        stream = s
        let v = dnnl_version()!.pointee
        version = "\(v.major).\(v.minor).\(v.patch)"
        let isa = dnnl_get_effective_cpu_isa()
        isaName = String(cString: cd_isa_name(isa))
        isaHasBF16 = cd_isa_has_bf16(isa) != 0
    }

    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Whether oneDNN builds a bf16 x bf16 -> f32 matmul on this CPU (it refuses without bf16
    /// hardware: AVX-512 with BF16 or AMX).
    lazy var canBuildBF16: Bool = withLock { (try? primitive(m: 16, k: 64, n: 64, bf16: true, bias: true, layout: nil)) != nil }

    /// The cached primitive for the shape, in oneDNN's preferred weights layout (`layout` nil)
    /// or in `layout`. Call with the lock held.
    func primitive(m: Int, k: Int, n: Int, bf16: Bool, bias: Bool, layout: dnnl_memory_desc_t?) throws -> MatmulPrimitive {
        let key = Key(m: m, k: k, n: n, bf16: bf16, bias: bias)
        if let list = cache[key] {
            if let layout {
                if let p = list.first(where: { $0.hasLayout(layout) }) { return p }
            } else if let p = list.first(where: \.preferred) {
                return p
            }
        }
        var raw = cd_matmul()
        let dt = bf16 ? dnnl_bf16 : dnnl_f32
        let status: dnnl_status_t
        if var layout {
            status = cd_matmul_create(engine, Int64(m), Int64(k), Int64(n), dt, dt, bias ? 1 : 0, &layout, &raw)
        } else {
            status = cd_matmul_create(engine, Int64(m), Int64(k), Int64(n), dt, dt, bias ? 1 : 0, nil, &raw)
        }
        guard status == dnnl_success else { throw EngineError("oneDNN could not build the matmul (status \(status.rawValue))") }
        let p = MatmulPrimitive(raw, preferred: layout == nil)
        if cached >= 1024 { cache.removeAll(); cached = 0 }   // a bound; shapes in one process are few
        cache[key, default: []].append(p)
        cached += 1
        return p
    }

    /// Reorders `weight` ([out, in] float32) into the layout of `p` (no copy when that is the
    /// weight's own layout in fp32). Call with the lock held.
    private func pack(_ weight: Tensor, into packed: PackedWeight, for p: MatmulPrimitive, bf16: Bool) throws {
        let k = weight.dim(1), n = weight.dim(0)
        packed.invalidate()
        var md = p.m.weights_md
        if !bf16 && cd_is_plain_nk_f32(&md, Int64(k), Int64(n)) != 0 {
            packed.buffer = nil
        } else {
            let bytes = cd_size(&md)
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: Swift.max(bytes, 64), alignment: 64)
            let status = cd_pack_weights(engine, stream, Int32(Threads.count), Int64(k), Int64(n), weight.pointer, &md, buffer)
            guard status == dnnl_success else {
                buffer.deallocate()
                throw EngineError("oneDNN could not reorder the weight (status \(status.rawValue))")
            }
            packed.buffer = buffer
            packed.bufferBytes = bytes
        }
        packed.layout = md
        packed.bf16 = bf16
        packed.source = weight.storage
        packed.offset = weight.offset
        packed.version = weight.storage.version
        packed.fingerprint = PackedWeight.fingerprint(weight)
        packed.packCount += 1
    }

    /// out (rows, N) = x (rows, K) W^T + b with the packed weight (packing or repacking first if
    /// it is stale).
    func linear(x: Tensor, rows: Int, weight: Tensor, bias: Tensor?, packed: PackedWeight, bf16: Bool, out: Tensor) throws {
        let k = weight.dim(1), n = weight.dim(0)
        try withLock {
            var p: MatmulPrimitive
            if packed.isCurrent(for: weight, bf16: bf16) {
                if let q = try? primitive(m: rows, k: k, n: n, bf16: bf16, bias: bias != nil, layout: packed.layout) {
                    p = q
                } else {
                    // This row count has no primitive over the packed layout: repack for its own.
                    p = try primitive(m: rows, k: k, n: n, bf16: bf16, bias: bias != nil, layout: nil)
                    try pack(weight, into: packed, for: p, bf16: bf16)
                }
            } else {
                p = try primitive(m: rows, k: k, n: n, bf16: bf16, bias: bias != nil, layout: nil)
                try pack(weight, into: packed, for: p, bf16: bf16)
            }
            var src = UnsafeRawPointer(x.pointer)
            if bf16 {
                let bytes = rows * k * 2
                if bytes > scratchBytes {
                    scratch?.deallocate()
                    scratch = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                    scratchBytes = bytes
                }
                let px = x.pointer, ps = scratch!.assumingMemoryBound(to: UInt16.self)
                parallelFor(rows * k, grain: 1 << 15) { lo, hi in ck_f32_to_bf16(px + lo, ps + lo, hi - lo) }
                src = UnsafeRawPointer(scratch!)
            }
            let status = withUnsafePointer(to: &p.m) {
                cd_matmul_execute($0, stream, Int32(Threads.count), src, packed.data(weight), bias?.pointer, out.pointer)
            }
            guard status == dnnl_success else { throw EngineError("oneDNN matmul failed (status \(status.rawValue))") }
        }
    }

    /// An operand of `plainProduct`: a row-major tensor as it is, or the transpose of a (rows,
    /// cols) row-major tensor.
    enum Operand {
        case rowMajor(Tensor)
        case transposed(Tensor, rows: Int, cols: Int)
    }

    /// out (m, n) = A (m, k) B (k, n) with both operands row-major (fp32 or converted to bf16;
    /// a transposed operand is copied transposed, in bf16 while converting). The bf16 copies
    /// live in grow-only buffers of their own.
    func plainProduct(m: Int, k: Int, n: Int, a: Operand, b: Operand, bf16: Bool, out: Tensor) throws {
        try withLock {
            var md = dnnl_memory_desc_t()
            guard cd_plain_kn(Int64(k), Int64(n), bf16 ? dnnl_bf16 : dnnl_f32, &md) == dnnl_success else {
                throw EngineError("oneDNN: no plain layout for \(k) x \(n)")
            }
            var p = try primitive(m: m, k: k, n: n, bf16: bf16, bias: false, layout: md)
            let pa = try prepare(a, count: m * k, bf16: bf16, slot: 0)
            let pb = try prepare(b, count: k * n, bf16: bf16, slot: 1)
            let status = withUnsafePointer(to: &p.m) {
                cd_matmul_execute($0, stream, Int32(Threads.count), pa, pb, nil, out.pointer)
            }
            guard status == dnnl_success else { throw EngineError("oneDNN matmul failed (status \(status.rawValue))") }
        }
    }

    private var operandBuffers: [(UnsafeMutableRawPointer, Int)] = []

    /// The data pointer of an operand in the product's type (a bf16 or transposed copy in the
    /// buffer `slot` when needed). Call with the lock held.
    private func prepare(_ o: Operand, count: Int, bf16: Bool, slot: Int) throws -> UnsafeRawPointer {
        if case .rowMajor(let t) = o, !bf16 { return UnsafeRawPointer(t.pointer) }
        let bytes = count * (bf16 ? 2 : 4)
        while operandBuffers.count <= slot { operandBuffers.append((UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64), 64)) }
        if operandBuffers[slot].1 < bytes {
            operandBuffers[slot].0.deallocate()
            operandBuffers[slot] = (UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64), bytes)
        }
        let buffer = operandBuffers[slot].0
        switch o {
        case .rowMajor(let t):
            let px = t.pointer, ps = buffer.assumingMemoryBound(to: UInt16.self)
            parallelFor(count, grain: 1 << 15) { lo, hi in ck_f32_to_bf16(px + lo, ps + lo, hi - lo) }
        case .transposed(let t, let rows, let cols):
            if bf16 {
                ck_f32_to_bf16_transposed(t.pointer, rows, cols, buffer.assumingMemoryBound(to: UInt16.self))
            } else {
                let px = t.pointer, po = buffer.assumingMemoryBound(to: Float.self)
                for r in 0..<rows { for c in 0..<cols { po[c * rows + r] = px[r * cols + c] } }
            }
        }
        return UnsafeRawPointer(buffer)
    }

    /// A product with weights packed outside any Linear, for the benchmarks: returns a closure
    /// that runs out = x W^T with the weight packed once (and the packed handles it keeps).
    /// `plain`: the weights' own [out, in] float32 layout instead of oneDNN's preferred one.
    func benchmarkProduct(x: Tensor, weights: [Tensor], bf16: Bool, plain: Bool, out: Tensor) throws -> () -> Void {
        let rows = x.dim(0)
        let packs = weights.map { _ in PackedWeight() }
        if plain {
            let k = weights[0].dim(1), n = weights[0].dim(0)
            try withLock {
                var md = dnnl_memory_desc_t()
                guard cd_plain_nk_f32(Int64(k), Int64(n), &md) == dnnl_success else { throw EngineError("oneDNN: no plain layout") }
                let p = try primitive(m: rows, k: k, n: n, bf16: false, bias: false, layout: md)
                for (w, pw) in zip(weights, packs) { try pack(w, into: pw, for: p, bf16: false) }
            }
        }
        for (w, pw) in zip(weights, packs) { try linear(x: x, rows: rows, weight: w, bias: nil, packed: pw, bf16: bf16, out: out) }
        var turn = 0
        return { [self] in
            turn += 1
            try? self.linear(x: x, rows: rows, weight: weights[turn % weights.count], bias: nil,
                             packed: packs[turn % packs.count], bf16: bf16, out: out)
        }
    }
}

extension Engine {
    /// For `gen bench kernels`: out = x W^T through oneDNN with each of `weights` packed once
    /// (used in turn), in fp32 or bf16. Nil without oneDNN or when the precision cannot run.
    /// `plainLayout`: keep the weights in their own [out, in] float32 layout (no packed copy).
    public static func packedProduct(x: Tensor, weights: [Tensor], precision: Precision, plainLayout: Bool = false,
                                     out: Tensor) -> (() -> Void)? {
        guard let dnnl = OneDNN.shared, precision != .auto, precision == .fp32 || bf16Available,
              !(plainLayout && precision == .bf16) else { return nil }
        return try? dnnl.benchmarkProduct(x: x, weights: weights, bf16: precision == .bf16, plain: plainLayout, out: out)
    }
}
