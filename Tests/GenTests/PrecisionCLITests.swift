import Foundation
import XCTest
import Datasets
import Tensor

/// `--precision` on every command that runs a model: the engine line first, bf16 refused without
/// bf16 hardware, and a training run's precision recorded and honoured on --resume.
final class PrecisionCLITests: XCTestCase {
    static let commands = ["sample", "train", "train-tokenizer", "precompute", "reconstruct", "eval",
                           "bench kernels", "bench generation", "bench training", "bench tokenizer"]

    func testEveryModelCommandTakesPrecision() throws {
        for cmd in Self.commands {
            let r = try gen(cmd.split(separator: " ").map(String.init) + ["--help"])
            XCTAssertEqual(r.status, 0, cmd)
            XCTAssertTrue(r.stdout.contains("--precision <precision>"), "\(cmd) --help has no --precision")
        }
        let r = try gen(["bench", "kernels", "--smoke", "--precision", "fp16"])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("fp16"), r.stderr)
    }

    /// Each command, given bf16 on a CPU without bf16 hardware, prints one sentence and exits 1
    /// before it reads or writes anything.
    func testBF16RefusedWithoutHardware() throws {
        try XCTSkipIf(Engine.bf16Available, "this CPU (\(Engine.cpuName)) has bf16 hardware, so --precision bf16 runs here")
        let d = tempDir("bf16-refused")
        let ck = GenInfoRobustnessTests.checkpoints
        let runs: [[String]] = [
            ["sample", "--sit", ck + "/fashion-sit", "--tokenizer", ck + "/fashion-tokenizer", "--per-class", "1", "-o", d + "/s"],
            ["train", "--cache", d + "/none.h5", "--out", d + "/sit", "--steps", "1"],
            ["train-tokenizer", "--out", d + "/tok", "--steps", "1"],
            ["precompute", "--tokenizer", ck + "/fashion-tokenizer", "--out", d + "/lat.h5"],
            ["reconstruct", "--tokenizer", ck + "/fashion-tokenizer", "--out", d + "/r.png"],
            ["eval", "--tokenizer", ck + "/fashion-tokenizer", "--classifier", ck + "/fashion-classifier"],
            ["bench", "kernels", "--smoke"], ["bench", "generation", "--smoke"],
            ["bench", "training", "--smoke"], ["bench", "tokenizer", "--smoke"],
        ]
        for args in runs {
            let r = try gen(args + ["--precision", "bf16"])
            XCTAssertEqual(r.status, 1, "\(args[0]): \(r.stdout) \(r.stderr)")
            let lines = r.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, "\(args[0]): \(r.stderr)")
            XCTAssertTrue(r.stderr.hasPrefix("error: --precision bf16 needs a CPU with AVX512-BF16 or AMX"), "\(args[0]): \(r.stderr)")
            XCTAssertFalse(r.stdout.contains("Engine:"), "\(args[0]) started anyway: \(r.stdout)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: d), [], "a refused command wrote something")
    }

    func testEngineLineComesFirst() throws {
        var r = try gen(["bench", "kernels", "--smoke", "--precision", "fp32"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("Engine: oneDNN "), r.stdout)
        XCTAssertTrue(r.stdout.split(separator: "\n")[0].contains("fp32 matmuls (--precision fp32)"), r.stdout)
        r = try gen(["bench", "tokenizer", "--smoke"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let first = String(r.stdout.split(separator: "\n")[0])
        XCTAssertTrue(first.hasPrefix("Engine: ") && first.contains("(auto: ") && first.contains(Engine.cpuName), first)
        XCTAssertTrue(first.contains(Engine.bf16Available ? "bf16 matmuls" : "fp32 matmuls"), first)
    }

    /// gen bench generation holds each forward to oneDNN's packed matmul measured in the same
    /// rounds (the "matmul share"), beside raw sgemm.
    func testGenerationBenchmarkReportsTheShareOfOneDNNMatmul() throws {
        let r = try gen(["bench", "generation", "--smoke", "--precision", "fp32"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("oneDNN matmul (weight packed once, fp32): "), r.stdout)
        XCTAssertTrue(r.stdout.contains("| of sgemm | of oneDNN matmul |"), r.stdout)
        let row = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("| tiny smoke SiT |") })
        let cells = row.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
        XCTAssertTrue(cells[9].hasSuffix("%") && Double(cells[9].dropLast()) != nil, String(row))
    }

    /// A run records its precision in state.json; --resume keeps it, refuses another, and reads
    /// a state without the field (older runs) as fp32.
    func testTrainingRecordsAndHonoursPrecision() throws {
        try XCTSkipUnless(FashionMNIST.isAvailable(), "Fashion-MNIST (dataset-fashion-mnist) is not installed")
        let d = tempDir("precision-run")
        let tok = d + "/tok"
        var r = try gen(["train-tokenizer", "--out", tok, "--steps", "2", "--limit", "16", "--precision", "fp32"] + tinyTokenizerArgs)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("Engine: training products on OpenBLAS sgemm, fp32 (--precision fp32)"), r.stdout)
        let statePath = tok + "/checkpoint/training/state.json"
        var state = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: statePath))) as! [String: Any]
        XCTAssertEqual(state["precision"] as? String, "fp32")

        // Resumed without --precision: the run's own, and the engine line says why.
        r = try gen(["train-tokenizer", "--out", tok, "--steps", "3", "--resume"] + tinyTokenizerArgs)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.split(separator: "\n")[0].contains("fp32 (recorded in the run being resumed)"), r.stdout)

        // A run recorded as bf16: refused in fp32 on any CPU; without --precision refused where
        // bf16 cannot run.
        state = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: statePath))) as! [String: Any]
        state["precision"] = "bf16"
        try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: statePath))
        r = try gen(["train-tokenizer", "--out", tok, "--steps", "4", "--resume", "--precision", "fp32"] + tinyTokenizerArgs)
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("trains in bf16, not fp32; leave out --precision to resume it in bf16."), r.stderr)
        if !Engine.bf16Available {
            r = try gen(["train-tokenizer", "--out", tok, "--steps", "4", "--resume"] + tinyTokenizerArgs)
            XCTAssertEqual(r.status, 1)
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
            XCTAssertTrue(r.stderr.contains("trains in bf16 (recorded in its state.json), and this"), r.stderr)
        } else {
            print("PrecisionCLITests: bf16 hardware here, the refusal of a bf16 resume without it is not exercised")
        }

        // A state without the field (a run from before precision was recorded) resumes as fp32.
        state.removeValue(forKey: "precision")
        try JSONSerialization.data(withJSONObject: state).write(to: URL(fileURLWithPath: statePath))
        r = try gen(["train-tokenizer", "--out", tok, "--steps", "4", "--resume"] + tinyTokenizerArgs)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.split(separator: "\n")[0].contains("fp32 (recorded in the run being resumed)"), r.stdout)
        state = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: statePath))) as! [String: Any]
        XCTAssertEqual(state["precision"] as? String, "fp32")
    }
}
