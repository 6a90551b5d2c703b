import ArgumentParser
import Foundation
import Quant

/// `qwen-bench synth`: a full-size synthetic checkpoint (random bf16 weights, the real tensor names
/// and shapes) in the diffusers hub layout, streamed to disk chunk by chunk on several threads.
struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Write a full-size synthetic checkpoint (random bf16 weights, real names and shapes).",
        discussion: """
        The output is a diffusers-layout folder (model_index.json, text_encoder/, vae/, tokenizer/,
        processor/) that `qwen-quant convert` accepts. Weights are random: use it for speed, memory and
        conversion measurements, never for quality. The tokenizer is the tiny fixture's (a 3,000-token
        BPE) with its special tokens moved to the real ids (151643...), so templates produce real ids.

        Examples:
          qwen-bench synth --config-dir /work/shared/real-configs --out /work/bench-data/synth
          qwen-bench synth --config-dir /work/shared/real-configs --out /work/bench-data/synth-outliers \\
              --components text_encoder --outliers
        """)

    @Option(name: .long, help: "Folder with text_encoder/config.json and vae/config.json.")
    var configDir: String

    @Option(name: .long, help: "Output folder (created; refused if it exists unless --force).")
    var out: String

    @Option(name: .long, help: "Comma-separated components: text_encoder, vae.")
    var components = "text_encoder,vae"

    @Flag(name: .long, help: "Give the activations a few outlier channels (100-1000x).")
    var outliers = false

    @Option(name: .long, help: "Keep only the first N decoder layers of the text encoder (real shapes, shallower model; config.json is rewritten to match). For measuring how quantization error grows with depth.")
    var textLayers: Int?

    @Option(name: .long, help: "Seed of the random weights.")
    var seed: UInt64 = 20_260_527

    @Option(name: .long, help: "Writer threads.")
    var threads = 2

    @Option(name: .long, help: "Maximum text encoder shard size in bytes (the hub uses ~5 GB).")
    var shardBytes = 5_000_000_000

    @Option(name: .long, help: "Tokenizer/processor/model_index source (the tiny fixture model).")
    var tokenizerFrom = Synth.defaultFixture

    @Flag(name: .long, help: "Replace an existing output folder.")
    var force = false

    @Flag(name: .long, help: "Print the tensor list and counts, write nothing.")
    var dryRun = false

    static var defaultFixture: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Tests/Fixtures/tiny-random-qwen-image").path
    }

    func run() throws {
        let comps = Set(components.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) })
        for c in comps where c != "text_encoder" && c != "vae" {
            throw ValidationError("unknown component '\(c)' (expected text_encoder, vae)")
        }
        let cfgDir = URL(fileURLWithPath: configDir)
        let start = Date()
        var plans: [(String, [SynthTensor], URL)] = []
        if comps.contains("text_encoder") {
            var url = cfgDir.appendingPathComponent("text_encoder/config.json")
            var cfg = try readJSON(url)
            if let n = textLayers {
                cfg = try Synth.withTextLayers(cfg, n)
                url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("qwen-bench-synth-config-\(getpid()).json")
                try JSONSerialization.data(withJSONObject: cfg, options: [.prettyPrinted, .sortedKeys]).write(to: url)
            }
            let qwen3 = SynthSpec.isQwen3VL(cfg)
            let tensors = qwen3 ? try SynthSpec.textEncoderQwen3(config: cfg) : try SynthSpec.textEncoder(config: cfg, outliers: outliers)
            if textLayers == nil && !qwen3 { try checkRealCounts(text: tensors, config: cfg) }
            plans.append(("text_encoder", tensors, url))
        }
        if comps.contains("vae") {
            let url = cfgDir.appendingPathComponent("vae/config.json")
            let cfg = try readJSON(url)
            let gen2 = SynthSpec.isVAE21(cfg)
            let tensors = gen2 ? try SynthSpec.vae21(config: cfg) : try SynthSpec.vae(config: cfg)
            if cfg["base_dim"] as? Int == 96 && !gen2 { try checkRealCounts(vae: tensors) }
            if gen2 && cfg["base_dim"] as? Int == 96 && cfg["decoder_base_dim"] as? Int == 144 {
                // diffusers' default AutoencoderKLQwenImage21 built on the meta device: 337.74 M parameters (docs/GEN2.md §1).
                let n = tensors.reduce(0) { $0 + $1.count }
                guard abs(n - 337_740_000) < 10_000 else { throw BenchError.bad("VAE 2.1: \(n) params, expected 337.74 M") }
            }
            plans.append(("vae", tensors, url))
        }
        if dryRun {
            for (name, tensors, _) in plans {
                for t in tensors { print("\(name)\t\(t.name)\t\(t.shape)") }
                print("\(name): \(tensors.count) tensors, \(tensors.reduce(0) { $0 + $1.count }) params")
            }
            return
        }
        let target = URL(fileURLWithPath: out)
        let atomic = try AtomicOutput(target: target, force: force)
        do {
            let root = atomic.temporary
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            try copyTokenizer(into: root)
            for (name, tensors, cfgURL) in plans {
                let dir = root.appendingPathComponent(name)
                try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                try FileManager.default.copyItem(at: cfgURL, to: dir.appendingPathComponent("config.json"))
                let writer = SynthWriter(seed: seed &+ (name == "vae" ? 7 : 0), threads: threads)
                if name == "vae" {
                    try writer.write(tensors, to: dir.appendingPathComponent("diffusion_pytorch_model.safetensors"), label: "vae")
                } else {
                    try writeSharded(tensors, dir: dir, writer: writer)
                }
            }
            try atomic.commit()
        } catch {
            atomic.discard()
            throw error
        }
        let secs = Date().timeIntervalSince(start)
        let written = plans.reduce(0) { $0 + $1.1.reduce(0) { $0 + $1.count * 2 } }
        try? ResultsFile.write("synth", records: [["case": outliers ? "outliers" : "plain", "components": components,
                                                   "wall_s": secs, "peak_rss_bytes": ProcessStats.peakRSS(),
                                                   "bytes": written, "threads": threads, "status": "ok"]])
        FileHandle.standardError.write("wrote \(target.path) in \(String(format: "%.1f", secs)) s (peak RSS \(ByteSize.format(ProcessStats.peakRSS())))\n".data(using: .utf8)!)
    }

    /// The config with `n` decoder layers: num_hidden_layers, layer_types and max_window_layers, at the
    /// top level and in text_config.
    static func withTextLayers(_ config: [String: Any], _ n: Int) throws -> [String: Any] {
        func cut(_ d: [String: Any]) throws -> [String: Any] {
            var d = d
            guard let layers = d["num_hidden_layers"] as? Int else { return d }
            guard n >= 1 && n <= layers else { throw ValidationError("--text-layers: expected 1...\(layers), found \(n)") }
            d["num_hidden_layers"] = n
            if let t = d["layer_types"] as? [Any] { d["layer_types"] = Array(t.prefix(n)) }
            if let w = d["max_window_layers"] as? Int { d["max_window_layers"] = min(w, n) }
            return d
        }
        var c = try cut(config)
        if let tc = config["text_config"] as? [String: Any] { c["text_config"] = try cut(tc) }
        return c
    }

    private func checkRealCounts(text: [SynthTensor], config: [String: Any]) throws {
        let s = try SynthSpec.textShapes(config: config)
        guard s.hidden == 3584 && s.vHidden == 1280 else { return }   // only the real config has known counts
        let lm = text.filter { $0.name.hasPrefix("model.") }.reduce(0) { $0 + $1.count }
        let emb = text.first { $0.name == "model.embed_tokens.weight" }!.count
        let head = text.first { $0.name == "lm_head.weight" }!.count
        let vis = text.filter { $0.name.hasPrefix("visual.") }.reduce(0) { $0 + $1.count }
        let want = (7_070_619_136, 544_997_376, 544_997_376, 676_550_144)
        guard (lm, emb, head, vis) == want else {
            throw BenchError.bad("text encoder parameter counts (lm, embed, lm_head, visual) = \((lm, emb, head, vis)), expected \(want)")
        }
    }

    private func checkRealCounts(vae: [SynthTensor]) throws {
        let n = vae.reduce(0) { $0 + $1.count }
        guard vae.count == 194 && n == 126_892_531 else {
            throw BenchError.bad("VAE: \(vae.count) tensors / \(n) params, expected 194 / 126892531")
        }
    }

    /// Greedy shards in tensor order, like `save_pretrained(max_shard_size=...)`, plus the index.
    private func writeSharded(_ tensors: [SynthTensor], dir: URL, writer: SynthWriter) throws {
        var shards: [[SynthTensor]] = [[]]
        var size = 0
        for t in tensors {
            let b = t.count * 2
            if size + b > shardBytes && !shards[shards.count - 1].isEmpty { shards.append([]); size = 0 }
            shards[shards.count - 1].append(t)
            size += b
        }
        var map: [String: String] = [:]
        var total = 0
        for (i, shard) in shards.enumerated() {
            let file = String(format: "model-%05d-of-%05d.safetensors", i + 1, shards.count)
            try writer.write(shard, to: dir.appendingPathComponent(file), label: "text_encoder \(i + 1)/\(shards.count)")
            for t in shard { map[t.name] = file; total += t.count * 2 }
        }
        let index: [String: Any] = ["metadata": ["total_size": total], "weight_map": map]
        let data = try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: dir.appendingPathComponent("model.safetensors.index.json"))
    }

    /// Copies tokenizer/, processor/ and model_index.json, moving the added tokens to the real ids.
    private func copyTokenizer(into root: URL) throws {
        let src = URL(fileURLWithPath: tokenizerFrom)
        let fm = FileManager.default
        try fm.copyItem(at: src.appendingPathComponent("model_index.json"), to: root.appendingPathComponent("model_index.json"))
        for folder in ["tokenizer", "processor"] {
            let from = src.appendingPathComponent(folder)
            let to = root.appendingPathComponent(folder)
            try fm.copyItem(at: from, to: to)
            try TokenizerRemap.remap(folder: to, from: 3000, to: 151_643)
        }
        // The generation's own image processor settings, when the config folder has them (Qwen-Image 2.1).
        let pre = URL(fileURLWithPath: configDir).appendingPathComponent("processor/preprocessor_config.json")
        if fm.fileExists(atPath: pre.path) {
            let dst = root.appendingPathComponent("processor/preprocessor_config.json")
            try? fm.removeItem(at: dst)
            try fm.copyItem(at: pre, to: dst)
        }
    }
}

