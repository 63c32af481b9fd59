// Parity with the official SiT: tiny random models saved by the official code, with their
// forward velocity, guided Euler / Heun samples and training-loss pieces.

import Foundation
import XCTest
import Tensor
import Sampler
@testable import SiT

final class SiTFixtureTests: XCTestCase {
    func testForward1D() throws {
        let model = try SiT.load(folder: Fixtures.path("sit_tiny_1d"))
        let io = try Fixtures.io("sit_tiny_1d")
        let v = try Autograd.noGrad { try model(io.tensor("x"), t: io.tensor("t"), y: io.integers("y")) }
        let expected = try io.tensor("velocity")
        XCTAssertEqual(v.shape, expected.shape)
        let diff = Double(maxAbsDiff(v.scalars, expected.scalars))
        let f64 = maxAbsDiff(try io.doubles("velocity_f64"), expected.scalars.map(Double.init))
        report("sit_tiny_1d velocity", diff, reference: f64, tolerance: 1e-4)
        XCTAssertLessThan(diff, 1e-4)
        XCTAssertLessThan(model.posEmbedMaxDifference ?? 1, 1e-5, "pos_embed table differs from the computed one")
    }

    func testForward2D() throws {
        let model = try SiT.load(folder: Fixtures.path("sit_tiny_2d"))
        let io = try Fixtures.io("sit_tiny_2d")
        let v = try Autograd.noGrad { try model(io.tensor("x"), t: io.tensor("t"), y: io.integers("y")) }
        let expected = try io.tensor("velocity")
        XCTAssertEqual(v.shape, [3, 4, 8, 8])
        let diff = Double(maxAbsDiff(v.scalars, expected.scalars))
        let f64 = maxAbsDiff(try io.doubles("velocity_f64"), expected.scalars.map(Double.init))
        report("sit_tiny_2d velocity", diff, reference: f64, tolerance: 1e-4)
        XCTAssertLessThan(diff, 1e-4)
        XCTAssertLessThan(model.posEmbedMaxDifference ?? 1, 1e-6)
    }

    func testForwardUnderTapeMatchesInference() throws {
        let model = try SiT.load(folder: Fixtures.path("sit_tiny_1d"))
        let io = try Fixtures.io("sit_tiny_1d")
        let taped = try model(io.tensor("x"), t: io.tensor("t"), y: io.integers("y"))
        XCTAssertTrue(taped.requiresGrad)
        XCTAssertLessThan(maxAbsDiff(taped.scalars, try io.tensor("velocity").scalars), 1e-4)
    }

    func testGuidedEulerAndHeun() throws {
        let model = try SiT.load(folder: Fixtures.path("sit_tiny_1d"))
        let io = try Fixtures.io("sit_tiny_1d")
        let noise = try io.tensor("sample_latents")
        let labels = try io.integers("sample_labels")
        let velocity: VelocityField = { x, t, y in try model(x, t: t, y: y) }
        let guidance = Guidance(scale: 1.5, low: 0, high: 0.7, nullLabel: model.nullLabel)
        for (method, key) in [(SamplerMethod.euler, "euler_out"), (.heun, "heun_out")] {
            let run = try SamplingRun(velocity: velocity, options: SamplerOptions(method: method, steps: 6, guidance: guidance),
                                      initialNoise: noise.scalars.map(Double.init), shape: noise.shape, labels: labels)
            var guidedSteps: [Bool] = []
            for step in run { guidedSteps.append(step.guided) }
            XCTAssertNil(run.failure)
            XCTAssertEqual(guidedSteps, [false, false, true, true, true, true])
            let diff = maxAbsDiff(run.x, try io.doubles(key))
            report("sit_tiny_1d \(key)", diff, tolerance: 1e-4)
            XCTAssertLessThan(diff, 1e-4)
        }
    }

    func testLossPieces() throws {
        let model = try SiT.load(folder: Fixtures.path("sit_tiny_1d"))
        let io = try Fixtures.io("sit_tiny_1d")
        let x0 = try io.tensor("siloss_x0"), noise = try io.tensor("siloss_noise")
        let t = try io.tensor("siloss_t").scalars, y = try io.integers("siloss_y")
        let objective = FlowMatchingObjective(for: model.config)
        let (input, target) = objective.interpolate(x0: x0, noise: noise, t: t)
        let dIn = maxAbsDiff(input.scalars, try io.tensor("siloss_model_input").scalars)
        let dTarget = maxAbsDiff(target.scalars, try io.tensor("siloss_model_target").scalars)
        let output = try Autograd.noGrad { try model(input, t: t, y: y) }
        let dOut = maxAbsDiff(output.scalars, try io.tensor("siloss_model_output").scalars)
        let loss = try Autograd.noGrad { try objective.perSampleLoss(model: model, x0: x0, noise: noise, t: t, labels: y) }
        XCTAssertEqual(loss.shape, [3])
        let dLoss = maxAbsDiff(loss.scalars, try io.tensor("siloss_loss").scalars)
        for (name, d) in [("model input", dIn), ("target", dTarget), ("model output", dOut), ("per-sample loss", dLoss)] {
            report("sit_tiny_1d loss \(name)", Double(d), tolerance: 1e-5)
        }
        XCTAssertLessThan(dIn, 1e-6)
        XCTAssertLessThan(dTarget, 1e-6)
        XCTAssertLessThan(dOut, 1e-4)
        XCTAssertLessThan(dLoss, 1e-5)
    }

