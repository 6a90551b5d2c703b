import Foundation

/// The vision tower settings: `vision_config` inside `text_encoder/config.json`, for the Qwen2.5-VL tower
/// (Qwen-Image) or the Qwen3-VL one (Qwen-Image 2.1; `family`, from the text encoder's `model_type`).
///
/// Both Qwen2.5-VL layouts are accepted: the hub's (transformers 4.53, `model_type: qwen2_5_vl`, `in_chans`
/// next to `in_channels`) and what transformers 5.x writes (`model_type: qwen2_5_vl_vision`). Fields the real
/// config always has are required; the others default to the real model's values (for Qwen3-VL, the
/// defaults of transformers' `Qwen3VLVisionConfig`).
public struct VisionConfig: Codable, Sendable, Equatable {
    /// Which tower: Qwen2.5-VL (window attention, RMSNorm, SwiGLU) or Qwen3-VL (full attention, LayerNorm,
    /// GELU-tanh MLP, learned position table, DeepStack mergers).
    public var family: TextConfig.Family = .qwen25vl
    public var depth: Int                    // 32
    public var hiddenSize: Int               // Dv = 1280
    public var intermediateSize: Int         // 3420
    public var numHeads: Int                 // 16
    public var outHiddenSize: Int            // the language model's hidden size (3584)
    public var patchSize: Int                // 14
    public var spatialMergeSize: Int         // 2
    public var temporalPatchSize: Int        // 2
    public var inChannels: Int               // 3
    public var windowSize: Int               // 112 (pixels)
    public var fullattBlockIndexes: [Int]    // [7, 15, 23, 31]
    public var hiddenAct: String             // "silu"
    /// RMSNorm epsilon of norm1 / norm2 / merger.ln_q: hard-coded 1e-6 upstream (not in the config).
    public var rmsNormEps: Float = 1e-6
    /// Rotary base of the 2-D vision rope (upstream default; transformers 5.x may write it in `rope_parameters`).
    public var ropeTheta: Double = 10000
    /// Qwen3-VL: entries of the learned position table (`pos_embed`, a square grid: 2304 = 48 × 48).
    public var numPositionEmbeddings: Int = 2304
    /// Qwen3-VL: blocks after which a DeepStack merger taps the hidden state; merger k's output is added
    /// to the output of language-model layer k at the image rows.
    public var deepstackVisualIndexes: [Int] = [8, 16, 24]

    enum CodingKeys: String, CodingKey {
        case depth
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case numHeads = "num_heads"
        case outHiddenSize = "out_hidden_size"
        case patchSize = "patch_size"
        case spatialPatchSize = "spatial_patch_size"
        case spatialMergeSize = "spatial_merge_size"
        case temporalPatchSize = "temporal_patch_size"
        case inChannels = "in_channels"
        case inChans = "in_chans"
        case windowSize = "window_size"
        case fullattBlockIndexes = "fullatt_block_indexes"
        case hiddenAct = "hidden_act"
        case ropeParameters = "rope_parameters"
        case modelType = "model_type"
        case numPositionEmbeddings = "num_position_embeddings"
        case deepstackVisualIndexes = "deepstack_visual_indexes"
    }

    struct RopeParameters: Codable { var rope_theta: Double? }

