// SiT configuration: the official config.json (snake_case fields written by the official
// PyTorchModelHubMixin), typed size presets, and the JSON value type that keeps unknown fields.

import Foundation
import Tensor

/// The SiT sizes of the official code (depth, width, heads).
public enum SiTSize: String, CaseIterable, Codable, Sendable {
    case s = "S", b = "B", l = "L", xl = "XL"

    public var depth: Int { switch self { case .s: 12; case .b: 12; case .l: 24; case .xl: 28 } }
    public var hiddenSize: Int { switch self { case .s: 384; case .b: 768; case .l: 1024; case .xl: 1152 } }
    public var numHeads: Int { switch self { case .s: 6; case .b: 12; case .l: 16; case .xl: 16 } }
}

/// The fields of the official SiT config.json. Unknown fields (tags, license, z_dims, ...) are kept
/// in `extra` and written back unchanged.
public struct SiTConfig: Codable, Equatable, Sendable {
    public var hiddenSize: Int
    public var depth: Int
    public var numHeads: Int
    public var mlpRatio: Double
    public var patchSize: Int
    public var inChannels: Int
    /// Tokens for 1-D models; height = width of the latent for 2-D models.
    public var inputSize: Int
    public var numClasses: Int
    public var classDropoutProb: Double
    /// 1-D token input (N, T, C) with a Linear embedder, instead of a 2-D (N, C, H, W) latent.
    public var vae1D: Bool
    public var qkNorm: Bool
    /// Width of the final layer; the official model only works when it equals `hiddenSize`.
    public var decoderHiddenSize: Int
    /// Every other field of config.json, preserved as read.
    public var extra: [String: JSONValue]

    private enum Keys: String, CaseIterable {
        case hidden_size, depth, num_heads, mlp_ratio, patch_size, in_channels, input_size, num_classes,
             class_dropout_prob, vae_1d, qk_norm, decoder_hidden_size
    }

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(hiddenSize: Int, depth: Int, numHeads: Int, mlpRatio: Double = 4, patchSize: Int,
                inChannels: Int, inputSize: Int, numClasses: Int = 1000, classDropoutProb: Double = 0.1,
                vae1D: Bool, qkNorm: Bool = false, decoderHiddenSize: Int? = nil, extra: [String: JSONValue]? = nil) {
        self.hiddenSize = hiddenSize
        self.depth = depth
        self.numHeads = numHeads
        self.mlpRatio = mlpRatio
        self.patchSize = vae1D ? 1 : patchSize
        self.inChannels = inChannels
        self.inputSize = inputSize
        self.numClasses = numClasses
        self.classDropoutProb = classDropoutProb
        self.vae1D = vae1D
        self.qkNorm = qkNorm
        self.decoderHiddenSize = decoderHiddenSize ?? hiddenSize
        // What the official training script passes and the hub mixin writes besides the fields above.
        self.extra = extra ?? [
            "path_type": .string("edm"), "use_cfg": .bool(true), "z_dims": .array([.int(0)]),
            "fused_attn": .bool(false), "flash_attn": .bool(true),
            "tags": .array(["arxiv:2412.10958", "image-generation", "32 tokens", "SiT"].map { .string($0) }),
            "repo_url": .string("https://github.com/Hhhhhhao/continuous_tokenizer"), "license": .string("apache-2.0"),
        ]
    }

    /// A preset of the official family (`SiT-XL/1` = `.preset(.xl, patch: 1, ...)`). The final layer
    /// width equals the hidden size for every size (the official S presets leave it at 768, which
    /// cannot run).
    public static func preset(_ size: SiTSize, patch: Int, inputSize: Int, inChannels: Int,
                              numClasses: Int = 1000, vae1D: Bool) -> SiTConfig {
        SiTConfig(hiddenSize: size.hiddenSize, depth: size.depth, numHeads: size.numHeads, patchSize: patch,
                  inChannels: inChannels, inputSize: inputSize, numClasses: numClasses, vae1D: vae1D)
    }

