import Foundation
@testable import Formats
@testable import Pipeline
@testable import Render
import Tensor
import XCTest

final class OutputFormatTests: XCTestCase {
    func u16(_ d: [UInt8], _ o: Int) -> Int { Int(d[o]) | Int(d[o + 1]) << 8 }
    func u32(_ d: [UInt8], _ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(d[o + $1]) << (8 * UInt32($1)) } }
    func u64(_ d: [UInt8], _ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(d[o + $1]) << (8 * UInt64($1)) } }

    func testNPZSmall() throws {
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let array = (0..<(2 * 3 * 4 * 3)).map { UInt8($0) }
        try NPZWriter.write(path: dir + "/s.npz", array: array, shape: [2, 3, 4, 3])
        let d = [UInt8](FileManager.default.contents(atPath: dir + "/s.npz")!)
        XCTAssertEqual(u32(d, 0), 0x0403_4B50)
        XCTAssertEqual(u16(d, 8), 0) // stored
        let nameLen = u16(d, 26), extraLen = u16(d, 28)
        XCTAssertEqual(String(decoding: d[30..<30 + nameLen], as: UTF8.self), "arr_0.npy")
        XCTAssertEqual(extraLen, 0)
        let npy = Array(d[(30 + nameLen)...])
        XCTAssertEqual(Array(npy[0..<6]), [0x93] + Array("NUMPY".utf8))
        let headerLen = u16(npy, 8)
        XCTAssertEqual((10 + headerLen) % 64, 0)
        let header = String(decoding: npy[10..<10 + headerLen], as: UTF8.self)
        XCTAssertTrue(header.contains("'descr': '|u1'") && header.contains("'shape': (2, 3, 4, 3)"), header)
        XCTAssertEqual(Array(npy[(10 + headerLen)..<(10 + headerLen + array.count)]), array)
        let size = Int(u32(d, 22))
        XCTAssertEqual(size, 10 + headerLen + array.count)
        XCTAssertEqual(u32(d, 14), crc32(Array(npy[0..<size])))
        // End of central directory at the end, pointing at the central directory.
        let eocd = d.count - 22
        XCTAssertEqual(u32(d, eocd), 0x0605_4B50)
        XCTAssertEqual(u16(d, eocd + 10), 1)
        XCTAssertEqual(Int(u32(d, eocd + 16)), 30 + nameLen + size)
        XCTAssertEqual(u32(d, Int(u32(d, eocd + 16))), 0x0201_4B50)
    }

    func testNPZForcedZip64Structure() throws {
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let array = [UInt8](repeating: 9, count: 5 * 2 * 2 * 3)
        try NPZWriter.write(path: dir + "/z.npz", array: array, shape: [5, 2, 2, 3], forceZip64: true)
        let d = [UInt8](FileManager.default.contents(atPath: dir + "/z.npz")!)
        XCTAssertEqual(u16(d, 4), 45)
        XCTAssertEqual(u32(d, 18), 0xFFFF_FFFF)
        XCTAssertEqual(u16(d, 28), 20)
        XCTAssertEqual(u16(d, 30 + 9), 0x0001)
        let size = u64(d, 30 + 9 + 4)
        XCTAssertEqual(u64(d, 30 + 9 + 12), size)
        // EOCD -> zip64 locator -> zip64 EOCD -> central directory.
        let eocd = d.count - 22
        XCTAssertEqual(u32(d, eocd), 0x0605_4B50)
        XCTAssertEqual(u32(d, eocd + 16), 0xFFFF_FFFF)
        let locator = eocd - 20
        XCTAssertEqual(u32(d, locator), 0x0706_4B50)
        let z64 = Int(u64(d, locator + 8))
        XCTAssertEqual(u32(d, z64), 0x0606_4B50)
        XCTAssertEqual(u64(d, z64 + 24), 1)
        let cd = Int(u64(d, z64 + 48))
        XCTAssertEqual(cd, 30 + 9 + 20 + Int(size))
        XCTAssertEqual(u32(d, cd), 0x0201_4B50)
        XCTAssertEqual(u16(d, cd + 30), 28)
        XCTAssertEqual(u64(d, cd + 46 + 9 + 4), size)
        XCTAssertEqual(u64(d, cd + 46 + 9 + 20), 0) // local header offset
    }

    func testGridAndPlots() throws {
        let dir = makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let t = Tensor(repeating: 0.2, shape: [3, 8, 8])
        let tile = ImageGrid.image(fromTensor: t)
        XCTAssertEqual(tile.pixels[0], UInt8((1.2 * 127.5).rounded()))
        let batch = Tensor(repeating: -3, shape: [2, 3, 8, 8])
        XCTAssertTrue(ImageGrid.images(fromBatch: batch).allSatisfy { $0.pixels.allSatisfy { $0 == 0 } })
        try ImageGrid.writePNG(path: dir + "/grid.png", images: Array(repeating: tile, count: 6), columns: 3,
                               labels: ["Trouser", "Ankle boot"], text: ["parameters": "seed=1"])
        let grid = try ImageIO.decode(path: dir + "/grid.png")
        let labelWidth = BitmapFont.width("Ankle boot") + 4
        XCTAssertEqual(grid.width, labelWidth + 2 + 3 * 10)
        XCTAssertEqual(grid.height, 2 + 2 * 10)
        XCTAssertTrue(grid.pixels.contains(0)) // label text drawn in black
        XCTAssertEqual(try ImageIO.readPNGText(path: dir + "/grid.png", key: "parameters"), "seed=1")

        let plot = LinePlot(title: "loss", xLabel: "step", yLabel: "mse",
                            series: [.init(name: "train", y: (0..<50).map { 1 / Double($0 + 1) }),
                                     .init(name: "val", x: [0, 25, 49], y: [1, 0.1, 0.05])],
                            width: 320, height: 200, logY: true)
        try plot.writePNG(path: dir + "/plot.png")
        let p = try ImageIO.decode(path: dir + "/plot.png")
        XCTAssertEqual(p.width, 320); XCTAssertEqual(p.height, 200)
        try BarChart(title: "FID", labels: ["a", "b", "c"], values: [3, 1.5, 7], width: 240, height: 160)
            .writePNG(path: dir + "/bar.png")
        XCTAssertEqual(try ImageIO.decode(path: dir + "/bar.png").width, 240)
        XCTAssertEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1.0])
        XCTAssertEqual(tickLabel(2500), "2.5k")
    }

    func testProgressBarLogMode() {
        var lines: [String] = []
        let bar = ProgressBar(total: 100, label: "cache", unit: "img", interactive: false) { lines.append($0) }
        for _ in 0..<100 { bar.update(fields: [("loss", "0.5")]) }
        bar.finish()
        XCTAssertEqual(lines.count, 11) // one per 10% and the final line
        XCTAssertTrue(lines.last!.contains("100/100") && lines.last!.contains("loss 0.5"), lines.last!)
        XCTAssertEqual(ProgressBar.formatDuration(3725), "1h02m")
        XCTAssertEqual(ProgressBar.formatDuration(65), "1m05s")
    }
}
