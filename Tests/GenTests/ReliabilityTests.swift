// Issue 17's findings as tests: nothing a user has is lost (overwrite discipline, full disk,
// --stop-after, --resume without a checkpoint) and bad option values are one sentence with exit
// status 2 (usage) or 1 (a failed job), never a crash.

import Foundation
import XCTest
import Datasets
import Formats
@testable import Pipeline
import Sampler
import SiT
import Tensor

private func contents(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

/// The first line of stderr, and that there is exactly one "error:" sentence or one usage error.
private func assertOneSentence(_ r: RunResult, status: Int32, contains text: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(r.status, status, "exit status; stderr: \(r.stderr)", file: file, line: line)
    XCTAssertTrue(r.stderr.contains(text), r.stderr, file: file, line: line)
    XCTAssertFalse(r.stderr.contains("NSCocoaErrorDomain") || r.stderr.contains("Fatal error") || r.stderr.contains("Missing value"),
                   r.stderr, file: file, line: line)
    if status == 1 { XCTAssertEqual(r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }.count, 1, r.stderr, file: file, line: line) }
}

final class OptionValidationTests: XCTestCase {
    override func setUpWithError() throws {
        XCTAssertTrue(FileManager.default.fileExists(atPath: genPath), "gen not built at \(genPath)")
    }

    func testOutOfRangeValuesAreUsageErrorsNamingTheOption() throws {
        let d = tempDir("options")
        let cases: [([String], String)] = [
            (["train", "--cache", "c.h5", "--out", d + "/r", "--steps", "-5"], "--steps must be between 1"),
            (["train", "--cache", "c.h5", "--out", d + "/r", "--steps", "0"], "--steps must be between 1"),
            (["train", "--cache", "c.h5", "--out", d + "/r", "--ema", "nan"], "--ema must be between"),
            (["train", "--cache", "c.h5", "--out", d + "/r", "--adam-eps", "0"], "--adam-eps must be between"),
            (["train", "--cache", "c.h5", "--out", d + "/r", "--adam-eps", "nan"], "--adam-eps must be between"),
            (["train", "--cache", "c.h5", "--out", d + "/r", "--save-every", "0"], "--save-every must be between 1"),
            (["train", "--cache", "c.h5", "--out", d + "/r", "--log-every", "0"], "--log-every must be between 1"),
            (["train", "--cache", "c.h5", "--out", d + "/r", "--stop-after", "0"], "--stop-after must be between 1"),
            (["train", "--cache", "c.h5", "--out", d + "/r", "--hidden", "1000000000"], "--hidden must be between"),
            (["train", "--cache", "c.h5", "--out", d + "/r", "--lr", "-1"], "--lr must be between"),
            (["train", "--cache", "c.h5", "--out", d + "/r", "--resume", "--overwrite"], "exclude each other"),
            (["train-tokenizer", "--out", d + "/t", "--save-every", "0"], "--save-every must be between 1"),
            (["train-tokenizer", "--out", d + "/t", "--steps", "-1"], "--steps must be between 1"),
            (["precompute", "--tokenizer", "t", "--out", d + "/c.h5", "--deflate", "10"], "--deflate must be between 1 and 9"),
            (["sample", "--sit", "s", "--tokenizer", "t", "--out", d + "/s", "--per-class", "4611686018427387904"], "--per-class must be between"),
            (["sample", "--sit", "s", "--tokenizer", "t", "--out", d + "/s", "--steps", "-3"], "--steps must be between 1"),
            (["reconstruct", "--tokenizer", "t", "--out", d + "/r.png", "--count", "0"], "--count must be between 1"),
            (["bench", "kernels", "--repeats", "0"], "--repeats must be between 1"),
            (["sample", "--sit", "s", "--tokenizer", "t", "--out", d + "/s", "--threads", "0"], "--threads must be between 1"),
        ]
        for (args, message) in cases {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: genPath)
            p.arguments = args
            let err = Pipe()
            p.standardError = err
            p.standardOutput = Pipe()
            try p.run()
            let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            assertOneSentence(RunResult(status: p.terminationStatus, stdout: "", stderr: e), status: 2, contains: message)
        }
    }
}

