// The tokenizer recipe through the CLI: every term on (perceptual over the classifier's
// features, PatchGAN with LeCAM, consistency regularization and the adaptive weight, alignment
// to the classifier) survives kill -9 and resumes to the same bytes; the baseline posteriors
// train, save and reconstruct; gen ablate runs end to end and continues instead of retraining.

import Datasets
import Foundation
import Pipeline
import XCTest

final class RecipeCLITests: XCTestCase {
    let classifier = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Checkpoints/fashion-classifier").path

    override func setUpWithError() throws {
        try XCTSkipUnless(FashionMNIST.isAvailable(), "Fashion-MNIST (dataset-fashion-mnist) is not installed")
    }

    var recipeArgs: [String] {
        ["--perceptual", classifier, "--perceptual-warmup", "4", "--disc-weight", "0.5", "--disc-start", "3", "--disc-dim", "8",
         "--lecam-weight", "0.001", "--disc-cr-weight", "1", "--align-teacher", classifier, "--align", "global", "--align-proj-dim", "16"]
    }

    func testFullRecipeSurvivesKill9AndResumesExactly() throws {
        let d = tempDir("recipe-kill")
        let args = ["train-tokenizer", "--steps", "24", "--limit", "128", "--save-every", "4", "--log-every", "2"] + tinyTokenizerArgs + recipeArgs
        var r = try gen(args + ["--out", d + "/full"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let log = try String(contentsOfFile: d + "/full/log.jsonl", encoding: .utf8)
        for field in ["classifier-features", "generator_adv", "adaptive_weight", "disc_", "repa"] {
            XCTAssertTrue(log.contains(field), "log.jsonl has no \(field)")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: d + "/full/checkpoint/training/discriminator.safetensors"))
        XCTAssertTrue(try killGen(args + ["--out", d + "/cut"]) {
            FileManager.default.fileExists(atPath: d + "/cut/checkpoint/training/state.json")
        })
        r = try gen(args + ["--out", d + "/cut", "--resume"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let files = try FileManager.default.contentsOfDirectory(atPath: d + "/full/checkpoint/training").filter { $0 != "state.json" }
        XCTAssertGreaterThanOrEqual(files.count, 5, "\(files)")
        for f in files + ["../model.safetensors"] {
            XCTAssertEqual(FileManager.default.contents(atPath: d + "/full/checkpoint/training/" + f),
                           FileManager.default.contents(atPath: d + "/cut/checkpoint/training/" + f), "\(f) differs after kill -9 and resume")
        }
    }

    func testBaselinePosteriorsTrainAndReconstruct() throws {
        let d = tempDir("recipe-baselines")
        for kind in ["vq", "kl"] {
            var r = try gen(["train-tokenizer", "--quantizer", kind, "--steps", "3", "--limit", "64", "--out", d + "/" + kind] + tinyTokenizerArgs)
            XCTAssertEqual(r.status, 0, r.stderr)
            let config = try String(contentsOfFile: d + "/\(kind)/checkpoint/config.json", encoding: .utf8)
            XCTAssertTrue(config.contains("\"quantizer\" : \"\(kind)\""), config)
            r = try gen(["reconstruct", "--tokenizer", d + "/\(kind)/checkpoint", "--count", "4", "--out", d + "/\(kind).png"])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let r = try gen(["train-tokenizer", "--quantizer", "gaussian", "--steps", "3", "--out", d + "/bad"])
        XCTAssertNotEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("quantizer"), r.stderr)
    }

    func testAblateRunsAndContinues() throws {
        let d = tempDir("ablate")
        let args = ["ablate", "--classifier", classifier, "--out", d + "/abl", "--tokens", "4", "--seeds", "0", "--quantizers", "kl,vq,softvq",
                    "--steps", "3", "--batch-size", "8", "--sit-steps", "3", "--per-class", "1", "--limit", "64", "--eval-images", "20"]
        var r = try gen(args)
        XCTAssertEqual(r.status, 0, r.stderr)
        let table = try String(contentsOfFile: d + "/abl/ablation.md", encoding: .utf8)
        for row in ["| kl | 4 |", "| vq | 4 |", "| softvq | 4 |", "softvq + alignment", "| without |", "| with |"] {
            XCTAssertTrue(table.contains(row), "ablation.md lacks \(row):\n\(table)")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: d + "/abl/ablation.png"))
        let json = FileManager.default.contents(atPath: d + "/abl/ablation.json")
        r = try gen(args)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stdout.contains("tokenizer tok-"), "a finished ablation retrained:\n\(r.stdout)")
        let again = try JSONDecoder().decode(AblationReport.self, from: FileManager.default.contents(atPath: d + "/abl/ablation.json")!)
        let first = try JSONDecoder().decode(AblationReport.self, from: json!)
        XCTAssertEqual(again.reconstruction.keys.sorted(), first.reconstruction.keys.sorted())
        XCTAssertEqual(again.reconstruction.values.map(\.psnr).sorted(), first.reconstruction.values.map(\.psnr).sorted())
    }
}
