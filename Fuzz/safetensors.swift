// Fuzz target `safetensors` (scripts/fuzz.sh; Main.swift dispatches): the safetensors header parser (SafeTensorsHeader.parse) and the value
// conversion of every tensor it accepts. The input is a whole file.

import Foundation
import Tensor

func fuzzSafeTensors(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    do {
        let h = try SafeTensorsHeader.parse(bytes, fileSize: size, name: "fuzz.safetensors")
        require(h.dataStart >= 8 && h.dataStart + h.dataSize == size, "data section \(h.dataStart)+\(h.dataSize) != \(size)")
        require(h.names.count == h.entries.count, "names and entries differ")
        var previousEnd = 0
        let section = UnsafeRawBufferPointer(rebasing: bytes[h.dataStart...])
        for name in h.names {
            let e = h.entries[name]!
            var n = 1
            for d in e.shape {
                require(d >= 0, "negative dimension")
                let (p, o) = n.multipliedReportingOverflow(by: d)
                require(!o, "shape product overflows")
                n = p
            }
            require(e.begin >= 0 && e.begin <= e.end && e.end <= h.dataSize, "offsets outside the data")
            require(n * e.dtype.size == e.end - e.begin, "size does not match the shape")
            require(e.begin >= previousEnd || e.begin == e.end, "tensors overlap")
            previousEnd = max(previousEnd, e.end)
            var out = [Float](repeating: 0, count: n)
            out.withUnsafeMutableBufferPointer { SafeTensorsHeader.convert(e, data: section, into: $0.baseAddress!) }
        }
    } catch {
        describe(error)
    }
    return 0
}

func seeds_safetensors() {
    writeSeeds {
        func file(_ json: String, payload: Int) -> Data {
            var j = Data(json.utf8)
            while j.count % 8 != 0 { j.append(0x20) }
            var d = Data(withUnsafeBytes(of: UInt64(j.count).littleEndian) { Data($0) })
            d.append(j)
            d.append(Data((0..<payload).map { UInt8($0 & 0xFF) }))
            return d
        }
        return [
            ("two.safetensors", file(#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]}}"#, payload: 24)),
            ("ints.safetensors", file(#"{"y":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},"z":{"dtype":"I32","shape":[1],"data_offsets":[16,20]},"h":{"dtype":"F16","shape":[2],"data_offsets":[20,24]},"d":{"dtype":"F64","shape":[1],"data_offsets":[24,32]}}"#, payload: 32)),
            ("empty.safetensors", file(#"{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}}"#, payload: 0)),
        ]
    }
}