    public static func s(patch: Int, inputSize: Int, inChannels: Int, numClasses: Int = 1000, vae1D: Bool) -> SiTConfig {
        preset(.s, patch: patch, inputSize: inputSize, inChannels: inChannels, numClasses: numClasses, vae1D: vae1D)
    }
    public static func b(patch: Int, inputSize: Int, inChannels: Int, numClasses: Int = 1000, vae1D: Bool) -> SiTConfig {
        preset(.b, patch: patch, inputSize: inputSize, inChannels: inChannels, numClasses: numClasses, vae1D: vae1D)
    }
    public static func l(patch: Int, inputSize: Int, inChannels: Int, numClasses: Int = 1000, vae1D: Bool) -> SiTConfig {
        preset(.l, patch: patch, inputSize: inputSize, inChannels: inChannels, numClasses: numClasses, vae1D: vae1D)
    }
    public static func xl(patch: Int, inputSize: Int, inChannels: Int, numClasses: Int = 1000, vae1D: Bool) -> SiTConfig {
        preset(.xl, patch: patch, inputSize: inputSize, inChannels: inChannels, numClasses: numClasses, vae1D: vae1D)
    }

    /// SiT-XL/1 over SoftVQ tokens (the released `sit-xl_softvq-*` models): `tokens` x 32 channels.
    public static func xl1SoftVQ(tokens: Int = 64, channels: Int = 32, numClasses: Int = 1000) -> SiTConfig {
        xl(patch: 1, inputSize: tokens, inChannels: channels, numClasses: numClasses, vae1D: true)
    }

    // MARK: derived sizes

    /// Sequence length T.
    public var numTokens: Int { vae1D ? inputSize : (inputSize / patchSize) * (inputSize / patchSize) }
    /// Output width of the final linear layer: p * p * C.
    public var outputWidth: Int { patchSize * patchSize * inChannels }
    public var mlpHiddenSize: Int { Int(Double(hiddenSize) * mlpRatio) }
    /// Rows of the label table: the classes plus the null class when label dropout is on (official).
    public var labelTableRows: Int { numClasses + (classDropoutProb > 0 ? 1 : 0) }
    /// Shape of one latent sample: (T, C) for 1-D models, (C, H, W) for 2-D models.
    public var latentShape: [Int] { vae1D ? [inputSize, inChannels] : [inChannels, inputSize, inputSize] }

    /// Upper bounds of a buildable SiT (far above every released model: SiT-XL is 1152 wide,
    /// 28 deep, 675 M parameters), checked before anything is allocated.
    public enum Limits {
        public static let hiddenSize = 16384
        public static let depth = 256
        public static let numClasses = 1_000_000
        /// Tokens (1-D) or latent side (2-D).
        public static let inputSize = 4096
        public static let inChannels = 16384
        public static let mlpRatio = 64.0
        /// Sequence length after patchifying.
        public static let numTokens = 65536
        public static let parameters = 20e9
    }

    /// Parameters of the model this config builds (exact for the layers SiT makes; computed in
    /// floating point so that absurd configs cannot overflow).
    public var parameterCount: Double {
        let d = Double(hiddenSize), m = (Double(hiddenSize) * mlpRatio).rounded(.towardZero)
        let c = Double(inChannels), p = Double(patchSize)
        let t = vae1D ? Double(inputSize) : (Double(inputSize) / p).rounded(.down) * (Double(inputSize) / p).rounded(.down)
        let headDim = Double(numHeads) > 0 ? d / Double(numHeads) : 0
        let block = (3 * d * d + 3 * d) + (d * d + d) + (qkNorm ? 4 * headDim : 0) + (d * m + m) + (m * d + d) + (6 * d * d + 6 * d)
        let embed = (vae1D ? c * d + d : c * p * p * d + d) + (256 * d + d) + (d * d + d)
            + Double(numClasses + (classDropoutProb > 0 ? 1 : 0)) * d + t * d
        let final = d * (p * p * c) + p * p * c + d * 2 * d + 2 * d
        return Double(depth) * block + embed + final
    }