    public init(depth: Int, hiddenSize: Int, intermediateSize: Int, numHeads: Int, outHiddenSize: Int,
                patchSize: Int = 14, spatialMergeSize: Int = 2, temporalPatchSize: Int = 2, inChannels: Int = 3,
                windowSize: Int = 112, fullattBlockIndexes: [Int], hiddenAct: String = "silu") {
        self.depth = depth
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHeads = numHeads
        self.outHiddenSize = outHiddenSize
        self.patchSize = patchSize
        self.spatialMergeSize = spatialMergeSize
        self.temporalPatchSize = temporalPatchSize
        self.inChannels = inChannels
        self.windowSize = windowSize
        self.fullattBlockIndexes = fullattBlockIndexes
        self.hiddenAct = hiddenAct
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        depth = try c.decode(Int.self, forKey: .depth)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        numHeads = try c.decode(Int.self, forKey: .numHeads)
        outHiddenSize = try c.decode(Int.self, forKey: .outHiddenSize)
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize)
            ?? c.decodeIfPresent(Int.self, forKey: .spatialPatchSize) ?? 14
        spatialMergeSize = try c.decodeIfPresent(Int.self, forKey: .spatialMergeSize) ?? 2
        temporalPatchSize = try c.decodeIfPresent(Int.self, forKey: .temporalPatchSize) ?? 2
        inChannels = try c.decodeIfPresent(Int.self, forKey: .inChannels)
            ?? c.decodeIfPresent(Int.self, forKey: .inChans) ?? 3
        windowSize = try c.decodeIfPresent(Int.self, forKey: .windowSize) ?? 112
        fullattBlockIndexes = try c.decodeIfPresent([Int].self, forKey: .fullattBlockIndexes) ?? [7, 15, 23, 31]
        let modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? ""
        let textModelType = decoder.userInfo[Self.textModelType] as? String ?? ""
        if modelType.hasPrefix("qwen3_vl") || textModelType.hasPrefix("qwen3_vl") { family = .qwen3vl }
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? (family == .qwen3vl ? "gelu_pytorch_tanh" : "silu")
        numPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .numPositionEmbeddings) ?? 2304
        deepstackVisualIndexes = try c.decodeIfPresent([Int].self, forKey: .deepstackVisualIndexes) ?? [8, 16, 24]
        if let rp = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeParameters), let t = rp.rope_theta {
            ropeTheta = t
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(depth, forKey: .depth)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numHeads, forKey: .numHeads)
        try c.encode(outHiddenSize, forKey: .outHiddenSize)
        try c.encode(patchSize, forKey: .patchSize)
        try c.encode(spatialMergeSize, forKey: .spatialMergeSize)
        try c.encode(temporalPatchSize, forKey: .temporalPatchSize)
        try c.encode(inChannels, forKey: .inChannels)
        try c.encode(windowSize, forKey: .windowSize)
        try c.encode(fullattBlockIndexes, forKey: .fullattBlockIndexes)
        try c.encode(hiddenAct, forKey: .hiddenAct)
        if family == .qwen3vl {
            try c.encode("qwen3_vl_vision", forKey: .modelType)
            try c.encode(numPositionEmbeddings, forKey: .numPositionEmbeddings)
            try c.encode(deepstackVisualIndexes, forKey: .deepstackVisualIndexes)
        }
    }

    public var headDim: Int { hiddenSize / numHeads }
    /// Values in one `pixel_values` row: channels × temporal × patch × patch (3·2·14·14 = 1176).
    public var patchFeatures: Int { inChannels * temporalPatchSize * patchSize * patchSize }
    /// Patches per merged token (2×2 = 4).
    public var mergeUnit: Int { spatialMergeSize * spatialMergeSize }
    /// Qwen3-VL: side of the learned position grid (48).
    public var positionGridSide: Int { Int(Double(numPositionEmbeddings).squareRoot()) }

    /// Reads `vision_config` from a `text_encoder/config.json` and checks it is usable.
    /// - Parameter file: named in errors.
    public static func fromTextEncoderConfig(_ data: Data, file: String) throws -> VisionConfig {
        struct Outer: Decodable { var vision_config: VisionConfig?; var model_type: String? }
        let outer: Outer
        do {
            // The tower of a qwen3_vl text encoder is a Qwen3-VL one whatever its own model_type says: the
            // outer model_type reaches init(from:) through userInfo.
            let probe = try JSONDecoder().decode(OuterType.self, from: data)
            let decoder = JSONDecoder()
            decoder.userInfo[Self.textModelType] = probe.model_type ?? ""
            outer = try decoder.decode(Outer.self, from: data)
        } catch {
            throw QwenImageError.config(file: file, message: "cannot read vision_config: \(error)")
        }
        guard let v = outer.vision_config else {
            throw QwenImageError.config(file: file, message: "no vision_config: this text encoder has no vision tower")
        }
        try v.validate(file: file)
        return v
    }

    private struct OuterType: Decodable { var model_type: String? }
    /// userInfo key: the text encoder's own `model_type` (the file `vision_config` sits in).
    static let textModelType = CodingUserInfoKey(rawValue: "qwen.textModelType")!

    /// `vision_config` of a `text_encoder/config.json`, validated, or nil when the file has none.
    public static func fromTextEncoderConfigIfPresent(_ data: Data, file: String) throws -> VisionConfig? {
        struct Probe: Decodable {
            struct Present: Decodable {}
            var vision_config: Present?
        }
        guard (try? JSONDecoder().decode(Probe.self, from: data))?.vision_config != nil else { return nil }
        return try fromTextEncoderConfig(data, file: file)
    }

    public func validate(file: String) throws {
        func bad(_ m: String) -> QwenImageError { .config(file: file, message: "vision_config: \(m)") }
        guard depth > 0, hiddenSize > 0, numHeads > 0, intermediateSize > 0, outHiddenSize > 0 else {
            throw bad("depth, hidden_size, num_heads, intermediate_size and out_hidden_size must be positive")
        }
        try ConfigLimits.check([("depth", depth, ConfigLimits.layers), ("hidden_size", hiddenSize, ConfigLimits.width),
                                ("num_heads", numHeads, ConfigLimits.heads), ("intermediate_size", intermediateSize, ConfigLimits.mlpWidth),
                                ("out_hidden_size", outHiddenSize, ConfigLimits.width), ("patch_size", patchSize, ConfigLimits.patch),
                                ("spatial_merge_size", spatialMergeSize, 64), ("temporal_patch_size", temporalPatchSize, 64),
                                ("window_size", windowSize, ConfigLimits.width)], fail: bad)
        guard hiddenSize % numHeads == 0, headDim % 4 == 0 else {
            throw bad("hidden_size \(hiddenSize) / num_heads \(numHeads) must give a head_dim divisible by 4 (2-D rope)")
        }
        guard patchSize > 0, spatialMergeSize > 0, temporalPatchSize > 0, inChannels == 3 else {
            throw bad("expected positive patch sizes and in_channels 3, found patch \(patchSize), merge "
                      + "\(spatialMergeSize), temporal \(temporalPatchSize), in_channels \(inChannels)")
        }
        if family == .qwen3vl {
            let side = positionGridSide
            guard numPositionEmbeddings > 0, numPositionEmbeddings <= 1 << 20,
                  side * side == numPositionEmbeddings else {
                throw bad("num_position_embeddings \(numPositionEmbeddings) must be a positive square (48 x 48 = 2304)")
            }
            guard deepstackVisualIndexes.allSatisfy({ $0 >= 0 && $0 < depth }),
                  Set(deepstackVisualIndexes).count == deepstackVisualIndexes.count else {
                throw bad("deepstack_visual_indexes \(deepstackVisualIndexes) must be distinct blocks in 0..<\(depth)")
            }
            guard hiddenAct == "gelu_pytorch_tanh" else {
                throw bad("hidden_act \(hiddenAct) is not supported for a Qwen3-VL tower (expected gelu_pytorch_tanh)")
            }
            return
        }
        guard windowSize >= patchSize * spatialMergeSize else {
            throw bad("window_size \(windowSize) is smaller than one merged unit (\(patchSize * spatialMergeSize) px)")
        }
        guard fullattBlockIndexes.allSatisfy({ $0 >= 0 && $0 < depth }) else {
            throw bad("fullatt_block_indexes \(fullattBlockIndexes) must lie in 0..<\(depth)")
        }
        guard hiddenAct == "silu" else { throw bad("hidden_act \(hiddenAct) is not supported (expected silu)") }
    }
}
