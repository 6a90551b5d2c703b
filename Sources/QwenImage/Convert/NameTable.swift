import Foundation
import Quant

// What the converter adds to the networks' own requests (docs/DESIGN.md, "The tensor source"): which
// networks a component holds, the checkpoint tensors deliberately not stored, transformers 5.x
// aliases, and the shard rule. Checkpoint names and shapes themselves live only in the model code,
// beside the field that reads each tensor; layouts come with each request (`MatrixLayout`).

/// What a checkpoint component holds, from its folder name, else its config.json (`_class_name` of a
/// diffusers VAE, `model_type` qwen2*).
public enum ComponentKind: String, Sendable {
    case textEncoder = "text_encoder"
    case vae
    case other

    public static func detect(name: String, configData: Data?) -> ComponentKind {
        if name == "text_encoder" { return .textEncoder }
        if name.hasPrefix("vae") { return .vae }
        struct Probe: Decodable {
            var className: String?
            var modelType: String?
            enum CodingKeys: String, CodingKey { case className = "_class_name", modelType = "model_type" }
        }
        let probe = configData.flatMap { try? JSONDecoder().decode(Probe.self, from: $0) }
        if let cls = probe?.className, cls.hasPrefix("AutoencoderKL") { return .vae }
        if let mt = probe?.modelType, mt.hasPrefix("qwen2") || mt.hasPrefix("qwen3_vl") { return .textEncoder }
        return .other
    }

    /// Builds every network the component holds against `source` (scoped to the checkpoint root), so
    /// that `source` sees a request for every tensor they read, with the shape the config implies.
    /// `temporal` VAE weights are included: a pack serves stills and clips.
    public func requestNetworks<S: TensorSource>(configData: Data, file: String, from source: S) throws {
        switch self {
        case .textEncoder:
            let text = try TextConfig.load(configData, file: file)
            try LanguageModel.requestWeights(config: text, from: source)
            if let vision = try VisionConfig.fromTextEncoderConfigIfPresent(configData, file: file) {
                if vision.family == .qwen3vl {
                    try Qwen3VisionTower.requestWeights(config: vision, from: source)
                } else {
                    try VisionTower.requestWeights(config: vision, from: source)
                }
            }
        case .vae:
            let config = try VAEConfig.load(configData, file: file)
            _ = try AutoencoderKLQwenImage(config: config, source: source, parts: .both, temporal: !config.isResidual)
        case .other:
            throw QwenImageError.config(file: file, message: "no network of this project reads this component (known: a "
                + "Qwen2.5-VL text_encoder, an AutoencoderKLQwenImage vae); leave it out with --components")
        }
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

public enum NameTable {
    /// Checkpoint tensors that no network reads and that are deliberately not stored (listed in the
    /// manifest's `dropped`), with the reason. Any other tensor no network asks for is refused.
    public static func ignoreReason(_ name: String, kind: ComponentKind) -> String? {
        switch (kind, name) {
        case (.textEncoder, "lm_head.weight"): return "lm_head is not used by prompt encoding"
        case (.vae, _) where name.contains(".downsampler.time_conv.") || name.contains(".upsampler.time_conv."):
            // Only the 2.1 VAE names its resamplers in the singular; upstream never applies these to an image.
            return "the VAE 2.1's time_conv is never applied to a single image"
        default: return nil
        }
    }

    /// Maps transformers 5.x module names back to the hub names (both appear in the wild).
    public static func canonicalName(_ name: String, kind: ComponentKind) -> String {
        guard kind == .textEncoder else { return name }
        if name.hasPrefix("model.language_model.") { return "model." + name.dropFirst("model.language_model.".count) }
        if name.hasPrefix("model.visual.") { return String(name.dropFirst("model.".count)) }
        return name
    }

    /// The pack tensor a network's request becomes.
    public static func output(_ r: TensorRequest, kind: ComponentKind) -> NameTableOutput {
        let shard = kind == .vae ? vaeShard(r.name) : textShard(r.name)
        switch r.kind {
        case .vector:
            return NameTableOutput(name: r.packName, shard: shard, shape: r.packShape, isMatrix: false, transform: .identity,
                                   role: .vector)
        case .matrix(let layout):
            let role: TensorRole
            if case .embedding = layout { role = .embedding } else { role = layout.isConvolution ? .conv : .linear }
            return NameTableOutput(name: r.packName, shard: shard, shape: r.packShape, isMatrix: true,
                                   transform: layout.gather().map { .gather($0) } ?? .identity, role: role)
        }
    }

    // MARK: - Shards (FORMAT.md §3.3); readers find a tensor's shard in the manifest.

    /// Shard of a text-encoder tensor: embed, layers.N, norm, visual.patch_embed (with Qwen3-VL's position
    /// table), visual.blocks.N, visual.merger, visual.deepstack.K (Qwen3-VL's DeepStack mergers).
    public static func textShard(_ name: String) -> String {
        let parts = name.split(separator: ".").map(String.init)
        if name.hasPrefix("model.embed_tokens.") { return "embed" }
        if name.hasPrefix("model.layers."), parts.count > 2 { return "layers.\(parts[2])" }
        if name.hasPrefix("model.norm.") { return "norm" }
        if name.hasPrefix("visual.patch_embed.") || name.hasPrefix("visual.pos_embed.") { return "visual.patch_embed" }
        if name.hasPrefix("visual.deepstack_merger_list."), parts.count > 2 { return "visual.deepstack.\(parts[2])" }
        if name.hasPrefix("visual.blocks."), parts.count > 2 { return "visual.blocks.\(parts[2])" }
        if name.hasPrefix("visual.merger.") { return "visual.merger" }
        return "misc"
    }

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
}
