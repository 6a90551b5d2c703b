import Foundation

// The tensor lists of a full-size checkpoint, derived from config.json exactly as the upstream
// classes build their modules: transformers' Qwen2_5_VLForConditionalGeneration (hub key names, as the
// real `Qwen/Qwen-Image` text_encoder stores them) and diffusers' AutoencoderKLQwenImage.
// Checked against the tiny oracle model (same code, tiny config) and the real parameter counts.

/// How the random values of one tensor are drawn.
enum SynthInit {
    /// N(0, std) (approximately: Irwin-Hall with 4 terms, bounded at ±3.46σ).
    case normal(Float)
    /// 1 + N(0, jitter): norm weights.
    case ones(Float)
}

struct SynthTensor {
    let name: String
    let shape: [Int]
    let initial: SynthInit
    /// Multipliers along the last dimension (outlier channels), empty for none.
    var columnScale: [Int: Float] = [:]

    var count: Int { shape.reduce(1, *) }
}

enum SynthSpec {
    // MARK: - Text encoder (language model + vision tower)

    struct TextShapes {
        var hidden = 0, intermediate = 0, heads = 0, kvHeads = 0, layers = 0, vocab = 0
        var vHidden = 0, vIntermediate = 0, vDepth = 0, vOut = 0, vPatch = 0, vTemporal = 0, vIn = 0
        var vMerge = 0
    }

    static func textShapes(config: [String: Any]) throws -> TextShapes {
        func int(_ d: [String: Any], _ k: String) throws -> Int {
            guard let v = d[k] as? Int else { throw BenchError.bad("text_encoder/config.json: missing integer '\(k)'") }
            return v
        }
        let tc = (config["text_config"] as? [String: Any]) ?? config
        guard let vc = config["vision_config"] as? [String: Any] else {
            throw BenchError.bad("text_encoder/config.json: missing 'vision_config'")
        }
        var s = TextShapes()
        s.hidden = try int(tc, "hidden_size"); s.intermediate = try int(tc, "intermediate_size")
        s.heads = try int(tc, "num_attention_heads"); s.kvHeads = try int(tc, "num_key_value_heads")
        s.layers = try int(tc, "num_hidden_layers"); s.vocab = try int(tc, "vocab_size")
        s.vHidden = try int(vc, "hidden_size"); s.vIntermediate = try int(vc, "intermediate_size")
        s.vDepth = try int(vc, "depth"); s.vOut = try int(vc, "out_hidden_size")
        s.vPatch = try int(vc, "patch_size"); s.vTemporal = try int(vc, "temporal_patch_size")
        s.vIn = (vc["in_channels"] as? Int) ?? (vc["in_chans"] as? Int) ?? 3
        s.vMerge = try int(vc, "spatial_merge_size")
        return s
    }

    /// Outlier channels of the residual stream (fixed, spread over the hidden size) and their factors.
    static func outlierChannels(hidden: Int) -> [Int: Float] {
        let factors: [Float] = [1000, 300, 100, 500]
        let positions = [0.005, 0.128, 0.532, 0.837].map { Int(Double(hidden) * $0) }
        var d: [Int: Float] = [:]
        for (p, f) in zip(positions, factors) { d[p] = f }
        return d
    }

