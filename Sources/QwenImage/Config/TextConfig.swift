import Foundation

/// The language model configuration of the text encoder, read from its `config.json`: Qwen2.5-VL
/// (Qwen-Image) or Qwen3-VL (Qwen-Image 2.1, `model_type` qwen3_vl; see `Family`).
///
/// Two layouts are accepted (see the oracle README, "Checkpoint names and config layout"):
///  * hub layout (transformers 4.53, what `Qwen/Qwen-Image` ships): the text fields at the top level
///    and again in `text_config`, rope as `rope_scaling: {mrope_section, ...}` plus `rope_theta`;
///  * transformers 5.x `save_pretrained`: the text fields in `text_config` only, rope as
///    `rope_parameters: {rope_type, rope_theta, mrope_section}`.
///
/// Resolution follows `Qwen2_5_VLConfig.__post_init__`: `text_config` when present, else the top
/// level. Within it `rope_scaling` wins over `rope_parameters` (`convert_rope_params_to_dict`),
/// `rope_theta` comes from the rope dict, else the plain field, else 1e6; a missing `mrope_section`
/// falls back to [16, 24, 24] like `Qwen2_5_VLRotaryEmbedding`. Nothing is ever inferred from tensor
/// shapes: sizes the file lacks are an error, not a guess.
public struct TextConfig: Codable, Sendable, Equatable {
    /// Which language model: the differences are all here, the model code reads these flags.
    public enum Family: String, Sendable, Codable {
        /// `Qwen2_5_VLTextModel`: q/k/v biases, head_dim = hidden / heads, chunked mrope; the prompt
        /// embeddings are the final-normed last hidden state.
        case qwen25vl = "qwen2_5_vl"
        /// `Qwen3VLTextModel` (transformers 5.25 `models/qwen3_vl`): `attention_bias` (default false) on
        /// all four projections, explicit `head_dim` (default 128), per-head RMSNorm `q_norm` / `k_norm`
        /// before rope, interleaved mrope; `QwenImage21Pipeline` hooks the final norm away, so the
        /// prompt embeddings are the last decoder layer's raw output.
        case qwen3vl = "qwen3_vl"
    }

    public var family: Family = .qwen25vl
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    /// Split of the head_dim / 2 rotary frequencies over the (t, h, w) position axes.
    public var mropeSection: [Int]
    public var hiddenAct: String
    // Special token ids the vision path needs (top level of the hub config).
    public var imageTokenId: Int?
    public var videoTokenId: Int?
    public var visionStartTokenId: Int?
    public var visionEndTokenId: Int?
    /// Qwen3-VL's `head_dim` (nil: hidden_size / num_attention_heads).
    public var explicitHeadDim: Int?
    /// Biases on the attention projections: Qwen2.5-VL always has them on q/k/v (not o); Qwen3-VL has
    /// them on all four when `attention_bias`.
    public var attentionBias = true
    /// Rotary frequencies assigned to the (t, h, w) axes in turn (Qwen3-VL) instead of in three chunks.
    public var mropeInterleaved = false

    /// Per-head RMSNorm of queries and keys before rope (Qwen3-VL).
    public var hasQKNorm: Bool { family == .qwen3vl }
    /// Whether the prompt embeddings are the final-normed state (Qwen-Image) or the last layer's raw
    /// output (Qwen-Image 2.1).
    public var embeddingsAreFinalNormed: Bool { family == .qwen25vl }

    /// Per-head size: `head_dim`, else `hidden_size / num_attention_heads` (`Qwen2_5_VLAttention.head_dim`).
    public var headDim: Int { explicitHeadDim ?? hiddenSize / numAttentionHeads }
    public var qDim: Int { numAttentionHeads * headDim }
    public var kvDim: Int { numKeyValueHeads * headDim }

