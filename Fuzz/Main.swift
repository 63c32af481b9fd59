// The libFuzzer entry points of the fuzz binary built by scripts/fuzz.sh. One binary serves
// every target (one link instead of six); FUZZ_TARGET picks the parser:
//
//   safetensors  SafeTensorsHeader.parse + value conversion        (Tensor)
//   sitconfig    JSONFile.parseObject + SiTConfig(json:).validate()  (SiT)
//   tokconfig    JSONFile.parseObject + TokenizerConfig.validate()   (Tokenizer)
//   idx          IDX header, Fashion-MNIST checks, bounded inflate   (Datasets, Formats)
//   latentcache  latent cache attribute / shape / label validation   (Formats)
//   imageheader  ImageIO.checkHeader (+ decode of small images)      (Formats)
//
// With FUZZ_SEED_DIR set, the target first writes the synthetic seeds it knows how to make.

import Foundation

let fuzzTargets: [String: (run: (UnsafePointer<UInt8>?, Int) -> CInt, seeds: () -> Void)] = [
    "safetensors": (fuzzSafeTensors, seeds_safetensors),
    "sitconfig": (fuzzSiTConfig, seeds_sitconfig),
    "tokconfig": (fuzzTokenizerConfig, seeds_tokconfig),
    "idx": (fuzzIDX, seeds_idx),
    "latentcache": (fuzzLatentCache, seeds_latentcache),
    "imageheader": (fuzzImageHeader, seeds_imageheader),
]

var fuzzCurrent: ((UnsafePointer<UInt8>?, Int) -> CInt)?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    let name = ProcessInfo.processInfo.environment["FUZZ_TARGET"] ?? ""
    guard let target = fuzzTargets[name] else {
        FileHandle.standardError.write(Data("FUZZ_TARGET must be one of \(fuzzTargets.keys.sorted().joined(separator: ", ")), not '\(name)'\n".utf8))
        exit(2)
    }
    target.seeds()
    fuzzCurrent = target.run
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    fuzzCurrent!(data, size)
}