    /// - Parameter outliers: scale a few hidden channels of the embedding table and of every input
    ///   norm weight by 100-1000×, so every projection's input carries channels that much larger.
    static func textEncoder(config: [String: Any], outliers: Bool) throws -> [SynthTensor] {
        let s = try textShapes(config: config)
        let lin: SynthInit = .normal(0.02)
        let bias: SynthInit = .normal(0.02)
        let norm: SynthInit = .ones(0.05)
        let hd = s.hidden / s.heads
        let kv = s.kvHeads * hd
        let out = outliers ? outlierChannels(hidden: s.hidden) : [:]
        var t: [SynthTensor] = []
        t.append(SynthTensor(name: "model.embed_tokens.weight", shape: [s.vocab, s.hidden], initial: lin, columnScale: out))
        for l in 0..<s.layers {
            let p = "model.layers.\(l)."
            t.append(SynthTensor(name: p + "input_layernorm.weight", shape: [s.hidden], initial: norm, columnScale: out))
            t.append(SynthTensor(name: p + "self_attn.q_proj.weight", shape: [s.hidden, s.hidden], initial: lin))
            t.append(SynthTensor(name: p + "self_attn.q_proj.bias", shape: [s.hidden], initial: bias))
            t.append(SynthTensor(name: p + "self_attn.k_proj.weight", shape: [kv, s.hidden], initial: lin))
            t.append(SynthTensor(name: p + "self_attn.k_proj.bias", shape: [kv], initial: bias))
            t.append(SynthTensor(name: p + "self_attn.v_proj.weight", shape: [kv, s.hidden], initial: lin))
            t.append(SynthTensor(name: p + "self_attn.v_proj.bias", shape: [kv], initial: bias))
            t.append(SynthTensor(name: p + "self_attn.o_proj.weight", shape: [s.hidden, s.hidden], initial: lin))
            t.append(SynthTensor(name: p + "post_attention_layernorm.weight", shape: [s.hidden], initial: norm, columnScale: out))
            t.append(SynthTensor(name: p + "mlp.gate_proj.weight", shape: [s.intermediate, s.hidden], initial: lin))
            t.append(SynthTensor(name: p + "mlp.up_proj.weight", shape: [s.intermediate, s.hidden], initial: lin))
            t.append(SynthTensor(name: p + "mlp.down_proj.weight", shape: [s.hidden, s.intermediate], initial: lin))
        }
        t.append(SynthTensor(name: "model.norm.weight", shape: [s.hidden], initial: norm))
        t.append(SynthTensor(name: "lm_head.weight", shape: [s.vocab, s.hidden], initial: lin))
        // Vision tower (Qwen2_5_VisionTransformerPretrainedModel).
        let vh = s.vHidden, vi = s.vIntermediate
        let vout = outliers ? outlierChannels(hidden: vh) : [:]
        t.append(SynthTensor(name: "visual.patch_embed.proj.weight",
                             shape: [vh, s.vIn, s.vTemporal, s.vPatch, s.vPatch], initial: lin))
        for b in 0..<s.vDepth {
            let p = "visual.blocks.\(b)."
            t.append(SynthTensor(name: p + "norm1.weight", shape: [vh], initial: norm, columnScale: vout))
            t.append(SynthTensor(name: p + "norm2.weight", shape: [vh], initial: norm, columnScale: vout))
            t.append(SynthTensor(name: p + "attn.qkv.weight", shape: [3 * vh, vh], initial: lin))
            t.append(SynthTensor(name: p + "attn.qkv.bias", shape: [3 * vh], initial: bias))
            t.append(SynthTensor(name: p + "attn.proj.weight", shape: [vh, vh], initial: lin))
            t.append(SynthTensor(name: p + "attn.proj.bias", shape: [vh], initial: bias))
            t.append(SynthTensor(name: p + "mlp.gate_proj.weight", shape: [vi, vh], initial: lin))
            t.append(SynthTensor(name: p + "mlp.gate_proj.bias", shape: [vi], initial: bias))
            t.append(SynthTensor(name: p + "mlp.up_proj.weight", shape: [vi, vh], initial: lin))
            t.append(SynthTensor(name: p + "mlp.up_proj.bias", shape: [vi], initial: bias))
            t.append(SynthTensor(name: p + "mlp.down_proj.weight", shape: [vh, vi], initial: lin))
            t.append(SynthTensor(name: p + "mlp.down_proj.bias", shape: [vh], initial: bias))
        }
        let mh = vh * s.vMerge * s.vMerge
        t.append(SynthTensor(name: "visual.merger.ln_q.weight", shape: [vh], initial: norm))
        t.append(SynthTensor(name: "visual.merger.mlp.0.weight", shape: [mh, mh], initial: lin))
        t.append(SynthTensor(name: "visual.merger.mlp.0.bias", shape: [mh], initial: bias))
        t.append(SynthTensor(name: "visual.merger.mlp.2.weight", shape: [s.vOut, mh], initial: lin))
        t.append(SynthTensor(name: "visual.merger.mlp.2.bias", shape: [s.vOut], initial: bias))
        return t
    }