    func testSaveLoadRoundTripKeepsConfigFields() throws {
        let model = try SiT.load(folder: Fixtures.path("sit_tiny_1d"))
        let dir = temporaryFolder("roundtrip")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try model.save(folder: dir)
        let again = try SiT.load(folder: dir)
        for ((k1, a), (k2, b)) in zip(model.namedTensors(), again.namedTensors()) {
            XCTAssertEqual(k1, k2)
            XCTAssertEqual(a.scalars, b.scalars, k1)
        }
        let original = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("sit_tiny_1d", "config.json")))) as! NSDictionary
        let written = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as! NSDictionary
        XCTAssertEqual(original, written)
        // Half precision writes and reloads close to the original.
        try model.save(folder: dir, dtype: .bf16)
        let half = try SiT.load(folder: dir)
        XCTAssertLessThan(maxAbsDiff(half.blocks[0].attn.qkv.weight.scalars, model.blocks[0].attn.qkv.weight.scalars), 2e-3)
    }

    func testBadInputsThrowClearErrors() throws {
        let model = try SiT.load(folder: Fixtures.path("sit_tiny_1d"))
        let x = Tensor(zeros: [2, 8, 8])
        XCTAssertThrowsError(try model(x, t: [0.5, 0.5], y: [3, 11])) { error in
            XCTAssertEqual(error as? SiTError, .labelOutOfRange(label: 11, index: 1, validRange: 0...10))
            print("label error:", error)
        }
        XCTAssertThrowsError(try model(x, t: [0.5, 0.5], y: [-1, 0]))
        XCTAssertNoThrow(try model(x, t: [0.5, 0.5], y: [10, 0]))   // the null class
        XCTAssertThrowsError(try model(Tensor(zeros: [2, 8, 4]), t: [0.5, 0.5], y: [0, 0])) { error in
            guard case .badLatentShape = error as? SiTError else { return XCTFail("\(error)") }
            print("shape error:", error)
        }
        XCTAssertThrowsError(try model(x, t: [0.5], y: [0, 0]))
    }

    func testConfigTensorMismatch() throws {
        let dir = temporaryFolder("mismatch")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let src = Fixtures.path("sit_tiny_1d")
        try FileManager.default.copyItem(atPath: src + "/model.safetensors", toPath: dir + "/model.safetensors")
        var config = try SiTConfig.read(from: src + "/config.json")
        config.inChannels = 16
        try config.write(to: dir + "/config.json")
        XCTAssertThrowsError(try SiT.load(folder: dir)) { error in
            XCTAssertEqual(error as? SiTError, .checkpointDisagreesWithConfig(key: "x_embedder.weight", fromConfig: [64, 16], inFile: [64, 8]))
            print("mismatch error:", error)
        }
        config.inChannels = 8
        config.depth = 3
        try config.write(to: dir + "/config.json")
        XCTAssertThrowsError(try SiT.load(folder: dir)) { error in
            XCTAssertEqual(error as? CheckpointError, .missingKey("model.safetensors", "blocks.2.attn.qkv.weight"))
        }
        config.depth = 1
        try config.write(to: dir + "/config.json")
        XCTAssertThrowsError(try SiT.load(folder: dir)) { error in
            guard case .unexpectedKeys = error as? CheckpointError else { return XCTFail("\(error)") }
        }
    }

    func testStoredPositionTableIsCheckedAndKept() throws {
        let model = try SiT.load(folder: Fixtures.path("sit_tiny_2d"))
        model.posEmbed.pointer[5] += 0.01
        let dir = temporaryFolder("posembed")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try model.save(folder: dir)
        var warnings: [String] = []
        let again = try SiT.load(folder: dir) { warnings.append($0) }
        XCTAssertEqual(warnings.count, 1)
        XCTAssertEqual(again.posEmbedMaxDifference ?? 0, 0.01, accuracy: 1e-6)
        XCTAssertEqual(again.posEmbed.scalars, model.posEmbed.scalars)
    }
}
