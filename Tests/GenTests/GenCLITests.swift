import Foundation
import XCTest
import Datasets
import Formats
@testable import Pipeline
import SiT
import Tensor

/// The gen executable next to the test bundle.
let genPath: String = {
    var dir = Bundle.main.bundleURL
    if dir.pathExtension == "xctest" { dir = dir.deletingLastPathComponent() }
    return dir.appendingPathComponent("gen").path
}()

struct RunResult {
    let status: Int32
    let stdout: String
    let stderr: String
}

@discardableResult
func gen(_ args: [String], cwd: String? = nil, file: StaticString = #filePath, line: UInt = #line) throws -> RunResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: genPath)
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    p.arguments = args + (args.first == "info" || args.contains("--help") ? [] : ["--threads", "1"])
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return RunResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

func tempDir(_ name: String) -> String {
    let d = FileManager.default.temporaryDirectory.appendingPathComponent("gen-tests-\(name)-\(UUID().uuidString.prefix(8))").path
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
}

/// Tiny models so that the whole chain runs in seconds.
let tinyTokenizerArgs = ["--preset", "fashion32-small", "--width", "32", "--depth", "1", "--heads", "1", "--tokens", "4",
                         "--codebook-size", "64", "--codebook-dim", "4", "--batch-size", "8", "--warmup", "2"]
let tinySiTArgs = ["--hidden", "32", "--depth", "1", "--heads", "2", "--batch-size", "16", "--warmup", "2"]

final class GenChainTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(FashionMNIST.isAvailable(), "Fashion-MNIST (dataset-fashion-mnist) is not installed")
        XCTAssertTrue(FileManager.default.fileExists(atPath: genPath), "gen not built at \(genPath)")
    }

    /// train-tokenizer -> precompute -> train -> sample on a few hundred Fashion-MNIST images,
    /// with the reproducibility guarantees of gen sample.
    func testChainOnFashionMNIST() throws {
        let d = tempDir("chain")
        var r = try gen(["train-tokenizer", "--out", d + "/tok", "--steps", "12", "--limit", "256", "--save-every", "6", "--log-every", "4"] + tinyTokenizerArgs)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: d + "/tok/checkpoint/model.safetensors"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: d + "/tok/loss.png"))
        XCTAssertEqual(try String(contentsOfFile: d + "/tok/log.jsonl", encoding: .utf8).split(separator: "\n").count, 3)

        r = try gen(["precompute", "--tokenizer", d + "/tok/checkpoint", "--dataset", "fashion-mnist", "--limit", "300", "--out", d + "/lat.h5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let cache = try LatentCacheReader(path: d + "/lat.h5")
        XCTAssertEqual(cache.count, 300)
        XCTAssertEqual(cache.metadata.classNames.count, 10)

        r = try gen(["train", "--cache", d + "/lat.h5", "--tokenizer", d + "/tok/checkpoint", "--out", d + "/sit", "--steps", "10", "--save-every", "5", "--log-every", "5"] + tinySiTArgs)
        XCTAssertEqual(r.status, 0, r.stderr)

        let sampleArgs = ["sample", "--sit", d + "/sit/checkpoint", "--tokenizer", d + "/tok/checkpoint", "--per-class", "2",
                          "--steps", "4", "--cfg", "2", "--guidance-high", "0.7", "--seed", "100", "--batch-size", "1"]
        r = try gen(sampleArgs + ["--out", d + "/s1", "--npz", "--save-latents"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let files = try FileManager.default.contentsOfDirectory(atPath: d + "/s1").sorted()
        XCTAssertTrue(files.contains("grid.png") && files.contains("samples.npz") && files.contains("latents.h5"))
        XCTAssertEqual(files.filter { $0.hasSuffix(".png") && $0 != "grid.png" }.count, 20)
        // The sampled latents are a latent-cache file (not mirrored) that gen info describes.
        let sampled = try LatentCacheReader(path: d + "/s1/latents.h5")
        XCTAssertEqual(sampled.count, 20)
        XCTAssertEqual(sampled.metadata.preprocessing, "sampled")
        XCTAssertFalse(sampled.metadata.mirrored)
        XCTAssertEqual(sampled.labels, (0..<10).flatMap { [$0, $0] })
        XCTAssertEqual(try sampled.paths(rows: [13]), ["00013_class6_seed113.png"])
        r = try gen(["info", d + "/s1/latents.h5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("sampled latents") && r.stdout.contains("20 from gen sample"), r.stdout)
        // Class names are resolved from config.json alone (no weights read).
        let configOnly = d + "/config-only"
        try FileManager.default.createDirectory(atPath: configOnly, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: d + "/sit/checkpoint/config.json", toPath: configOnly + "/config.json")
        XCTAssertEqual(try GenerationModels.classIndices("Sneaker, 2,bag", sitFolder: configOnly), [7, 2, 8])

        // The same command twice gives byte-identical PNGs.
        r = try gen(sampleArgs + ["--out", d + "/s2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for f in files where f.hasSuffix(".png") {
            XCTAssertEqual(FileManager.default.contents(atPath: d + "/s1/" + f), FileManager.default.contents(atPath: d + "/s2/" + f), f)
        }
        // Image 13 (class 6, seed 113) regenerated alone from its seed equals its copy in the batch.
        r = try gen(["sample", "--sit", d + "/sit/checkpoint", "--tokenizer", d + "/tok/checkpoint", "--classes", "6", "--per-class", "1",
                     "--steps", "4", "--cfg", "2", "--guidance-high", "0.7", "--seed", "113", "--out", d + "/alone"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let batchImage = try ImageIO.decode(path: d + "/s1/00013_class6_seed113.png")
        XCTAssertEqual(try ImageIO.decode(path: d + "/alone/00000_class6_seed113.png"), batchImage)
        // A batch of 7 is bit-identical to another run with batch 7 and within rounding of batch 1.
        r = try gen(sampleArgs.dropLast(2) + ["--batch-size", "7", "--out", d + "/b7"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try gen(sampleArgs.dropLast(2) + ["--batch-size", "7", "--out", d + "/b7again"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for f in files where f.hasSuffix(".png") && f != "grid.png" {
            let a = try ImageIO.decode(path: d + "/b7/" + f), b = try ImageIO.decode(path: d + "/b7again/" + f)
            XCTAssertEqual(a, b, f)
            let one = try ImageIO.decode(path: d + "/s1/" + f)
            XCTAssertLessThanOrEqual(zip(a.pixels, one.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0, 2, f)
        }
        // ... and from the parameters stored in its PNG.
        r = try gen(["sample", "--from-png", d + "/s1/00013_class6_seed113.png", "--out", d + "/again"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try ImageIO.decode(path: d + "/again/00000_class6_seed113.png"), batchImage)

        // Class names work too; an unknown class is one clear error.
        r = try gen(["sample", "--sit", d + "/sit/checkpoint", "--tokenizer", d + "/tok/checkpoint", "--classes", "Sneaker,bag",
                     "--per-class", "1", "--steps", "2", "--out", d + "/named"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try gen(["sample", "--sit", d + "/sit/checkpoint", "--tokenizer", d + "/tok/checkpoint", "--classes", "Hat",
                     "--per-class", "1", "--steps", "2", "--out", d + "/bad"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("Unknown class 'Hat'"), r.stderr)

        // info describes all three kinds of artefact.
        for target in [d + "/lat.h5", d + "/tok", d + "/sit/checkpoint"] {
            r = try gen(["info", target])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        XCTAssertTrue(try gen(["info", d + "/lat.h5"]).stdout.contains("300 from fashion-mnist:train"))

        // A cache from another tokenizer is refused.
        r = try gen(["train-tokenizer", "--out", d + "/tok2", "--steps", "2", "--limit", "64", "--seed", "5"] + tinyTokenizerArgs)
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try gen(["train", "--cache", d + "/lat.h5", "--tokenizer", d + "/tok2/checkpoint", "--out", d + "/sit2", "--steps", "2"] + tinySiTArgs)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("was made by tokenizer"), r.stderr)
    }

    /// --steps with --resume is the run's new target, shorter or longer (it used to be ignored
    /// when shorter, and the run went on to its old target without a word).
    func testResumeTakesTheGivenTarget() throws {
        let d = tempDir("resume-target")
        let args = ["train-tokenizer", "--out", d + "/tok", "--limit", "32", "--log-every", "1"] + tinyTokenizerArgs
        XCTAssertEqual(try gen(args + ["--steps", "10", "--stop-after", "4"]).status, 0)
        func step() throws -> Int {
            let j = try JSONSerialization.jsonObject(with: FileManager.default.contents(atPath: d + "/tok/checkpoint/training/state.json")!) as! [String: Any]
            return j["step"] as! Int
        }
        XCTAssertEqual(try step(), 4)
        let before = FileManager.default.contents(atPath: d + "/tok/checkpoint/model.safetensors")
        var r = try gen(args + ["--resume", "--steps", "3"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("Already trained for 4 steps (target 3)"), r.stdout)
        XCTAssertEqual(FileManager.default.contents(atPath: d + "/tok/checkpoint/model.safetensors"), before)
        r = try gen(args + ["--resume", "--steps", "6"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try step(), 6, "a shorter target than the run's own 10 is honoured")
        r = try gen(args + ["--resume"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try step(), 6, "without --steps the run's target, now 6")
    }

    /// --patch-size reaches both ViTs' config; one that does not divide the image is one
    /// sentence before anything is written.
    func testPatchSizeOverride() throws {
        let d = tempDir("patch")
        var r = try gen(["train-tokenizer", "--out", d + "/tok", "--steps", "1", "--limit", "16", "--patch-size", "8"] + tinyTokenizerArgs)
        XCTAssertEqual(r.status, 0, r.stderr)
        let config = try String(contentsOfFile: d + "/tok/checkpoint/config.json", encoding: .utf8)
        XCTAssertTrue(config.contains("\"enc_patch_size\" : 8"), config)
        XCTAssertTrue(config.contains("\"dec_patch_size\" : 8"), config)
        r = try gen(["train-tokenizer", "--out", d + "/bad", "--steps", "1", "--limit", "16", "--patch-size", "5"] + tinyTokenizerArgs)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/bad/checkpoint"))
    }

    func testExistingOutputsAreRefusedAndKept() throws {
        let d = tempDir("refuse")
        try gen(["train-tokenizer", "--out", d + "/tok", "--steps", "2", "--limit", "32"] + tinyTokenizerArgs)
        try gen(["precompute", "--tokenizer", d + "/tok/checkpoint", "--limit", "16", "--out", d + "/lat.h5"])
        let before = FileManager.default.contents(atPath: d + "/lat.h5")
        var r = try gen(["precompute", "--tokenizer", d + "/tok/checkpoint", "--limit", "16", "--out", d + "/lat.h5"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("already exists"), r.stderr)
        XCTAssertEqual(FileManager.default.contents(atPath: d + "/lat.h5"), before)
        r = try gen(["train-tokenizer", "--out", d + "/tok", "--steps", "2", "--limit", "32"] + tinyTokenizerArgs)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--resume"), r.stderr)
        r = try gen(["precompute", "--tokenizer", d + "/missing", "--out", d + "/x.h5"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        r = try gen(["precompute", "--tokenizer", d + "/tok/checkpoint", "--dataset", d + "/no-such-folder", "--out", d + "/y.h5"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("does not exist"), r.stderr)
        // A truncated checkpoint is one clear sentence, not a crash.
        let weights = d + "/tok/checkpoint/model.safetensors"
        let data = FileManager.default.contents(atPath: weights)!
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: d + "/trunc.safetensors"))
        try FileManager.default.createDirectory(atPath: d + "/trunc", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: d + "/tok/checkpoint/config.json", toPath: d + "/trunc/config.json")
        try FileManager.default.moveItem(atPath: d + "/trunc.safetensors", toPath: d + "/trunc/model.safetensors")
        r = try gen(["reconstruct", "--tokenizer", d + "/trunc", "--count", "2", "--out", d + "/r.png"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("truncated"), r.stderr)
    }

    /// gen init writes checkpoints that the real sampling path loads; the official initialization
    /// (adaLN-Zero) gives a zero velocity, so the sample is the decoded starting noise.
    func testInitWritesLoadableCheckpoints() throws {
        let d = tempDir("init")
        var r = try gen(["init", "tokenizer", "--preset", "fashion32-small", "--out", d + "/tok"])
        XCTAssertEqual(r.status, 0, r.stderr)
        r = try gen(["init", "sit", "--size", "S", "--tokens", "32", "--channels", "8", "--classes", "10", "--out", d + "/sit"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("SiT-S/1"), r.stdout)
        let sit = try SiT.load(folder: d + "/sit", warn: { _ in })
        XCTAssertEqual(sit.config.numTokens, 32)
        let v = try Autograd.noGrad { try sit(Tensor(repeating: 0.5, shape: [1, 32, 8]), t: [0.5], y: [3]) }
        XCTAssertEqual(v.scalars.map(abs).max(), 0)
        r = try gen(["sample", "--sit", d + "/sit", "--tokenizer", d + "/tok", "--classes", "0", "--per-class", "1", "--steps", "2", "--out", d + "/s"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let before = FileManager.default.contents(atPath: d + "/sit/model.safetensors")
        r = try gen(["init", "sit", "--size", "S", "--tokens", "32", "--channels", "8", "--classes", "10", "--out", d + "/sit"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("already exists"), r.stderr)
        XCTAssertEqual(FileManager.default.contents(atPath: d + "/sit/model.safetensors"), before)
        r = try gen(["init", "sit", "--size", "XXL", "--out", d + "/bad"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
    }

    func testEveryCommandHasHelpWithAnExample() throws {
        for cmd in ["train-tokenizer", "ablate", "precompute", "train", "sample", "reconstruct", "eval", "train-classifier", "info", "bench kernels", "init"] {
            let r = try gen(cmd.split(separator: " ").map(String.init) + ["--help"])
            XCTAssertEqual(r.status, 0, cmd)
            XCTAssertTrue(r.stdout.contains("Example"), "\(cmd) --help has no example")
        }
    }
}

/// Kills gen with SIGKILL in the middle of a job and checks that rerunning finishes it exactly.
final class GenKillResumeTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(FashionMNIST.isAvailable(), "Fashion-MNIST (dataset-fashion-mnist) is not installed")
    }

    /// Starts gen, waits until `ready()` holds, then kill -9.
    func killWhen(_ args: [String], timeout: Double = 60, _ ready: () -> Bool) throws -> Bool {
        try killGen(args, timeout: timeout, ready)
    }

    func testPrecomputeSurvivesKill9() throws {
        let d = tempDir("kill-pre")
        try gen(["train-tokenizer", "--out", d + "/tok", "--steps", "2", "--limit", "32"] + tinyTokenizerArgs)
        let args = ["precompute", "--tokenizer", d + "/tok/checkpoint", "--limit", "1200", "--batch-size", "8"]
        try gen(args + ["--out", d + "/full.h5"])
        // Kill once some rows are flushed (the partial file has grown past its empty size).
        let partial = d + "/cut.h5.partial"
        var size0: Int? = nil
        let killed = try killWhen(args + ["--out", d + "/cut.h5"]) {
            guard let s = (try? FileManager.default.attributesOfItem(atPath: partial))?[.size] as? Int else { return false }
            if size0 == nil { size0 = s; return false }
            return s > size0! + 20_000
        }
        XCTAssertTrue(killed, "the job ended before it could be killed")
        XCTAssertFalse(FileManager.default.fileExists(atPath: d + "/cut.h5"), "an interrupted cache must not look complete")
        XCTAssertThrowsError(try LatentCacheReader(path: partial))
        let r = try gen(args + ["--out", d + "/cut.h5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("Resuming"), r.stdout)
        let a = try LatentCacheReader(path: d + "/full.h5"), b = try LatentCacheReader(path: d + "/cut.h5")
        XCTAssertEqual(a.count, b.count)
        XCTAssertEqual(a.labels, b.labels)
        XCTAssertEqual(try a.paths(rows: Array(0..<a.count)), try b.paths(rows: Array(0..<b.count)))
        XCTAssertEqual(try a.readAll().scalars, try b.readAll().scalars)
        XCTAssertEqual(try a.readAll(flipped: true).scalars, try b.readAll(flipped: true).scalars)
    }

    func testTrainingSurvivesKill9AndReachesTheSameWeights() throws {
        let d = tempDir("kill-train")
        try gen(["train-tokenizer", "--out", d + "/tok", "--steps", "2", "--limit", "64"] + tinyTokenizerArgs)
        try gen(["precompute", "--tokenizer", d + "/tok/checkpoint", "--limit", "256", "--out", d + "/lat.h5"])
        let args = ["train", "--cache", d + "/lat.h5", "--steps", "400", "--save-every", "20", "--log-every", "20"] + tinySiTArgs
        var r = try gen(args + ["--out", d + "/full"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let killed = try killWhen(args + ["--out", d + "/cut"]) {
            FileManager.default.fileExists(atPath: d + "/cut/checkpoint/training/state.json")
        }
        XCTAssertTrue(killed)
        // Resumed without --cache: the run's own cache; a different one is refused.
        r = try gen(["train", "--cache", d + "/tok/checkpoint/model.safetensors", "--out", d + "/cut", "--resume"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("leave out --cache"), r.stderr)
        r = try gen(["train"] + Array(args.dropFirst(3)) + ["--out", d + "/cut", "--resume"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for f in ["model.safetensors", "training/train-model.safetensors", "training/optimizer.safetensors"] {
            XCTAssertEqual(FileManager.default.contents(atPath: d + "/full/checkpoint/" + f),
                           FileManager.default.contents(atPath: d + "/cut/checkpoint/" + f), "\(f) differs after kill and resume")
        }
        // The tokenizer trainer resumes exactly too.
        let targs = ["train-tokenizer", "--steps", "60", "--limit", "128", "--save-every", "4", "--log-every", "4"] + tinyTokenizerArgs
        r = try gen(targs + ["--out", d + "/tfull"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(try killWhen(targs + ["--out", d + "/tcut"]) { FileManager.default.fileExists(atPath: d + "/tcut/checkpoint/training/state.json") })
        r = try gen(targs + ["--out", d + "/tcut", "--resume"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(FileManager.default.contents(atPath: d + "/tfull/checkpoint/training/train-model.safetensors"),
                       FileManager.default.contents(atPath: d + "/tcut/checkpoint/training/train-model.safetensors"))
    }
}

/// Starts gen, waits until `ready()` holds, then kill -9; true if it was still running.
func killGen(_ args: [String], timeout: Double = 60, _ ready: () -> Bool) throws -> Bool {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: genPath)
    p.arguments = args + ["--threads", "1"]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    let start = Date()
    while p.isRunning && !ready() && Date().timeIntervalSince(start) < timeout { usleep(5_000) }
    let wasRunning = p.isRunning
    kill(p.processIdentifier, SIGKILL)
    p.waitUntilExit()
    return wasRunning
}