    // MARK: - VAE (diffusers AutoencoderKLQwenImage)

    static func vae(config: [String: Any]) throws -> [SynthTensor] {
        guard let base = config["base_dim"] as? Int, let z = config["z_dim"] as? Int,
              let mult = config["dim_mult"] as? [Int], let nres = config["num_res_blocks"] as? Int,
              let tdown = config["temperal_downsample"] as? [Bool] else {
            throw BenchError.bad("vae/config.json: expected base_dim, z_dim, dim_mult, num_res_blocks, temperal_downsample")
        }
        let attnScales = (config["attn_scales"] as? [Double]) ?? []
        if !attnScales.isEmpty { throw BenchError.bad("vae/config.json: attn_scales must be empty (found \(attnScales))") }
        let cin = (config["input_channels"] as? Int) ?? 3
        var l = VAETensorList(kernel3: [3, 3, 3], kernel1: [1, 1, 1])
        // Encoder: dims = base * [1] + dim_mult.
        let edims = ([1] + mult).map { base * $0 }
        l.conv("encoder.conv_in", [edims[0], cin, 3, 3, 3])
        var idx = 0
        for i in 0..<(edims.count - 1) {
            var inDim = edims[i]
            let outDim = edims[i + 1]
            for _ in 0..<nres { l.resnet("encoder.down_blocks.\(idx)", inDim, outDim); inDim = outDim; idx += 1 }
            if i != mult.count - 1 {
                l.conv("encoder.down_blocks.\(idx).resample.1", [outDim, outDim, 3, 3])
                if tdown[i] { l.conv("encoder.down_blocks.\(idx).time_conv", [outDim, outDim, 3, 1, 1]) }
                idx += 1
            }
        }
        let top = edims.last!
        l.mid("encoder.mid_block", top)
        l.gamma("encoder.norm_out", top, images: false)
        l.conv("encoder.conv_out", [2 * z, top, 3, 3, 3])
        l.conv("quant_conv", [2 * z, 2 * z, 1, 1, 1])
        l.conv("post_quant_conv", [z, z, 1, 1, 1])
        // Decoder: dims = base * [dim_mult[-1]] + reversed(dim_mult); temporal upsample = reversed.
        let ddims = ([mult.last!] + mult.reversed()).map { base * $0 }
        let tup = Array(tdown.reversed())
        l.conv("decoder.conv_in", [ddims[0], z, 3, 3, 3])
        l.mid("decoder.mid_block", ddims[0])
        for i in 0..<(ddims.count - 1) {
            var inDim = i > 0 ? ddims[i] / 2 : ddims[i]
            let outDim = ddims[i + 1]
            for r in 0..<(nres + 1) { l.resnet("decoder.up_blocks.\(i).resnets.\(r)", inDim, outDim); inDim = outDim }
            if i != mult.count - 1 {
                let p = "decoder.up_blocks.\(i).upsamplers.0"
                l.conv(p + ".resample.1", [outDim / 2, outDim, 3, 3])
                if tup[i] { l.conv(p + ".time_conv", [outDim * 2, outDim, 3, 1, 1]) }
            }
        }
        l.gamma("decoder.norm_out", ddims.last!, images: false)
        l.conv("decoder.conv_out", [cin, ddims.last!, 3, 3, 3])
        return l.tensors.sorted { $0.name < $1.name }
    }
}

enum BenchError: Error, CustomStringConvertible {
    case bad(String)
    var description: String {
        switch self { case .bad(let s): return s }
    }
}

// MARK: - Qwen-Image 2.1 (second generation)

extension SynthSpec {
    /// Whether a text_encoder config is Qwen3-VL (Qwen-Image 2.1).
    static func isQwen3VL(_ config: [String: Any]) -> Bool { (config["model_type"] as? String)?.hasPrefix("qwen3_vl") == true }

