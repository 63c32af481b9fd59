// Fuzz target `imageheader` (scripts/fuzz.sh; Main.swift dispatches): the image header checks (ImageIO.checkHeader: PNG IHDR, JPEG header, the
// pixel limit and the PNG size bound) and, for images the check accepts and that are small,
// the full decode (which must agree with the header).

import CTurboJPEG
import Formats
import Foundation

func fuzzImageHeader(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Data(UnsafeRawBufferPointer(start: data, count: size))
    do {
        let (w, h) = try ImageIO.checkHeader(bytes)
        require(w > 0 && h > 0 && w * h <= ImageIO.maxPixels, "\(w)x\(h) passed the header check")
        if w * h <= 1 << 16 {
            let image = try ImageIO.decode(data: bytes)
            require(image.width == w && image.height == h, "decoded \(image.width)x\(image.height), header \(w)x\(h)")
            require(image.pixels.count == w * h * 3, "pixel count")
        }
    } catch {
        describe(error)
    }
    return 0
}

func seeds_imageheader() {
    writeSeeds {
        var seeds: [(String, Data)] = []
        let dir = NSTemporaryDirectory() + "fuzz-seeds-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (name, channels) in [("gray.png", 1), ("rgb.png", 3), ("rgba.png", 4)] {
            let pixels = (0..<(6 * 5 * channels)).map { UInt8(($0 * 37) & 0xFF) }
            try? ImageIO.writePNG(path: dir + "/" + name, pixels: pixels, width: 6, height: 5, channels: channels,
                                  text: ["parameters": "seed 1"])
            if let d = FileManager.default.contents(atPath: dir + "/" + name) { seeds.append((name, d)) }
        }
        if let handle = tjInitCompress() {
            defer { tjDestroy(handle) }
            for (name, subsamp) in [("444.jpg", TJSAMP_444), ("420.jpg", TJSAMP_420), ("gray.jpg", TJSAMP_GRAY)] {
                let pixels = (0..<(16 * 8 * 3)).map { UInt8(($0 * 13) & 0xFF) }
                var out: UnsafeMutablePointer<UInt8>?
                var n: UInt = 0
                let status = pixels.withUnsafeBufferPointer {
                    tjCompress2(handle, $0.baseAddress, 16, 0, 8, Int32(TJPF_RGB.rawValue), &out, &n, Int32(subsamp.rawValue), 80, 0)
                }
                if status == 0, let out { seeds.append((name, Data(bytes: out, count: Int(n)))); tjFree(out) }
            }
        }
        return seeds
    }
}