func readJSON(_ url: URL) throws -> [String: Any] {
    let data: Data
    do { data = try Data(contentsOf: url) } catch {
        throw BenchError.bad("\(url.path): cannot read (\(error.localizedDescription))")
    }
    guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw BenchError.bad("\(url.path): not a JSON object")
    }
    return obj
}

/// Moves the added (special) token ids of a tokenizer folder from `from...` to `to...`.
enum TokenizerRemap {
    static func remap(folder: URL, from: Int, to: Int) throws {
        func shift(_ id: Int) -> Int { id >= from ? id - from + to : id }
        let tj = folder.appendingPathComponent("tokenizer.json")
        if var obj = try? readJSON(tj), let added = obj["added_tokens"] as? [[String: Any]] {
            obj["added_tokens"] = added.map { t -> [String: Any] in
                var t = t
                if let id = t["id"] as? Int { t["id"] = shift(id) }
                return t
            }
            try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]).write(to: tj)
        }
        let aj = folder.appendingPathComponent("added_tokens.json")
        if let obj = try? readJSON(aj) {
            var out: [String: Any] = [:]
            for (k, v) in obj { out[k] = (v as? Int).map(shift) ?? v }
            try JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys]).write(to: aj)
        }
        let cj = folder.appendingPathComponent("tokenizer_config.json")
        if var obj = try? readJSON(cj), let dec = obj["added_tokens_decoder"] as? [String: Any] {
            var out: [String: Any] = [:]
            for (k, v) in dec { out[Int(k).map { String(shift($0)) } ?? k] = v }
            obj["added_tokens_decoder"] = out
            try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys]).write(to: cj)
        }
    }
}
