import Foundation
import Quant

/// The single table from checkpoint (hub) tensor names to pack tensor names, with the layout
/// transforms of docs/DESIGN.md ("Tensor names and layout transforms"). Nothing else in the project
/// knows checkpoint names except the config CodingKeys.
public enum ComponentKind: String, Sendable {
    case textEncoder = "text_encoder"
    case vae
    case other

    /// From the folder name, else the config (`_class_name` of a diffusers VAE, `model_type` qwen2*).
    public static func detect(name: String, config: [String: Any]?) -> ComponentKind {
        if name == "text_encoder" { return .textEncoder }
        if name.hasPrefix("vae") { return .vae }
        if let cls = config?["_class_name"] as? String, cls.hasPrefix("AutoencoderKL") { return .vae }
        if let mt = config?["model_type"] as? String, mt.hasPrefix("qwen2") { return .textEncoder }
        return .other
    }
}

/// How source rows become pack rows. Row o of every output comes from source row o (dimension 0),
/// so huge tensors convert in row chunks.
public enum RowTransform: Sendable, Equatable {
    /// The source row, unchanged (Linear, 1×1 convs, reshapes such as the patch embedding).
    case identity
    /// out[o, j] = src[o, gather[j]] (convolution kernels to channels-last GEMM order).
    case gather([Int32])
}

/// One tensor of the pack made from one checkpoint tensor.
public struct NameTableOutput: Sendable {
    public let name: String
    public let shard: String
    /// [n, k] for a matrix; the dense shape for a vector.
    public let shape: [Int]
    public let isMatrix: Bool
    public let transform: RowTransform
    /// Which policy class this tensor belongs to.
    public let role: TensorRole
}

public enum TensorRole: String, Sendable {
    case linear, embedding, conv, vector
}

public enum NameTableEntry: Sendable {
    /// Deliberately not stored (e.g. lm_head.weight: prompt encoding never uses it).
    case drop(reason: String)
    case tensors([NameTableOutput])
}

public enum NameTable {
    /// Maps transformers 5.x module names back to the hub names (both appear in the wild).
    public static func canonicalName(_ name: String, kind: ComponentKind) -> String {
        guard kind == .textEncoder else { return name }
        if name.hasPrefix("model.language_model.") { return "model." + name.dropFirst("model.language_model.".count) }
        if name.hasPrefix("model.visual.") { return String(name.dropFirst("model.".count)) }
        return name
    }

    /// The pack tensors for a checkpoint tensor, or an error for a shape no transform knows.
    public static func entry(kind: ComponentKind, name rawName: String, shape: [Int]) throws -> NameTableEntry {
        let name = canonicalName(rawName, kind: kind)
        switch kind {
        case .textEncoder: return try textEntry(name, shape)
        case .vae: return try vaeEntry(name, shape)
        case .other: return try generic(name, shape, shard: "main", role: .linear)
        }
    }

    // MARK: - text encoder (Qwen2.5-VL)

    /// Shard of a text-encoder tensor: embed, layers.N, norm, visual.patch_embed, visual.blocks.N, visual.merger.
    public static func textShard(_ name: String) -> String {
        let parts = name.split(separator: ".").map(String.init)
        if name.hasPrefix("model.embed_tokens.") { return "embed" }
        if name.hasPrefix("model.layers."), parts.count > 2 { return "layers.\(parts[2])" }
        if name.hasPrefix("model.norm.") { return "norm" }
        if name.hasPrefix("visual.patch_embed.") { return "visual.patch_embed" }
        if name.hasPrefix("visual.blocks."), parts.count > 2 { return "visual.blocks.\(parts[2])" }
        if name.hasPrefix("visual.merger.") { return "visual.merger" }
        return "misc"
    }

    static func textEntry(_ name: String, _ shape: [Int]) throws -> NameTableEntry {
        if name == "lm_head.weight" { return .drop(reason: "lm_head is not used by prompt encoding") }
        let shard = textShard(name)
        if name == "visual.patch_embed.proj.weight" {
            // [Dv, 3, 2, 14, 14] -> [Dv, 1176] in (c, t, y, x) order: the order of a pixel_values row.
            guard shape.count == 5 else { throw shapeError(name, shape, "a Conv3d kernel [Dv, C, T, P, P]") }
            return .tensors([NameTableOutput(name: name, shard: shard, shape: [shape[0], shape[1...].reduce(1, *)],
                                             isMatrix: true, transform: .identity, role: .linear)])
        }
        let role: TensorRole = name == "model.embed_tokens.weight" ? .embedding : .linear
        return try generic(name, shape, shard: shard, role: role)
    }

    // MARK: - VAE (AutoencoderKLQwenImage)

