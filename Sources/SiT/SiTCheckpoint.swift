// SiT checkpoint folders: `config.json` (official fields) + `model.safetensors` (official key
// names, strict loading through Module.load).

import Foundation
import Tensor

extension SiT {
    /// Loads `folder/config.json` and `folder/model.safetensors` strictly: every key present, none
    /// unused, shapes as config.json implies. The stored `pos_embed` is kept; its largest
    /// difference from the computed sin-cos table is recorded in `posEmbedMaxDifference` and
    /// reported through `warn` when above 1e-4.
    public static func load(folder: String,
                            warn: (String) -> Void = { FileHandle.standardError.write(Data(("warning: " + $0 + "\n").utf8)) }) throws -> SiT {
        let configPath = (folder as NSString).appendingPathComponent("config.json")
        let weightsPath = (folder as NSString).appendingPathComponent("model.safetensors")
        let config = try SiTConfig.read(from: configPath)
        let file = try SafeTensorsFile(path: weightsPath)
        // A config far larger than the weights cannot belong to them: refuse it before the
        // model is allocated (small differences are named key by key by the strict load).
        let stored = file.entries.values.reduce(0.0) { $0 + Double($1.shape.reduce(1, *)) }
        if config.parameterCount > 2 * stored + 1e6 {
            throw SiTError.invalidConfig("\(configPath) describes \(String(format: "%.3g", config.parameterCount)) parameters but \(weightsPath) holds only \(Int(stored)) values; they do not belong together")
        }
        let model = try SiT(config: config)
        do {
            try model.load(from: file)
        } catch let CheckpointError.shapeMismatch(key, expected, found, _) {
            throw SiTError.checkpointDisagreesWithConfig(key: key, fromConfig: expected, inFile: found)
        }
        let table = positionTable(config)
        var diff: Float = 0
        for i in 0..<table.count { diff = max(diff, abs(table.pointer[i] - model.posEmbed.pointer[i])) }
        model.posEmbedMaxDifference = diff
        // A half-precision file cannot hold the table more exactly than its rounding.
        let tolerance: Float
        switch file.entries["pos_embed"]?.dtype {
        case .f16?: tolerance = 1e-3
        case .bf16?: tolerance = 8e-3
        default: tolerance = 1e-4
        }
        if !(diff <= tolerance) {
            warn("\(weightsPath): pos_embed differs from the sin-cos table implied by config.json by up to \(diff); using the stored table")
        }
        return model
    }

    /// Writes `folder/config.json` and `folder/model.safetensors` (float32 by default; f16 or bf16
    /// round to nearest even). Creates the folder if needed.
    public func save(folder: String, dtype: DType = .f32) throws {
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw SiTError.io(folder, "cannot create folder: \(error.localizedDescription)")
        }
        try config.write(to: (folder as NSString).appendingPathComponent("config.json"))
        try save(to: (folder as NSString).appendingPathComponent("model.safetensors"), dtype: dtype)
    }
}
