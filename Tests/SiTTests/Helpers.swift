import Foundation
import XCTest
import Tensor
@testable import SiT

/// Test data copied into the repository: Tests/Fixtures/<name> (official tiny models with their
/// recorded inputs and outputs, and the official key lists).
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures")
    static func path(_ parts: String...) -> String {
        parts.reduce(root) { $0.appendingPathComponent($1) }.path
    }
    static func io(_ name: String) throws -> SafeTensorsFile {
        try SafeTensorsFile(path: path(name, "io.safetensors"))
    }
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "\(a.count) vs \(b.count)")
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

func maxAbsDiff(_ a: [Double], _ b: [Double]) -> Double {
    precondition(a.count == b.count, "\(a.count) vs \(b.count)")
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

func report(_ what: String, _ diff: Double, reference: Double? = nil, tolerance: Double) {
    let ref = reference.map { String(format: "   (official f32 vs f64: %.2e)", $0) } ?? ""
    print(String(format: "%@ %@: max |diff| = %.2e%@", diff <= tolerance ? "OK    " : "NOT OK", what, diff, ref))
}

func temporaryFolder(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "sit-tests-\(getpid())-\(name)"
    try? FileManager.default.removeItem(atPath: dir)
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}
