// LPIPS against the official class (tools/fixtures/lpips.py). The fixture's VGG16 has the
// official layer structure and keys but every width divided by 8 (8, 16, 32, 64, 64) and
// random weights, so it tests the computation, not the pretrained numbers. References come
// from a float64 run of the float32 weights and inputs; report.json holds PyTorch's own
// float32-vs-float64 differences for scale.

import Foundation
import Tensor
import Tokenizer
import XCTest

final class LPIPSParityTests: XCTestCase {
    static var dir: URL { Fixtures.root.appendingPathComponent("lpips") }
    static func weights() -> String { dir.appendingPathComponent("weights.safetensors").path }
    static func io() throws -> SafeTensorsFile { try SafeTensorsFile(path: dir.appendingPathComponent("io.safetensors").path) }

    func testWidthsAndKeysFromTheFile() throws {
        let lpips = try LPIPS.load(path: Self.weights())
        XCTAssertEqual(lpips.net.stageChannels, [8, 16, 32, 64, 64])
        let file = try SafeTensorsFile(path: Self.weights())
        XCTAssertEqual(Set(lpips.namedTensors().map { $0.0 }), Set(file.names))
        XCTAssertEqual(file.names.count, 33)
        XCTAssertEqual(lpips.namedTensors().first?.0, "scaling_layer.shift")
        XCTAssertEqual(lpips.namedTensors().last?.0, "lin4.model.1.weight")
        XCTAssertTrue(lpips.namedTensors().contains { $0.0 == "net.slice5.28.bias" })
        XCTAssertTrue(lpips.trainableParameters().isEmpty, "LPIPS must be frozen")
        // The scaling buffers of the file are the official constants.
        XCTAssertEqual(lpips.shift.scalars, LPIPS.officialShift)
        XCTAssertEqual(lpips.scale.scalars, LPIPS.officialScale)
    }

    func testValueAndGradientMatchOfficial() throws { try checkParity(Self.dir) }

    /// The same comparison for a folder written by `tools/fixtures/lpips.py --weights FILE --out DIR`
    /// (e.g. full-width weights, too large for the repository), when LPIPS_PARITY_DIR names it.
    func testParityFolderIfGiven() throws {
        guard let dir = ProcessInfo.processInfo.environment["LPIPS_PARITY_DIR"] else {
            throw XCTSkip("LPIPS_PARITY_DIR is not set")
        }
        try checkParity(URL(fileURLWithPath: dir))
    }

    /// Per-sample values and d mean / d x_hat against the official float64 reference, within
    /// 1e-5 and 1e-4 of their largest magnitudes (float32 rounding over a few thousand terms).
    func checkParity(_ dir: URL, file: StaticString = #filePath, line: UInt = #line) throws {
        let lpips = try LPIPS.load(path: dir.appendingPathComponent("weights.safetensors").path)
        let io = try SafeTensorsFile(path: dir.appendingPathComponent("io.safetensors").path)
        let x = try io.tensor("x"), xHat = try io.tensor("x_hat")
        let refValue = try io.tensor("value").scalars, refGrad = try io.tensor("grad").scalars

        xHat.requiresGrad = true
        let perSample = lpips.distance(x, xHat)          // official order (inputs, reconstructions)
        let loss = perSample.mean()
        loss.backward()
        let dv = maxAbsDiff(perSample.scalars, refValue)
        let dg = maxAbsDiff(xHat.grad!.scalars, refGrad)
        let vScale = refValue.map(abs).max()!, gScale = refGrad.map(abs).max()!
        print("LPIPS parity \(dir.lastPathComponent) (widths \(lpips.net.stageChannels)): value max|diff| \(dv) (scale \(vScale)), grad max|diff| \(dg) (scale \(gScale))")
        XCTAssertEqual(loss.item, refValue.reduce(0, +) / Float(refValue.count), accuracy: 1e-5 * vScale, file: file, line: line)
        XCTAssertLessThan(dv, 1e-5 * vScale, file: file, line: line)
        XCTAssertLessThan(dg, 1e-4 * gScale, file: file, line: line)
    }

