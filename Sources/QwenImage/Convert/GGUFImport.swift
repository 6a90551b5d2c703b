import Foundation
import Quant

// GGUF import: a llama.cpp Qwen2.5-VL language model (`general.architecture` qwen2vl or qwen2) and,
// optionally, its vision projector (`mmproj`, clip with projector qwen2.5vl_merger) become a
// checkpoint the converter reads like a diffusers `text_encoder/` folder:
//
//  * tensors under their Hugging Face names, decoded exactly from the ggml types (`GGUFCheckpointFile`);
//    llama.cpp's converter split two of them, which are joined back: the vision `attn.qkv` (written as
//    attn_q, attn_k, attn_v) and the Conv3d patch embedding (written as two Conv2d kernels, one per
//    temporal slice: `v.patch_embd.weight` and `v.patch_embd.weight.1`); llama.cpp permutes no Qwen2 tensor;
//  * `text_encoder/config.json` written from the GGUF metadata (the same fields the hub config has);
//  * `tokenizer/`: the user's tokenizer folder after checking it against the GGUF vocabulary and merges,
//    or vocab.json + merges.txt + tokenizer_config.json written from the GGUF metadata;
//  * `processor/preprocessor_config.json` from the mmproj metadata (mean, std, patch and merge sizes).

/// A GGUF file seen as checkpoint tensors under Hugging Face names.
public final class GGUFCheckpointFile: CheckpointTensorFile, @unchecked Sendable {
    enum Recipe: Sendable {
        /// One GGUF tensor.
        case direct(String)
        /// GGUF tensors concatenated along dimension 0 (flat concatenation).
        case concat([String])
        /// GGUF tensors stacked as a new dimension: out[o, t, j] = part t [o, j], j < inner.
        case stack([String], inner: Int)

        var parts: [String] {
            switch self {
            case .direct(let n): return [n]
            case .concat(let p), .stack(let p, _): return p
            }
        }
    }

    struct Entry: Sendable {
        let info: CheckpointTensorInfo
        let recipe: Recipe
    }

    public let gguf: GGUFFile
    public let tensorNames: [String]
    let entries: [String: Entry]
    public var path: String { gguf.path }

    /// - Parameter names: Hugging Face name -> how it is made of GGUF tensors, with its shape.
    init(gguf: GGUFFile, names: [(String, Recipe, [Int])]) throws {
        self.gguf = gguf
        var entries: [String: Entry] = [:]
        for (hf, recipe, shape) in names {
            let infos = try recipe.parts.map { try gguf.info($0) }
            for i in infos where i.type == nil {
                throw QuantError.gguf(file: gguf.path, tensor: i.name,
                    message: "is \(i.typeName), which this importer does not decode (supported: \(GGMLType.supportedNames)); requantize the model to one of those with llama-quantize")
            }
            let types = Set(infos.map(\.typeName))
            entries[hf] = Entry(info: CheckpointTensorInfo(name: hf, dtype: types.count == 1 ? types.first! : types.sorted().joined(separator: "+"),
                                                           shape: shape, byteCount: infos.reduce(0) { $0 + $1.byteCount }, isFloat: true),
                                recipe: recipe)
        }
        self.entries = entries
        tensorNames = names.map(\.0)
    }

    public func tensorInfo(_ name: String) throws -> CheckpointTensorInfo {
        guard let e = entries[name] else { throw QuantError.missingTensor(file: path, tensor: name) }
        return e.info
    }

    public func floats(_ name: String, elements range: Range<Int>, into out: UnsafeMutablePointer<Float>) throws {
        guard let e = entries[name] else { throw QuantError.missingTensor(file: path, tensor: name) }
        guard range.lowerBound >= 0, range.upperBound <= e.info.elementCount else {
            throw QuantError.invalidArgument("tensor \(name): element range \(range) outside 0..<\(e.info.elementCount)")
        }
        switch e.recipe {
        case .direct(let t):
            try gguf.floats(t, elements: range, into: out)
        case .concat(let parts):
            var start = 0
            for p in parts {
                let n = try gguf.info(p).elementCount
                let lo = max(range.lowerBound, start), hi = min(range.upperBound, start + n)
                if lo < hi { try gguf.floats(p, elements: (lo - start)..<(hi - start), into: out + (lo - range.lowerBound)) }
                start += n
            }
        case .stack(let parts, let inner):
            // Element e = (o·T + t)·inner + j of the output is element o·inner + j of part t.
            let T = parts.count
            var e = range.lowerBound
            while e < range.upperBound {
                let row = e / inner, j = e % inner
                let o = row / T, t = row % T
                let n = min(inner - j, range.upperBound - e)
                try gguf.floats(parts[t], elements: (o * inner + j)..<(o * inner + j + n), into: out + (e - range.lowerBound))
                e += n
            }
        }
    }

