// Bounded parsing of the data formats (issue 17): latent cache attributes and labels, IDX
// headers, image headers, symlinked class folders. Each crash case is refused with one sentence.

import CHDF5
@testable import Datasets
@testable import Formats
import Foundation
import Tensor
import XCTest

final class BoundedFormatTests: XCTestCase {
    func metadata(classNames: [String] = []) -> LatentCacheMetadata {
        LatentCacheMetadata(tokenizerName: "softvq-test", tokenizerSHA256: "abc", vqMean: 0, vqStd: 1, imageSize: 32,
                            numTokens: 2, tokenDim: 3, numImages: 4, preprocessing: "gray-pad-black-32",
                            dataset: "test", classNames: classNames)
    }

    func writeCache(_ path: String, labels: [Int], classNames: [String] = []) throws {
        let w = try LatentCacheWriter(path: path, metadata: metadata(classNames: classNames))
        try w.append(latents: Tensor(zeros: [4, 2, 3]), flipped: Tensor(zeros: [4, 2, 3]), labels: labels,
                     paths: (0..<4).map { "c/\($0).png" })
        try w.finish()
    }

    /// Rewrites an integer root attribute of a finished cache.
    func setAttribute(_ path: String, _ name: String, _ value: Int) throws {
        _ = H5.silenced
        let f = H5Fopen(path, h5f_acc_rdwr(), h5_p_default())
        XCTAssertGreaterThanOrEqual(f, 0)
        defer { H5Fclose(f) }
        try H5.setAttribute(f, name, int: value)
    }