    /// transformers' Qwen3VLForConditionalGeneration language model under its 5.x keys
    /// (`model.language_model.*`, `lm_head`): no biases (attention_bias false), per-head q_norm / k_norm,
    /// explicit head_dim; and the Qwen3-VL vision tower (`model.visual.*`: patch embedding with bias, the
    /// learned position table, LayerNorm / fc1 / fc2 blocks, the merger and the DeepStack mergers).
    static func textEncoderQwen3(config: [String: Any]) throws -> [SynthTensor] {
        let tc = (config["text_config"] as? [String: Any]) ?? config
        func int(_ k: String) throws -> Int {
            guard let v = tc[k] as? Int else { throw BenchError.bad("text_encoder/config.json: missing integer text_config.\(k)") }
            return v
        }
        let hidden = try int("hidden_size"), inter = try int("intermediate_size"), heads = try int("num_attention_heads")
        let kvHeads = try int("num_key_value_heads"), layers = try int("num_hidden_layers"), vocab = try int("vocab_size")
        let hd = (tc["head_dim"] as? Int) ?? 128
        if (tc["attention_bias"] as? Bool) == true { throw BenchError.bad("text_encoder/config.json: attention_bias true is not synthesized") }
        let lin: SynthInit = .normal(0.02), norm: SynthInit = .ones(0.05)
        var t: [SynthTensor] = [SynthTensor(name: "model.language_model.embed_tokens.weight", shape: [vocab, hidden], initial: lin)]
        for l in 0..<layers {
            let p = "model.language_model.layers.\(l)."
            t.append(SynthTensor(name: p + "input_layernorm.weight", shape: [hidden], initial: norm))
            t.append(SynthTensor(name: p + "self_attn.q_proj.weight", shape: [heads * hd, hidden], initial: lin))
            t.append(SynthTensor(name: p + "self_attn.k_proj.weight", shape: [kvHeads * hd, hidden], initial: lin))
            t.append(SynthTensor(name: p + "self_attn.v_proj.weight", shape: [kvHeads * hd, hidden], initial: lin))
            t.append(SynthTensor(name: p + "self_attn.o_proj.weight", shape: [hidden, heads * hd], initial: lin))
            t.append(SynthTensor(name: p + "self_attn.q_norm.weight", shape: [hd], initial: norm))
            t.append(SynthTensor(name: p + "self_attn.k_norm.weight", shape: [hd], initial: norm))
            t.append(SynthTensor(name: p + "post_attention_layernorm.weight", shape: [hidden], initial: norm))
            t.append(SynthTensor(name: p + "mlp.gate_proj.weight", shape: [inter, hidden], initial: lin))
            t.append(SynthTensor(name: p + "mlp.up_proj.weight", shape: [inter, hidden], initial: lin))
            t.append(SynthTensor(name: p + "mlp.down_proj.weight", shape: [hidden, inter], initial: lin))
        }
        t.append(SynthTensor(name: "model.language_model.norm.weight", shape: [hidden], initial: norm))
        t.append(SynthTensor(name: "lm_head.weight", shape: [vocab, hidden], initial: lin))
        if let vc = config["vision_config"] as? [String: Any] { t += try visionQwen3(vc) }
        return t
    }