    public func dropPages(_ name: String, elements range: Range<Int>) {
        guard let e = entries[name] else { return }
        switch e.recipe {
        case .direct(let t): gguf.dropPages(t, elements: range)
        case .concat(let parts):
            var start = 0
            for p in parts {
                let n = (try? gguf.info(p).elementCount) ?? 0
                let lo = max(range.lowerBound, start), hi = min(range.upperBound, start + n)
                if lo < hi { gguf.dropPages(p, elements: (lo - start)..<(hi - start)) }
                start += n
            }
        case .stack(let parts, _):
            // Every part's share of the range is the same fraction of that part.
            let T = parts.count
            for p in parts { gguf.dropPages(p, elements: (range.lowerBound / T)..<((range.upperBound + T - 1) / T)) }
        }
    }
}

/// Builds the checkpoint of a GGUF import (see the top of this file).
public enum GGUFImport {
    /// A GGUF source without --scheme: each ggml type goes to the pack scheme that holds it best.
    /// Q8_0 and Q4_0 blocks are pack groups of 32 with the same integers and an f32 copy of the f16
    /// scale (re-quantizing their decoded values finds exactly those: error 0). The other types have no
    /// bit-exact pack form; they take the smallest scheme whose extra error stays small next to the
    /// type's own (measured on the tiny model's weights, relative RMSE of the stored vs decoded values,
    /// worst matrix): Q5_0 -> q5s 0.0027 (symmetric 5-bit like q5s, only the scale's 8-bit code
    /// differs); the types with a per-block minimum (asymmetric) fit symmetric levels worse: Q4_1 ->
    /// q5s 0.038, q6s 0.020, q8s 0.0054; Q5_1 -> q6s 0.020, q8s 0.0053. So 4-bit types with a minimum
    /// (Q4_1, Q4_K) take q6s and 5- and 6-bit ones (Q5_1, Q5_K, Q6_K) q8s.
    public static let matchingSchemes: [String: SchemeChoice] = {
        func c(_ s: PackScheme, _ g: Int, _ type: String, exact: Bool = false) -> SchemeChoice {
            SchemeChoice(scheme: s, group: g, note: "\(type) source: \(s.rawValue)\(s == .q8 || s == .q4 ? ":\(g)" : "")\(exact ? ", exact" : "")")
        }
        return [
            "F32": c(.f32, 0, "F32"), "F16": c(.f16, 0, "F16"), "BF16": c(.bf16, 0, "BF16"),
            "Q8_0": c(.q8, 32, "Q8_0", exact: true), "Q4_0": c(.q4, 32, "Q4_0", exact: true), "Q5_0": c(.q5s, 32, "Q5_0"),
            "Q4_1": c(.q6s, 32, "Q4_1"), "Q4_K": c(.q6s, 32, "Q4_K"),
            "Q5_1": c(.q8s, 32, "Q5_1"), "Q5_K": c(.q8s, 32, "Q5_K"), "Q6_K": c(.q8s, 32, "Q6_K"),
        ]
    }()

    /// The result: the checkpoint, and notes for the user (defaults taken, tokenizer checks).
    public struct Imported {
        public let checkpoint: Checkpoint
        public let notes: [String]
    }

