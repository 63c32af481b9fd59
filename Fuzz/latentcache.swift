// Fuzz target `latentcache` (scripts/fuzz.sh; Main.swift dispatches): latent cache attribute and data validation (LatentCacheMetadata.validate,
// LatentCacheReader.checkShape / checkLabels), the pure functions that run at open time before
// anything is sized from the attributes. The input supplies the attribute values, the dataset
// shapes and the labels.

import Formats
import Foundation

func fuzzLatentCache(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var r = ByteReader(UnsafeRawBufferPointer(start: data, count: size))
    let classCount = Int(r.u8() % 12)
    let m = LatentCacheMetadata(tokenizerName: "t", tokenizerSHA256: "s", vqMean: r.u8() & 1 == 0 ? 0 : r.f64(),
                                vqStd: r.u8() & 1 == 0 ? 1 : r.f64(), imageSize: r.count(), numTokens: r.count(),
                                tokenDim: r.count(), numImages: r.count(), preprocessing: "p", dataset: "d",
                                classNames: (0..<classCount).map { "c\($0)" })
    var dims: [[UInt64]] = []
    for _ in 0..<4 {
        let rank = Int(r.u8() % 5)
        dims.append((0..<rank).map { _ in r.u8() & 1 == 0 ? UInt64(r.u8()) : UInt64(bitPattern: r.i64()) })
    }
    var labels: [Int64] = []
    while r.offset < size && labels.count < 64 { labels.append(r.u8() & 1 == 0 ? Int64(r.u8() % 16) : r.i64()) }
    do {
        try m.validate(path: "fuzz.h5")
        // What the reader computes from valid attributes must not overflow.
        let row = m.numTokens * m.tokenDim
        let (total, overflow) = row.multipliedReportingOverflow(by: m.numImages)
        require(!overflow && total >= 0, "rows x values overflow")
        for (k, name) in ["latents", "latents_flip", "paths", "labels"].enumerated() {
            try LatentCacheReader.checkShape(dataset: name, dims: dims[k], metadata: m, path: "fuzz.h5")
        }
        let y = try LatentCacheReader.checkLabels(labels, classCount: m.classNames.count, path: "fuzz.h5")
        let limit = m.classNames.isEmpty ? LatentCacheMetadata.Limits.numClasses : m.classNames.count
        require(y.allSatisfy { $0 >= 0 && $0 < limit }, "a label outside 0..<\(limit) passed")
    } catch {
        describe(error)
    }
    return 0
}

func seeds_latentcache() {
    writeSeeds {
        // class count 3, default vq, image 32, 4 tokens, 3 channels, 2 images, matching shapes, labels 0 1.
        let valid: [UInt8] = [3, 0, 0, 0, 32, 0, 4, 0, 3, 0, 2,
                              3, 0, 2, 0, 4, 0, 3, 3, 0, 2, 0, 4, 0, 3, 1, 0, 2, 1, 0, 2,
                              0, 0, 0, 1]
        return [("valid.bin", Data(valid)), ("zeros.bin", Data(count: 64))]
    }
}