    /// `Qwen3VLVisionModel` under `model.visual.*`.
    static func visionQwen3(_ vc: [String: Any]) throws -> [SynthTensor] {
        func int(_ k: String, _ d: Int? = nil) throws -> Int {
            guard let v = (vc[k] as? Int) ?? d else { throw BenchError.bad("text_encoder/config.json: missing integer vision_config.\(k)") }
            return v
        }
        let vh = try int("hidden_size"), vi = try int("intermediate_size"), depth = try int("depth"), out = try int("out_hidden_size")
        let patch = try int("patch_size", 16), temporal = try int("temporal_patch_size", 2), merge = try int("spatial_merge_size", 2)
        let positions = try int("num_position_embeddings", 2304)
        let deepstack = (vc["deepstack_visual_indexes"] as? [Int]) ?? [8, 16, 24]
        let lin: SynthInit = .normal(0.02), bias: SynthInit = .normal(0.02), norm: SynthInit = .ones(0.05)
        var t: [SynthTensor] = [
            SynthTensor(name: "model.visual.patch_embed.proj.weight", shape: [vh, 3, temporal, patch, patch], initial: lin),
            SynthTensor(name: "model.visual.patch_embed.proj.bias", shape: [vh], initial: bias),
            SynthTensor(name: "model.visual.pos_embed.weight", shape: [positions, vh], initial: lin),
        ]
        for b in 0..<depth {
            let p = "model.visual.blocks.\(b)."
            for n in ["norm1", "norm2"] {
                t.append(SynthTensor(name: p + n + ".weight", shape: [vh], initial: norm))
                t.append(SynthTensor(name: p + n + ".bias", shape: [vh], initial: bias))
            }
            t.append(SynthTensor(name: p + "attn.qkv.weight", shape: [3 * vh, vh], initial: lin))
            t.append(SynthTensor(name: p + "attn.qkv.bias", shape: [3 * vh], initial: bias))
            t.append(SynthTensor(name: p + "attn.proj.weight", shape: [vh, vh], initial: lin))
            t.append(SynthTensor(name: p + "attn.proj.bias", shape: [vh], initial: bias))
            t.append(SynthTensor(name: p + "mlp.linear_fc1.weight", shape: [vi, vh], initial: lin))
            t.append(SynthTensor(name: p + "mlp.linear_fc1.bias", shape: [vi], initial: bias))
            t.append(SynthTensor(name: p + "mlp.linear_fc2.weight", shape: [vh, vi], initial: lin))
            t.append(SynthTensor(name: p + "mlp.linear_fc2.bias", shape: [vh], initial: bias))
        }
        let mh = vh * merge * merge
        func merger(_ p: String, normDim: Int) -> [SynthTensor] {
            [SynthTensor(name: p + "norm.weight", shape: [normDim], initial: norm),
             SynthTensor(name: p + "norm.bias", shape: [normDim], initial: bias),
             SynthTensor(name: p + "linear_fc1.weight", shape: [mh, mh], initial: lin),
             SynthTensor(name: p + "linear_fc1.bias", shape: [mh], initial: bias),
             SynthTensor(name: p + "linear_fc2.weight", shape: [out, mh], initial: lin),
             SynthTensor(name: p + "linear_fc2.bias", shape: [out], initial: bias)]
        }
        t += merger("model.visual.merger.", normDim: vh)
        for k in deepstack.indices { t += merger("model.visual.deepstack_merger_list.\(k).", normDim: mh) }
        return t
    }

    /// Whether a vae config is AutoencoderKLQwenImage21.
    static func isVAE21(_ config: [String: Any]) -> Bool { config["_class_name"] as? String == "AutoencoderKLQwenImage21" }