    /// - Parameters:
    ///   - model: the language model GGUF.
    ///   - mmproj: the vision projector GGUF (nil: a text-only pack).
    ///   - tokenizer: a tokenizer folder to check and carry (nil: written from the GGUF vocabulary).
    ///   - staging: an empty folder for the written config and tokenizer files (the caller removes it).
    public static func checkpoint(model: String, mmproj: String?, tokenizer: String?, staging: URL) throws -> Imported {
        var notes: [String] = []
        let lm = try GGUFFile(path: model)
        let vision = try mmproj.map { try GGUFFile(path: $0) }
        let (lmNames, textConfig) = try languageModel(lm, notes: &notes)
        var config = textConfig
        var files: [any CheckpointTensorFile] = [try GGUFCheckpointFile(gguf: lm, names: lmNames)]
        var processor: [String: Any]?
        if let vision {
            let (vNames, visionConfig, proc) = try visionTower(vision, textHidden: config["hidden_size"] as! Int, notes: &notes)
            files.append(try GGUFCheckpointFile(gguf: vision, names: vNames))
            config["vision_config"] = visionConfig
            processor = proc
        }
        let fm = FileManager.default
        let te = staging.appendingPathComponent("text_encoder")
        try fm.createDirectory(at: te, withIntermediateDirectories: true)
        try writeJSON(config, to: te.appendingPathComponent("config.json"))
        var folders: [String: URL] = [:]
        let tok = staging.appendingPathComponent("tokenizer")
        try fm.createDirectory(at: tok, withIntermediateDirectories: true)
        try GGUFTokenizer.write(from: lm, into: tok)
        if let tokenizer {
            try GGUFTokenizer.check(written: tok.path, against: tokenizer, gguf: lm.path)
            notes.append("tokenizer \(tokenizer) matches the GGUF vocabulary and merges: carried as is")
            try fm.removeItem(at: tok)
            try fm.copyItem(at: URL(fileURLWithPath: tokenizer), to: tok)
        } else {
            notes.append("tokenizer written from the GGUF metadata (vocab.json, merges.txt, tokenizer_config.json)")
        }
        folders["tokenizer"] = tok
        if let processor {
            let p = staging.appendingPathComponent("processor")
            try fm.createDirectory(at: p, withIntermediateDirectories: true)
            try writeJSON(processor, to: p.appendingPathComponent("preprocessor_config.json"))
            folders["processor"] = p
        }
        let comp = try CheckpointComponent(name: "text_encoder", folder: te, files: files)
        let described = ([model] + (mmproj.map { [$0] } ?? [])).map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        return Imported(checkpoint: Checkpoint(root: staging, sourceDescription: described.joined(separator: " + "),
                                               components: [comp], fileFolders: folders), notes: notes)
    }

    /// An f32 metadata value as the shortest decimal that reads back to the same f32 (0.48145466, not 0.4814546704292297).
    static func shortest(_ v: Double) -> Double { Double("\(Float(v))") ?? v }

    static func writeJSON(_ value: Any, to url: URL) throws {
        let data = try JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        do { try data.write(to: url) } catch {
            throw QuantError.io(path: url.path, message: "cannot write: \((error as NSError).localizedDescription)")
        }
    }

    static func require<T>(_ v: T?, _ key: String, _ f: GGUFFile) throws -> T {
        guard let v else { throw QuantError.gguf(file: f.path, tensor: nil, message: "metadata \(key) is missing") }
        return v
    }

    // MARK: - language model

