import Datasets
import Formats
import Foundation
import SiT
import Tensor
import XCTest

/// `gen export` and the run folder's model card.
final class ExportTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(FashionMNIST.isAvailable(), "Fashion-MNIST (dataset-fashion-mnist) is not installed")
    }

    func testExportWritesACleanFolderWithIdentityAndCard() throws {
        let d = tempDir("export")
        XCTAssertEqual(try gen(["train-tokenizer", "--out", d + "/tok", "--steps", "3", "--limit", "32", "--log-every", "1"] + tinyTokenizerArgs).status, 0)
        XCTAssertEqual(try gen(["precompute", "--tokenizer", d + "/tok", "--limit", "32", "--out", d + "/c.h5"]).status, 0)
        XCTAssertEqual(try gen(["train", "--cache", d + "/c.h5", "--out", d + "/sit", "--steps", "3", "--log-every", "1"] + tinySiTArgs).status, 0)

        // The run's checkpoint holds the model and its card; training state sits in training/.
        let ck = d + "/sit/checkpoint"
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: ck)),
                       ["config.json", "model.safetensors", "README.md", "training"])
        let card = try String(contentsOfFile: ck + "/README.md", encoding: .utf8)
        XCTAssertTrue(card.contains("gen train --cache \(d)/c.h5 --out \(d)/sit --steps 3"), card)
        XCTAssertTrue(card.contains(try SHA256.file(ck + "/model.safetensors")), card)
        XCTAssertTrue(card.contains("tokenizer: `tok`"), card)

        var r = try gen(["export", d + "/sit", d + "/out"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: d + "/out")), ["config.json", "model.safetensors", "README.md"])
        let weights = try SafeTensorsFile(path: d + "/out/model.safetensors")
        XCTAssertEqual(weights.metadata["format"], "pt")
        XCTAssertEqual(weights.metadata["name"], "sit")
        XCTAssertEqual(weights.metadata["step"], "3")
        let original = try SafeTensorsFile(path: ck + "/model.safetensors")
        XCTAssertEqual(weights.names.sorted(), original.names.sorted())
        for n in original.names { XCTAssertEqual(try weights.tensor(n).scalars, try original.tensor(n).scalars, n) }
        let exported = try String(contentsOfFile: d + "/out/README.md", encoding: .utf8)
        XCTAssertTrue(exported.contains(try SHA256.file(d + "/out/model.safetensors")), "the card names the exported file's sha256")
        XCTAssertTrue(r.stdout.contains(try SHA256.file(d + "/out/model.safetensors")))
        _ = try SiT.load(folder: d + "/out")

        // A non-empty destination is refused; --overwrite replaces only the three files.
        r = try gen(["export", d + "/sit", d + "/out"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("--overwrite"), r.stderr)
        try Data("mine".utf8).write(to: URL(fileURLWithPath: d + "/out/notes.txt"))
        // Staging folders of killed exports: removed when their process is gone and they hold
        // only an export's files; one with a foreign file, or of a live process, is kept.
        let done = Process(); done.executableURL = URL(fileURLWithPath: "/bin/true"); try done.run(); done.waitUntilExit()
        let dead = done.processIdentifier, alive = ProcessInfo.processInfo.processIdentifier
        for (pid, files) in [(dead, ["config.json", "model.safetensors.tmp-7"]), (alive, ["config.json"])] {
            try FileManager.default.createDirectory(atPath: d + "/out.export-\(pid)", withIntermediateDirectories: true)
            for f in files { try Data("x".utf8).write(to: URL(fileURLWithPath: d + "/out.export-\(pid)/" + f)) }
        }
        try FileManager.default.createDirectory(atPath: d + "/out.export-\(dead)0", withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: URL(fileURLWithPath: d + "/out.export-\(dead)0/notes.txt"))
        r = try gen(["export", "--overwrite", d + "/tok", d + "/out"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/out.export-\(dead)"), "abandoned staging removed")
        XCTAssertTrue(FileManager.default.fileExists(atPath: d + "/out.export-\(alive)/config.json"), "a live process's staging kept")
        XCTAssertEqual(FileManager.default.contents(atPath: d + "/out.export-\(dead)0/notes.txt"), Data("mine".utf8))
        try FileManager.default.removeItem(atPath: d + "/out.export-\(alive)")
        try FileManager.default.removeItem(atPath: d + "/out.export-\(dead)0")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(FileManager.default.contents(atPath: d + "/out/notes.txt"), Data("mine".utf8))
        XCTAssertTrue(r.stdout.contains("tokenizer 'tok'"), r.stdout)
        XCTAssertFalse((try FileManager.default.contentsOfDirectory(atPath: d)).contains { $0.contains(".export-") }, "no staging folder left")

        // A config written before the softvq_swift block (ours at the top level) exports clean.
        let legacy = d + "/legacy"
        try FileManager.default.createDirectory(atPath: legacy, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: ck + "/model.safetensors", toPath: legacy + "/model.safetensors")
        var obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: ck + "/config.json"))) as? [String: Any])
        let block = try XCTUnwrap(obj.removeValue(forKey: SiTConfig.swiftBlockKey) as? [String: Any])
        for (k, v) in block { obj[k] = v }
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: legacy + "/config.json"))
        XCTAssertEqual(try gen(["export", legacy, d + "/legacy-out"]).status, 0)
        let clean = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: d + "/legacy-out/config.json"))) as? [String: Any])
        for k in ["class_names", "tokenizer", "tokenizer_sha256", "vq_mean", "vq_std", "prediction"] {
            XCTAssertNil(clean[k], k)
            XCTAssertNotNil((clean[SiTConfig.swiftBlockKey] as? [String: Any])?[k], k)
        }
        // The tokenizer's config.json: only the official ModelArgs fields (those of the official
        // fixture's config.json) at the top level, ours in softvq_swift.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path
        let officialTok = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/Fixtures/tokenizer_tiny/config.json"))) as? [String: Any])
        for file in [d + "/tok/checkpoint/config.json", d + "/out/config.json"] {
            let tok = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
            XCTAssertEqual(Set(tok.keys).subtracting(officialTok.keys), ["softvq_swift"], file)
            XCTAssertEqual((tok["softvq_swift"] as? [String: Any])?["enc_embed_dim"] as? Int, 32, file)
        }
        // A missing source is one sentence.
        r = try gen(["export", d + "/nothing", d + "/x"])
        XCTAssertEqual(r.status, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/x"))
    }

    /// gen train --init-from: the run starts from the given SiT's weights (fresh optimizer);
    /// another architecture, a missing folder or --resume with it are one clear sentence; a
    /// resumed fine-tune no longer needs the folder it started from.
    func testInitFromStartsFromTheGivenWeights() throws {
        let d = tempDir("init-from")
        XCTAssertEqual(try gen(["train-tokenizer", "--out", d + "/tok", "--steps", "2", "--limit", "32", "--log-every", "1"] + tinyTokenizerArgs).status, 0)
        XCTAssertEqual(try gen(["precompute", "--tokenizer", d + "/tok", "--limit", "32", "--out", d + "/c.h5"]).status, 0)
        let base = ["train", "--cache", d + "/c.h5", "--log-every", "1"] + tinySiTArgs
        XCTAssertEqual(try gen(base + ["--out", d + "/a", "--steps", "6", "--lr", "1e-2"]).status, 0)
        // One step at a negligible rate: the saved weights are the source's, a fresh run's are not.
        var r = try gen(base + ["--out", d + "/b", "--steps", "2", "--lr", "1e-12", "--seed", "3", "--init-from", d + "/a"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try gen(base + ["--out", d + "/fresh", "--steps", "1", "--lr", "1e-12", "--seed", "3"]).status, 0)
        let a = try SafeTensorsFile(path: d + "/a/checkpoint/model.safetensors")
        func largestDifference(_ run: String) throws -> Float {
            let f = try SafeTensorsFile(path: d + "/" + run + "/checkpoint/model.safetensors")
            return try a.names.map { n in zip(try a.tensor(n).scalars, try f.tensor(n).scalars).map { abs($0 - $1) }.max() ?? 0 }.max() ?? 0
        }
        XCTAssertLessThan(try largestDifference("b"), 1e-6)
        XCTAssertGreaterThan(try largestDifference("fresh"), 1e-3)
        let state = try String(contentsOfFile: d + "/b/checkpoint/training/state.json", encoding: .utf8)
        XCTAssertTrue(state.contains("init_from") || state.contains("initFrom"), state)

        // From a float16 copy: the weights as rounded, but the fixed sin-cos table exact.
        XCTAssertEqual(try gen(["convert", "--from", d + "/a", "--to", d + "/a16", "--dtype", "f16"]).status, 0)
        r = try gen(base + ["--out", d + "/b16", "--steps", "1", "--lr", "1e-12", "--init-from", d + "/a16"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let b16 = try SiT.load(folder: d + "/b16/checkpoint", warn: { XCTFail($0) })
        XCTAssertLessThan(b16.posEmbedMaxDifference ?? 1, 1e-6)

        // A source holding NaN is refused before training, naming the tensor.
        let broken = try SiT.load(folder: d + "/a/checkpoint", warn: { _ in })
        broken.posEmbed.pointer[3] = .nan
        try broken.save(folder: d + "/a-nan")
        r = try gen(base + ["--out", d + "/nan", "--steps", "1", "--init-from", d + "/a-nan"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("Non-finite values appeared in the weights pos_embed of --init-from"), r.stderr)

        // Resuming the fine-tune reads its own checkpoint, not the folder it started from.
        try FileManager.default.removeItem(atPath: d + "/a")
        r = try gen(base + ["--out", d + "/b", "--steps", "3", "--resume"])
        XCTAssertEqual(r.status, 0, r.stderr)

        r = try gen(base + ["--out", d + "/c", "--steps", "2", "--init-from", d + "/a"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--init-from"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/c/checkpoint"))
        r = try gen(["train", "--cache", d + "/c.h5", "--out", d + "/c", "--steps", "2", "--init-from", d + "/b",
                     "--hidden", "64", "--depth", "1", "--heads", "2", "--batch-size", "16"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("is a SiT of width 32, depth 1"), r.stderr)
        r = try gen(base + ["--out", d + "/b", "--resume", "--init-from", d + "/b"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("pass one of them"), r.stderr)
    }

    /// gen train --init-from a SiT with fewer blocks: its blocks fill the first ones, and the
    /// added blocks start as identities (zero adaLN), so the deeper model computes the
    /// source's velocity; a source deeper than --depth, or with other heads, is refused.
    func testInitFromAShallowerSiTStartsFromItsFunction() throws {
        let d = tempDir("init-deeper")
        XCTAssertEqual(try gen(["train-tokenizer", "--out", d + "/tok", "--steps", "2", "--limit", "32", "--log-every", "1"] + tinyTokenizerArgs).status, 0)
        XCTAssertEqual(try gen(["precompute", "--tokenizer", d + "/tok", "--limit", "32", "--out", d + "/c.h5"]).status, 0)
        let base = ["train", "--cache", d + "/c.h5", "--log-every", "1", "--hidden", "32", "--heads", "2", "--batch-size", "16", "--warmup", "2", "--precision", "fp32"]
        XCTAssertEqual(try gen(base + ["--depth", "1", "--out", d + "/a", "--steps", "6", "--lr", "1e-2"]).status, 0)
        var r = try gen(base + ["--depth", "3", "--out", d + "/b", "--steps", "1", "--lr", "1e-12", "--seed", "3", "--init-from", d + "/a"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let a = try SiT.load(folder: d + "/a/checkpoint", warn: { _ in })
        let b = try SiT.load(folder: d + "/b/checkpoint", warn: { _ in })
        XCTAssertEqual(b.blocks.count, 3)
        // The source's trained adaLN is not zero, so its function is not the trivial one.
        XCTAssertGreaterThan(a.blocks[0].adaLN.weight.scalars.map(abs).max() ?? 0, 1e-4)
        let n = 4, shape = [n, a.config.inputSize, a.config.inChannels]
        var rng = RandomGenerator(seed: 9)
        let x = rng.normalTensor(shape)
        let t: [Float] = [0.1, 0.4, 0.7, 0.95], y = [0, 1, 2, a.config.numClasses]
        let va = try Autograd.noGrad { try a(x, t: t, y: y) }.scalars
        let vb = try Autograd.noGrad { try b(x, t: t, y: y) }.scalars
        let scale = va.map(abs).max() ?? 0
        XCTAssertGreaterThan(scale, 1e-3)
        XCTAssertLessThan(zip(va, vb).map { abs($0 - $1) }.max() ?? 1, 1e-5 * max(1, scale))
        // The added blocks trained on from there: their attention and MLP weights are random, not copies.
        XCTAssertGreaterThan(zip(b.blocks[1].mlp.fc1.weight.scalars, a.blocks[0].mlp.fc1.weight.scalars).map { abs($0 - $1) }.max() ?? 0, 1e-3)

        r = try gen(base + ["--depth", "2", "--out", d + "/c", "--steps", "1", "--init-from", d + "/b"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("is a SiT of width 32, depth 3") && r.stderr.contains("at least as many blocks"), r.stderr)
        r = try gen(["train", "--cache", d + "/c.h5", "--out", d + "/c", "--steps", "1", "--init-from", d + "/a",
                     "--hidden", "32", "--depth", "2", "--heads", "4", "--batch-size", "16"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("2 heads"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/c/checkpoint"))
    }
}
