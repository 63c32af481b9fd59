// Image decoding (JPEG through TurboJPEG, PNG through libpng's simplified API) to 8-bit RGB, and
// PNG writing with tEXt chunks. Neither library longjmps through Swift frames: TurboJPEG returns
// error codes and libpng's setjmp stays inside the CPNG C target.

import CPNG
import CTurboJPEG
import Foundation
import Tensor

/// An 8-bit image, row-major, interleaved channels (1 = gray, 3 = RGB).
public struct RGBImage: Equatable, Sendable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int = 3, pixels: [UInt8]) {
        precondition(pixels.count == width * height * channels, "pixel count does not match \(width)x\(height)x\(channels)")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// A constant image.
    public init(width: Int, height: Int, channels: Int = 3, fill: UInt8) {
        self.init(width: width, height: height, channels: channels,
                  pixels: [UInt8](repeating: fill, count: width * height * channels))
    }

    /// Replicates gray to RGB (identity for RGB).
    public func rgb() -> RGBImage {
        if channels == 3 { return self }
        precondition(channels == 1)
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            out[3 * i] = pixels[i]; out[3 * i + 1] = pixels[i]; out[3 * i + 2] = pixels[i]
        }
        return RGBImage(width: width, height: height, channels: 3, pixels: out)
    }

    /// Mirror image (left-right).
    public func flippedHorizontally() -> RGBImage {
        var out = pixels
        let c = channels
        for y in 0..<height {
            let row = y * width * c
            for x in 0..<width {
                let src = row + (width - 1 - x) * c
                for k in 0..<c { out[row + x * c + k] = pixels[src + k] }
            }
        }
        return RGBImage(width: width, height: height, channels: c, pixels: out)
    }
}

public enum ImageIO {
    public enum Format: Sendable { case jpeg, png }

    /// Sniffs the format from the first bytes.
    public static func format(of data: Data) -> Format? {
        if data.count >= 8, data.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if data.count >= 3, data.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        return nil
    }

    /// Reads and decodes an image file to 8-bit RGB.
    public static func decode(path: String) throws -> RGBImage {
        guard let data = FileManager.default.contents(atPath: path) else {
            if FileManager.default.fileExists(atPath: path) {
                throw PipelineError.imageDecode("The image \(path) cannot be read.")
            }
            throw PipelineError.missingFile(path)
        }
        do {
            return try decode(data: data)
        } catch PipelineError.imageDecode(let message) {
            throw PipelineError.imageDecode("The image \(path) cannot be decoded: \(message)")
        }
    }

    /// Decodes JPEG or PNG bytes to 8-bit RGB. Gray is replicated, alpha dropped (as PIL's
    /// convert('RGB')), 16-bit samples reduced to 8 bits, CMYK converted.
    /// Errors carry a short reason ("truncated JPEG data", ...).
    public static func decode(data: Data) throws -> RGBImage {
        switch format(of: data) {
        case .png: return try decodePNG(data)
        case .jpeg: return try decodeJPEG(data)
        case nil: throw PipelineError.imageDecode("the data is neither PNG nor JPEG")
        }
    }

    /// The most pixels an image may have (PNG and JPEG alike), checked from the header before
    /// anything is decoded or allocated: 2^27 = 134 M pixels (11585 x 11585), 512 MB of RGBA.
    /// Far above any training image; a 16000 x 16000 header is refused at once.
    public static let maxPixels = 1 << 27

    /// Width and height from the header of PNG or JPEG bytes, refused (one sentence) when the
    /// header is unreadable or the image is larger than `maxPixels`. Reads only the header.
    public static func checkHeader(_ data: Data) throws -> (width: Int, height: Int) {
        let (w, h): (Int, Int)
        switch format(of: data) {
        case .png: (w, h) = try pngSize(data)
        case .jpeg: (w, h) = try jpegSize(data)
        case nil: throw PipelineError.imageDecode("the data is neither PNG nor JPEG")
        }
        guard w > 0, h > 0 else { throw PipelineError.imageDecode("implausible image size \(w)x\(h)") }
        let (pixels, overflow) = w.multipliedReportingOverflow(by: h)
        guard !overflow, pixels <= maxPixels else {
            throw PipelineError.imageDecode("the image is \(w)x\(h) pixels, above the limit of \(maxPixels) pixels")
        }
        if format(of: data) == .png { try checkPNGChunks(data) }
        // Deflate compresses at most 1032:1, so a PNG must hold at least w*h*bits/8/1032 bytes;
        // a small file with a large header is truncated, refused without inflating anything.
        if format(of: data) == .png, data.count >= 26 {
            let depth = Int(data[data.startIndex + 24])
            if let samples = [0: 1, 2: 3, 3: 1, 4: 2, 6: 4][Int(data[data.startIndex + 25])],
               Double(pixels) * Double(samples * depth) / 8 / 1032 > Double(data.count) {
                throw PipelineError.imageDecode("truncated PNG data (\(data.count) bytes cannot hold \(w)x\(h) pixels)")
            }
        }
        return (w, h)
    }