    /// The value is symmetric and the gradient reaches whichever argument is on the tape.
    func testSymmetricAndGradientFollowsTheTape() throws {
        let lpips = try LPIPS.load(path: Self.weights())
        let io = try Self.io()
        let x = try io.tensor("x"), xHat = try io.tensor("x_hat")
        xHat.requiresGrad = true
        let a = lpips(xHat, x)
        a.backward()
        let g1 = xHat.grad!.scalars
        xHat.grad = nil
        let b = lpips(x, xHat)
        b.backward()
        XCTAssertEqual(a.item, b.item, accuracy: 1e-7)
        XCTAssertLessThan(maxAbsDiff(g1, xHat.grad!.scalars), 1e-9)
        XCTAssertNil(x.grad)
        XCTAssertEqual(lpips(x, x).item, 0, accuracy: 1e-9)
    }

    func testWrongFilesFailWithOneSentence() throws {
        // A tokenizer checkpoint is not an LPIPS file.
        XCTAssertThrowsError(try LPIPS.load(path: Fixtures.tiny + "/model.safetensors")) { e in
            XCTAssertTrue("\(e)".contains("is not an LPIPS-VGG16 weights file"), "\(e)")
        }
        let lpips = try LPIPS.load(path: Self.weights())
        let dir = Fixtures.tempDir("lpips")
        // A missing head.
        let noHead = dir + "/no-head.safetensors"
        try writeSafeTensors(lpips.namedTensors().filter { $0.0 != "lin4.model.1.weight" }, to: noHead)
        XCTAssertThrowsError(try LPIPS.load(path: noHead)) { e in
            XCTAssertEqual("\(e)", "no-head.safetensors is missing tensor 'lin4.model.1.weight'")
        }
        // A tensor the model does not have.
        let extra = dir + "/extra.safetensors"
        try writeSafeTensors(lpips.namedTensors() + [("net.slice5.30.weight", Tensor(zeros: [1]))], to: extra)
        XCTAssertThrowsError(try LPIPS.load(path: extra)) { e in
            XCTAssertTrue("\(e)".contains("does not use: 'net.slice5.30.weight'"), "\(e)")
        }
        // A convolution whose input width breaks the chain (checked before anything is allocated).
        let badConv = dir + "/bad-conv.safetensors"
        try writeSafeTensors(lpips.namedTensors().map { $0.0 == "net.slice2.5.weight" ? ($0.0, Tensor(zeros: [16, 7, 3, 3])) : $0 },
                             to: badConv)
        XCTAssertThrowsError(try LPIPS.load(path: badConv)) { e in
            XCTAssertEqual("\(e)", "bad-conv.safetensors: tensor 'net.slice2.5.weight' has shape [16, 7, 3, 3], but the VGG16 layout expects (O, 8, 3, 3)")
        }
        // A head whose width disagrees with its stage.
        let badHead = dir + "/bad-head.safetensors"
        try writeSafeTensors(lpips.namedTensors().map { $0.0 == "lin2.model.1.weight" ? ($0.0, Tensor(zeros: [1, 8, 1, 1])) : $0 },
                             to: badHead)
        XCTAssertThrowsError(try LPIPS.load(path: badHead)) { e in
            XCTAssertTrue("\(e)".contains("'lin2.model.1.weight' has shape [1, 8, 1, 1] but the model expects [1, 32, 1, 1]"), "\(e)")
        }
    }
}

/// The heads' Dropout of the official training mode: values vary from call to call, and their
/// mean over many calls is the eval-mode value (the official Dropout is unbiased).
final class LPIPSTrainingDropoutTests: XCTestCase {
    func testUnbiasedAndRandom() throws {
        let lpips = try LPIPS.load(path: LPIPSParityTests.weights())
        let io = try LPIPSParityTests.io()
        let x = try io.tensor("x"), xHat = try io.tensor("x_hat")
        let eval = Autograd.noGrad { lpips(x, xHat).item }
        lpips.trainingDropout = TrainingDropout(seed: 7)
        let draws = (0..<120).map { _ in Double(Autograd.noGrad { lpips(x, xHat).item }) }
        lpips.trainingDropout = nil
        let mean = draws.reduce(0, +) / Double(draws.count)
        let sd = (draws.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(draws.count - 1)).squareRoot()
        print("LPIPS training dropout: eval \(eval), mean of 120 draws \(mean), sd \(sd)")
        XCTAssertGreaterThan(sd, 1e-4 * Double(eval))
        XCTAssertEqual(mean, Double(eval), accuracy: 4 * sd / Double(draws.count).squareRoot())
        XCTAssertEqual(Autograd.noGrad { lpips(x, xHat).item }, eval)
    }
}
