// Frechet distance between two sets of feature vectors, each summarized by a Gaussian:
//   FD = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)
// The matrix square roots are taken by symmetric eigendecomposition (LAPACK dsyevd), which is
// exact for the symmetric positive semi-definite matrices involved.

import CBLAS
import Foundation
import Tensor

public struct GaussianStats: Sendable {
    public let mean: [Double]
    /// Row-major (D, D) covariance (unbiased, N - 1).
    public let covariance: [Double]
    public let count: Int
    public var dimension: Int { mean.count }

    /// Mean and covariance of the rows of `features` (N, D).
    public init(features: Tensor) {
        let n = features.dim(0), d = features.dim(1)
        precondition(n >= 2, "Frechet distance needs at least two feature vectors")
        var mu = [Double](repeating: 0, count: d)
        for i in 0..<n { for j in 0..<d { mu[j] += Double(features.pointer[i * d + j]) } }
        for j in 0..<d { mu[j] /= Double(n) }
        var centered = [Double](repeating: 0, count: n * d)
        for i in 0..<n { for j in 0..<d { centered[i * d + j] = Double(features.pointer[i * d + j]) - mu[j] } }
        var cov = [Double](repeating: 0, count: d * d)
        centered.withUnsafeBufferPointer { c in
            cov.withUnsafeMutableBufferPointer { s in
                cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(d), Int32(d), Int32(n),
                            1 / Double(n - 1), c.baseAddress, Int32(d), c.baseAddress, Int32(d), 0, s.baseAddress, Int32(d))
            }
        }
        self.init(mean: mu, covariance: cov, count: n)
    }

    public init(mean: [Double], covariance: [Double], count: Int) {
        self.mean = mean
        self.covariance = covariance
        self.count = count
    }
}

public enum FrechetError: Error, CustomStringConvertible {
    case lapack(Int32)
    case dimension(Int, Int)
    public var description: String {
        switch self {
        case let .lapack(info): return "the eigendecomposition for the Frechet distance failed (LAPACK info \(info))"
        case let .dimension(a, b): return "cannot compare features of dimension \(a) and \(b)"
        }
    }
}

public enum FrechetDistance {
    /// Eigenvalues and eigenvectors (row k = eigenvector k) of a symmetric matrix.
    static func symmetricEigen(_ a: [Double], _ d: Int) throws -> (values: [Double], vectors: [Double]) {
        var m = a
        var w = [Double](repeating: 0, count: d)
        let info = m.withUnsafeMutableBufferPointer { mp in
            w.withUnsafeMutableBufferPointer { wp in cb_symmetric_eigen(mp.baseAddress, Int32(d), wp.baseAddress, 1) }
        }
        guard info == 0 else { throw FrechetError.lapack(info) }
        return (w, m)
    }

    /// Symmetric PSD square root V diag(sqrt(max(w, 0))) V^T.
    static func sqrtSymmetric(_ a: [Double], _ d: Int) throws -> [Double] {
        let (w, v) = try symmetricEigen(a, d)
        var out = [Double](repeating: 0, count: d * d)
        for k in 0..<d {
            let s = Swift.max(w[k], 0).squareRoot()
            if s == 0 { continue }
            let vk = k * d
            for i in 0..<d {
                let vik = v[vk + i] * s
                for j in 0..<d { out[i * d + j] += vik * v[vk + j] }
            }
        }
        return out
    }

    public static func distance(_ a: GaussianStats, _ b: GaussianStats) throws -> Double {
        guard a.dimension == b.dimension else { throw FrechetError.dimension(a.dimension, b.dimension) }
        let d = a.dimension
        var meanTerm = 0.0
        for j in 0..<d { let t = a.mean[j] - b.mean[j]; meanTerm += t * t }
        let root = try sqrtSymmetric(a.covariance, d)
        // M = root * S2 * root (symmetric PSD); tr sqrt(M) = sum of sqrt of its eigenvalues.
        var tmp = [Double](repeating: 0, count: d * d), m = [Double](repeating: 0, count: d * d)
        root.withUnsafeBufferPointer { r in
            b.covariance.withUnsafeBufferPointer { s in
                tmp.withUnsafeMutableBufferPointer { t in
                    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(d), Int32(d), Int32(d), 1,
                                r.baseAddress, Int32(d), s.baseAddress, Int32(d), 0, t.baseAddress, Int32(d))
                }
            }
        }
        tmp.withUnsafeBufferPointer { t in
            root.withUnsafeBufferPointer { r in
                m.withUnsafeMutableBufferPointer { mp in
                    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(d), Int32(d), Int32(d), 1,
                                t.baseAddress, Int32(d), r.baseAddress, Int32(d), 0, mp.baseAddress, Int32(d))
                }
            }
        }
        // Symmetrize against rounding before the eigendecomposition.
        for i in 0..<d { for j in (i + 1)..<Swift.max(i + 1, d) { let s = 0.5 * (m[i * d + j] + m[j * d + i]); m[i * d + j] = s; m[j * d + i] = s } }
        let (w, _) = try symmetricEigen(m, d)
        let trSqrt = w.reduce(0) { $0 + Swift.max($1, 0).squareRoot() }
        var tr1 = 0.0, tr2 = 0.0
        for i in 0..<d { tr1 += a.covariance[i * d + i]; tr2 += b.covariance[i * d + i] }
        return Swift.max(0, meanTerm + tr1 + tr2 - 2 * trSqrt)
    }

    public static func distance(features a: Tensor, _ b: Tensor) throws -> Double {
        try distance(GaussianStats(features: a), GaussianStats(features: b))
    }
}