    /// Checks that the numbers describe a model that can be built: positive, divisible, within
    /// `Limits`, before any tensor is allocated. Throws one sentence naming the field.
    public func validate() throws {
        func fail(_ why: String) -> SiTError { .invalidConfig(why) }
        let ranges: [(String, Int, ClosedRange<Int>)] = [
            ("hidden_size", hiddenSize, 1...Limits.hiddenSize), ("depth", depth, 0...Limits.depth),
            ("num_heads", numHeads, 1...Limits.hiddenSize), ("in_channels", inChannels, 1...Limits.inChannels),
            ("input_size", inputSize, 1...Limits.inputSize), ("num_classes", numClasses, 1...Limits.numClasses),
            ("patch_size", patchSize, 1...Limits.inputSize), ("decoder_hidden_size", decoderHiddenSize, 1...Limits.hiddenSize),
        ]
        guard hiddenSize > 0, depth >= 0, numHeads > 0, inChannels > 0, inputSize > 0, numClasses > 0, patchSize > 0 else {
            throw fail("sizes must be positive (hidden_size \(hiddenSize), depth \(depth), num_heads \(numHeads), in_channels \(inChannels), input_size \(inputSize), num_classes \(numClasses), patch_size \(patchSize))")
        }
        for (field, value, range) in ranges where !range.contains(value) {
            throw fail("\(field) \(value) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        guard mlpRatio.isFinite, mlpRatio > 0, mlpRatio <= Limits.mlpRatio else {
            throw fail("mlp_ratio \(mlpRatio) must be positive and at most \(Int(Limits.mlpRatio))")
        }
        guard classDropoutProb.isFinite, classDropoutProb >= 0, classDropoutProb < 1 else {
            throw fail("class_dropout_prob \(classDropoutProb) must be in [0, 1)")
        }
        guard hiddenSize % numHeads == 0 else { throw fail("hidden_size \(hiddenSize) is not divisible by num_heads \(numHeads)") }
        guard hiddenSize % 2 == 0 else { throw fail("hidden_size \(hiddenSize) must be even for the sin-cos position table") }
        guard decoderHiddenSize == hiddenSize else {
            throw fail("decoder_hidden_size \(decoderHiddenSize) differs from hidden_size \(hiddenSize); the SiT final layer reads the block output, so they must be equal")
        }
        if !vae1D {
            guard inputSize % patchSize == 0 else { throw fail("input_size \(inputSize) is not divisible by patch_size \(patchSize)") }
            guard hiddenSize % 4 == 0 else { throw fail("hidden_size \(hiddenSize) must be divisible by 4 for the 2-D sin-cos table") }
        }
        guard mlpHiddenSize >= 1 else { throw fail("mlp_ratio \(mlpRatio) gives an MLP of width \(mlpHiddenSize)") }
        guard numTokens <= Limits.numTokens else {
            throw fail("\(numTokens) tokens (input_size \(inputSize), patch_size \(patchSize)) exceed the limit of \(Limits.numTokens)")
        }
        guard outputWidth <= Limits.inChannels * 64 else {
            throw fail("patch_size \(patchSize) with in_channels \(inChannels) gives an output width of \(outputWidth), above the limit of \(Limits.inChannels * 64)")
        }
        let parameters = parameterCount
        guard parameters <= Limits.parameters else {
            throw fail(String(format: "the model would have %.3g parameters, above the limit of %.0e", parameters, Limits.parameters))
        }
    }

    // MARK: Codable (official field names; defaults of the official constructor where missing)

    /// Builds the config from the fields of config.json (`file` names it in errors). Missing or
    /// null fields take the official constructor's defaults; a field of the wrong type or a
    /// fractional size is refused with one sentence naming the field.
    public init(json: [String: JSONValue], file: String = "config.json") throws {
        let f = JSONFields(json, file: file, error: { SiTError.invalidConfig($0) })
        let vae1D = try f.bool(Keys.vae_1d.rawValue, false)
        let hidden = try f.int(Keys.hidden_size.rawValue, 1152)
        self.init(hiddenSize: hidden,
                  depth: try f.int(Keys.depth.rawValue, 28),
                  numHeads: try f.int(Keys.num_heads.rawValue, 16),
                  mlpRatio: try f.double(Keys.mlp_ratio.rawValue, 4),
                  patchSize: try f.int(Keys.patch_size.rawValue, 2),
                  inChannels: try f.int(Keys.in_channels.rawValue, 4),
                  inputSize: try f.int(Keys.input_size.rawValue, 32),
                  numClasses: try f.int(Keys.num_classes.rawValue, 1000),
                  classDropoutProb: try f.double(Keys.class_dropout_prob.rawValue, 0.1),
                  vae1D: vae1D,
                  qkNorm: try f.bool(Keys.qk_norm.rawValue, false),
                  decoderHiddenSize: try f.int(Keys.decoder_hidden_size.rawValue, hidden),
                  extra: [:])
        let known = Set(Keys.allCases.map(\.rawValue))
        for (key, value) in json where !known.contains(key) { extra[key] = value }
    }

    public init(from decoder: Decoder) throws {
        try self.init(json: try [String: JSONValue](from: decoder))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: AnyKey.self)
        for (k, v) in extra { try c.encode(v, forKey: AnyKey(stringValue: k)) }
        func put<T: Encodable>(_ k: Keys, _ v: T) throws { try c.encode(v, forKey: AnyKey(stringValue: k.rawValue)) }
        try put(.hidden_size, hiddenSize)
        try put(.depth, depth)
        try put(.num_heads, numHeads)
        try put(.mlp_ratio, mlpRatio)
        try put(.patch_size, patchSize)
        try put(.in_channels, inChannels)
        try put(.input_size, inputSize)
        try put(.num_classes, numClasses)
        try put(.class_dropout_prob, classDropoutProb)
        try put(.vae_1d, vae1D)
        try put(.qk_norm, qkNorm)
        try put(.decoder_hidden_size, decoderHiddenSize)
    }

