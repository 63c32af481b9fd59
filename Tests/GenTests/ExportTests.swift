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
}
