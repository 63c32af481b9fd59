import XCTest
@testable import Tensor

/// The blocked (flash-style) attention kernel against the whole-matrix kernel and the naive
/// oracle: forward and gradients, both layouts, odd sizes with T not a multiple of either tile,
/// several tiles per row, large scores (the online maximum moves), and finite differences.
final class BlockedAttentionTests: XCTestCase {
    override func tearDown() {
        BlockedAttention.mode = .auto
        BlockedAttention.queryTile = 64
        BlockedAttention.keyTile = 128
    }

    /// Output and (dq, dk, dv) of sdpa under a mode, for the upstream gradient r.
    func sdpa(_ mode: BlockedAttention.Mode, _ q: Tensor, _ k: Tensor, _ v: Tensor, _ r: Tensor) -> [[Float]] {
        BlockedAttention.mode = mode
        defer { BlockedAttention.mode = .auto }
        let (qq, kk, vv) = (q.detached(), k.detached(), v.detached())
        for t in [qq, kk, vv] { t.requiresGrad = true }
        let out = scaledDotProductAttention(qq, kk, vv)
        (out * r).sum().backward()
        return [out.scalars, qq.grad!.scalars, kk.grad!.scalars, vv.grad!.scalars]
    }

    func packed(_ mode: BlockedAttention.Mode, _ qkv: Tensor, heads: Int, _ r: Tensor) -> [[Float]] {
        BlockedAttention.mode = mode
        defer { BlockedAttention.mode = .auto }
        let x = qkv.detached()
        x.requiresGrad = true
        let out = packedAttention(x, heads: heads)
        (out * r).sum().backward()
        return [out.scalars, x.grad!.scalars]
    }

    /// Relative to the largest magnitude of the reference (float rounding of sums of T terms).
    func assertClose(_ a: [Float], _ b: [Float], _ what: String, tol: Float = 2e-6, file: StaticString = #filePath, line: UInt = #line) {
        let scale = Swift.max(1, b.map { Swift.abs($0) }.max() ?? 1)
        XCTAssertLessThan(maxAbsDiff(a, b) / scale, tol, what, file: file, line: line)
    }

    func testForwardAndGradientsMatchTheWholeMatrixKernel() {
        // (n, h, t, dh, query tile, key tile): T below, at, above and far above the tiles.
        let cases = [(1, 1, 1, 4, 4, 6), (2, 3, 7, 5, 4, 6), (1, 2, 13, 8, 4, 6), (2, 2, 37, 8, 8, 16),
                     (1, 3, 130, 16, 64, 128), (1, 2, 200, 8, 64, 128), (1, 1, 24, 3, 8, 8)]
        for (i, (n, h, t, dh, bq, bk)) in cases.enumerated() {
            BlockedAttention.queryTile = bq
            BlockedAttention.keyTile = bk
            let q = randn([n, h, t, dh], seed: 200 + UInt64(i)), k = randn([n, h, t, dh], seed: 300 + UInt64(i))
            let v = randn([n, h, t, dh], seed: 400 + UInt64(i)), r = randn([n, h, t, dh], seed: 500 + UInt64(i))
            let whole = sdpa(.never, q, k, v, r), blocked = sdpa(.always, q, k, v, r)
            let naive = Naive.attention(q.scalars, k.scalars, v.scalars, n: n, h: h, t: t, dh: dh)
            let name = "n\(n) h\(h) t\(t) dh\(dh) tiles \(bq)x\(bk)"
            assertClose(blocked[0], naive, "\(name): output vs naive")
            for (j, part) in ["output", "dq", "dk", "dv"].enumerated() {
                assertClose(blocked[j], whole[j], "\(name): \(part) vs whole-matrix kernel")
            }
            let qkv = randn([n, t, 3 * h * dh], seed: 600 + UInt64(i)), rp = randn([n, t, h * dh], seed: 700 + UInt64(i))
            let pw = packed(.never, qkv, heads: h, rp), pb = packed(.always, qkv, heads: h, rp)
            assertClose(pb[0], pw[0], "\(name): packed output")
            assertClose(pb[1], pw[1], "\(name): packed dqkv")
        }
    }

    /// Scores of magnitude ~100: the row maximum changes from tile to tile, and exp without the
    /// running-maximum rescaling would overflow.
    func testLargeScoresStayExact() {
        BlockedAttention.queryTile = 8
        BlockedAttention.keyTile = 8
        let (n, h, t, dh) = (1, 2, 45, 16)
        let q = randn([n, h, t, dh], seed: 1, std: 4), k = randn([n, h, t, dh], seed: 2, std: 4)
        let v = randn([n, h, t, dh], seed: 3), r = randn([n, h, t, dh], seed: 4)
        let whole = sdpa(.never, q, k, v, r), blocked = sdpa(.always, q, k, v, r)
        XCTAssertTrue(blocked.allSatisfy { $0.allSatisfy(\.isFinite) })
        for (j, part) in ["output", "dq", "dk", "dv"].enumerated() {
            assertClose(blocked[j], whole[j], "large scores: \(part)", tol: 1e-5)
        }
    }

    func testFiniteDifferences() {
        BlockedAttention.mode = .always
        BlockedAttention.queryTile = 2
        BlockedAttention.keyTile = 3
        for (n, h, t, dh) in [(1, 1, 5, 4), (2, 2, 7, 3)] {
            let q = randn([n, h, t, dh], seed: 100), k = randn([n, h, t, dh], seed: 101), v = randn([n, h, t, dh], seed: 102)
            checkGradients("blocked sdpa \(n),\(h),\(t),\(dh)", [q, k, v], eps: 1e-3, atol: 3e-3) { scaledDotProductAttention($0[0], $0[1], $0[2]) }
            let qkv = randn([n, t, 3 * h * dh], seed: 103)
            checkGradients("blocked packed \(n),\(h),\(t),\(dh)", [qkv], eps: 1e-3, atol: 3e-3) { packedAttention($0[0], heads: h) }
        }
    }

    func testAutoSwitchesAtTheMeasuredSizes() {
        BlockedAttention.mode = .auto
        XCTAssertTrue(BlockedAttention.use(tokens: 1, training: false))
        XCTAssertFalse(BlockedAttention.use(tokens: BlockedAttention.trainingMinTokens - 1, training: true))
        XCTAssertTrue(BlockedAttention.use(tokens: BlockedAttention.trainingMinTokens, training: true))
        BlockedAttention.mode = .never
        XCTAssertFalse(BlockedAttention.use(tokens: 1 << 20, training: false))
        BlockedAttention.mode = .always
        XCTAssertTrue(BlockedAttention.use(tokens: 1, training: true))
    }
}
