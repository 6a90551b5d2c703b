import Foundation
import Quant

/// The tensors a component's config.json implies, with their checkpoint shapes. The converter checks
/// them before writing anything, so a checkpoint that does not fit its config fails early with e.g.
/// `tensor model.layers.3.mlp.up_proj.weight: expected shape [18944, 3584], found [18944, 3580]`.
public enum ExpectedTensors {
    public static func shapes(kind: ComponentKind, config: [String: Any], file: String) throws -> [String: [Int]] {
        switch kind {
        case .textEncoder: return try text(config, file: file)
        case .vae: return try vae(config, file: file)
        case .other: return [:]
        }
    }

    static func int(_ c: [String: Any], _ key: String, file: String, default d: Int? = nil) throws -> Int {
        if let n = c[key] as? NSNumber, let v = Int(exactly: n.doubleValue), v >= 0 { return v }
        if let d { return d }
        throw QwenImageError.config(file: file, message: "missing or invalid integer field \(key)")
    }

    static func text(_ top: [String: Any], file: String) throws -> [String: [Int]] {
        // The hub config repeats the text fields at the top level and in text_config; prefer text_config.
        let c = (top["text_config"] as? [String: Any]) ?? top
        let h = try int(c, "hidden_size", file: file)
        let heads = try int(c, "num_attention_heads", file: file)
        let kvHeads = try int(c, "num_key_value_heads", file: file, default: heads)
        let inter = try int(c, "intermediate_size", file: file)
        let layers = try int(c, "num_hidden_layers", file: file)
        let vocab = try int(c, "vocab_size", file: file)
        guard heads > 0, h % heads == 0 else {
            throw QwenImageError.config(file: file, message: "hidden_size \(h) is not a multiple of num_attention_heads \(heads)")
        }
        let hd = h / heads
        var e: [String: [Int]] = ["model.embed_tokens.weight": [vocab, h], "model.norm.weight": [h]]
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            e[p + "input_layernorm.weight"] = [h]
            e[p + "post_attention_layernorm.weight"] = [h]
            e[p + "self_attn.q_proj.weight"] = [heads * hd, h]
            e[p + "self_attn.q_proj.bias"] = [heads * hd]
            e[p + "self_attn.k_proj.weight"] = [kvHeads * hd, h]
            e[p + "self_attn.k_proj.bias"] = [kvHeads * hd]
            e[p + "self_attn.v_proj.weight"] = [kvHeads * hd, h]
            e[p + "self_attn.v_proj.bias"] = [kvHeads * hd]
            e[p + "self_attn.o_proj.weight"] = [h, heads * hd]
            e[p + "mlp.gate_proj.weight"] = [inter, h]
            e[p + "mlp.up_proj.weight"] = [inter, h]
            e[p + "mlp.down_proj.weight"] = [h, inter]
        }
        if let v = top["vision_config"] as? [String: Any] {
            let dv = try int(v, "hidden_size", file: file)
            let depth = try int(v, "depth", file: file)
            let iv = try int(v, "intermediate_size", file: file)
            let out = try int(v, "out_hidden_size", file: file, default: h)
            let cin = try int(v, "in_channels", file: file, default: (try? int(v, "in_chans", file: file)) ?? 3)
            let patch = try int(v, "patch_size", file: file, default: 14)
            let tp = try int(v, "temporal_patch_size", file: file, default: 2)
            let merge = try int(v, "spatial_merge_size", file: file, default: 2)
            let m = dv * merge * merge
            e["visual.patch_embed.proj.weight"] = [dv, cin, tp, patch, patch]
            for b in 0..<depth {
                let p = "visual.blocks.\(b)."
                e[p + "norm1.weight"] = [dv]
                e[p + "norm2.weight"] = [dv]
                e[p + "attn.qkv.weight"] = [3 * dv, dv]
                e[p + "attn.qkv.bias"] = [3 * dv]
                e[p + "attn.proj.weight"] = [dv, dv]
                e[p + "attn.proj.bias"] = [dv]
                e[p + "mlp.gate_proj.weight"] = [iv, dv]
                e[p + "mlp.gate_proj.bias"] = [iv]
                e[p + "mlp.up_proj.weight"] = [iv, dv]
                e[p + "mlp.up_proj.bias"] = [iv]
                e[p + "mlp.down_proj.weight"] = [dv, iv]
                e[p + "mlp.down_proj.bias"] = [dv]
            }
            e["visual.merger.ln_q.weight"] = [dv]
            e["visual.merger.mlp.0.weight"] = [m, m]
            e["visual.merger.mlp.0.bias"] = [m]
            e["visual.merger.mlp.2.weight"] = [out, m]
            e["visual.merger.mlp.2.bias"] = [out]
        }
        return e
    }

    static func vae(_ c: [String: Any], file: String) throws -> [String: [Int]] {
        let base = try int(c, "base_dim", file: file)
        let z = try int(c, "z_dim", file: file)
        let cin = try int(c, "input_channels", file: file, default: 3)
        guard let mult = (c["dim_mult"] as? [NSNumber])?.map(\.intValue), !mult.isEmpty else {
            throw QwenImageError.config(file: file, message: "missing or invalid dim_mult")
        }
        let top = base * mult.last!
        return [
            "encoder.conv_in.weight": [base, cin, 3, 3, 3],
            "encoder.conv_out.weight": [2 * z, top, 3, 3, 3],
            "quant_conv.weight": [2 * z, 2 * z, 1, 1, 1],
            "post_quant_conv.weight": [z, z, 1, 1, 1],
            "decoder.conv_in.weight": [top, z, 3, 3, 3],
            "decoder.conv_out.weight": [cin, base, 3, 3, 3],
        ]
    }

    /// Throws for the first missing tensor or wrong shape (in name order), naming both shapes.
    public static func check(_ component: CheckpointComponent, kind: ComponentKind, config: [String: Any]) throws {
        let file = component.configURL.path
        let expected = try shapes(kind: kind, config: config, file: file)
        var present: [String: [Int]] = [:]
        for n in component.tensorNames { present[NameTable.canonicalName(n, kind: kind)] = try component.info(n).shape }
        for (name, shape) in expected.sorted(by: { $0.key < $1.key }) {
            guard let found = present[name] else {
                throw QwenImageError.tensor(name: name,
                    message: "missing from \(component.folder.path) (config.json implies shape \(shape))")
            }
            guard found == shape else {
                throw QwenImageError.tensor(name: name, message: "expected shape \(shape), found \(found) (in \(component.folder.path); shapes follow config.json)")
            }
        }
    }
}