    /// Every chunk length up to IEND must fit in the data: libpng allocates a chunk's declared
    /// length before reading it (a 6 x 5 image whose tEXt chunk claims 2 GB made it allocate
    /// 2 GB), so lengths are checked against the file's own size first.
    static func checkPNGChunks(_ data: Data) throws {
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            var offset = 8
            while offset + 8 <= raw.count {
                let length = Int(raw[offset]) << 24 | Int(raw[offset + 1]) << 16 | Int(raw[offset + 2]) << 8 | Int(raw[offset + 3])
                let type = String(decoding: raw[(offset + 4)..<(offset + 8)], as: UTF8.self).oneLine()
                guard length < 1 << 31, length + 12 <= raw.count - offset else {
                    throw PipelineError.imageDecode("truncated PNG data (chunk '\(type)' at byte \(offset) claims \(length) bytes of the \(raw.count - offset - 8) left)")
                }
                if type == "IEND" { return }
                offset += 12 + length
            }
        }
    }

    /// The IHDR chunk must come first: length 13, then width and height (big-endian, < 2^31).
    static func pngSize(_ data: Data) throws -> (Int, Int) {
        let b = [UInt8](data.prefix(24))
        guard b.count == 24, b[8...15].elementsEqual([0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]) else {
            throw PipelineError.imageDecode("corrupt or truncated PNG data (no IHDR header chunk)")
        }
        func be32(_ o: Int) -> Int { Int(b[o]) << 24 | Int(b[o + 1]) << 16 | Int(b[o + 2]) << 8 | Int(b[o + 3]) }
        let w = be32(16), h = be32(20)
        guard w < 1 << 31, h < 1 << 31 else { throw PipelineError.imageDecode("implausible PNG size \(w)x\(h)") }
        return (w, h)
    }

    static func jpegSize(_ data: Data) throws -> (Int, Int) {
        guard let handle = tjInitDecompress() else { throw PipelineError.imageDecode("TurboJPEG could not be initialized") }
        defer { tjDestroy(handle) }
        var w: Int32 = 0, h: Int32 = 0, subsamp: Int32 = 0, colorspace: Int32 = 0
        let status = data.withUnsafeBytes { raw in
            tjDecompressHeader3(handle, raw.bindMemory(to: UInt8.self).baseAddress, UInt(data.count), &w, &h, &subsamp, &colorspace)
        }
        if status != 0 { throw PipelineError.imageDecode("corrupt JPEG header (\(String(cString: tjGetErrorStr2(handle))))") }
        return (Int(w), Int(h))
    }

    static func decodePNG(_ data: Data) throws -> RGBImage {
        _ = try checkHeader(data)
        var width: Int32 = 0, height: Int32 = 0
        var out: UnsafeMutablePointer<UInt8>?
        var message = [CChar](repeating: 0, count: 256)
        let status = data.withUnsafeBytes { raw in
            cpng_decode_rgba(raw.bindMemory(to: UInt8.self).baseAddress, data.count, &width, &height, &out,
                             &message, message.count)
        }
        guard status == 0, let rgba = out else {
            throw PipelineError.imageDecode("corrupt or truncated PNG data (libpng: \(String(cString: message)))")
        }
        defer { cpng_free(rgba) }
        guard width > 0, height > 0, Int(width) * Int(height) <= maxPixels else {
            throw PipelineError.imageDecode("implausible PNG size \(width)x\(height)")
        }
        let n = Int(width) * Int(height)
        var pixels = [UInt8](repeating: 0, count: n * 3)
        for i in 0..<n {
            pixels[3 * i] = rgba[4 * i]; pixels[3 * i + 1] = rgba[4 * i + 1]; pixels[3 * i + 2] = rgba[4 * i + 2]
        }
        return RGBImage(width: Int(width), height: Int(height), channels: 3, pixels: pixels)
    }

    static func decodeJPEG(_ data: Data) throws -> RGBImage {
        guard let handle = tjInitDecompress() else { throw PipelineError.imageDecode("TurboJPEG could not be initialized") }
        defer { tjDestroy(handle) }
        func lastError() -> String { String(cString: tjGetErrorStr2(handle)) }
        return try data.withUnsafeBytes { raw -> RGBImage in
            let src = raw.bindMemory(to: UInt8.self).baseAddress
            var w: Int32 = 0, h: Int32 = 0, subsamp: Int32 = 0, colorspace: Int32 = 0
            if tjDecompressHeader3(handle, src, UInt(data.count), &w, &h, &subsamp, &colorspace) != 0 {
                throw PipelineError.imageDecode("corrupt JPEG header (\(lastError()))")
            }
            guard w > 0, h > 0 else { throw PipelineError.imageDecode("implausible JPEG size \(w)x\(h)") }
            guard Int(w) * Int(h) <= maxPixels else {
                throw PipelineError.imageDecode("the image is \(w)x\(h) pixels, above the limit of \(maxPixels) pixels")
            }
            let cmyk = colorspace == Int32(TJCS_CMYK.rawValue) || colorspace == Int32(TJCS_YCCK.rawValue)
            let pf = cmyk ? TJPF_CMYK : TJPF_RGB
            let ch = cmyk ? 4 : 3
            var buffer = [UInt8](repeating: 0, count: Int(w) * Int(h) * ch)
            let status = buffer.withUnsafeMutableBufferPointer { dst in
                tjDecompress2(handle, src, UInt(data.count), dst.baseAddress, w, 0, h, pf.rawValue, TJFLAG_ACCURATEDCT)
            }
            if status != 0 {
                let message = lastError()
                // Warnings (extraneous bytes, ...) are tolerated as PIL does, except truncation,
                // which PIL also refuses by default.
                let fatal = tjGetErrorCode(handle) == Int32(TJERR_FATAL.rawValue) || message.contains("Premature end")
                if fatal {
                    throw PipelineError.imageDecode(message.contains("Premature end")
                        ? "truncated JPEG data" : "corrupt JPEG data (\(message))")
                }
            }
            if !cmyk { return RGBImage(width: Int(w), height: Int(h), channels: 3, pixels: buffer) }
            // JPEG CMYK is stored inverted (Adobe convention): RGB = inverted C * inverted K / 255.
            let n = Int(w) * Int(h)
            var rgb = [UInt8](repeating: 0, count: n * 3)
            for i in 0..<n {
                let k = Int(buffer[4 * i + 3])
                for c in 0..<3 { rgb[3 * i + c] = UInt8((Int(buffer[4 * i + c]) * k + 127) / 255) }
            }
            return RGBImage(width: Int(w), height: Int(h), channels: 3, pixels: rgb)
        }
    }

    /// Writes an 8-bit gray (channels 1) or RGB (channels 3) image as PNG with tEXt chunks
    /// (e.g. `["parameters": "..."]`), atomically (temporary file + rename).
    public static func writePNG(path: String, pixels: [UInt8], width: Int, height: Int, channels: Int = 3,
                                text: [String: String] = [:]) throws {
        guard channels == 1 || channels == 3 || channels == 4, pixels.count == width * height * channels,
              width > 0, height > 0 else {
            throw PipelineError.invalidArgument("writePNG needs width*height*channels pixels with 1, 3 or 4 channels.")
        }
        let keys = text.keys.sorted()
        let cKeys = keys.map { strdup($0) }
        let cTexts = keys.map { strdup(text[$0]!) }
        defer { cKeys.forEach { free($0) }; cTexts.forEach { free($0) } }
        var message = [CChar](repeating: 0, count: 256)
        let tmp = path + ".tmp-\(getpid())"
        let keyPointers: [UnsafePointer<CChar>?] = cKeys.map { UnsafePointer($0) }
        let textPointers: [UnsafePointer<CChar>?] = cTexts.map { UnsafePointer($0) }
        let status = cpng_write(tmp, pixels, Int32(width), Int32(height), Int32(channels),
                                keyPointers, textPointers, Int32(keys.count), &message, message.count)
        if status != 0 {
            unlink(tmp)
            throw PipelineError.writeFailed(path: path, reason: String(cString: message))
        }
        if rename(tmp, path) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw PipelineError.writeFailed(path: path, reason: reason)
        }
    }

    public static func writePNG(path: String, image: RGBImage, text: [String: String] = [:]) throws {
        try writePNG(path: path, pixels: image.pixels, width: image.width, height: image.height,
                     channels: image.channels, text: text)
    }

    /// Reads the tEXt chunk `key` of a PNG file (nil if the file has none).
    public static func readPNGText(path: String, key: String) throws -> String? {
        guard FileManager.default.fileExists(atPath: path) else { throw PipelineError.missingFile(path) }
        // The chunk lengths are checked before libpng sees the file (it allocates them).
        guard let bytes = FileManager.default.contents(atPath: path) else {
            throw PipelineError.corruptFile(path: path, reason: "it cannot be read")
        }
        guard format(of: bytes) == .png else { throw PipelineError.corruptFile(path: path, reason: "it is not a PNG file") }
        do { try checkPNGChunks(bytes) } catch PipelineError.imageDecode(let why) {
            throw PipelineError.corruptFile(path: path, reason: why)
        }
        var value: UnsafeMutablePointer<CChar>?
        var message = [CChar](repeating: 0, count: 256)
        let status = cpng_read_text(path, key, &value, &message, message.count)
        if status < 0 {
            throw PipelineError.corruptFile(path: path, reason: "libpng: \(String(cString: message))")
        }
        guard status == 0, let v = value else { return nil }
        defer { cpng_free(v) }
        return String(cString: v)
    }
}
