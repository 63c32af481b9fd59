import XCTest
@testable import Tensor

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

func temporaryDirectory() -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("tensor-tests-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// A small model made of the shared layers, with nested and indexed keys.
final class TinyNet: Module {
    let blocks: [Mlp]
    let norm: LayerNorm
    let attn: Attention
    let table: Embedding
    let frozen: Tensor

    init(seed: UInt64) {
        var rng = RandomGenerator(seed: seed)
        blocks = (0..<2).map { _ in Mlp(6, hidden: 12, approximateGELU: true, rng: &rng) }
        norm = LayerNorm(6, eps: 1e-6)
        attn = Attention(dim: 6, heads: 2, rng: &rng)
        table = Embedding(4, 6, rng: &rng)
        frozen = rng.normalTensor([1, 3, 6])
    }

    var entries: [(String, ModuleEntry)] {
        [("pos_embed", .tensor(frozen)), ("blocks", .modules(blocks)), ("norm", .module(norm)),
         ("attn", .module(attn)), ("y_embedder.embedding_table", .module(table))]
    }
}

final class CheckpointTests: XCTestCase {
    func testFixtureFilesLoadAndListKeys() throws {
        var total = 0
        for name in ["sit_tiny_1d", "sit_tiny_2d", "tokenizer_tiny"] {
            for file in ["model.safetensors", "io.safetensors"] {
                let f = try SafeTensorsFile(path: fixtures.appendingPathComponent("\(name)/\(file)").path)
                XCTAssertFalse(f.names.isEmpty)
                print("\(name)/\(file): \(f.names.count) tensors")
                for key in f.names.prefix(4) { print("  \(key) \(f.entries[key]!.shape) \(f.entries[key]!.dtype.rawValue)") }
                for key in f.names where f.entries[key]!.dtype == .f32 {
                    let t = try f.tensor(key)
                    XCTAssertEqual(t.shape, f.entries[key]!.shape)
                    XCTAssertTrue(t.scalars.allSatisfy { $0.isFinite })
                }
                total += f.names.count
            }
        }
        let sit = try SafeTensorsFile(path: fixtures.appendingPathComponent("sit_tiny_1d/model.safetensors").path)
        XCTAssertEqual(sit.entries["y_embedder.embedding_table.weight"]?.shape, [11, 64])
        XCTAssertEqual(sit.entries["blocks.1.adaLN_modulation.1.weight"]?.shape, [384, 64])
        let io = try SafeTensorsFile(path: fixtures.appendingPathComponent("sit_tiny_1d/io.safetensors").path)
        XCTAssertEqual(io.entries["velocity_f64"]?.dtype, .f64)
        XCTAssertEqual(try io.integers("y").count, 3)
        XCTAssertGreaterThan(total, 100)
    }

    func testCorruptAndTruncatedFilesAreRejected() throws {
        let dir = temporaryDirectory()
        let original = try Data(contentsOf: fixtures.appendingPathComponent("sit_tiny_1d/model.safetensors"))
        func expectError(_ data: Data, _ contains: String, _ label: String) {
            let path = dir.appendingPathComponent("\(label).safetensors").path
            _ = FileManager.default.createFile(atPath: path, contents: data)
            XCTAssertThrowsError(try SafeTensorsFile(path: path), label) { error in
                let text = "\(error)"
                print("\(label): \(text)")
                XCTAssertTrue(text.contains(contains), "\(label): '\(text)' lacks '\(contains)'")
            }
        }
        expectError(original.prefix(original.count / 2), "truncated", "truncated-data")
        expectError(original.prefix(5), "truncated", "truncated-length")
        expectError(original.prefix(100), "truncated", "truncated-header")
        var corrupt = original
        corrupt[10] = 0x7B; corrupt[11] = 0x7B; corrupt[12] = 0x22
        expectError(corrupt, "corrupt", "corrupt-json")
        var huge = original
        huge.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { Data($0) })
        expectError(huge, "implausibly large", "oversized-header")
        func withHeader(_ json: String, payload: Int) -> Data {
            var d = Data()
            var j = Data(json.utf8)
            while j.count % 8 != 0 { j.append(0x20) }
            d.append(contentsOf: withUnsafeBytes(of: UInt64(j.count).littleEndian) { Data($0) })
            d.append(j)
            d.append(Data(count: payload))
            return d
        }
        expectError(withHeader(#"{"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}}"#, payload: 8), "unsupported dtype", "dtype")
        expectError(withHeader(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}"#, payload: 12), "bad data offsets", "offsets-size")
        expectError(withHeader(#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#, payload: 12), "truncated", "offsets-outside")
        expectError(withHeader(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, payload: 12), "bad data offsets", "offsets-reversed")
        XCTAssertThrowsError(try SafeTensorsFile(path: dir.appendingPathComponent("missing.safetensors").path))
    }

    func testModuleRoundTripIsBitExact() throws {
        let dir = temporaryDirectory()
        let a = TinyNet(seed: 1), b = TinyNet(seed: 2)
        let keys = a.namedTensors().map(\.0)
        XCTAssertTrue(keys.contains("blocks.1.fc2.bias"))
        XCTAssertTrue(keys.contains("attn.qkv.weight"))
        XCTAssertTrue(keys.contains("y_embedder.embedding_table.weight"))
        let path = dir.appendingPathComponent("m.safetensors").path
        try a.save(to: path)
        try b.load(from: SafeTensorsFile(path: path))
        for ((ka, ta), (kb, tb)) in zip(a.namedTensors(), b.namedTensors()) {
            XCTAssertEqual(ka, kb)
            XCTAssertEqual(ta.scalars.map(\.bitPattern), tb.scalars.map(\.bitPattern), ka)
        }
        // Half-precision files load back within their rounding.
        for dtype in [DType.f16, .bf16] {
            let hp = dir.appendingPathComponent("m-\(dtype.rawValue).safetensors").path
            try a.save(to: hp, dtype: dtype)
            let c = TinyNet(seed: 3)
            try c.load(from: SafeTensorsFile(path: hp))
            for ((k, ta), (_, tc)) in zip(a.namedTensors(), c.namedTensors()) {
                XCTAssertLessThan(maxAbsDiff(ta.scalars, tc.scalars), dtype == .f16 ? 2e-3 : 2e-2, k)
            }
        }
    }

    func testStrictLoadingNamesTheOffendingKey() throws {
        let dir = temporaryDirectory()
        let a = TinyNet(seed: 1)
        var tensors = a.namedTensors()
        // Missing key.
        let missing = dir.appendingPathComponent("missing.safetensors").path
        try writeSafeTensors(tensors.filter { $0.0 != "norm.bias" }, to: missing)
        XCTAssertThrowsError(try TinyNet(seed: 2).load(from: SafeTensorsFile(path: missing))) {
            XCTAssertEqual("\($0)", "missing.safetensors is missing tensor 'norm.bias'")
        }
        // Wrong shape.
        let wrong = dir.appendingPathComponent("wrong.safetensors").path
        tensors = tensors.map { $0.0 == "attn.proj.weight" ? ($0.0, Tensor(zeros: [6, 5])) : $0 }
        try writeSafeTensors(tensors, to: wrong)
        XCTAssertThrowsError(try TinyNet(seed: 2).load(from: SafeTensorsFile(path: wrong))) {
            XCTAssertEqual("\($0)", "wrong.safetensors: tensor 'attn.proj.weight' has shape [6, 5] but the model expects [6, 6]")
        }
        // Unused key, unless skipped.
        let extra = dir.appendingPathComponent("extra.safetensors").path
        try writeSafeTensors(a.namedTensors() + [("repa_model.x", Tensor(zeros: [2]))], to: extra)
        let target = TinyNet(seed: 2)
        let before = target.namedTensors()[1].1.scalars
        XCTAssertThrowsError(try target.load(from: SafeTensorsFile(path: extra))) {
            XCTAssertTrue("\($0)".contains("'repa_model.x'"))
        }
        XCTAssertEqual(target.namedTensors()[1].1.scalars, before, "a failed load leaves the model untouched")
        let skipped = try target.load(from: SafeTensorsFile(path: extra), skip: { $0.hasPrefix("repa_model.") })
        XCTAssertEqual(skipped, ["repa_model.x"])
    }

    func testOptimizerStateRoundTripIsBitExact() throws {
        let dir = temporaryDirectory()
        func run(_ net: TinyNet, _ opt: AdamW, steps: Range<Int>) {
            for s in steps {
                net.zeroGrad()
                let x = randn([2, 3, 6], seed: UInt64(s))
                let loss = net.blocks[1](net.attn(net.blocks[0](x) + net.frozen)).square().mean()
                loss.backward()
                clipGradNorm(opt.parameters, maxNorm: 0.5)
                opt.update()
            }
        }
        let a = TinyNet(seed: 1)
        a.frozen.requiresGrad = false
        let optA = AdamW(a.trainableParameters(), lr: 1e-2, weightDecay: 0.01)
        run(a, optA, steps: 0..<3)
        try a.save(to: dir.appendingPathComponent("m.safetensors").path)
        try optA.save(to: dir.appendingPathComponent("opt.safetensors").path)
        run(a, optA, steps: 3..<6)

        let b = TinyNet(seed: 9)
        try b.load(from: SafeTensorsFile(path: dir.appendingPathComponent("m.safetensors").path))
        let optB = AdamW(b.trainableParameters(), lr: 1e-2, weightDecay: 0.01)
        try optB.load(from: dir.appendingPathComponent("opt.safetensors").path)
        XCTAssertEqual(optB.step, 3)
        run(b, optB, steps: 3..<6)
        for ((k, ta), (_, tb)) in zip(a.namedTensors(), b.namedTensors()) {
            XCTAssertEqual(ta.scalars.map(\.bitPattern), tb.scalars.map(\.bitPattern), "resumed training differs at \(k)")
        }
    }

    func testAdamWMatchesClosedFormFirstStep() {
        // First AdamW step moves each weight by lr * sign(g) (bias-corrected m/sqrt(v)), after decay.
        let p = Tensor([1, -2, 3], shape: [3], requiresGrad: true)
        p.grad = Tensor([0.5, -0.1, 0], shape: [3])
        let opt = AdamW([("p", p)], lr: 0.1, eps: 1e-8, weightDecay: 0.1)
        opt.update()
        XCTAssertEqual(p.scalars[0], 1 * (1 - 0.01) - 0.1, accuracy: 1e-6)
        XCTAssertEqual(p.scalars[1], -2 * (1 - 0.01) + 0.1, accuracy: 1e-6)
        XCTAssertEqual(p.scalars[2], 3 * (1 - 0.01), accuracy: 1e-6)
    }

    /// The official parameter groups: decay on matrices, none on vectors and biases.
    func testAdamWDecaysMatricesOnlyWhenAsked() {
        let w = Tensor([1, 2, 3, 4], shape: [2, 2], requiresGrad: true), b = Tensor([1, 2], shape: [2], requiresGrad: true)
        let bias2D = Tensor([5, 6], shape: [1, 2], requiresGrad: true)
        for t in [w, b, bias2D] { t.grad = Tensor(zeros: t.shape) }
        let opt = AdamW([("fc.weight", w), ("norm.weight", b), ("fc.bias", bias2D)], lr: 0.1, weightDecay: 0.5,
                        decays: AdamW.decaysMatricesOnly)
        XCTAssertEqual(opt.decayed, [true, false, false])
        opt.update()
        XCTAssertEqual(w.scalars, [1, 2, 3, 4].map { $0 * (1 - 0.05) })
        XCTAssertEqual(b.scalars, [1, 2])
        XCTAssertEqual(bias2D.scalars, [5, 6])
        let all = AdamW([("norm.weight", b)], lr: 0.1, weightDecay: 0.5)
        all.update()
        XCTAssertEqual(b.scalars, [1 * 0.95, 2 * 0.95], "without decays every parameter decays, as before")
    }

    func testClipEMAAndSchedules() {
        let p = Tensor([0, 0], shape: [2], requiresGrad: true)
        p.grad = Tensor([3, 4], shape: [2])
        XCTAssertEqual(clipGradNorm([("p", p)], maxNorm: 1), 5, accuracy: 1e-6)
        XCTAssertEqual(p.grad!.scalars[0], 0.6, accuracy: 1e-5)
        XCTAssertEqual(p.grad!.scalars[1], 0.8, accuracy: 1e-5)
        let a = TinyNet(seed: 1), e = TinyNet(seed: 2)
        let before = e.norm.weight!.scalars[0], target = a.norm.weight!.scalars[0]
        a.norm.weight!.fill(3)
        EMA.update(e, from: a, decay: 0.9)
        XCTAssertEqual(e.norm.weight!.scalars[0], 0.9 * before + 0.1 * 3, accuracy: 1e-6)
        _ = target
        XCTAssertEqual(LRSchedule.warmup(lr: 1, warmup: 4).lr(at: 0), 0.25)
        XCTAssertEqual(LRSchedule.warmup(lr: 1, warmup: 4).lr(at: 10), 1)
        let cos = LRSchedule.cosine(lr: 1, warmup: 0, total: 10, minLR: 0)
        XCTAssertEqual(cos.lr(at: 0), 1, accuracy: 1e-6)
        XCTAssertEqual(cos.lr(at: 5), 0.5, accuracy: 1e-6)
        XCTAssertEqual(cos.lr(at: 10), 0, accuracy: 1e-6)
    }
}

final class EMAWarmupTests: XCTestCase {
    /// min(decay, (1 + n) / (10 + n)): the first update nearly copies the model, later ones reach
    /// the configured decay; the horizon is about 1 / (1 - decay).
    func testWarmupAndHorizon() {
        XCTAssertEqual(EMA.warmedUp(0.999, updates: 0), 0.1, accuracy: 1e-7)
        XCTAssertEqual(EMA.warmedUp(0.999, updates: 90), 0.91, accuracy: 1e-6)
        XCTAssertEqual(EMA.warmedUp(0.999, updates: 1_000_000), 0.999)
        XCTAssertEqual(EMA.horizon(0.999), 1000)
        XCTAssertEqual(Double(EMA.horizon(0.9999)), 10000, accuracy: 5)   // 0.9999 in float32
    }
}