    func refuse(_ path: String, _ pieces: String..., file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try LatentCacheReader(path: path), file: file, line: line) { e in
            let text = "\(e)"
            print("refused: \(text)")
            XCTAssertTrue(text.contains(path), "'\(text)' does not name the file", file: file, line: line)
            for p in pieces { XCTAssertTrue(text.contains(p), "'\(text)' lacks '\(p)'", file: file, line: line) }
        }
    }

    func testNegativeAndAbsurdCacheAttributesAreRefused() throws {
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        for (name, value) in [("num_images", -1), ("num_images", 1 << 62), ("num_tokens", -5), ("token_dim", 0),
                              ("token_dim", 1 << 40), ("num_tokens", 1 << 40), ("image_size", -32), ("num_images", 5)] {
            let path = dir + "/\(name)\(value).h5"
            try writeCache(path, labels: [0, 1, 2, 0])
            XCTAssertNoThrow(try LatentCacheReader(path: path))
            try setAttribute(path, name, value)
            refuse(path, value == 5 ? "shape" : name)
        }
    }

    func testLabelsOutsideTheRecordedClassesAreRefused() throws {
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        try writeCache(dir + "/huge.h5", labels: [0, 1 << 62, 2, 0])
        refuse(dir + "/huge.h5", "row 1", "label 4611686018427387904")
        try writeCache(dir + "/negative.h5", labels: [0, 1, -3, 0])
        refuse(dir + "/negative.h5", "row 2", "label -3")
        // With class names recorded, a label must name one of them (labels of 99 do not make a
        // 100-class cache).
        try writeCache(dir + "/named.h5", labels: [0, 1, 99, 2], classNames: ["a", "b", "c"])
        refuse(dir + "/named.h5", "label 99", "3 recorded class names")
        try writeCache(dir + "/ok.h5", labels: [0, 1, 2, 2], classNames: ["a", "b", "c"])
        XCTAssertEqual(try LatentCacheReader(path: dir + "/ok.h5").labels, [0, 1, 2, 2])
        try writeCache(dir + "/unnamed.h5", labels: [0, 999_999, 5, 2])
        XCTAssertEqual(try LatentCacheReader(path: dir + "/unnamed.h5").labels, [0, 999_999, 5, 2])
    }

    func testAttributeValidationIsAPureFunction() {
        var m = metadata()
        XCTAssertNoThrow(try m.validate(path: "c.h5"))
        m.vqStd = .nan
        XCTAssertThrowsError(try m.validate(path: "c.h5"))
        m = metadata(); m.numImages = Int.min
        XCTAssertThrowsError(try m.validate(path: "c.h5"))
        m = metadata(); m.numTokens = 65536; m.tokenDim = 16384
        XCTAssertThrowsError(try m.validate(path: "c.h5")) { XCTAssertTrue("\($0)".contains("row"), "\($0)") }
        XCTAssertThrowsError(try LatentCacheReader.checkShape(dataset: "latents", dims: [4, 2], metadata: metadata(), path: "c.h5"))
        XCTAssertNoThrow(try LatentCacheReader.checkShape(dataset: "latents", dims: [4, 2, 3], metadata: metadata(), path: "c.h5"))
        XCTAssertThrowsError(try LatentCacheReader.checkLabels([Int64.min], classCount: 0, path: "c.h5"))
        XCTAssertThrowsError(try LatentCacheReader.checkLabels([Int64.max], classCount: 0, path: "c.h5"))
        XCTAssertEqual(try LatentCacheReader.checkLabels([0, 3], classCount: 4, path: "c.h5"), [0, 3])
    }

    func testHugePNGHeaderIsRefusedQuickly() throws {
        let start = Date()
        // 16000 x 16000 RGB in a few hundred bytes: used to take 1.8 GB and 12 s.
        let huge = handMadePNG(width: 16000, height: 16000, bitDepth: 8, colorType: 2, rows: [[UInt8](repeating: 0, count: 48000)])
        XCTAssertThrowsError(try ImageIO.decode(data: huge)) { e in
            XCTAssertTrue("\(e)".contains("16000x16000"), "\(e)")
            XCTAssertTrue("\(e)".contains("limit"), "\(e)")
        }
        XCTAssertThrowsError(try ImageIO.checkHeader(huge))
        // Below the pixel limit but far more pixels than the file can hold: refused unread.
        let big = handMadePNG(width: 11000, height: 11000, bitDepth: 8, colorType: 6, rows: [[UInt8](repeating: 0, count: 44000)])
        XCTAssertThrowsError(try ImageIO.decode(data: big)) { XCTAssertTrue("\($0)".contains("truncated"), "\($0)") }
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        _ = FileManager.default.createFile(atPath: dir + "/huge.png", contents: huge)
        XCTAssertThrowsError(try ImageIO.decode(path: dir + "/huge.png")) { XCTAssertTrue("\($0)".contains(dir + "/huge.png"), "\($0)") }
        XCTAssertLessThan(Date().timeIntervalSince(start), 2)
        // Zero sizes and a missing IHDR are refused too; ordinary images still decode.
        XCTAssertThrowsError(try ImageIO.checkHeader(handMadePNG(width: 0, height: 4, bitDepth: 8, colorType: 0, rows: [])))
        XCTAssertThrowsError(try ImageIO.checkHeader(Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0])))
        let small = handMadePNG(width: 2, height: 1, bitDepth: 8, colorType: 2, rows: [[1, 2, 3, 4, 5, 6]])
        XCTAssertEqual(try ImageIO.checkHeader(small).width, 2)
        XCTAssertEqual(try ImageIO.decode(data: small).pixels, [1, 2, 3, 4, 5, 6])
        // A plain 4096 x 4096 gray image of zeros compresses ~1000:1 and is still accepted.
        let flat = handMadePNG(width: 4096, height: 4096, bitDepth: 8, colorType: 0,
                               rows: [[UInt8]](repeating: [UInt8](repeating: 0, count: 4096), count: 4096))
        XCTAssertEqual(try ImageIO.decode(data: flat).width, 4096)
    }

    func testPNGChunkLengthsAreCheckedBeforeLibpngAllocates() throws {
        // Found by the imageheader fuzz target: a 6 x 5 PNG whose tEXt chunk claims 2 GB made
        // libpng allocate 2 GB before noticing the file is 120 bytes.
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        try ImageIO.writePNG(path: dir + "/a.png", image: RGBImage(width: 6, height: 5, fill: 3), text: ["parameters": "seed 1"])
        var data = FileManager.default.contents(atPath: dir + "/a.png")!
        XCTAssertEqual(try ImageIO.decode(data: data).width, 6)
        let text = data.range(of: Data("tEXt".utf8))!.lowerBound
        data.replaceSubrange((text - 4)..<text, with: [0x7E, 0x00, 0x00, 0x11])
        XCTAssertThrowsError(try ImageIO.decode(data: data)) { XCTAssertTrue("\($0)".contains("'tEXt'"), "\($0)") }
        try data.write(to: URL(fileURLWithPath: dir + "/b.png"))
        XCTAssertThrowsError(try ImageIO.readPNGText(path: dir + "/b.png", key: "parameters")) {
            XCTAssertTrue("\($0)".contains(dir + "/b.png"), "\($0)")
        }
        XCTAssertEqual(try ImageIO.readPNGText(path: dir + "/a.png", key: "parameters"), "seed 1")
    }

    func idx(_ type: UInt8, _ dims: [UInt32], payload: Int) -> [UInt8] {
        var b: [UInt8] = [0, 0, type, UInt8(dims.count)]
        for d in dims { b += [UInt8(d >> 24), UInt8((d >> 16) & 0xFF), UInt8((d >> 8) & 0xFF), UInt8(d & 0xFF)] }
        return b + [UInt8](repeating: 1, count: payload)
    }

    func testIDXHeadersAreCheckedAgainstTheirSize() throws {
        XCTAssertEqual(try IDX(idx(8, [2, 28, 28], payload: 2 * 784), path: "x").dims, [2, 28, 28])
        for (bytes, piece) in [(idx(8, [2, 28, 28], payload: 100), "size"),
                               (idx(8, [0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], payload: 0), "overflow"),
                               (idx(8, [0x8000_0000, 0x8000_0000], payload: 4), "size"),
                               (idx(0x0D, [2], payload: 8), "unsigned bytes"),
                               (idx(8, [], payload: 0), "dimensions"),
                               (Array(idx(8, [2, 2, 2], payload: 8).prefix(9)), "truncated"),
                               ([1, 2], "magic")] {
            XCTAssertThrowsError(try IDX(bytes, path: "f.idx")) { e in
                XCTAssertTrue("\(e)".contains("f.idx") && "\(e)".contains(piece), "\(e) lacks \(piece)")
            }
        }
        // The Fashion-MNIST reader uses it for both files.
        let images = idx(8, [3, 28, 28], payload: 3 * 784), labels = idx(8, [3], payload: 3)
        XCTAssertEqual(try FashionMNIST(imageIDX: images, labelIDX: labels, split: .test, checkCounts: false).count, 3)
        XCTAssertThrowsError(try FashionMNIST(imageIDX: images, labelIDX: idx(8, [4], payload: 4), split: .test, checkCounts: false))
        XCTAssertThrowsError(try FashionMNIST(imageIDX: idx(8, [3, 28, 28], payload: 5), labelIDX: labels, split: .test, checkCounts: false))
        XCTAssertThrowsError(try FashionMNIST(imageIDX: labels, labelIDX: labels, split: .test, checkCounts: false)) { e in
            XCTAssertTrue("\(e)".contains("IDX3"), "\(e)")
        }
        // Inflation is bounded: a tiny gzip stream of zeros does not get past the limit.
        let zeros = Data(Gzip.deflate([UInt8](repeating: 0, count: 1 << 20)))
        XCTAssertThrowsError(try Gzip.inflate(zeros, name: "bomb.gz", limit: 1000)) { XCTAssertTrue("\($0)".contains("more than 1000"), "\($0)") }
        XCTAssertEqual(try Gzip.inflate(zeros, limit: 1 << 20).count, 1 << 20)
    }

    func testSymlinkedClassFolderIsFollowed() throws {
        let base = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: base) }
        let fm = FileManager.default
        try fm.createDirectory(atPath: base + "/store/pngs", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: base + "/root/cat", withIntermediateDirectories: true)
        try ImageIO.writePNG(path: base + "/store/pngs/a.png", image: RGBImage(width: 2, height: 2, fill: 5))
        try ImageIO.writePNG(path: base + "/store/pngs/b.png", image: RGBImage(width: 2, height: 2, fill: 6))
        try ImageIO.writePNG(path: base + "/root/cat/c.png", image: RGBImage(width: 2, height: 2, fill: 7))
        try fm.createSymbolicLink(atPath: base + "/root/dog", withDestinationPath: base + "/store/pngs")
        let ds = try ImageFolder(root: base + "/root")
        XCTAssertEqual(ds.classes, ["cat", "dog"])
        XCTAssertEqual(ds.samples.map(\.relativePath), ["cat/c.png", "dog/a.png", "dog/b.png"])
        XCTAssertEqual(try ds.image(2).pixels.first, 6)
        // A relative link works the same.
        try fm.removeItem(atPath: base + "/root/dog")
        try fm.createSymbolicLink(atPath: base + "/root/dog", withDestinationPath: "../store/pngs")
        XCTAssertEqual(try ImageFolder(root: base + "/root").count, 3)
    }
}
