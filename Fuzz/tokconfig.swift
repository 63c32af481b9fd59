// Fuzz target `tokconfig` (scripts/fuzz.sh; Main.swift dispatches): tokenizer config.json parsing (JSONFile.parseObject, TokenizerConfig(json:))
// and validation. A config that validates must be buildable: small ones are built and run once.

import Foundation
import Tensor
import Tokenizer

func fuzzTokenizerConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = Data(UnsafeRawBufferPointer(start: data, count: size))
    do {
        let json = try JSONFile.parseObject(bytes, path: "fuzz/config.json")
        let config = try TokenizerConfig(json: json, file: "fuzz/config.json")
        try config.validate()
        let enc = try config.encoderSpec, dec = try config.decoderSpec
        _ = (enc.mlpHidden, enc.numPatches, dec.mlpHidden, dec.numPatches, config.tokensPerCodebook)
        let parameters = try config.parameterCount
        require(parameters.isFinite && parameters <= TokenizerConfig.Limits.parameters, "\(parameters) parameters passed validation")
        let back = try JSONDecoder().decode(TokenizerConfig.self, from: try config.jsonData())
        require(back == config, "config.json round trip changed the config")
        if parameters <= 150_000 && config.imageSize <= 32 {
            let model = try SoftVQModel(config: config, initialization: .zeros)
            let count = Double(model.namedTensors().reduce(0) { $0 + $1.1.count })
            require(count == parameters, "parameterCount \(parameters) but the model has \(count)")
            let s = config.imageSize
            let (out, _) = try Autograd.noGrad { try model.reconstruct(Tensor(zeros: [1, 3, s, s])) }
            require(out.shape == [1, 3, s, s], "reconstruction shape \(out.shape)")
        }
    } catch {
        describe(error)
    }
    return 0
}

func seeds_tokconfig() {
    writeSeeds {
        [("tiny.json", Data(#"{"image_size": 8, "enc_type": "vit", "dec_type": "vit", "encoder_model": "vit_tiny_patch16_224", "decoder_model": "vit_small_patch14_dinov2.lvd142m", "enc_patch_size": 4, "dec_patch_size": 4, "enc_embed_dim": 8, "enc_depth": 1, "enc_num_heads": 2, "dec_embed_dim": 8, "dec_depth": 1, "dec_num_heads": 1, "num_latent_tokens": 4, "num_codebooks": 2, "codebook_size": 8, "codebook_embed_dim": 4, "codebook_show_usage": false, "enc_token_drop": 0.5, "enc_mlp_ratio": 2, "layer_scale_init": 0.1}"#.utf8)),
         ("defaults.json", Data(#"{"enc_type": "vit", "dec_type": "vit"}"#.utf8))]
    }
}
