import Foundation
@testable import Formats
@testable import Pipeline
import Tensor
import XCTest

final class LatentCacheTests: XCTestCase {
    let n = 10, l = 4, c = 3

    func metadata(n: Int? = nil, sha: String = "abc123") -> LatentCacheMetadata {
        LatentCacheMetadata(tokenizerName: "softvq-test", tokenizerSHA256: sha, vqMean: 0.5, vqStd: 2,
                            imageSize: 32, numTokens: l, tokenDim: c, numImages: n ?? self.n,
                            preprocessing: "gray-pad-black-32", dataset: "fashion-mnist:train")
    }

    /// Deterministic row content: latents row r = r*100 + k, flipped = -(that).
    func rows(_ range: Range<Int>) -> (Tensor, Tensor, [Int], [String]) {
        let b = range.count
        let z = Tensor(uninitialized: [b, l, c]), zf = Tensor(uninitialized: [b, l, c])
        for (i, r) in range.enumerated() {
            for k in 0..<(l * c) {
                z.pointer[i * l * c + k] = Float(r * 100 + k)
                zf.pointer[i * l * c + k] = -Float(r * 100 + k)
            }
        }
        return (z, zf, range.map { $0 % 3 }, range.map { "class/img_\($0).png" })
    }

    func writeAll(_ path: String, batch: Int = 4) throws {
        let w = try LatentCacheWriter(path: path, metadata: metadata(), chunkRows: 4, deflateLevel: 4)
        var r = w.rowsDone
        while r < n {
            let (z, zf, y, p) = rows(r..<min(r + batch, n))
            try w.append(latents: z, flipped: zf, labels: y, paths: p)
            r = w.rowsDone
        }
        try w.finish()
    }