final class OverwriteDisciplineTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(FashionMNIST.isAvailable(), "Fashion-MNIST (dataset-fashion-mnist) is not installed")
        XCTAssertTrue(FileManager.default.fileExists(atPath: genPath), "gen not built at \(genPath)")
    }

    func testPrecomputeRefusesAFolderWhereTheCacheGoesEvenWithOverwrite() throws {
        let d = tempDir("precompute-dir")
        try gen(["train-tokenizer", "--out", d + "/tok", "--steps", "2", "--limit", "32"] + tinyTokenizerArgs)
        try FileManager.default.createDirectory(atPath: d + "/data", withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: URL(fileURLWithPath: d + "/data/notes.txt"))
        let r = try gen(["precompute", "--tokenizer", d + "/tok/checkpoint", "--limit", "16", "--out", d + "/data", "--overwrite"])
        assertOneSentence(r, status: 1, contains: "is a folder")
        XCTAssertEqual(contents(d + "/data/notes.txt"), Data("mine".utf8))
    }

    func testTrainingOverwriteKeepsTheOldRunUntilTheNewCheckpointAndForeignFiles() throws {
        let d = tempDir("train-overwrite")
        let targs = ["train-tokenizer", "--out", d + "/tok", "--limit", "32", "--save-every", "2", "--log-every", "1"] + tinyTokenizerArgs
        XCTAssertEqual(try gen(targs + ["--steps", "2"]).status, 0)
        try Data("mine".utf8).write(to: URL(fileURLWithPath: d + "/tok/notes.txt"))
        let old = contents(d + "/tok/checkpoint/model.safetensors")
        // A new run that fails before its first checkpoint (NaN loss from a huge learning rate
        // is not guaranteed, so stop it by a bad dataset) leaves the old run untouched...
        var r = try gen(targs + ["--steps", "2", "--overwrite", "--dataset", d + "/no-such-folder"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(contents(d + "/tok/checkpoint/model.safetensors"), old)
        // ... and a completed one replaces the checkpoint and the log but no foreign file.
        r = try gen(targs + ["--steps", "3", "--overwrite", "--seed", "9"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertNotEqual(contents(d + "/tok/checkpoint/model.safetensors"), old)
        XCTAssertEqual(contents(d + "/tok/notes.txt"), Data("mine".utf8))
        let log = try String(contentsOfFile: d + "/tok/log.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(log.count, 3, "the new run's log replaced the old one")
        XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/tok/log.jsonl.partial"))
    }

    func testStopAfterAlwaysLeavesACheckpointAndResumeNeedsOne() throws {
        let d = tempDir("stop-after")
        var r = try gen(["train-tokenizer", "--out", d + "/tok", "--steps", "20", "--limit", "32", "--save-every", "100", "--stop-after", "3"] + tinyTokenizerArgs)
        XCTAssertEqual(r.status, 0, r.stderr)
        let state = try JSONSerialization.jsonObject(with: contents(d + "/tok/checkpoint/training/state.json")!) as? [String: Any]
        XCTAssertEqual(state?["step"] as? Int, 3)
        r = try gen(["precompute", "--tokenizer", d + "/tok/checkpoint", "--limit", "32", "--out", d + "/c.h5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try gen(["train", "--cache", d + "/c.h5", "--out", d + "/sit", "--steps", "50", "--save-every", "100", "--stop-after", "2"] + tinySiTArgs)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: d + "/sit/checkpoint/training/state.json"))
        XCTAssertTrue(r.stdout.contains("Note: the checkpoint holds EMA weights"), r.stdout)
        r = try gen(["train", "--out", d + "/sit", "--resume", "--stop-after", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("Resuming"), r.stdout)
        // --resume where there is nothing to resume says what is there.
        try FileManager.default.createDirectory(atPath: d + "/empty", withIntermediateDirectories: true)
        try Data().write(to: URL(fileURLWithPath: d + "/empty/readme.txt"))
        r = try gen(["train", "--cache", d + "/c.h5", "--out", d + "/empty", "--resume"] + tinySiTArgs)
        assertOneSentence(r, status: 1, contains: "has no checkpoint (it holds readme.txt)")
        r = try gen(["train-tokenizer", "--out", d + "/nothing", "--resume"] + tinyTokenizerArgs)
        assertOneSentence(r, status: 1, contains: "has no checkpoint (it does not exist)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/nothing"))
    }

    func testSampleEdgeCases() throws {
        let sit = "Checkpoints/fashion-sit", tok = "Checkpoints/fashion-tokenizer"
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let d = tempDir("sample-edge")
        try Data("mine".utf8).write(to: URL(fileURLWithPath: d + "/a-file"))
        var r = try gen(["sample", "--sit", root + "/" + sit, "--tokenizer", root + "/" + tok, "--classes", "0", "--per-class", "1",
                         "--steps", "2", "--out", d + "/a-file"])
        assertOneSentence(r, status: 1, contains: "is a file")
        XCTAssertEqual(contents(d + "/a-file"), Data("mine".utf8))
        // The largest seed wraps: image 0 uses 2^64 - 1, image 1 uses 0.
        r = try gen(["sample", "--sit", root + "/" + sit, "--tokenizer", root + "/" + tok, "--classes", "0", "--per-class", "2",
                     "--steps", "2", "--seed", "18446744073709551615", "--out", d + "/wrap"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let files = try FileManager.default.contentsOfDirectory(atPath: d + "/wrap")
        XCTAssertTrue(files.contains("00000_class0_seed18446744073709551615.png") && files.contains("00001_class0_seed0.png"), "\(files)")
    }
}

/// A full disk: a small tmpfs mounted by the test (root only), filled up, then each command is
/// run with --overwrite over a good result that must survive byte for byte.
final class FullDiskTests: XCTestCase {
    var mountPoint = ""

    override func setUpWithError() throws {
        try XCTSkipUnless(FashionMNIST.isAvailable(), "Fashion-MNIST (dataset-fashion-mnist) is not installed")
        try XCTSkipUnless(getuid() == 0, "full-disk tests mount a tmpfs and need root")
        mountPoint = tempDir("tmpfs")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/mount")
        p.arguments = ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mountPoint]
        p.standardError = Pipe()
        try p.run()
        p.waitUntilExit()
        try XCTSkipUnless(p.terminationStatus == 0, "cannot mount a tmpfs here (mount exited \(p.terminationStatus))")
    }

    override func tearDown() {
        guard !mountPoint.isEmpty else { return }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/umount")
        p.arguments = [mountPoint]
        try? p.run()
        p.waitUntilExit()
    }

    /// Fills the file system until fewer than `leave` bytes are free.
    func fill(leave: Int) throws {
        var st = statvfs()
        statvfs(mountPoint, &st)
        let free = Int(st.f_bavail) * Int(st.f_frsize)
        if free > leave {
            FileManager.default.createFile(atPath: mountPoint + "/filler", contents: Data(count: free - leave))
        }
    }

    func unfill() { try? FileManager.default.removeItem(atPath: mountPoint + "/filler") }

    func testEveryWritingCommandKeepsTheOldResultOnAFullDisk() throws {
        let d = tempDir("full-disk-src"), m = mountPoint
        // Good results made elsewhere, copied onto the small disk.
        try gen(["train-tokenizer", "--out", d + "/tok", "--steps", "2", "--limit", "32"] + tinyTokenizerArgs)
        try gen(["precompute", "--tokenizer", d + "/tok/checkpoint", "--limit", "64", "--out", d + "/c.h5"])
        try gen(["train", "--cache", d + "/c.h5", "--out", d + "/sit", "--steps", "2"] + tinySiTArgs)
        let sampleArgs = ["sample", "--sit", d + "/sit/checkpoint", "--tokenizer", d + "/tok/checkpoint", "--classes", "0,1",
                          "--per-class", "2", "--steps", "2"]
        try gen(sampleArgs + ["--out", d + "/s"])
        for item in ["tok", "c.h5", "sit", "s"] { try FileManager.default.copyItem(atPath: d + "/" + item, toPath: m + "/" + item) }
        let kept = ["tok/checkpoint/model.safetensors", "tok/checkpoint/training/optimizer.safetensors", "tok/log.jsonl", "c.h5",
                    "sit/checkpoint/model.safetensors", "sit/checkpoint/training/state.json", "s/00000_class0_seed0.png", "s/grid.png"]
        let before = kept.map { contents(m + "/" + $0) }
        try fill(leave: 2048)
        let runs: [[String]] = [
            ["precompute", "--tokenizer", d + "/tok/checkpoint", "--limit", "64", "--out", m + "/c.h5", "--overwrite"],
            ["train-tokenizer", "--out", m + "/tok", "--steps", "2", "--limit", "32", "--overwrite"] + tinyTokenizerArgs,
            ["train", "--cache", d + "/c.h5", "--out", m + "/sit", "--steps", "2", "--overwrite"] + tinySiTArgs,
            sampleArgs + ["--out", m + "/s", "--overwrite", "--seed", "5"],
        ]
        for args in runs {
            let r = try gen(args)
            XCTAssertEqual(r.status, 1, "\(args[0]) on a full disk: \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }.count, 1, r.stderr)
            XCTAssertFalse(r.stderr.contains("NSCocoaErrorDomain"), r.stderr)
            for (k, path) in kept.enumerated() { XCTAssertEqual(contents(m + "/" + path), before[k], "\(path) changed by \(args[0])") }
        }
        // With room again the same commands succeed (the failures were the disk).
        unfill()
        for args in runs {
            let r = try gen(args)
            XCTAssertEqual(r.status, 0, "\(args[0]): \(r.stderr)")
        }
        XCTAssertEqual(try LatentCacheReader(path: m + "/c.h5").count, 64)
    }
}

/// kill -9 at many moments of an --overwrite run, the final rename window included: the result
/// under the final name is always a complete one (the old or the new), never missing or torn.
final class KillDuringOverwriteTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(FashionMNIST.isAvailable(), "Fashion-MNIST (dataset-fashion-mnist) is not installed")
    }

    /// Starts gen and kills it with SIGKILL after `delay` seconds (or lets it finish first).
    func killAfter(_ delay: Double, _ args: [String]) throws {
        let deadline = Date().addingTimeInterval(delay)
        _ = try killGen(args, timeout: delay + 1) { Date() >= deadline }
    }

    func testKilledOverwritesAlwaysLeaveACompleteResult() throws {
        let d = tempDir("kill-overwrite")
        try gen(["train-tokenizer", "--out", d + "/tok", "--steps", "2", "--limit", "32"] + tinyTokenizerArgs)
        let pre = ["precompute", "--tokenizer", d + "/tok/checkpoint", "--limit", "96", "--batch-size", "16", "--out", d + "/c.h5"]
        XCTAssertEqual(try gen(pre).status, 0)
        let train = ["train", "--cache", d + "/c.h5", "--out", d + "/sit", "--steps", "6", "--save-every", "2"] + tinySiTArgs
        XCTAssertEqual(try gen(train).status, 0)
        for delay in stride(from: 0.05, through: 1.6, by: 0.15) {
            try killAfter(delay, pre + ["--overwrite"])
            let cache = try LatentCacheReader(path: d + "/c.h5")       // complete under its final name
            XCTAssertEqual(cache.count, 96, "after a kill at \(delay) s")
            try killAfter(delay, train + ["--overwrite", "--seed", "\(Int(delay * 100))"])
            let run = RunFolder(d + "/sit")
            let checkpoint = try XCTUnwrap(run.latestCheckpoint, "no checkpoint after a kill at \(delay) s")
            XCTAssertNoThrow(try SiT.load(folder: checkpoint, warn: { _ in }), "after a kill at \(delay) s")
        }
        // A cache with a label outside its recorded classes is refused in one sentence.
        let meta = LatentCacheMetadata(tokenizerName: "t", tokenizerSHA256: "0", vqMean: 0, vqStd: 1, imageSize: 32, numTokens: 4,
                                       tokenDim: 4, numImages: 16, preprocessing: "test", dataset: "test", classNames: ["a", "b"])
        let w = try LatentCacheWriter(path: d + "/bad.h5", metadata: meta)
        try w.append(latents: Tensor(zeros: [16, 4, 4]), flipped: Tensor(zeros: [16, 4, 4]),
                     labels: (0..<16).map { $0 == 7 ? 99 : $0 % 2 }, paths: (0..<16).map { "\($0)" })
        try w.finish()
        let r = try gen(["train", "--cache", d + "/bad.h5", "--out", d + "/bad-run", "--steps", "2"] + tinySiTArgs)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("99"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }.count, 1, r.stderr)
    }
}

/// Sampling at scale: --num-samples with classes drawn per seed, PNGs streamed to disk as
/// batches finish, kill -9 and --resume to the same files, the .npz assembled from the PNGs.
final class StreamingSampleTests: XCTestCase {
    override func setUpWithError() throws {
        XCTAssertTrue(FileManager.default.fileExists(atPath: genPath), "gen not built at \(genPath)")
    }

    func testNumSamplesStreamsAndResumesToTheSameFiles() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let d = tempDir("stream")
        let args = ["sample", "--sit", root + "/Checkpoints/fashion-sit", "--tokenizer", root + "/Checkpoints/fashion-tokenizer",
                    "--num-samples", "24", "--batch-size", "4", "--steps", "6", "--cfg", "2", "--seed", "7", "--npz", "--save-latents"]
        var r = try gen(args + ["-o", d + "/full"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let pngs = { (dir: String) in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".png") && $0 != "grid.png" }.sorted() }
        let names = pngs(d + "/full")
        XCTAssertEqual(names.count, 24)
        XCTAssertGreaterThan(Set(names.map { $0.split(separator: "_")[1] }).count, 3, "classes are drawn per image")
        // Killed while running: some PNGs are already on disk (streamed), not all.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: genPath)
        p.arguments = args + ["-o", d + "/cut", "--threads", "1"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let deadline = Date().addingTimeInterval(60)
        while p.isRunning && pngs(d + "/cut").count < 6 && Date() < deadline { usleep(5_000) }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let partial = pngs(d + "/cut").count
        XCTAssertTrue(partial >= 6 && partial < 24, "\(partial) PNGs when killed")
        r = try gen(args + ["-o", d + "/cut"])
        XCTAssertNotEqual(r.status, 0, "a non-empty folder needs --resume")
        r = try gen(args + ["-o", d + "/cut", "--resume"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("Resuming"), r.stdout)
        XCTAssertEqual(pngs(d + "/cut"), names)
        for f in names + ["samples.npz"] {
            XCTAssertEqual(FileManager.default.contents(atPath: d + "/cut/" + f), FileManager.default.contents(atPath: d + "/full/" + f), f)
        }
        XCTAssertEqual(try LatentCacheReader(path: d + "/cut/latents.h5").readAll().scalars,
                       try LatentCacheReader(path: d + "/full/latents.h5").readAll().scalars)
        // Another job's images in the folder are refused, not mixed in.
        r = try gen(args.map { $0 == "7" ? "8" : $0 } + ["-o", d + "/cut", "--resume"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("another sample job"), r.stderr)
    }
}

/// The interpolant path a SiT was trained on is recorded in config.json (`path_type`) and is
/// what the samplers of gen sample use.
final class PathRecordTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(FashionMNIST.isAvailable(), "Fashion-MNIST (dataset-fashion-mnist) is not installed")
    }

    func testTrainRecordsThePathAndSamplingHonoursIt() throws {
        let d = tempDir("path")
        try gen(["train-tokenizer", "--out", d + "/tok", "--steps", "2", "--limit", "32"] + tinyTokenizerArgs)
        try gen(["precompute", "--tokenizer", d + "/tok", "--limit", "32", "--out", d + "/c.h5"])
        // The fields the official code writes (the released SiT config.json), plus our one block.
        let official: Set<String> = ["class_dropout_prob", "decoder_hidden_size", "depth", "flash_attn", "fused_attn",
                                     "hidden_size", "in_channels", "input_size", "license", "mlp_ratio", "num_classes",
                                     "num_heads", "patch_size", "path_type", "qk_norm", "repo_url", "tags", "use_cfg",
                                     "vae_1d", "z_dims"]
        for path in ["linear", "cosine"] {
            let run = d + "/sit-" + path
            let r = try gen(["train", "--cache", d + "/c.h5", "--out", run, "--steps", "2", "--path", path] + tinySiTArgs)
            XCTAssertEqual(r.status, 0, r.stderr)
            let config = try SiTConfig.read(from: run + "/checkpoint/config.json")
            XCTAssertEqual(config.interpolantPath.rawValue, path)
            XCTAssertEqual(config.swiftField("prediction"), .string("v"))
            XCTAssertEqual(config.swiftField("tokenizer"), .string("tok"))
            XCTAssertEqual(config.extra["tags"], .array(["arxiv:2412.10958", "image-generation", "4 tokens", "SiT"].map { .string($0) }))
            let top = try JSONSerialization.jsonObject(with: contents(run + "/checkpoint/config.json")!) as! [String: Any]
            XCTAssertEqual(Set(top.keys).subtracting(official), [SiTConfig.swiftBlockKey])
            for sampler in SamplerMethod.allCases {
                var o = GenerationOptions(sit: run, tokenizer: d + "/tok")
                o.method = sampler
                XCTAssertEqual(GenerationJob.samplerOptions(o, model: config).path.rawValue, path, "\(sampler)")
                let s = try gen(["sample", "--sit", run, "--tokenizer", d + "/tok", "--classes", "0", "--per-class", "1",
                                 "--steps", "3", "--sampler", sampler.rawValue, "-o", d + "/s-\(path)-\(sampler.rawValue)"])
                XCTAssertEqual(s.status, 0, s.stderr)
                let text = try ImageIO.readPNGText(path: d + "/s-\(path)-\(sampler.rawValue)/00000_class0_seed0.png", key: "parameters")
                XCTAssertTrue(text?.contains(sampler.rawValue) ?? false, text ?? "no parameters")
            }
            var released = config
            released.extra["path_type"] = .string("edm")     // what the released checkpoints say: linear
            XCTAssertEqual(GenerationJob.samplerOptions(GenerationOptions(sit: run, tokenizer: d + "/tok"), model: released).path, .linear)
        }
    }
}

final class EvalClassCheckTests: XCTestCase {
    /// gen eval refuses a SiT whose classes are not Fashion-MNIST's (e.g. folder names), before
    /// any work.
    func testEvalRefusesASiTWithOtherClasses() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let d = tempDir("eval-classes")
        try FileManager.default.createDirectory(atPath: d + "/sit", withIntermediateDirectories: true)
        var config = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: root + "/Checkpoints/fashion-sit/config.json")!) as! [String: Any]
        // class_names sits in the softvq_swift block (configs before it: at the top level).
        var block = config["softvq_swift"] as? [String: Any] ?? config
        let names = try XCTUnwrap(block["class_names"] as? [String], "the shipped SiT config has no class_names")
        block["class_names"] = names.reversed().map { $0.replacingOccurrences(of: " ", with: "_") }
        if config["softvq_swift"] != nil { config["softvq_swift"] = block } else { config = block }
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: d + "/sit/config.json"))
        try FileManager.default.copyItem(atPath: root + "/Checkpoints/fashion-sit/model.safetensors", toPath: d + "/sit/model.safetensors")
        let r = try gen(["eval", "--tokenizer", root + "/Checkpoints/fashion-tokenizer", "--sit", d + "/sit",
                         "--classifier", root + "/Checkpoints/fashion-classifier"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("not Fashion-MNIST's"), r.stderr)
    }

    /// The sweep runs over lists of samplers and guidance intervals (a row per sampler x steps x
    /// interval x cfg, cfg 1 once, in eval.md and eval.json) and reports the floor at its own
    /// sample count; a bad list is a usage error.
    func testEvalSweepsSamplersAndReportsTheFloorAtItsCount() throws {
        try XCTSkipUnless(FashionMNIST.isAvailable(), "Fashion-MNIST (dataset-fashion-mnist) is not installed")
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let d = tempDir("eval-samplers")
        let base = ["eval", "--tokenizer", root + "/Checkpoints/fashion-tokenizer", "--sit", root + "/Checkpoints/fashion-sit",
                    "--classifier", root + "/Checkpoints/fashion-classifier", "--per-class", "2", "--cfg-scale", "1,2", "--num-steps", "2",
                    "--reconstruction-limit", "20"]
        var r = try gen(base + ["--sampler", "euler,heun", "--guidance-high", "1,0.5", "--out", d + "/e"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let md = try String(contentsOfFile: d + "/e/eval.md", encoding: .utf8)
        for row in ["| euler | 1.00 | 2 | none |", "| euler | 2.00 | 2 | [0, 1] |", "| euler | 2.00 | 2 | [0, 0.5] |",
                    "| heun | 1.00 | 2 | none |", "| heun | 2.00 | 2 | [0, 1] |", "| heun | 2.00 | 2 | [0, 0.5] |"] {
            XCTAssertTrue(md.contains(row), "\(row) in\n\(md)")
        }
        XCTAssertFalse(md.contains("settings measured"), md)
        XCTAssertTrue(md.contains("20 training images (floor at the sweep's count)"), md)
        let json = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: d + "/e/eval.json")!) as! [String: Any]
        let rows = json["generation"] as! [[String: Any]]
        XCTAssertEqual(rows.compactMap { $0["sampler"] as? String }, ["euler", "euler", "euler", "heun", "heun", "heun"])
        XCTAssertEqual(rows.map { $0["guidanceInterval"] as? [Double] }, [nil, [0, 1], [0, 0.5], nil, [0, 1], [0, 0.5]])
        XCTAssertEqual(json["settingsPlanned"] as? Int, 6)
        // Guidance on fewer steps changes the images: the two intervals differ in FD.
        XCTAssertNotEqual(rows[1]["fd"] as? Double, rows[2]["fd"] as? Double)
        let floor20 = try XCTUnwrap(json["trainTestFDAtSweepCount"] as? Double), floor = try XCTUnwrap(json["trainTestFD"] as? Double)
        XCTAssertGreaterThan(floor20, floor, "20 images estimate the statistics far worse than 10,000")
        for bad in ["euler,euler", "euler,rk4", "euler,"] {
            r = try gen(base + ["--sampler", bad])
            XCTAssertEqual(r.status, 2, "\(bad): \(r.stderr)")
        }
        for bad in ["0.5,0.5", "1.5", "nan", "0.7,", "-0.1"] {
            r = try gen(base + ["--guidance-high", bad])
            XCTAssertEqual(r.status, 2, "\(bad): \(r.stderr)")
        }
        r = try gen(base + ["--guidance-low", "0.6", "--guidance-high", "1,0.5"])
        XCTAssertEqual(r.status, 2, r.stderr)
    }
}

final class BalancedLimitTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(FashionMNIST.isAvailable(), "Fashion-MNIST (dataset-fashion-mnist) is not installed")
    }

    /// --limit keeps a class-balanced subset of a sorted image folder (not its first classes),
    /// and gen train refuses a cache whose listed classes are not all present unless told.
    func testLimitIsClassBalancedAndMissingClassesAreRefused() throws {
        let d = tempDir("balanced")
        let classes = ["ant", "bee", "cat", "dog"]
        for (c, name) in classes.enumerated() {
            try FileManager.default.createDirectory(atPath: d + "/images/" + name, withIntermediateDirectories: true)
            for k in 0..<5 {
                let pixels = [UInt8](repeating: UInt8(40 * c + 10 * k), count: 40 * 40 * 3)
                try ImageIO.writePNG(path: d + "/images/\(name)/\(k).png", pixels: pixels, width: 40, height: 40)
            }
        }
        try gen(["train-tokenizer", "--out", d + "/tok", "--steps", "2", "--limit", "32"] + tinyTokenizerArgs)
        var r = try gen(["precompute", "--tokenizer", d + "/tok", "--dataset", d + "/images", "--limit", "8", "--out", d + "/c8.h5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try LatentCacheReader(path: d + "/c8.h5").labels.sorted(), [0, 0, 1, 1, 2, 2, 3, 3])
        r = try gen(["precompute", "--tokenizer", d + "/tok", "--dataset", d + "/images", "--limit", "2", "--out", d + "/c2.h5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try LatentCacheReader(path: d + "/c2.h5").metadata.classNames, classes)
        XCTAssertEqual(try LatentCacheReader(path: d + "/c2.h5").classesPresent, [0, 1])
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/h5dump") {   // hdf5-tools: the attribute itself
            let p = Process(), out = Pipe()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/h5dump")
            p.arguments = ["-a", "/classes_present", d + "/c2.h5"]
            p.standardOutput = out
            try p.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            XCTAssertTrue(text.contains("\"[0,1]\""), text)
        }
        r = try gen(["info", d + "/c2.h5"])
        XCTAssertTrue(r.stdout.contains("classes present: 2 of 4; no latents of cat, dog"), r.stdout)
        r = try gen(["train", "--cache", d + "/c2.h5", "--out", d + "/sit", "--steps", "2", "--batch-size", "2"] + tinySiTArgs.dropLast(4))
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("has no latents of 2: cat, dog"), r.stderr)
        r = try gen(["train", "--cache", d + "/c2.h5", "--out", d + "/sit", "--steps", "2", "--batch-size", "2", "--allow-missing-classes"] + tinySiTArgs.dropLast(4))
        XCTAssertEqual(r.status, 0, r.stderr)
    }
}

final class InfoTests: XCTestCase {
    /// gen info describes the classifier folder and a SiT's classes, path and tokenizer.
    func testInfoDescribesTheClassifierAndTheSiT() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        var r = try gen(["info", root + "/Checkpoints/fashion-classifier"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("Fashion-MNIST classifier") && r.stdout.contains("test accuracy 90.66%"), r.stdout)
        r = try gen(["info", root + "/Checkpoints/fashion-sit"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("T-shirt/top, Trouser") && r.stdout.contains("path: linear")
                      && r.stdout.contains("trained on latents of tokenizer"), r.stdout)
    }

    /// gen info reads an .npz of samples (stored or Zip64) and refuses a truncated one in a sentence.
    func testInfoDescribesAnNPZ() throws {
        let d = tempDir("info-npz")
        let array = (0..<(5 * 8 * 8 * 3)).map { UInt8($0 % 256) }
        try NPZWriter.write(path: d + "/s.npz", array: array, shape: [5, 8, 8, 3])
        try NPZWriter.write(path: d + "/z.npz", array: array, shape: [5, 8, 8, 3], forceZip64: true)
        var r = try gen(["info", d + "/s.npz"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("arr_0: uint8 (5, 8, 8, 3), stored") && r.stdout.contains("5 RGB images of 8 x 8"), r.stdout)
        r = try gen(["info", d + "/z.npz"])
        XCTAssertTrue(r.stdout.contains("(Zip64)") && r.stdout.contains("(5, 8, 8, 3)"), r.stdout)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: d + "/s.npz"))
        for cut in [10, 100, bytes.count - 30] {
            try bytes.prefix(cut).write(to: URL(fileURLWithPath: d + "/t.npz"))
            r = try gen(["info", d + "/t.npz"])
            XCTAssertEqual(r.status, 1, "cut at \(cut): \(r.stdout)")
            XCTAssertTrue(r.stderr.contains("not usable") || r.stderr.contains("not a zip"), r.stderr)
        }
    }
}
