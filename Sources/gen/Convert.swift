import ArgumentParser
import Formats
import Foundation
import Pipeline
import Tensor

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy a checkpoint folder, storing its weights as f32, f16 or bf16 (config.json unchanged).",
        discussion: "Example: gen convert --from runs/sit --to runs/sit-f16 --dtype f16")

    @OptionGroup var compute: ComputeOptions
    @Option(help: "Source checkpoint folder (config.json + model.safetensors), or a run folder.") var from: String
    @Option(name: [.customLong("to"), .customShort("o"), .customLong("out")], help: "Destination folder (created).") var to: String
    @Option(help: "f32, f16 or bf16.") var dtype = "f16"
    @Flag(help: "Replace existing files in the destination.") var overwrite = false

    func run() throws {
        compute.apply()
        try userFacing {
            let kind: DType
            switch dtype.lowercased() {
            case "f32": kind = .f32
            case "f16": kind = .f16
            case "bf16": kind = .bf16
            default: throw PipelineError.invalidArgument("Unknown dtype '\(dtype)'; use f32, f16 or bf16.")
            }
            let from = checkpointFolder(from)
            let dst = to + "/model.safetensors"
            if FileManager.default.fileExists(atPath: dst) && !overwrite {
                throw PipelineError.invalidArgument("\(dst) already exists; pass --overwrite to replace it.")
            }
            let file = try SafeTensorsFile(path: from + "/model.safetensors")
            guard let config = FileManager.default.contents(atPath: from + "/config.json") else {
                throw PipelineError.missingFile(from + "/config.json")
            }
            try FileManager.default.createDirectory(atPath: to, withIntermediateDirectories: true)
            // Tensors in the file's order, values rounded to nearest even.
            let tensors = try file.names.map { ($0, try file.tensor($0)) }
            var worst: Float = 0
            for (_, t) in tensors {
                for i in 0..<t.count {
                    let v = t.pointer[i]
                    let r = kind == .f16 ? HalfPrecision.f16ToF32(HalfPrecision.f32ToF16(v))
                          : kind == .bf16 ? HalfPrecision.bf16ToF32(HalfPrecision.f32ToBF16(v)) : v
                    worst = max(worst, abs(r - v))
                    if !r.isFinite && v.isFinite {
                        throw PipelineError.invalidArgument("A value (\(v)) does not fit in \(dtype); keep f32.")
                    }
                }
            }
            try writeSafeTensors(tensors, to: dst, dtype: kind)
            try atomicWrite(config, to: to + "/config.json")
            let size = (try? FileManager.default.attributesOfItem(atPath: dst)[.size] as? Int) ?? 0
            print(String(format: "Wrote %@ (%d tensors, %.2f MB, largest rounding change %.3g).", dst, tensors.count, Double(size) / 1e6, worst))
        }
    }
}