    /// Reads and validates config.json. Every failure is one sentence naming the file: missing,
    /// empty, not JSON, not an object, a field of the wrong type, or sizes that cannot be built.
    public static func read(from path: String) throws -> SiTConfig {
        let json: [String: JSONValue]
        do {
            json = try JSONFile.readObject(at: path)
        } catch let CheckpointError.config(why) {
            throw SiTError.io(path, why)
        }
        let config = try SiTConfig(json: json, file: path)
        do {
            try config.validate()
        } catch let SiTError.invalidConfig(why) {
            throw SiTError.invalidConfig("\(path): \(why)")
        }
        return config
    }

    /// Writes config.json (sorted keys, indented, as the hub mixin does).
    public func write(to path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try enc.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw SiTError.io(path, "cannot write: \(error.localizedDescription)")
        }
    }
}

/// Errors of the SiT module, each one clear sentence.
public enum SiTError: Error, CustomStringConvertible, Equatable {
    case invalidConfig(String)
    case badLatentShape(expected: String, found: [Int])
    case labelOutOfRange(label: Int, index: Int, validRange: ClosedRange<Int>)
    case batchMismatch(String)
    case checkpointDisagreesWithConfig(key: String, fromConfig: [Int], inFile: [Int])
    case io(String, String)
    case nonFinite(String)

    public var description: String {
        switch self {
        case let .invalidConfig(why): return "invalid SiT config: \(why.oneLine(limit: 600))"
        case let .badLatentShape(expected, found):
            return "SiT input has shape \(found) but the model expects \(expected)"
        case let .labelOutOfRange(label, index, range):
            return "class label \(label) (batch entry \(index)) is outside \(range.lowerBound)...\(range.upperBound) (the classes plus the null class)"
        case let .batchMismatch(why): return "SiT batch mismatch: \(why)"
        case let .checkpointDisagreesWithConfig(key, fromConfig, inFile):
            return "model.safetensors does not match config.json: tensor '\(key)' has shape \(inFile) but config.json implies \(fromConfig)"
        case let .io(path, why): return (why.hasPrefix(path) ? why : "\(path): \(why)").oneLine(limit: 600)
        case let .nonFinite(what): return "non-finite values: \(what)"
        }
    }
}