    func testRoundTrip() throws {
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/cache.h5"
        try writeAll(path)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + ".partial"))
        let reader = try LatentCacheReader(path: path)
        XCTAssertEqual(reader.metadata, metadata())
        XCTAssertEqual(reader.labels, (0..<n).map { $0 % 3 })
        let all = try reader.readAll()
        XCTAssertEqual(all.scalars, rows(0..<n).0.scalars)
        XCTAssertEqual(try reader.readAll(flipped: true).scalars, rows(0..<n).1.scalars)
        let some = try reader.read(rows: [7, 2, 7], flipped: [false, true, true], normalize: true)
        XCTAssertEqual(some.pointer[0], (700 - 0.5) / 2)
        XCTAssertEqual(some.pointer[l * c + 1], (-201 - 0.5) / 2)
        XCTAssertEqual(some.pointer[2 * l * c + 1], (-701 - 0.5) / 2)
        XCTAssertEqual(try reader.paths(rows: [3, 0]), ["class/img_3.png", "class/img_0.png"])
        XCTAssertThrowsError(try LatentCacheWriter(path: path, metadata: metadata()))
    }

    func testResumeAfterInterruptionMatchesUninterrupted() throws {
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeAll(dir + "/ref.h5")
        let path = dir + "/cache.h5"
        do {
            let w = try LatentCacheWriter(path: path, metadata: metadata(), chunkRows: 4, deflateLevel: 4)
            XCTAssertEqual(w.start, .fresh)
            let (z, zf, y, p) = rows(0..<4)
            try w.append(latents: z, flipped: zf, labels: y, paths: p)
            w.close() // interrupted: never finished
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        XCTAssertThrowsError(try LatentCacheReader(path: path)) { e in XCTAssertTrue("\(e)".contains("not finished"), "\(e)") }
        // A different tokenizer refuses to resume.
        XCTAssertThrowsError(try LatentCacheWriter(path: path, metadata: metadata(sha: "other"))) { e in
            XCTAssertTrue("\(e)".contains("tokenizer"), "\(e)")
        }
        let w = try LatentCacheWriter(path: path, metadata: metadata(), chunkRows: 4, deflateLevel: 4)
        XCTAssertEqual(w.start, .resumed(rowsDone: 4))
        w.close()
        try writeAll(path, batch: 3)
        let a = try LatentCacheReader(path: path), b = try LatentCacheReader(path: dir + "/ref.h5")
        XCTAssertEqual(try a.readAll().scalars, try b.readAll().scalars)
        XCTAssertEqual(try a.readAll(flipped: true).scalars, try b.readAll(flipped: true).scalars)
        XCTAssertEqual(a.labels, b.labels)
        XCTAssertEqual(try a.paths(rows: Array(0..<n)), try b.paths(rows: Array(0..<n)))
    }

    /// The on-disk state while the writer is still open (as `kill -9` would leave it) resumes.
    func testResumeFromSnapshotOfOpenFile() throws {
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/cache.h5"
        var w: LatentCacheWriter? = try LatentCacheWriter(path: path, metadata: metadata(), chunkRows: 4)
        for start in stride(from: 0, to: 6, by: 3) {
            let (z, zf, y, p) = rows(start..<start + 3)
            try w!.append(latents: z, flipped: zf, labels: y, paths: p)
        }
        try FileManager.default.copyItem(atPath: path + ".partial", toPath: dir + "/snapshot")
        w = nil
        try FileManager.default.removeItem(atPath: path + ".partial")
        try FileManager.default.moveItem(atPath: dir + "/snapshot", toPath: path + ".partial")
        let resumed = try LatentCacheWriter(path: path, metadata: metadata(), chunkRows: 4)
        XCTAssertEqual(resumed.start, .resumed(rowsDone: 6))
        resumed.close()
        try writeAll(path)
        XCTAssertEqual(try LatentCacheReader(path: path).readAll().scalars, rows(0..<n).0.scalars)
    }

    func testUnreadablePartialStartsOver() throws {
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/cache.h5"
        // A partial file cut short, as a kill -9 mid-write can leave it.
        let w = try LatentCacheWriter(path: path, metadata: metadata())
        let (z, zf, y, p) = rows(0..<4)
        try w.append(latents: z, flipped: zf, labels: y, paths: p)
        w.close()
        let data = FileManager.default.contents(atPath: path + ".partial")!
        _ = FileManager.default.createFile(atPath: path + ".partial", contents: data.prefix(1500))
        let again = try LatentCacheWriter(path: path, metadata: metadata())
        guard case .restarted = again.start else { return XCTFail("expected a restart, got \(again.start)") }
        XCTAssertEqual(again.rowsDone, 0)
        again.close()
        // Garbage is treated the same way.
        _ = FileManager.default.createFile(atPath: path + ".partial", contents: Data(repeating: 0x42, count: 4096))
        let third = try LatentCacheWriter(path: path, metadata: metadata())
        guard case .restarted = third.start else { return XCTFail("expected a restart") }
        third.close()
        try writeAll(path)
        XCTAssertEqual(try LatentCacheReader(path: path).count, n)
    }

    func testIncompleteAndForeignFilesAreRefused() throws {
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let w = try LatentCacheWriter(path: dir + "/c.h5", metadata: metadata())
        XCTAssertThrowsError(try w.finish()) // rows missing
        w.close()
        // Even renamed by hand, an unfinished cache is refused.
        try FileManager.default.moveItem(atPath: dir + "/c.h5.partial", toPath: dir + "/c.h5")
        XCTAssertThrowsError(try LatentCacheReader(path: dir + "/c.h5")) { e in XCTAssertTrue("\(e)".contains("incomplete"), "\(e)") }
        _ = FileManager.default.createFile(atPath: dir + "/x.h5", contents: Data("not hdf5".utf8))
        XCTAssertThrowsError(try LatentCacheReader(path: dir + "/x.h5")) { e in XCTAssertTrue("\(e)".contains("not an HDF5"), "\(e)") }
    }

    func testH5DumpListsLayout() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/h5dump") else { throw XCTSkip("h5dump is not installed") }
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeAll(dir + "/cache.h5")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/h5dump")
        process.arguments = ["-H", dir + "/cache.h5"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        for name in ["DATASET \"latents\"", "DATASET \"latents_flip\"", "DATASET \"labels\"", "DATASET \"paths\"",
                     "ATTRIBUTE \"format\"", "ATTRIBUTE \"format_version\"", "ATTRIBUTE \"tokenizer_name\"",
                     "ATTRIBUTE \"tokenizer_sha256\"", "ATTRIBUTE \"vq_mean\"", "ATTRIBUTE \"vq_std\"",
                     "ATTRIBUTE \"image_size\"", "ATTRIBUTE \"num_tokens\"", "ATTRIBUTE \"token_dim\"",
                     "ATTRIBUTE \"num_images\"", "ATTRIBUTE \"preprocessing\"", "ATTRIBUTE \"dataset\"",
                     "ATTRIBUTE \"complete\"", "ATTRIBUTE \"rows_done\"", "H5T_IEEE_F32LE", "H5T_STD_I64LE",
                     "( \(n), \(l), \(c) )", "H5T_CSET_UTF8"] {
            XCTAssertTrue(text.contains(name), "h5dump -H lacks \(name)")
        }
    }

    func testBatchLoaderIsDeterministicAndResumable() throws {
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeAll(dir + "/cache.h5")
        let reader = try LatentCacheReader(path: dir + "/cache.h5")
        func run(_ seed: UInt64, batches: Int) throws -> [([Float], [Int])] {
            let loader = try LatentBatchLoader(reader: reader, batchSize: 3, rng: RandomGenerator(seed: seed))
            return try (0..<batches).map { _ in let b = try loader.next(); return (b.latents.scalars, b.labels) }
        }
        let a = try run(1, batches: 7), b = try run(1, batches: 7), other = try run(2, batches: 7)
        XCTAssertEqual(a.map(\.0), b.map(\.0))
        XCTAssertEqual(a.map(\.1), b.map(\.1))
        XCTAssertNotEqual(a.map(\.0), other.map(\.0))
        // Each epoch (3 batches of 3, last row dropped) visits distinct rows; values are normalized.
        var seen = Set<Int>()
        var flips = 0
        for (values, labels) in a.prefix(3) {
            XCTAssertEqual(values.count, 3 * l * c)
            for i in 0..<3 {
                let first = values[i * l * c] * 2 + 0.5 // undo normalization
                let row = Int(abs(first).rounded()) / 100
                if first < 0 || (first == 0 && values[i * l * c + 1] * 2 + 0.5 < 0) { flips += 1 }
                XCTAssertTrue(seen.insert(row).inserted)
                XCTAssertEqual(labels[i], row % 3)
            }
        }
        XCTAssertEqual(seen.count, 9)
        // Restoring a saved position continues identically.
        let loader = try LatentBatchLoader(reader: reader, batchSize: 3, rng: RandomGenerator(seed: 1))
        for _ in 0..<4 { _ = try loader.next() }
        let saved = try JSONDecoder().decode(LatentLoaderPosition.self, from: JSONEncoder().encode(loader.position))
        let resumed = try LatentBatchLoader(reader: reader, batchSize: 3, rng: RandomGenerator(seed: 1), position: saved)
        for k in 4..<7 { XCTAssertEqual(try resumed.next().latents.scalars, a[k].0) }
    }

    /// randomFlip (gen train's default) picks a mirrored latent for about half the samples;
    /// off (--no-flip) it never does; and --no-flip on a resume switches a flipping run off.
    func testNoFlipNeverReadsTheMirroredLatents() throws {
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeAll(dir + "/cache.h5")
        let reader = try LatentCacheReader(path: dir + "/cache.h5")
        func mirrored(_ randomFlip: Bool) throws -> Int {
            let loader = try LatentBatchLoader(reader: reader, batchSize: 3, rng: RandomGenerator(seed: 4), randomFlip: randomFlip)
            var count = 0
            for _ in 0..<30 {
                let v = try loader.next().latents.scalars
                for i in 0..<3 where v[i * l * c] * 2 + 0.5 < 0 || (v[i * l * c] * 2 + 0.5 == 0 && v[i * l * c + 1] * 2 + 0.5 < 0) { count += 1 }
            }
            return count
        }
        XCTAssertEqual(try mirrored(false), 0)
        XCTAssertGreaterThan(try mirrored(true), 20, "90 samples, about half mirrored")
        var saved = SiTTrainingOptions(), given = SiTTrainingOptions()
        XCTAssertTrue(try SiTTrainingJob.resumedOptions(given: given, saved: saved, out: "run").randomFlip)
        given.randomFlip = false
        XCTAssertFalse(try SiTTrainingJob.resumedOptions(given: given, saved: saved, out: "run").randomFlip)
        saved.randomFlip = false; given.randomFlip = true
        XCTAssertFalse(try SiTTrainingJob.resumedOptions(given: given, saved: saved, out: "run").randomFlip, "a no-flip run stays so")
    }
}