    /// Shard of a VAE tensor: one per top-level block.
    public static func vaeShard(_ name: String) -> String {
        let parts = name.split(separator: ".").map(String.init)
        guard let first = parts.first else { return "misc" }
        switch first {
        case "quant_conv", "post_quant_conv": return first
        case "encoder", "decoder":
            guard parts.count > 1 else { return "misc" }
            switch parts[1] {
            case "conv_in", "mid_block": return "\(first).\(parts[1])"
            case "down_blocks", "up_blocks": return parts.count > 2 ? "\(first).\(parts[1]).\(parts[2])" : "misc"
            case "norm_out", "conv_out", "head": return "\(first).head"
            default: return "misc"
            }
        default: return "misc"
        }
    }

    static func vaeEntry(_ name: String, _ shape: [Int]) throws -> NameTableEntry {
        let shard = vaeShard(name)
        // Norm weights gamma [C, 1, 1(, 1)] -> [C].
        if name.hasSuffix(".gamma") || shape.count <= 1 {
            return .tensors([NameTableOutput(name: name, shard: shard, shape: [shape.reduce(1, *)], isMatrix: false,
                                             transform: .identity, role: .vector)])
        }
        guard name.hasSuffix(".weight") else { return try generic(name, shape, shard: shard, role: .conv) }
        let cout = shape[0]
        switch shape.count {
        case 5 where shape[2] == 3 && shape[3] == 3 && shape[4] == 3:
            // Causal 3-D conv [Cout, Cin, 3, 3, 3] -> NAME.t0/t1/t2, each [Cout, 9·Cin] in (ky, kx, cin) order.
            let cin = shape[1]
            return .tensors((0..<3).map { t in
                NameTableOutput(name: "\(name).t\(t)", shard: shard, shape: [cout, 9 * cin], isMatrix: true,
                                transform: .gather(conv3dGather(cin: cin, t: t)), role: .conv)
            })
        case 5 where shape[2] == 3 && shape[3] == 1 && shape[4] == 1:
            // time_conv [Cout, Cin, 3, 1, 1] -> NAME.t0/t1/t2, each [Cout, Cin].
            let cin = shape[1]
            return .tensors((0..<3).map { t in
                NameTableOutput(name: "\(name).t\(t)", shard: shard, shape: [cout, cin], isMatrix: true,
                                transform: .gather((0..<cin).map { Int32($0 * 3 + t) }), role: .conv)
            })
        case 4 where shape[2] == 3 && shape[3] == 3:
            // 2-D 3×3 conv [Cout, Cin, 3, 3] -> [Cout, 9·Cin] (ky, kx, cin).
            let cin = shape[1]
            var g = [Int32](repeating: 0, count: 9 * cin)
            for ky in 0..<3 { for kx in 0..<3 { for c in 0..<cin { g[(ky * 3 + kx) * cin + c] = Int32(c * 9 + ky * 3 + kx) } } }
            return .tensors([NameTableOutput(name: name, shard: shard, shape: [cout, 9 * cin], isMatrix: true,
                                             transform: .gather(g), role: .conv)])
        case let d where d >= 3 && shape[2...].allSatisfy({ $0 == 1 }):
            // 1×1(×1) conv -> [Cout, Cin].
            return .tensors([NameTableOutput(name: name, shard: shard, shape: [cout, shape[1]], isMatrix: true,
                                             transform: .identity, role: .conv)])
        case 2:
            return .tensors([NameTableOutput(name: name, shard: shard, shape: shape, isMatrix: true, transform: .identity, role: .conv)])
        default:
            throw shapeError(name, shape, "a 3×3×3, 3×1×1, 3×3 or 1×1 convolution kernel")
        }
    }

    /// k index (ky, kx, cin) <- source index within a [Cin, 3, 3, 3] row, for temporal slice t.
    static func conv3dGather(cin: Int, t: Int) -> [Int32] {
        var g = [Int32](repeating: 0, count: 9 * cin)
        for ky in 0..<3 { for kx in 0..<3 { for c in 0..<cin {
            g[(ky * 3 + kx) * cin + c] = Int32(((c * 3 + t) * 3 + ky) * 3 + kx)
        } } }
        return g
    }

    // MARK: - generic

    static func generic(_ name: String, _ shape: [Int], shard: String, role: TensorRole) throws -> NameTableEntry {
        switch shape.count {
        case 0, 1:
            return .tensors([NameTableOutput(name: name, shard: shard, shape: shape.isEmpty ? [1] : shape, isMatrix: false,
                                             transform: .identity, role: .vector)])
        case 2:
            return .tensors([NameTableOutput(name: name, shard: shard, shape: shape, isMatrix: true, transform: .identity, role: role)])
        default:
            throw shapeError(name, shape, "a vector or a [n, k] matrix (no layout transform is defined for this tensor)")
        }
    }

    static func shapeError(_ name: String, _ shape: [Int], _ expected: String) -> QwenImageError {
        .tensor(name: name, message: "expected \(expected), found shape \(shape)")
    }
}
