// Fuzz target `idx` (scripts/fuzz.sh; Main.swift dispatches): the IDX reader (IDX header, the Fashion-MNIST checks on an image and a label
// file) and the bounded gzip inflate in front of it. The first byte picks the mode.

import Datasets
import Formats
import Foundation

func fuzzIDX(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let all = [UInt8](UnsafeRawBufferPointer(start: data, count: size))
    guard let mode = all.first else { return 0 }
    let body = Array(all.dropFirst())
    do {
        switch mode % 3 {
        case 0:
            let idx = try IDX(body, path: "fuzz.idx")
            require(idx.payloadOffset + idx.dims.reduce(1, *) == body.count, "payload does not match the dimensions")
        case 1:
            // Image file, then label file; a 2-byte length splits them.
            let cut = body.count >= 2 ? min(Int(body[0]) | Int(body[1]) << 8, body.count - 2) : 0
            let rest = Array(body.dropFirst(2))
            let ds = try FashionMNIST(imageIDX: Array(rest.prefix(cut)), labelIDX: Array(rest.dropFirst(cut)),
                                      split: .test, checkCounts: false)
            require(ds.images.count == ds.count * 28 * 28, "image bytes do not match the count")
            require(ds.labels.allSatisfy { (0..<10).contains($0) }, "label outside 0...9")
            if ds.count > 0 { _ = (ds.image(0), ds.image(ds.count - 1)) }
        default:
            let inflated = try Gzip.inflate(Data(body), name: "fuzz.gz", limit: 1 << 20)
            require(inflated.count <= 1 << 20, "inflate exceeded its limit")
            _ = try IDX([UInt8](inflated), path: "fuzz.idx")
        }
    } catch {
        describe(error)
    }
    return 0
}

func seeds_idx() {
    writeSeeds {
        func idx(_ dims: [UInt32], payload: Int) -> [UInt8] {
            var b: [UInt8] = [0, 0, 8, UInt8(dims.count)]
            for d in dims { b += [UInt8(d >> 24), UInt8((d >> 16) & 0xFF), UInt8((d >> 8) & 0xFF), UInt8(d & 0xFF)] }
            return b + (0..<payload).map { UInt8($0 % 10) }
        }
        let images = idx([2, 28, 28], payload: 2 * 784), labels = idx([2], payload: 2)
        let pair = [UInt8(images.count & 0xFF), UInt8(images.count >> 8)] + images + labels
        return [("header.idx", Data([0] + idx([3, 2], payload: 6))),
                ("pair.idx", Data([1] + pair)),
                ("gzip.idx", Data([2] + Gzip.deflate(idx([4], payload: 4))))]
    }
}
