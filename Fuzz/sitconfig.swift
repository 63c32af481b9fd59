// Fuzz target `sitconfig` (scripts/fuzz.sh; Main.swift dispatches): SiT config.json parsing (JSONFile.parseObject, SiTConfig(json:)) and
// validation. A config that validates must be buildable: small ones are built and run once,
// and its parameter count must be exact and within the limit.

import Foundation
import SiT
import Tensor

func fuzzSiTConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Data(UnsafeRawBufferPointer(start: data, count: size))
    do {
        let json = try JSONFile.parseObject(bytes, path: "fuzz/config.json")
        let config = try SiTConfig(json: json, file: "fuzz/config.json")
        try config.validate()
        // Everything derived from a valid config is computable without a trap.
        _ = (config.numTokens, config.outputWidth, config.mlpHiddenSize, config.labelTableRows, config.latentShape)
        let parameters = config.parameterCount
        require(parameters.isFinite && parameters <= SiTConfig.Limits.parameters, "\(parameters) parameters passed validation")
        // Written and read back, it is the same config.
        let back = try JSONDecoder().decode(SiTConfig.self, from: try JSONEncoder().encode(config))
        require(back == config, "config.json round trip changed the config")
        if parameters <= 60_000 && config.numTokens <= 256 {
            let model = try SiT(config: config)
            let count = model.namedTensors().reduce(0) { $0 + $1.1.count }
            require(Double(count) == parameters, "parameterCount \(parameters) but the model has \(count)")
            let x = Tensor(zeros: [1] + config.latentShape)
            let v = try Autograd.noGrad { try model(x, t: [0.5], y: [config.numClasses - 1]) }
            require(v.shape == [1] + config.latentShape, "velocity shape \(v.shape)")
        }
    } catch {
        describe(error)
    }
    return 0
}

func seeds_sitconfig() {
    writeSeeds {
        [("tiny2d.json", Data(#"{"hidden_size": 16, "depth": 1, "num_heads": 2, "patch_size": 2, "in_channels": 2, "input_size": 4, "num_classes": 3, "vae_1d": false, "qk_norm": true, "mlp_ratio": 2.5}"#.utf8)),
         ("tiny1d.json", Data(#"{"hidden_size": 8, "depth": 2, "num_heads": 1, "in_channels": 3, "input_size": 5, "num_classes": 2, "vae_1d": true, "class_dropout_prob": 0}"#.utf8)),
         ("defaults.json", Data("{}".utf8))]
    }
}
