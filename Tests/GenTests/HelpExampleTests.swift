// Runs every example of `gen --help` and of each command's help as written, in order, in a
// scratch folder that has the repository's Checkpoints/ (a symbolic link), so "Typical flow"
// and each "Example:" line must work exactly as a user would type them.
//
// The only change to a command line is a cost bound appended at its end, where the example
// would otherwise train or sample for minutes (ArgumentParser takes the last value of a
// repeated option, so `--num-samples 2000 ... --num-samples 8` samples 8): training stops after
// a few steps (`--stop-after`, which leaves a resumable checkpoint), precompute and eval use
// class-balanced subsets, sampling few images with few steps, benchmarks their smoke size.

import Datasets
import Foundation
import XCTest

final class HelpExampleTests: XCTestCase {
    override func setUpWithError() throws {
        try XCTSkipUnless(FashionMNIST.isAvailable(), "Fashion-MNIST (dataset-fashion-mnist) is not installed")
    }

    /// The example command lines of a help text: lines that start with "gen " or "mpirun "
    /// (after an optional "Example: ").
    static func examples(_ help: String) -> [String] {
        help.split(separator: "\n").compactMap { line in
            var t = line.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("Example: ") { t = String(t.dropFirst("Example: ".count)) }
            return t.hasPrefix("gen ") || t.hasPrefix("mpirun ") ? t : nil
        }
    }

    /// Cost bounds appended to an example (see the file comment).
    static func bound(_ words: [String]) -> [String] {
        let cmd = words.count > 1 ? words[1] : ""
        switch cmd {
        case "train-tokenizer": return ["--stop-after", "3", "--limit", "100", "--batch-size", "8", "--log-every", "1"]
        case "train": return ["--stop-after", "3", "--batch-size", "8", "--log-every", "1"]
        case "precompute": return ["--limit", "100"]
        case "sample" where !words.contains("--from-png"):
            return ["--num-steps", "2"] + (words.contains("--num-samples") ? ["--num-samples", "8"] : [])
                + (words.contains("--per-class") ? ["--per-class", "4"] : [])
        case "eval": return ["--per-class", "1", "--cfg-scale", "3", "--num-steps", "2", "--reconstruction-limit", "20"]
        case "train-classifier": return ["--epochs", "1", "--limit", "500"]
        case "bench": return ["--smoke"]
        case "ablate": return ["--tokens", "4", "--seeds", "0", "--quantizers", "kl,softvq", "--steps", "2", "--batch-size", "8",
                               "--sit-steps", "2", "--per-class", "1", "--limit", "64", "--eval-images", "20"]
        default: return []
        }
    }

    /// Splits a command line as a shell would for the examples' quoting (double quotes).
    static func words(_ line: String) -> [String] {
        var words: [String] = [], current = "", quoted = false, started = false
        for ch in line {
            if ch == "\"" { quoted.toggle(); started = true }
            else if ch == " " && !quoted { if started { words.append(current) }; current = ""; started = false }
            else { current.append(ch); started = true }
        }
        if started { words.append(current) }
        return words
    }

    /// (command path, discussion) of every command, depth first in declaration order, from
    /// ArgumentParser's help dump (the same text `--help` prints, before line wrapping).
    static func discussions() throws -> [(String, String)] {
        let dump = try gen(["--experimental-dump-help"])
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any])
        var found: [(String, String)] = []
        func walk(_ c: [String: Any], _ path: String) {
            found.append((path, c["discussion"] as? String ?? ""))
            for sub in c["subcommands"] as? [[String: Any]] ?? [] where sub["commandName"] as? String != "help" {
                walk(sub, (path.isEmpty ? "" : path + " ") + (sub["commandName"] as? String ?? "?"))
            }
        }
        walk(try XCTUnwrap(root["command"] as? [String: Any]), "")
        return found
    }

    func testEveryHelpExampleRunsAsWritten() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
        let d = tempDir("help-examples")
        try FileManager.default.createSymbolicLink(atPath: d + "/Checkpoints", withDestinationPath: repo + "/Checkpoints")

        var lines: [String] = []
        for (path, text) in try Self.discussions() {
            let found = Self.examples(text)
            if path.isEmpty { XCTAssertEqual(found.count, 4, "the Typical flow of gen --help") }
            // Every command a user runs shows an example (init's two kinds share init's).
            if !path.isEmpty && path != "bench" && !path.hasPrefix("init ") {
                XCTAssertFalse(found.isEmpty, "gen \(path) --help has no example")
            }
            lines += found
        }
        for line in lines {
            // Multi-process examples run under mpirun in MPITests (as root CI needs extra flags).
            if line.hasPrefix("mpirun ") { print("HelpExampleTests: not run here (MPITests runs mpirun): \(line)"); continue }
            let w = Self.words(line)
            let r = try gen(Array(w.dropFirst()) + Self.bound(w), cwd: d)
            XCTAssertEqual(r.status, 0, "\(line)\n\(r.stderr.suffix(2000))")
        }
        // The flow's outputs are where the help says.
        for f in ["runs/tok/checkpoint/model.safetensors", "runs/latents.h5", "runs/sit/checkpoint/model.safetensors",
                  "runs/samples/grid.png", "exported/fashion-sit/README.md", "init/sample/grid.png"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: d + "/" + f), f)
        }
    }
}