    /// llama.cpp block tensor names -> Hugging Face (`model.layers.N.` + this).
    static let lmBlock: [String: String] = [
        "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
        "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    ]
    static let lmGlobal: [String: String] = ["token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"]

    /// Splits `prefix.N.rest.weight|bias` into (N, rest, suffix).
    static func blockName(_ name: String, prefix: String) -> (Int, String, String)? {
        guard name.hasPrefix(prefix) else { return nil }
        let parts = name.dropFirst(prefix.count).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let n = Int(parts[0]), n >= 0, parts[2] == "weight" || parts[2] == "bias" else { return nil }
        return (n, String(parts[1]), String(parts[2]))
    }

    static func globalName(_ name: String) -> (String, String)? {
        guard let dot = name.lastIndex(of: "."), name[name.index(after: dot)...] == "weight" || name[name.index(after: dot)...] == "bias" else { return nil }
        return (String(name[..<dot]), String(name[name.index(after: dot)...]))
    }

    static func languageModel(_ f: GGUFFile, notes: inout [String]) throws
        -> ([(String, GGUFCheckpointFile.Recipe, [Int])], [String: Any])
    {
        let arch = try require(f.string("general.architecture"), "general.architecture", f)
        guard arch == "qwen2vl" || arch == "qwen2" else {
            throw QuantError.gguf(file: f.path, tensor: nil,
                message: "general.architecture is \"\(arch)\", expected \"qwen2vl\" (a Qwen2.5-VL language model; \"qwen2\" is accepted too). An mmproj file goes to --mmproj")
        }
        var names: [(String, GGUFCheckpointFile.Recipe, [Int])] = []
        for t in f.tensorNames {
            let info = try f.info(t)
            let hf: String
            if let (n, part, suffix) = blockName(t, prefix: "blk."), let m = lmBlock[part] {
                hf = "model.layers.\(n).\(m).\(suffix)"
            } else if let (base, suffix) = globalName(t), let m = lmGlobal[base] {
                hf = "\(m).\(suffix)"
            } else {
                throw QuantError.gguf(file: f.path, tensor: t, message: "is not a tensor of a Qwen2.5-VL language model (no Hugging Face name for it)")
            }
            names.append((hf, .direct(t), info.shape))
        }
        let k = { (key: String) in "\(arch).\(key)" }
        let hidden = try require(f.int(k("embedding_length")), k("embedding_length"), f)
        let heads = try require(f.int(k("attention.head_count")), k("attention.head_count"), f)
        guard heads > 0, hidden % heads == 0 else {
            throw QuantError.gguf(file: f.path, tensor: nil, message: "\(k("embedding_length")) \(hidden) is not a multiple of \(k("attention.head_count")) \(heads)")
        }
        let headDim = hidden / heads
        var sections: [Int]
        if let s = try f.ints(k("rope.dimension_sections")) {
            sections = Array(s.prefix(3))
            guard s.count >= 3, s.dropFirst(3).allSatisfy({ $0 == 0 }), sections.reduce(0, +) == headDim / 2 else {
                throw QuantError.gguf(file: f.path, tensor: nil,
                    message: "metadata \(k("rope.dimension_sections")) is \(s), expected three sections adding up to head_dim/2 = \(headDim / 2) (then zeros)")
            }
        } else if headDim == 128 {
            sections = [16, 24, 24]
            notes.append("\(k("rope.dimension_sections")) absent: Qwen2.5-VL's mrope_section [16, 24, 24]")
        } else {
            throw QuantError.gguf(file: f.path, tensor: nil,
                message: "metadata \(k("rope.dimension_sections")) is missing and head_dim is \(headDim), not Qwen2.5-VL's 128: the mrope sections are unknown")
        }
        guard let embed = names.first(where: { $0.0 == "model.embed_tokens.weight" }), embed.2.count == 2 else {
            throw QuantError.gguf(file: f.path, tensor: "token_embd.weight", message: "is missing or not 2-D")
        }
        let tokens = try require(f.strings("tokenizer.ggml.tokens"), "tokenizer.ggml.tokens", f)
        func id(_ s: String) throws -> Int {
            guard let i = tokens.firstIndex(of: s) else {
                throw QuantError.gguf(file: f.path, tensor: nil, message: "tokenizer.ggml.tokens has no \(s) token: not a Qwen2.5-VL vocabulary")
            }
            return i
        }
        let layers = try require(f.int(k("block_count")), k("block_count"), f)
        var text: [String: Any] = [
            "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
            "vocab_size": embed.2[0], "hidden_size": hidden,
            "intermediate_size": try require(f.int(k("feed_forward_length")), k("feed_forward_length"), f),
            "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": try f.int(k("attention.head_count_kv")) ?? heads,
            "rms_norm_eps": try require(f.double(k("attention.layer_norm_rms_epsilon")), k("attention.layer_norm_rms_epsilon"), f),
            "rope_theta": try f.double(k("rope.freq_base")) ?? 1_000_000,
            "rope_scaling": ["mrope_section": sections, "rope_type": "default", "type": "default"],
            "hidden_act": "silu", "tie_word_embeddings": false,
            "max_position_embeddings": try f.int(k("context_length")) ?? 128_000,
            "image_token_id": try id("<|image_pad|>"), "video_token_id": try id("<|video_pad|>"),
            "vision_start_token_id": try id("<|vision_start|>"), "vision_end_token_id": try id("<|vision_end|>"),
            "torch_dtype": "float32",
        ]
        if let b = try f.int("tokenizer.ggml.bos_token_id") { text["bos_token_id"] = b }
        if let e = try f.int("tokenizer.ggml.eos_token_id") { text["eos_token_id"] = e }
        return (names, text)
    }

    // MARK: - vision tower (mmproj)

    /// llama.cpp vision block names -> Hugging Face (`visual.blocks.N.` + this).
    static let visionBlock: [String: String] = [
        "ln1": "norm1", "ln2": "norm2", "attn_out": "attn.proj",
        "ffn_up": "mlp.up_proj", "ffn_gate": "mlp.gate_proj", "ffn_down": "mlp.down_proj",
    ]
    static let visionGlobal: [String: String] = ["v.post_ln": "visual.merger.ln_q", "mm.0": "visual.merger.mlp.0", "mm.2": "visual.merger.mlp.2"]

    static func visionTower(_ f: GGUFFile, textHidden: Int, notes: inout [String]) throws
        -> ([(String, GGUFCheckpointFile.Recipe, [Int])], [String: Any], [String: Any])
    {
        let arch = try f.string("general.architecture")
        let projector = try f.string("clip.projector_type") ?? f.string("clip.vision.projector_type")
        guard arch == "clip", projector == "qwen2.5vl_merger" else {
            throw QuantError.gguf(file: f.path, tensor: nil,
                message: "expected a Qwen2.5-VL vision projector (general.architecture \"clip\", clip.projector_type \"qwen2.5vl_merger\"), found \(arch.map { "\"\($0)\"" } ?? "none") / \(projector.map { "\"\($0)\"" } ?? "none")")
        }
        var names: [(String, GGUFCheckpointFile.Recipe, [Int])] = []
        var qkv: [Int: [String: [String]]] = [:]   // block -> suffix -> [q, k, v] GGUF names
        for t in f.tensorNames {
            let info = try f.info(t)
            if let (n, part, suffix) = blockName(t, prefix: "v.blk.") {
                if let m = visionBlock[part] {
                    names.append(("visual.blocks.\(n).\(m).\(suffix)", .direct(t), info.shape))
                    continue
                }
                if ["attn_q", "attn_k", "attn_v"].contains(part) {
                    qkv[n, default: [:]][suffix, default: []].append(t)
                    continue
                }
            } else if let (base, suffix) = globalName(t), let m = visionGlobal[base] {
                names.append(("\(m).\(suffix)", .direct(t), info.shape))
                continue
            } else if t == "v.patch_embd.weight" || t == "v.patch_embd.weight.1" {
                continue
            }
            throw QuantError.gguf(file: f.path, tensor: t, message: "is not a tensor of a Qwen2.5-VL vision tower (no Hugging Face name for it)")
        }
        for (n, bySuffix) in qkv.sorted(by: { $0.key < $1.key }) {
            for (suffix, _) in bySuffix.sorted(by: { $0.key < $1.key }) {
                let parts = ["q", "k", "v"].map { "v.blk.\(n).attn_\($0).\(suffix)" }
                let shapes = try parts.map { p -> [Int] in
                    guard f.tensors[p] != nil else {
                        throw QuantError.gguf(file: f.path, tensor: p, message: "is missing (attn_q, attn_k and attn_v of a block come together)")
                    }
                    return try f.info(p).shape
                }
                guard shapes.allSatisfy({ $0 == shapes[0] }) else {
                    throw QuantError.gguf(file: f.path, tensor: parts[0], message: "attn_q, attn_k, attn_v have different shapes \(shapes)")
                }
                names.append(("visual.blocks.\(n).attn.qkv.\(suffix)", .concat(parts), [3 * shapes[0][0]] + shapes[0].dropFirst()))
            }
        }
        guard let p0 = f.tensors["v.patch_embd.weight"], let p1 = f.tensors["v.patch_embd.weight.1"] else {
            throw QuantError.gguf(file: f.path, tensor: "v.patch_embd.weight",
                message: "the two temporal slices v.patch_embd.weight and v.patch_embd.weight.1 are expected (Qwen2.5-VL's Conv3d patch embedding)")
        }
        guard p0.shape.count == 4, p0.shape == p1.shape else {
            throw QuantError.gguf(file: f.path, tensor: "v.patch_embd.weight", message: "expected two [out, 3, p, p] slices, found \(p0.shape) and \(p1.shape)")
        }
        let s = p0.shape
        names.append(("visual.patch_embed.proj.weight", .stack(["v.patch_embd.weight", "v.patch_embd.weight.1"], inner: s[2] * s[3]),
                      [s[0], s[1], 2, s[2], s[3]]))

        let hidden = try require(f.int("clip.vision.embedding_length"), "clip.vision.embedding_length", f)
        let depth = try require(f.int("clip.vision.block_count"), "clip.vision.block_count", f)
        let outHidden = try f.int("clip.vision.projection_dim") ?? f.tensors["mm.2.weight"]?.shape.first ?? 0
        guard outHidden == textHidden else {
            throw QuantError.gguf(file: f.path, tensor: nil,
                message: "the projector's output width is \(outHidden), but the language model's hidden size is \(textHidden): this mmproj belongs to another model")
        }
        var merge = try f.int("clip.vision.spatial_merge_size")
        if merge == nil, let m0 = f.tensors["mm.0.weight"], m0.shape.count == 2, hidden > 0 {
            let r = Int(Double(m0.shape[1] / hidden).squareRoot().rounded())
            if r * r * hidden == m0.shape[1] { merge = r }
        }
        let pattern = try require(f.int("clip.vision.n_wa_pattern"), "clip.vision.n_wa_pattern", f)
        guard pattern >= 1 else { throw QuantError.gguf(file: f.path, tensor: nil, message: "clip.vision.n_wa_pattern is \(pattern), expected at least 1") }
        var window = try f.int("clip.vision.window_size")
        if window == nil {
            window = 112
            notes.append("clip.vision.window_size absent: Qwen2.5-VL's window_size 112")
        }
        let patch = try require(f.int("clip.vision.patch_size"), "clip.vision.patch_size", f)
        let visionConfig: [String: Any] = [
            "depth": depth, "hidden_size": hidden,
            "intermediate_size": try require(f.int("clip.vision.feed_forward_length"), "clip.vision.feed_forward_length", f),
            "num_heads": try require(f.int("clip.vision.attention.head_count"), "clip.vision.attention.head_count", f),
            "out_hidden_size": outHidden, "patch_size": patch, "spatial_patch_size": patch,
            "spatial_merge_size": merge ?? 2, "temporal_patch_size": 2, "in_channels": s[1], "in_chans": s[1],
            "window_size": window!, "fullatt_block_indexes": Array(stride(from: pattern - 1, to: depth, by: pattern)),
            "hidden_act": "silu", "model_type": "qwen2_5_vl", "tokens_per_second": 2,
        ]
        let mean = try f.doubles("clip.vision.image_mean") ?? [0.48145466, 0.4578275, 0.40821073]
        let std = try f.doubles("clip.vision.image_std") ?? [0.26862954, 0.26130258, 0.27577711]
        // Qwen2VLImageProcessor's defaults for everything the GGUF does not carry.
        let processor: [String: Any] = [
            "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor",
            "do_convert_rgb": true, "do_normalize": true, "do_rescale": true, "do_resize": true,
            "image_mean": mean.map(shortest), "image_std": std.map(shortest),
            "min_pixels": 3136, "max_pixels": 12_845_056, "size": ["shortest_edge": 3136, "longest_edge": 12_845_056],
            "patch_size": patch, "merge_size": merge ?? 2, "temporal_patch_size": 2, "resample": 3,
            "rescale_factor": 1.0 / 255.0,
        ]
        return (names, visionConfig, processor)
    }
}