    /// diffusers' AutoencoderKLQwenImage21 (is_residual): 2-D convolutions, ResidualDownBlock /
    /// ResidualUpBlock with `resnets`, `downsampler` / `upsampler` (`resample.1`, `time_conv` in the 3-D
    /// modes), the mid blocks, quant convs (autoencoder_kl_qwenimage21.py, diffusers 0.42.1).
    static func vae21(config: [String: Any]) throws -> [SynthTensor] {
        guard let base = config["base_dim"] as? Int, let z = config["z_dim"] as? Int,
              let mult = config["dim_mult"] as? [Int], let nres = config["num_res_blocks"] as? Int,
              let tdown = config["temperal_downsample"] as? [Bool] else {
            throw BenchError.bad("vae/config.json: expected base_dim, z_dim, dim_mult, num_res_blocks, temperal_downsample")
        }
        let dbase = (config["decoder_base_dim"] as? Int) ?? base
        let cin = (config["in_channels"] as? Int) ?? 4, cout = (config["out_channels"] as? Int) ?? 4
        var l = VAETensorList(kernel3: [3, 3], kernel1: [1, 1])
        let n = mult.count
        let edims = ([1] + mult).map { base * $0 }
        l.conv("encoder.conv_in", [edims[0], cin, 3, 3])
        for i in 0..<n {
            var inDim = edims[i]
            let outDim = edims[i + 1]
            let p = "encoder.down_blocks.\(i)"
            for j in 0..<nres { l.resnet(p + ".resnets.\(j)", inDim, outDim); inDim = outDim }
            if i != n - 1 {
                l.conv(p + ".downsampler.resample.1", [outDim, outDim, 3, 3])
                if tdown[i] { l.conv(p + ".downsampler.time_conv", [outDim, outDim, 1, 1]) }
            }
        }
        l.mid("encoder.mid_block", edims.last!)
        l.gamma("encoder.norm_out", edims.last!, images: false)
        l.conv("encoder.conv_out", [2 * z, edims.last!, 3, 3])
        l.conv("quant_conv", [2 * z, 2 * z, 1, 1])
        l.conv("post_quant_conv", [z, z, 1, 1])
        let ddims = [dbase * mult.last!] + mult.reversed().map { dbase * $0 }
        let tup = Array(tdown.reversed())
        l.conv("decoder.conv_in", [ddims[0], z, 3, 3])
        l.mid("decoder.mid_block", ddims[0])
        for i in 0..<n {
            var inDim = ddims[i]
            let outDim = ddims[i + 1]
            let p = "decoder.up_blocks.\(i)"
            for j in 0...nres { l.resnet(p + ".resnets.\(j)", inDim, outDim); inDim = outDim }
            if i != n - 1 {
                l.conv(p + ".upsampler.resample.1", [outDim, outDim, 3, 3])
                if tup[i] { l.conv(p + ".upsampler.time_conv", [2 * outDim, outDim, 1, 1]) }
            }
        }
        l.gamma("decoder.norm_out", ddims.last!, images: false)
        l.conv("decoder.conv_out", [cout, ddims.last!, 3, 3])
        return l.tensors
    }
}

/// The tensors of a Qwen VAE, built the way the diffusers modules name them; `kernel3` / `kernel1` are the
/// trailing shape of a 3×3 and a 1×1 convolution (3-D [3, 3, 3] / [1, 1, 1] in the first generation, 2-D in 2.1).
struct VAETensorList {
    let kernel3: [Int], kernel1: [Int]
    var tensors: [SynthTensor] = []

    init(kernel3: [Int], kernel1: [Int]) { self.kernel3 = kernel3; self.kernel1 = kernel1 }

    /// Kaiming-like scales keep activations O(1) through the stack.
    mutating func conv(_ name: String, _ shape: [Int]) {
        let fanIn = shape.dropFirst().reduce(1, *)
        tensors.append(SynthTensor(name: name + ".weight", shape: shape, initial: .normal(1 / Float(fanIn).squareRoot())))
        tensors.append(SynthTensor(name: name + ".bias", shape: [shape[0]], initial: .normal(0.01)))
    }
    mutating func gamma(_ name: String, _ c: Int, images: Bool) {
        tensors.append(SynthTensor(name: name + ".gamma", shape: images ? [c, 1, 1] : [c, 1, 1, 1], initial: .ones(0.05)))
    }
    mutating func resnet(_ p: String, _ i: Int, _ o: Int) {
        gamma(p + ".norm1", i, images: false)
        conv(p + ".conv1", [o, i] + kernel3)
        gamma(p + ".norm2", o, images: false)
        conv(p + ".conv2", [o, o] + kernel3)
        if i != o { conv(p + ".conv_shortcut", [o, i] + kernel1) }
    }
    /// resnets.0, the attention (2-D 1×1 convolutions in both generations), resnets.1.
    mutating func mid(_ p: String, _ d: Int) {
        resnet(p + ".resnets.0", d, d)
        gamma(p + ".attentions.0.norm", d, images: true)
        conv(p + ".attentions.0.to_qkv", [3 * d, d, 1, 1])
        conv(p + ".attentions.0.proj", [d, d, 1, 1])
        resnet(p + ".resnets.1", d, d)
    }
}
