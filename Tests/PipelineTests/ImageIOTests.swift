import CTurboJPEG
import Foundation
@testable import Datasets
@testable import Formats
@testable import Pipeline
@testable import Render
import XCTest

final class ImageIOTests: XCTestCase {
    func gradient(_ w: Int, _ h: Int) -> RGBImage {
        var px = [UInt8]()
        for y in 0..<h { for x in 0..<w { px += [UInt8(x * 255 / max(w - 1, 1)), UInt8(y * 255 / max(h - 1, 1)), 128] } }
        return RGBImage(width: w, height: h, pixels: px)
    }

    func testPNGRoundTripWithText() throws {
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let img = gradient(13, 7)
        let path = dir + "/a.png"
        try ImageIO.writePNG(path: path, image: img, text: ["parameters": "model=x seed=3 cfg=1.5", "other": "ü ok"])
        XCTAssertEqual(try ImageIO.decode(path: path), img)
        XCTAssertEqual(try ImageIO.readPNGText(path: path, key: "parameters"), "model=x seed=3 cfg=1.5")
        XCTAssertNil(try ImageIO.readPNGText(path: path, key: "missing"))
        // Gray PNG decodes to replicated RGB.
        let gray = RGBImage(width: 4, height: 2, channels: 1, pixels: [0, 10, 20, 30, 40, 50, 60, 255])
        try ImageIO.writePNG(path: dir + "/g.png", image: gray)
        XCTAssertEqual(try ImageIO.decode(path: dir + "/g.png"), gray.rgb())
    }

    func testAlphaAnd16BitPNG() throws {
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        // RGBA: alpha is dropped, colors kept (PIL convert('RGB')).
        let rgba: [UInt8] = [10, 20, 30, 0, 200, 100, 50, 128]
        try ImageIO.writePNG(path: dir + "/rgba.png", pixels: rgba, width: 2, height: 1, channels: 4)
        XCTAssertEqual(try ImageIO.decode(path: dir + "/rgba.png").pixels, [10, 20, 30, 200, 100, 50])
        // 16-bit RGB: the high byte (value / 257) survives.
        let png16 = handMadePNG(width: 2, height: 1, bitDepth: 16, colorType: 2,
                                rows: [[0x12, 0x34, 0x80, 0x00, 0xFF, 0xFF, 0x00, 0x00, 0x40, 0x40, 0xC8, 0xC8]])
        let img16 = try ImageIO.decode(data: png16)
        XCTAssertEqual(img16.width, 2)
        for (a, b) in zip(img16.pixels, [0x12, 0x80, 0xFF, 0x00, 0x40, 0xC8] as [Int]) { XCTAssertLessThanOrEqual(abs(Int(a) - b), 1) }
        // 16-bit gray.
        let g16 = try ImageIO.decode(data: handMadePNG(width: 1, height: 1, bitDepth: 16, colorType: 0, rows: [[0x7F, 0x7F]]))
        XCTAssertEqual(g16.pixels, [0x7F, 0x7F, 0x7F])
    }

    func testJPEGDecodesApproximately() throws {
        let img = gradient(40, 24)
        let handle = tjInitCompress()!
        defer { tjDestroy(handle) }
        var out: UnsafeMutablePointer<UInt8>?
        var size: UInt = 0
        let status = img.pixels.withUnsafeBufferPointer {
            tjCompress2(handle, $0.baseAddress, 40, 0, 24, Int32(TJPF_RGB.rawValue), &out, &size, Int32(TJSAMP_444.rawValue), 95, 0)
        }
        XCTAssertEqual(status, 0)
        let data = Data(bytes: out!, count: Int(size))
        tjFree(out)
        let decoded = try ImageIO.decode(data: data)
        XCTAssertEqual(decoded.width, 40); XCTAssertEqual(decoded.height, 24)
        let maxDiff = zip(decoded.pixels, img.pixels).map { abs(Int($0) - Int($1)) }.max()!
        XCTAssertLessThan(maxDiff, 12)
        // Truncated JPEG: an error, not a crash.
        XCTAssertThrowsError(try ImageIO.decode(data: data.prefix(data.count / 2))) { e in
            XCTAssertTrue("\(e)".contains("JPEG"), "\(e)")
        }
        XCTAssertThrowsError(try ImageIO.decode(data: data.prefix(40)))
        var garbage = data
        for i in 200..<min(400, garbage.count) { garbage[i] = 0xFF }
        _ = try? ImageIO.decode(data: garbage) // must not crash; may or may not throw
    }

    func testCorruptPNGAndUnknownData() throws {
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        try ImageIO.writePNG(path: dir + "/a.png", image: gradient(32, 32))
        let data = FileManager.default.contents(atPath: dir + "/a.png")!
        XCTAssertThrowsError(try ImageIO.decode(data: data.prefix(data.count - 30))) { e in
            XCTAssertTrue("\(e)".contains("PNG"), "\(e)")
        }
        var flipped = data
        flipped[40] ^= 0xFF // inside IDAT: CRC mismatch or bad zlib
        XCTAssertThrowsError(try ImageIO.decode(data: flipped))
        XCTAssertThrowsError(try ImageIO.decode(data: Data("hello".utf8)))
        XCTAssertThrowsError(try ImageIO.decode(path: dir + "/missing.png")) { e in
            XCTAssertEqual(e as? PipelineError, .missingFile(dir + "/missing.png"))
        }
    }

    func testFlipAndTensorConversion() {
        let img = RGBImage(width: 2, height: 1, pixels: [0, 0, 0, 255, 255, 255])
        XCTAssertEqual(img.flippedHorizontally().pixels, [255, 255, 255, 0, 0, 0])
        let t = ADMPreprocess.toTensor(img)
        XCTAssertEqual(t.shape, [3, 1, 2])
        XCTAssertEqual(t.scalars, [-1, 1, -1, 1, -1, 1])
        XCTAssertEqual(ADMPreprocess.toTensor(img, flip: true).scalars, [1, -1, 1, -1, 1, -1])
        XCTAssertEqual(ImageGrid.image(fromTensor: t), img)
        XCTAssertEqual(ADMPreprocess.flipHorizontally(t).scalars, ADMPreprocess.toTensor(img, flip: true).scalars)
    }
}