    public init(vocabSize: Int, hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int,
                numAttentionHeads: Int, numKeyValueHeads: Int, rmsNormEps: Double = 1e-6,
                ropeTheta: Double = 1_000_000, mropeSection: [Int], hiddenAct: String = "silu",
                imageTokenId: Int? = nil, videoTokenId: Int? = nil,
                visionStartTokenId: Int? = nil, visionEndTokenId: Int? = nil) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.mropeSection = mropeSection
        self.hiddenAct = hiddenAct
        self.imageTokenId = imageTokenId
        self.videoTokenId = videoTokenId
        self.visionStartTokenId = visionStartTokenId
        self.visionEndTokenId = visionEndTokenId
    }

    enum CodingKeys: String, CodingKey {
        case textConfig = "text_config"
        case vocabSize = "vocab_size"
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta"
        case ropeScaling = "rope_scaling"
        case ropeParameters = "rope_parameters"
        case hiddenAct = "hidden_act"
        case imageTokenId = "image_token_id"
        case videoTokenId = "video_token_id"
        case visionStartTokenId = "vision_start_token_id"
        case visionEndTokenId = "vision_end_token_id"
        case modelType = "model_type"
        case headDim = "head_dim"
        case attentionBias = "attention_bias"
    }

    /// `rope_scaling` / `rope_parameters` objects.
    struct RopeDict: Codable {
        var mropeSection: [Int]?
        var ropeTheta: Double?
        var ropeType: String?
        var mropeInterleaved: Bool?
        enum CodingKeys: String, CodingKey {
            case mropeSection = "mrope_section"
            case ropeTheta = "rope_theta"
            case ropeType = "rope_type"
            case mropeInterleaved = "mrope_interleaved"
        }
    }

    public init(from decoder: Decoder) throws {
        let top = try decoder.container(keyedBy: CodingKeys.self)
        // transformers uses text_config whole when it exists; the hub layout repeats every text
        // field there, so reading it first gives the same numbers for both layouts.
        let text = top.contains(.textConfig) && (try? top.decodeNil(forKey: .textConfig)) == false
            ? try top.nestedContainer(keyedBy: CodingKeys.self, forKey: .textConfig) : top
        func required(_ key: CodingKeys) throws -> Int {
            guard let v = try text.decodeIfPresent(Int.self, forKey: key) else {
                throw DecodingError.keyNotFound(key, .init(codingPath: text.codingPath,
                    debugDescription: "required text model field \(key.stringValue) is missing"))
            }
            return v
        }
        let modelType = try top.decodeIfPresent(String.self, forKey: .modelType) ?? text.decodeIfPresent(String.self, forKey: .modelType) ?? ""
        family = modelType.hasPrefix("qwen3_vl") ? .qwen3vl : .qwen25vl
        vocabSize = try required(.vocabSize)
        hiddenSize = try required(.hiddenSize)
        intermediateSize = try required(.intermediateSize)
        numHiddenLayers = try required(.numHiddenLayers)
        numAttentionHeads = try required(.numAttentionHeads)
        // Qwen2_5_VLTextConfig.__post_init__: a missing kv head count means plain multi-head attention.
        numKeyValueHeads = try text.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? numAttentionHeads
        // Qwen2_5_VLTextConfig / Qwen3VLTextConfig defaults.
        rmsNormEps = try text.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? (family == .qwen3vl ? 1e-6 : 1e-5)
        hiddenAct = try text.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "silu"
        let rope = try text.decodeIfPresent(RopeDict.self, forKey: .ropeScaling)
            ?? text.decodeIfPresent(RopeDict.self, forKey: .ropeParameters)
        if family == .qwen3vl {
            // Qwen3VLTextConfig: head_dim 128, no attention bias, theta 500000, sections [24, 20, 20]; the
            // rotary embedding is always interleaved (`mrope_interleaved` is never read upstream).
            explicitHeadDim = try text.decodeIfPresent(Int.self, forKey: .headDim) ?? 128
            attentionBias = try text.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? false
            ropeTheta = try rope?.ropeTheta ?? text.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? 500_000
            mropeSection = rope?.mropeSection ?? [24, 20, 20]
            mropeInterleaved = true
        } else {
            ropeTheta = try rope?.ropeTheta ?? text.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? 1_000_000
            mropeSection = rope?.mropeSection ?? [16, 24, 24]
        }
        // Token ids live at the top level in both layouts (text_config has image_token_id: null).
        imageTokenId = try top.decodeIfPresent(Int.self, forKey: .imageTokenId)
        videoTokenId = try top.decodeIfPresent(Int.self, forKey: .videoTokenId)
        visionStartTokenId = try top.decodeIfPresent(Int.self, forKey: .visionStartTokenId)
        visionEndTokenId = try top.decodeIfPresent(Int.self, forKey: .visionEndTokenId)
    }

    /// Writes the transformers 5.x layout (text fields in `text_config`, `rope_parameters`).
    public func encode(to encoder: Encoder) throws {
        var top = encoder.container(keyedBy: CodingKeys.self)
        var text = top.nestedContainer(keyedBy: CodingKeys.self, forKey: .textConfig)
        try text.encode(vocabSize, forKey: .vocabSize)
        try text.encode(hiddenSize, forKey: .hiddenSize)
        try text.encode(intermediateSize, forKey: .intermediateSize)
        try text.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try text.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try text.encode(numKeyValueHeads, forKey: .numKeyValueHeads)
        try text.encode(rmsNormEps, forKey: .rmsNormEps)
        try text.encode(hiddenAct, forKey: .hiddenAct)
        try text.encode(RopeDict(mropeSection: mropeSection, ropeTheta: ropeTheta, ropeType: "default",
                                 mropeInterleaved: family == .qwen3vl ? true : nil), forKey: .ropeParameters)
        if family == .qwen3vl {
            try top.encode("qwen3_vl", forKey: .modelType)
            try text.encode(headDim, forKey: .headDim)
            try text.encode(attentionBias, forKey: .attentionBias)
        }
        try top.encodeIfPresent(imageTokenId, forKey: .imageTokenId)
        try top.encodeIfPresent(videoTokenId, forKey: .videoTokenId)
        try top.encodeIfPresent(visionStartTokenId, forKey: .visionStartTokenId)
        try top.encodeIfPresent(visionEndTokenId, forKey: .visionEndTokenId)
    }

    /// Decodes and validates `config.json` bytes; `file` names the source in error messages.
    public static func load(_ data: Data, file: String) throws -> TextConfig {
        let config: TextConfig
        do {
            config = try JSONDecoder().decode(TextConfig.self, from: data)
        } catch let error as DecodingError {
            throw QwenImageError.config(file: file, message: describe(error))
        } catch {
            throw QwenImageError.config(file: file, message: "not valid JSON: \(error)")
        }
        try config.validate(file: file)
        return config
    }

    /// Checks the sizes are usable by the language model; throws `QwenImageError.config`.
    public func validate(file: String) throws {
        func fail(_ m: String) -> QwenImageError { .config(file: file, message: m) }
        for (name, v) in [("vocab_size", vocabSize), ("hidden_size", hiddenSize),
                          ("intermediate_size", intermediateSize), ("num_hidden_layers", numHiddenLayers),
                          ("num_attention_heads", numAttentionHeads), ("num_key_value_heads", numKeyValueHeads)]
        where v <= 0 {
            throw fail("\(name) must be positive, found \(v)")
        }
        try ConfigLimits.check([("vocab_size", vocabSize, ConfigLimits.vocabulary), ("hidden_size", hiddenSize, ConfigLimits.width),
                                ("intermediate_size", intermediateSize, ConfigLimits.mlpWidth),
                                ("num_hidden_layers", numHiddenLayers, ConfigLimits.layers),
                                ("num_attention_heads", numAttentionHeads, ConfigLimits.heads),
                                ("num_key_value_heads", numKeyValueHeads, ConfigLimits.heads)], fail: fail)
        if let d = explicitHeadDim {
            guard d > 0, d <= ConfigLimits.width else { throw fail("head_dim must be between 1 and \(ConfigLimits.width), found \(d)") }
        } else {
            guard hiddenSize % numAttentionHeads == 0 else {
                throw fail("hidden_size \(hiddenSize) is not a multiple of num_attention_heads \(numAttentionHeads)")
            }
        }
        guard headDim % 2 == 0 else { throw fail("head_dim = \(headDim) must be even for rotary embeddings") }
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw fail("num_attention_heads \(numAttentionHeads) is not a multiple of num_key_value_heads \(numKeyValueHeads)")
        }
        guard mropeSection.count == 3, mropeSection.allSatisfy({ $0 >= 0 }),
              mropeSection.reduce(0, +) == headDim / 2 else {
            throw fail("rope mrope_section must be 3 non-negative numbers summing to head_dim / 2 = \(headDim / 2), found \(mropeSection)")
        }
        guard rmsNormEps > 0, rmsNormEps.isFinite else { throw fail("rms_norm_eps must be positive, found \(rmsNormEps)") }
        guard ropeTheta > 0, ropeTheta.isFinite else { throw fail("rope_theta must be positive, found \(ropeTheta)") }
        guard hiddenAct == "silu" else { throw fail("hidden_act \"\(hiddenAct)\" is not supported (expected \"silu\")") }
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ ctx: DecodingError.Context, _ extra: CodingKey? = nil) -> String {
            let keys = (ctx.codingPath + (extra.map { [$0] } ?? [])).map(\.stringValue)
            return keys.isEmpty ? "(top level)" : keys.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let ctx): return "field \(path(ctx, key)) is missing"
        case .typeMismatch(let type, let ctx): return "field \(path(ctx)) has the wrong type (expected \(type))"
        case .valueNotFound(let type, let ctx): return "field \(path(ctx)) is null (expected \(type))"
        case .dataCorrupted(let ctx): return "invalid JSON at \(path(ctx)): \(ctx.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}
