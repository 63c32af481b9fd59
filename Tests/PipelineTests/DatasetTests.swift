import Foundation
@testable import Datasets
@testable import Formats
@testable import Pipeline
import XCTest

final class DatasetTests: XCTestCase {
    func testFashionMNIST() throws {
        guard FashionMNIST.isAvailable() else { throw XCTSkip("dataset-fashion-mnist is not installed") }
        let train = try FashionMNIST(split: .train)
        let test = try FashionMNIST(split: .test)
        XCTAssertEqual(train.count, 60000)
        XCTAssertEqual(test.count, 10000)
        XCTAssertEqual(Set(train.labels), Set(0..<10))
        XCTAssertEqual(train.labels[0], 9) // the first training image is an ankle boot
        let first = train.image(0)
        XCTAssertEqual(first.width, 28)
        XCTAssertGreaterThan(Set(first.pixels).count, 20)
        XCTAssertEqual(FashionMNIST.classNames.count, 10)
        let padded = train.tensor(0, mode: .pad(size: 32))
        XCTAssertEqual(padded.shape, [3, 32, 32])
        XCTAssertEqual(padded.pointer[0], -1) // corner is background
        XCTAssertEqual(padded.pointer[(2 * 32 + 2) * 32 + 2 + 5 * 32], Float(first.pixels[5 * 28]) / 127.5 - 1)
        let resized = train.tensor(0, mode: .bicubic(size: 32))
        XCTAssertEqual(resized.shape, [3, 32, 32])
        XCTAssertTrue(resized.scalars.allSatisfy { $0 >= -1 && $0 <= 1 })
        XCTAssertEqual(GrayConversion(name: GrayConversion.pad(size: 32).name), .pad(size: 32))
        XCTAssertEqual(GrayConversion(name: GrayConversion.bicubic(size: 64).name), .bicubic(size: 64))
    }

    func testFashionMNISTErrors() throws {
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        XCTAssertThrowsError(try FashionMNIST(root: dir, split: .test)) { e in XCTAssertTrue("\(e)".contains("missing")) }
        // A corrupt (non-gzip) file and a wrong magic number.
        _ = FileManager.default.createFile(atPath: dir + "/t10k-images-idx3-ubyte.gz", contents: Data("junk".utf8))
        _ = FileManager.default.createFile(atPath: dir + "/t10k-labels-idx1-ubyte.gz", contents: Data("junk".utf8))
        XCTAssertThrowsError(try FashionMNIST(root: dir, split: .test)) { e in XCTAssertTrue("\(e)".contains("compressed"), "\(e)") }
    }

    func testImageFolder() throws {
        let root = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: root) }
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/dog", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: root + "/cat", withIntermediateDirectories: true)
        try ImageIO.writePNG(path: root + "/cat/a.png", pixels: [UInt8](repeating: 90, count: 4 * 4 * 4), width: 4, height: 4, channels: 4)
        try ImageIO.writePNG(path: root + "/cat/b.PNG", image: RGBImage(width: 4, height: 4, channels: 1, fill: 7))
        _ = fm.createFile(atPath: root + "/cat/c.JPG", contents: Data([0xFF, 0xD8, 0xFF, 0x00, 0x01])) // corrupt
        _ = fm.createFile(atPath: root + "/cat/notes.txt", contents: Data("x".utf8))
        _ = fm.createFile(atPath: root + "/dog/d.png", contents: handMadePNG(width: 1, height: 1, bitDepth: 16, colorType: 2,
                                                                         rows: [[1, 2, 3, 4, 5, 6]]))
        let ds = try ImageFolder(root: root)
        XCTAssertEqual(ds.classes, ["cat", "dog"])
        XCTAssertEqual(ds.samples.map(\.relativePath), ["cat/a.png", "cat/b.PNG", "cat/c.JPG", "dog/d.png"])
        XCTAssertEqual(ds.samples.map(\.label), [0, 0, 0, 1])
        XCTAssertEqual(try ds.image(0).pixels.first, 90)
        XCTAssertEqual(try ds.image(1).pixels, [UInt8](repeating: 7, count: 48))
        XCTAssertEqual(try ds.image(3).pixels, [1, 3, 5])
        let lenient = CorruptImagePolicy(strict: false)
        XCTAssertNil(try lenient.decode(path: ds.path(2)))
        XCTAssertEqual(lenient.skippedCount, 1)
        XCTAssertThrowsError(try CorruptImagePolicy(strict: true).decode(path: ds.path(2)))

        try fm.createDirectory(atPath: root + "/empty", withIntermediateDirectories: true)
        XCTAssertThrowsError(try ImageFolder(root: root)) { e in XCTAssertTrue("\(e)".contains("empty"), "\(e)") }
        XCTAssertThrowsError(try ImageFolder(root: root + "/nope")) { e in
            XCTAssertEqual(e as? PipelineError, .missingFile(root + "/nope"))
        }
    }

    func testADMPreprocessing() {
        // A constant image stays constant through box halving, bicubic resize and crop.
        let constant = RGBImage(width: 300, height: 200, fill: 77)
        let out = ADMPreprocess.centerCrop(constant, size: 64)
        XCTAssertEqual(out.width, 64); XCTAssertEqual(out.height, 64)
        XCTAssertTrue(out.pixels.allSatisfy { $0 == 77 })
        let t = ADMPreprocess.toTensor(out)
        XCTAssertEqual(t.shape, [3, 64, 64])
        XCTAssertEqual(t.pointer[0], 77 / 127.5 - 1, accuracy: 1e-6)
        // Box halving (PIL resize with BOX): horizontal pass rounded to 8 bits, then vertical:
        // (10+10)/2 = 10, (20+21)/2 = 20.5 -> 21, (10+21)/2 = 15.5 -> 16.
        let img = RGBImage(width: 4, height: 2, channels: 1, pixels: [0, 1, 10, 10, 2, 3, 20, 21])
        XCTAssertEqual(img.resized(width: 2, height: 1, filter: .box).pixels, [2, 16])
        // Non-square: 90x60 at 16 halves once (45x30) and resizes to 24x16, then crops.
        XCTAssertEqual(ADMPreprocess.centerCrop(RGBImage(width: 90, height: 60, fill: 1), size: 16).width, 16)
        // Upscaling a small image works too.
        XCTAssertEqual(ADMPreprocess.centerCrop(RGBImage(width: 10, height: 7, fill: 200), size: 32).pixels,
                       [UInt8](repeating: 200, count: 32 * 32 * 3))
    }
}
