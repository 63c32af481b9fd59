import XCTest
@testable import Tensor

/// Central finite differences against the tape's gradients.
///
/// The scalar probed is L = sum(f(inputs) * R) for a fixed random R, accumulated in Double so
/// that float32 rounding stays far below the tolerance. A backward wrong by a sign or a
/// transposition gives O(1) errors.
func checkGradients(_ name: String, _ inputs: [Tensor], eps: Float = 1e-2, atol: Double = 2e-3, rtol: Double = 1e-2,
                    maxChecksPerInput: Int = 24, file: StaticString = #filePath, line: UInt = #line,
                    _ f: ([Tensor]) -> Tensor) {
    var rng = RandomGenerator(seed: 99)
    for t in inputs { t.requiresGrad = true; t.grad = nil }
    let y = f(inputs)
    let r = rng.normalTensor(y.shape)
    let loss = (y * r).sum()
    loss.backward()

    func probe() -> Double {
        Autograd.noGrad {
            let out = f(inputs)
            var s = 0.0
            for i in 0..<out.count { s += Double(out.pointer[i]) * Double(r.pointer[i]) }
            return s
        }
    }
    var worst = 0.0
    for (k, t) in inputs.enumerated() {
        guard let g = t.grad else { XCTFail("\(name): input \(k) got no gradient", file: file, line: line); continue }
        XCTAssertEqual(g.shape, t.shape, "\(name): gradient shape", file: file, line: line)
        let n = t.count
        let picks = n <= maxChecksPerInput ? Array(0..<n) : (0..<maxChecksPerInput).map { _ in rng.below(n) }
        for i in picks {
            let old = t.pointer[i]
            t.pointer[i] = old + eps
            let lp = probe()
            t.pointer[i] = old - eps
            let lm = probe()
            t.pointer[i] = old
            let numeric = (lp - lm) / (2 * Double(eps))
            let analytic = Double(g.pointer[i])
            let err = Swift.abs(numeric - analytic)
            worst = Swift.max(worst, err / (atol + rtol * Swift.abs(numeric)))
            if err > atol + rtol * Swift.abs(numeric) {
                XCTFail("\(name): input \(k) element \(i): analytic \(analytic) vs numeric \(numeric)", file: file, line: line)
                return
            }
        }
    }
    for t in inputs { t.requiresGrad = false; t.grad = nil }
}

func randn(_ shape: [Int], seed: UInt64 = 1, std: Float = 1) -> Tensor {
    var rng = RandomGenerator(seed: seed)
    return rng.normalTensor(shape, std: std)
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    return zip(a, b).map { Swift.abs($0 - $1) }.max() ?? 0
}
