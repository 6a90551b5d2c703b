import Foundation
import Kernels
import Quant

// The Qwen2.5-VL language model (`Qwen2_5_VLTextModel`, transformers 5.24), streamed from a pack one
// decoder layer at a time. Prompt encoding needs only the last hidden state after the final norm,
// so there is no lm_head and no KV cache: the whole prompt is one prefill.
//
// Sequences of a batch are concatenated row-wise ("packed"): every matrix product runs once over
// all rows of all prompts (weights are streamed once per batch), attention runs per sequence.
// This is exactly diffusers' right-padded batch for the valid tokens, since with causal attention
// a valid token never sees the padding after it.

// MARK: - Inputs

/// 3-axis rotary position ids (t, h, w) of one sequence, as `Qwen2_5_VLModel.get_rope_index`
/// produces them. Text-only prompts use `sequential(L)` (all three axes equal to arange(L)); the
/// vision path gives image tokens their grid positions.
public struct MRopePositions: Sendable, Equatable {
    public private(set) var t: [Int64]
    public private(set) var h: [Int64]
    public private(set) var w: [Int64]

    public init(t: [Int64], h: [Int64], w: [Int64]) throws {
        guard t.count == h.count, h.count == w.count else {
            throw QwenImageError.invalidInput("position ids: the t, h, w axes have different lengths (\(t.count), \(h.count), \(w.count))")
        }
        self.t = t; self.h = h; self.w = w
    }

    /// All three axes = start ..< start + count.
    public static func sequential(_ count: Int, start: Int64 = 0) -> MRopePositions {
        let r = Array(start ..< start + Int64(count))
        return try! MRopePositions(t: r, h: r, w: r)   // equal lengths by construction
    }

    public var count: Int { t.count }

    /// The first `n` positions.
    public func prefix(_ n: Int) -> MRopePositions {
        try! MRopePositions(t: Array(t.prefix(n)), h: Array(h.prefix(n)), w: Array(w.prefix(n)))
    }
}

/// One sequence for `LanguageModel.forward`: `inputsEmbeds` [L, hidden] (from `embed`, possibly with
/// image rows spliced in), its positions (L of them) and how many leading rows are valid (the rest,
/// if any, is right padding and is ignored).
public struct LMSequence: Sendable {
    public var inputsEmbeds: [Float]
    public var positions: MRopePositions
    public var validLength: Int
    /// The rows continue a `SharedPrefix` (passed to `forward`): their positions start after it and
    /// their attention sees its keys and values first, as if it were their own leading rows.
    public var afterPrefix: Bool
    /// Qwen3-VL DeepStack: entry k [visualRows.count, hidden] is added to the output of layer k at the rows
    /// `visualRows` (the image tokens), as `Qwen3VLTextModel._deepstack_process` does.
    public var deepstack: [[Float]] = []
    public var visualRows: [Int] = []

    public init(inputsEmbeds: [Float], positions: MRopePositions, validLength: Int? = nil, afterPrefix: Bool = false) {
        self.inputsEmbeds = inputsEmbeds
        self.positions = positions
        self.validLength = validLength ?? positions.count
        self.afterPrefix = afterPrefix
    }
}

/// The keys and values (after rope) of a token prefix many sequences share, per layer: the prompt
/// template's system part, which every prompt runs through the model before the pipeline drops it.
/// With causal attention those rows do not depend on what follows, so they are computed once (in the
/// first `forward` that needs them, as one more sequence of that pass) and reused by every later call;
/// a sequence that continues the prefix computes only its own rows. 28 layers × 34 tokens × 2 × 1024
/// floats is 7.8 MB for the 7B model.
public final class SharedPrefix {
    public let ids: [Int]
    var keys: [[Float]] = []     // per layer [P, Hkv·d], after rope
    var values: [[Float]] = []   // per layer [P, Hkv·d]

    public init(ids: [Int]) { self.ids = ids }

    public var length: Int { ids.count }
    /// Filled by a forward pass over every layer.
    public func isComputed(layers: Int) -> Bool { keys.count == layers && values.count == layers }
}

/// Where the time of a forward pass went (seconds).
public struct TextEncoderTimings: Sendable {
    /// Matrix products (q/k/v/o projections and the MLP).
    public var matmul = 0.0
    /// Rotary embedding and attention.
    public var attention = 0.0
    /// Waiting for shards (mapping, decompression not hidden by prefetch, checksums) and releasing them.
    public var streaming = 0.0
    /// Embedding lookup, norms, residual adds, copies.
    public var rest = 0.0
    public var total: Double { matmul + attention + streaming + rest }

    public init() {}
}

// MARK: - Weights

/// One decoder layer's weights (`model.layers.N`): views into its shard, valid until the shard is released.
struct DecoderLayerWeights {
    let inputLayernorm: [Float]            // [H]
    let qProj: Weight, qBias: [Float]?     // [Hq·d, H], [Hq·d] (Qwen2.5-VL; Qwen3-VL when attention_bias)
    let kProj: Weight, kBias: [Float]?     // [Hkv·d, H], [Hkv·d]
    let vProj: Weight, vBias: [Float]?     // [Hkv·d, H], [Hkv·d]
    let oProj: Weight, oBias: [Float]?     // [H, Hq·d], [H] (Qwen3-VL when attention_bias)
    let qNorm: [Float]?, kNorm: [Float]?   // [d] each (Qwen3-VL: RMSNorm per head before rope)
    let postAttentionLayernorm: [Float]    // [H]
    let gateProj: Weight, upProj: Weight   // [I, H]
    let downProj: Weight                   // [H, I]

    /// `Qwen2_5_VLDecoderLayer`'s (or `Qwen3VLTextDecoderLayer`'s) parameters, from a source scoped to the layer.
    init(_ src: TensorSource, config c: TextConfig) throws {
        let h = c.hiddenSize, i = c.intermediateSize
        let qwen3 = c.family == .qwen3vl
        inputLayernorm = try src.vector("input_layernorm.weight", count: h)
        let attn = src.prefix("self_attn")
        func bias(_ name: String, _ n: Int, _ present: Bool) throws -> [Float]? { present ? try attn.vector(name, count: n) : nil }
        qProj = try attn.matrix("q_proj.weight", .linear(rows: c.qDim, cols: h)); qBias = try bias("q_proj.bias", c.qDim, c.attentionBias)
        kProj = try attn.matrix("k_proj.weight", .linear(rows: c.kvDim, cols: h)); kBias = try bias("k_proj.bias", c.kvDim, c.attentionBias)
        vProj = try attn.matrix("v_proj.weight", .linear(rows: c.kvDim, cols: h)); vBias = try bias("v_proj.bias", c.kvDim, c.attentionBias)
        oProj = try attn.matrix("o_proj.weight", .linear(rows: h, cols: c.qDim)); oBias = try bias("o_proj.bias", h, qwen3 && c.attentionBias)
        qNorm = c.hasQKNorm ? try attn.vector("q_norm.weight", count: c.headDim) : nil
        kNorm = c.hasQKNorm ? try attn.vector("k_norm.weight", count: c.headDim) : nil
        postAttentionLayernorm = try src.vector("post_attention_layernorm.weight", count: h)
        let mlp = src.prefix("mlp")
        gateProj = try mlp.matrix("gate_proj.weight", .linear(rows: i, cols: h))
        upProj = try mlp.matrix("up_proj.weight", .linear(rows: i, cols: h))
        downProj = try mlp.matrix("down_proj.weight", .linear(rows: h, cols: i))
    }
}

/// Where each part of `Qwen2_5_VLTextModel` lives under a source scoped to the checkpoint root (hub
/// names: `model.embed_tokens`, `model.layers.N`, `model.norm`), and the two tensors outside the layers.
struct TextModelSources<Source: TensorSource> {
    let embedTokens: Source
    let layers: [Source]
    let norm: Source

    init(root: Source, config: TextConfig) {
        let model = root.prefix("model")
        embedTokens = model.prefix("embed_tokens")
        let layerRoot = model.prefix("layers")
        layers = (0 ..< config.numHiddenLayers).map { layerRoot.prefix($0) }
        norm = model.prefix("norm")
    }

    /// The embedding table [vocab, H] (rows read one at a time).
    func embedding(_ c: TextConfig) throws -> Weight {
        try embedTokens.matrix("weight", .embedding(rows: c.vocabSize, cols: c.hiddenSize))
    }

    /// The final RMSNorm weight [H].
    func finalNorm(_ c: TextConfig) throws -> [Float] {
        try norm.vector("weight", count: c.hiddenSize)
    }
}

// MARK: - Model

public final class LanguageModel {
    public let config: TextConfig
    /// The pack's `text_encoder`, scoped per part.
    let source: PackTensorSource
    let parts: TextModelSources<PackTensorSource>

    /// Load layer N+1 on a background thread while layer N computes (two layers resident).
    public var prefetch = true
    /// Also load layer 0 while the embedding rows are read (embedding table + one layer resident).
    public var prefetchDuringEmbedding = true
    /// Rows per MLP chunk: bounds the [rows, intermediate] activations (gate and up).
    public var mlpChunkRows = 1024
    /// Called after each decoder layer with the number of layers done (progress bars).
    public var onLayerDone: ((Int) -> Void)?
    /// Debugging aid: called with HF's `hidden_states[i]` over the packed valid rows [rows, H]:
    /// i = 0 the embeddings, 1 ..< layers the output of layer i-1, `layers` the final norm output.
    public var onHiddenState: ((Int, UnsafeBufferPointer<Float>) -> Void)?
    /// Apply the final RMSNorm: what the pipelines return for Qwen-Image; Qwen-Image 2.1's pipeline hooks it
    /// away (`TextConfig.embeddingsAreFinalNormed`). Tests turn it on to show the normed state differs.
    public lazy var appliesFinalNorm = config.embeddingsAreFinalNormed
    /// Accumulated over every `embed` / `forward` call.
    public internal(set) var timings = TextEncoderTimings()
    private var firstLayerPrefetched = false

    /// Opens the text encoder of a pack: reads and validates its config.json and checks every tensor
    /// the model needs against it (name, shape) before anything is computed.
    public convenience init(pack: Pack, packPath: String) throws {
        guard pack.components.contains("text_encoder") else {
            throw QwenImageError.missingComponent(pack: packPath, component: "text_encoder",
                hint: "Convert the checkpoint with the text encoder included (qwen-quant convert SRC -o PACK --components text_encoder,...).")
        }
        try self.init(component: try pack.component("text_encoder"), file: packPath + "/text_encoder/config.json")
    }

    public init(component: PackComponent, file: String = "text_encoder/config.json") throws {
        self.config = try TextConfig.load(try component.configData(), file: file)
        source = PackTensorSource(component: component)
        parts = TextModelSources(root: source, config: config)
        // Every tensor present with the shape config.json implies, checked against the manifest.
        let check = ShapeOnlySource(pack: component)
        try Self.requestWeights(config: config, from: check)
        try check.throwFirstProblem()
    }

    /// Asks `source` for every weight of the model once, as `forward` does (the converter's plan and
    /// the pack check run this against a `ShapeOnlySource`).
    public static func requestWeights<S: TensorSource>(config c: TextConfig, from source: S) throws {
        let p = TextModelSources(root: source, config: c)
        _ = try p.embedding(c)
        for layer in p.layers { _ = try DecoderLayerWeights(layer, config: c) }
        _ = try p.finalNorm(c)
    }

    /// What the weights cost in memory while used (for --max-ram planning), from the pack manifest.
    public func weightFootprint() -> TextWeightFootprint {
        let layers = parts.layers.flatMap(\.shardRecords)
        let embed = parts.embedTokens.shardRecords.first
        let component = source.component
        return TextWeightFootprint(layerBytes: layers.map(\.payloadBytes).max() ?? 0,
                                   embedBytes: embed?.payloadBytes ?? 0,
                                   embedRowBytes: parts.embedTokens.tensorBytes / max(config.vocabSize, 1),
                                   layersCompressed: layers.contains { component.isCompressed($0.name) },
                                   embedCompressed: embed.map { component.isCompressed($0.name) } ?? false,
                                   layerFileBytes: layers.map(\.fileBytes).max() ?? 0,
                                   embedFileBytes: embed?.fileBytes ?? 0,
                                   poolLimitBytes: component.poolLimitBytes)
    }

    // MARK: Embedding

    /// Token embeddings [ids.count, H] (`embed_tokens`), one row at a time from the pack.
    public func embed(_ ids: [Int]) throws -> [Float] {
        let h = config.hiddenSize
        if prefetch && prefetchDuringEmbedding && !firstLayerPrefetched, let first = parts.layers.first {
            first.prefetch()     // loads while the embedding rows are read
            firstLayerPrefetched = true
        }
        defer { timed(\.streaming) { parts.embedTokens.release() } }
        let table = try timed(\.streaming) { try parts.embedding(config) }
        return try timed(\.rest) {
            var out = [Float](repeating: 0, count: ids.count * h)
            try out.withUnsafeMutableBufferPointer { o in
                for (r, id) in ids.enumerated() {
                    guard id >= 0 && id < table.n else {
                        throw QwenImageError.invalidInput("token id \(id) at position \(r) is outside the vocabulary (0..<\(table.n))")
                    }
                    try table.row(id, into: o.baseAddress! + r * h)
                }
            }
            return out
        }
    }

    // MARK: Forward

    /// The final-normed hidden states [L, H] of one sequence; rows at or after `validLength` are zero.
    public func forward(inputsEmbeds: [Float], positions: MRopePositions, validLength: Int? = nil) throws -> [Float] {
        try forward([LMSequence(inputsEmbeds: inputsEmbeds, positions: positions, validLength: validLength)])[0]
    }

    /// Runs all sequences through each layer before the next one (weights streamed once).
    /// Returns, per sequence, the final-normed hidden states [L, H] (padding rows zero).
    /// Sequences marked `afterPrefix` continue `prefix`; when its keys and values are not computed yet,
    /// the prefix runs as one more sequence of this pass and they are kept in it for later calls.
    public func forward(_ sequences: [LMSequence], prefix: SharedPrefix? = nil) throws -> [[Float]] {
        let c = config
        let hd = c.hiddenSize
        var sequences = sequences
        var capture: SharedPrefix?
        if sequences.contains(where: \.afterPrefix) {
            guard let prefix, prefix.length > 0 else {
                throw QwenImageError.invalidInput("a sequence continues a shared prefix, but no prefix was given")
            }
            if !prefix.isComputed(layers: c.numHiddenLayers) {
                prefix.keys = []; prefix.values = []
                sequences.insert(LMSequence(inputsEmbeds: try embed(prefix.ids), positions: .sequential(prefix.length)), at: 0)
                capture = prefix
            }
        }
        let shared = sequences.contains(where: \.afterPrefix) ? prefix : nil
        var lengths: [Int] = []
        for (b, s) in sequences.enumerated() {
            let l = s.positions.count
            guard s.inputsEmbeds.count == l * hd else {
                throw QwenImageError.invalidInput("sequence \(b): inputs_embeds has \(s.inputsEmbeds.count) values, expected \(l) positions x \(hd)")
            }
            guard s.validLength >= 0 && s.validLength <= l else {
                throw QwenImageError.invalidInput("sequence \(b): valid length \(s.validLength) outside 0...\(l)")
            }
            lengths.append(s.validLength)
            for (k, d) in s.deepstack.enumerated() {
                guard d.count == s.visualRows.count * hd, k < c.numHiddenLayers,
                      s.visualRows.allSatisfy({ $0 >= 0 && $0 < s.validLength }) else {
                    throw QwenImageError.invalidInput("sequence \(b): DeepStack feature \(k) has \(d.count) values for "
                        + "\(s.visualRows.count) image rows of \(hd) (rows must lie in 0..<\(s.validLength), k below \(c.numHiddenLayers))")
                }
            }
        }
        let rows = lengths.reduce(0, +)
        guard rows > 0 else { return sequences.map { [Float](repeating: 0, count: $0.positions.count * hd) } }

        if prefetch && !firstLayerPrefetched { (parts.layers.first ?? parts.norm).prefetch() }
        firstLayerPrefetched = false
        let state = ForwardState(config: c, rows: rows, mlpChunkRows: max(1, min(mlpChunkRows, rows)))
        defer { state.deallocate() }

        // Packed valid rows and their positions; the rope tables are shared by all layers.
        let offsets = timed(\.rest) { () -> [Int] in
            var offsets: [Int] = []
            var pt: [Int64] = [], ph: [Int64] = [], pw: [Int64] = []
            pt.reserveCapacity(rows); ph.reserveCapacity(rows); pw.reserveCapacity(rows)
            var off = 0
            for s in sequences {
                offsets.append(off)
                s.inputsEmbeds.withUnsafeBufferPointer { e in
                    (state.x + off * hd).update(from: e.baseAddress!, count: s.validLength * hd)
                }
                pt += s.positions.t.prefix(s.validLength)
                ph += s.positions.h.prefix(s.validLength)
                pw += s.positions.w.prefix(s.validLength)
                off += s.validLength
            }
            let sections = c.mropeSection.map(Int32.init)
            sections.withUnsafeBufferPointer { sec in
                (c.mropeInterleaved ? qk_rope_table_mrope_interleaved : qk_rope_table_mrope)(
                    pt, ph, pw, Int64(rows), Int64(c.headDim), sec.baseAddress!, c.ropeTheta, state.cos, state.sin)
            }
            return offsets
        }
        onHiddenState?(0, UnsafeBufferPointer(start: state.x, count: rows * hd))

        let layers = parts.layers
        for (i, layer) in layers.enumerated() {
            let weights = try timed(\.streaming) { () throws -> DecoderLayerWeights in
                let w: DecoderLayerWeights
                do { w = try DecoderLayerWeights(layer, config: c) } catch {
                    layer.release(); throw error
                }
                if prefetch { (i + 1 < layers.count ? layers[i + 1] : parts.norm).prefetch() }
                // And the storage starts on the layer after it: one layer in flight left a cold run
                // reading at about half the disk's rate (q8s, 7.2 GB: 8.0 s, now 5.5 s; warm 2.6 s).
                if prefetch && i + 2 < layers.count { layers[i + 2].readAhead() }
                return w
            }
            decoderLayer(weights, state: state, lengths: lengths, offsets: offsets, layer: i,
                         afterPrefix: sequences.map(\.afterPrefix), prefix: shared, capture: capture)
            for (s, off) in zip(sequences, offsets) where i < s.deepstack.count {
                s.deepstack[i].withUnsafeBufferPointer { d in
                    for (j, r) in s.visualRows.enumerated() {
                        let dst = state.x + (off + r) * hd, src = d.baseAddress! + j * hd
                        for e in 0..<hd { dst[e] += src[e] }
                    }
                }
            }
            timed(\.streaming) { layer.release() }
            if i + 1 < layers.count {
                onHiddenState?(i + 1, UnsafeBufferPointer(start: state.x, count: rows * hd))
            }
            onLayerDone?(i + 1)
        }

        // Final RMSNorm (`model.norm`): this is hidden_states[-1] / last_hidden_state. QwenImage21Pipeline
        // hooks it away (its embeddings are the last layer's raw output): skipped unless asked for.
        let norm = try timed(\.streaming) { () throws -> [Float] in
            defer { parts.norm.release() }
            return try parts.finalNorm(c)
        }
        if appliesFinalNorm {
            timed(\.rest) { qk_rmsnorm(state.x, norm, Int64(rows), Int64(hd), Float(c.rmsNormEps), state.x) }
        }
        onHiddenState?(layers.count, UnsafeBufferPointer(start: state.x, count: rows * hd))

        return timed(\.rest) {
            sequences.enumerated().dropFirst(capture == nil ? 0 : 1).map { b, s in
                var o = [Float](repeating: 0, count: s.positions.count * hd)
                o.withUnsafeMutableBufferPointer { p in
                    p.baseAddress!.update(from: state.x + offsets[b] * hd, count: lengths[b] * hd)
                }
                return o
            }
        }
    }

    /// Runs `body` and adds its wall time to one bucket of `timings`: the only way the forward passes
    /// are timed, so the arithmetic below reads without clock calls between its lines.
    @inline(__always)
    private func timed<T>(_ bucket: WritableKeyPath<TextEncoderTimings, Double>, _ body: () throws -> T) rethrows -> T {
        let start = MonotonicClock.now()
        defer { timings[keyPath: bucket] += MonotonicClock.now() - start }
        return try body()
    }

    /// `Qwen2_5_VLDecoderLayer.forward` on the packed rows in `state.x` (updated in place).
    private func decoderLayer(_ w: DecoderLayerWeights, state s: ForwardState, lengths: [Int], offsets: [Int], layer: Int,
                              afterPrefix: [Bool], prefix: SharedPrefix?, capture: SharedPrefix?) {
        let c = config
        let rows = s.rows, hd = c.hiddenSize, qd = c.qDim, kvd = c.kvDim
        let eps = Float(c.rmsNormEps)

        // Self-attention block: x += o_proj(attn(rope(q), rope(k), v)) of input_layernorm(x).
        timed(\.rest) { qk_rmsnorm(s.x, w.inputLayernorm, Int64(rows), Int64(hd), eps, s.xn) }
        timed(\.matmul) {
            withOptional(w.qBias) { w.qProj.matmul(s.xn, rows: rows, bias: $0, into: s.q) }   // [R, Hq·d]
            withOptional(w.kBias) { w.kProj.matmul(s.xn, rows: rows, bias: $0, into: s.k) }   // [R, Hkv·d]
            withOptional(w.vBias) { w.vProj.matmul(s.xn, rows: rows, bias: $0, into: s.v) }   // [R, Hkv·d]
        }
        if let qn = w.qNorm, let kn = w.kNorm {
            // Qwen3VLTextAttention: q_norm / k_norm over each head's d values, before rope.
            timed(\.rest) {
                qk_rmsnorm(s.q, qn, Int64(rows * c.numAttentionHeads), Int64(c.headDim), eps, s.q)
                qk_rmsnorm(s.k, kn, Int64(rows * c.numKeyValueHeads), Int64(c.headDim), eps, s.k)
            }
        }
        timed(\.attention) {
            qk_rope(s.q, Int64(rows), Int64(c.numAttentionHeads), Int64(c.headDim), Int64(qd), s.cos, s.sin)
            qk_rope(s.k, Int64(rows), Int64(c.numKeyValueHeads), Int64(c.headDim), Int64(kvd), s.cos, s.sin)
            if let capture {   // sequence 0 is the shared prefix: keep its keys and values
                let n = capture.length * kvd
                capture.keys.append(Array(UnsafeBufferPointer(start: s.k, count: n)))
                capture.values.append(Array(UnsafeBufferPointer(start: s.v, count: n)))
            }
            for (b, l) in lengths.enumerated() where l > 0 {
                let o = offsets[b]
                if afterPrefix[b], let prefix {
                    attendAfterPrefix(prefix, layer: layer, rows: l, q: s.q + o * qd, k: s.k + o * kvd, v: s.v + o * kvd,
                                      out: s.attn + o * qd)
                    continue
                }
                var p = qk_attn_params(lq: Int64(l), lk: Int64(l), hq: Int64(c.numAttentionHeads),
                                       hkv: Int64(c.numKeyValueHeads), d: Int64(c.headDim),
                                       q_stride: Int64(qd), k_stride: Int64(kvd), v_stride: Int64(kvd), o_stride: Int64(qd),
                                       scale: 1 / Float(c.headDim).squareRoot(), causal: 1, q_offset: 0, kv_len: Int64(l),
                                       q_seg: nil, k_seg: nil)
                qk_attention(&p, s.q + o * qd, s.k + o * kvd, s.v + o * kvd, s.attn + o * qd)
            }
        }
        timed(\.matmul) { withOptional(w.oBias) { w.oProj.matmul(s.attn, rows: rows, bias: $0, into: s.tmp) } }  // [R, H]

        // MLP block: x += down(silu(gate(n)) * up(n)), n = post_attention_layernorm(x), in row chunks.
        timed(\.rest) {
            addInPlace(s.x, s.tmp, rows * hd)
            qk_rmsnorm(s.x, w.postAttentionLayernorm, Int64(rows), Int64(hd), eps, s.xn)
        }
        var r0 = 0
        while r0 < rows {
            let m = min(s.mlpChunkRows, rows - r0)
            timed(\.matmul) {
                w.gateProj.matmul(s.xn + r0 * hd, rows: m, into: s.gate)                                      // [m, I]
                w.upProj.matmul(s.xn + r0 * hd, rows: m, into: s.up)                                          // [m, I]
            }
            timed(\.rest) { qk_silu_mul(s.gate, s.up, Int64(m * c.intermediateSize), s.gate) }
            timed(\.matmul) { w.downProj.matmul(s.gate, rows: m, into: s.tmp + r0 * hd) }                     // [m, H]
            r0 += m
        }
        timed(\.rest) { addInPlace(s.x, s.tmp, rows * hd) }
    }

    /// Causal attention of `rows` query rows that continue `prefix`: the keys and values are the
    /// prefix's (this layer's) followed by the rows' own, the queries sit at positions P ..< P + rows.
    private func attendAfterPrefix(_ prefix: SharedPrefix, layer: Int, rows l: Int, q: UnsafePointer<Float>,
                                   k: UnsafePointer<Float>, v: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
        let c = config
        let kvd = c.kvDim, pl = prefix.length
        var keys = prefix.keys[layer], values = prefix.values[layer]
        keys.append(contentsOf: UnsafeBufferPointer(start: k, count: l * kvd))
        values.append(contentsOf: UnsafeBufferPointer(start: v, count: l * kvd))
        var p = qk_attn_params(lq: Int64(l), lk: Int64(pl + l), hq: Int64(c.numAttentionHeads),
                               hkv: Int64(c.numKeyValueHeads), d: Int64(c.headDim),
                               q_stride: Int64(c.qDim), k_stride: Int64(kvd), v_stride: Int64(kvd), o_stride: Int64(c.qDim),
                               scale: 1 / Float(c.headDim).squareRoot(), causal: 1, q_offset: Int64(pl), kv_len: Int64(pl + l),
                               q_seg: nil, k_seg: nil)
        keys.withUnsafeBufferPointer { kp in
            values.withUnsafeBufferPointer { vp in qk_attention(&p, q, kp.baseAddress!, vp.baseAddress!, out) }
        }
    }
}

// MARK: - Run state

/// Activation buffers of one forward pass, allocated once (shapes for R packed rows).
final class ForwardState {
    let rows: Int
    let mlpChunkRows: Int
    let x: UnsafeMutablePointer<Float>      // residual stream [R, H]
    let xn: UnsafeMutablePointer<Float>     // normed input of a block [R, H]
    let q: UnsafeMutablePointer<Float>      // [R, Hq·d]
    let k: UnsafeMutablePointer<Float>      // [R, Hkv·d]
    let v: UnsafeMutablePointer<Float>      // [R, Hkv·d]
    let attn: UnsafeMutablePointer<Float>   // attention output [R, Hq·d]
    let tmp: UnsafeMutablePointer<Float>    // block output before the residual add [R, H]
    let gate: UnsafeMutablePointer<Float>   // [chunk, I], then silu(gate) * up
    let up: UnsafeMutablePointer<Float>     // [chunk, I]
    let cos: UnsafeMutablePointer<Float>    // rope tables [R, d/2]
    let sin: UnsafeMutablePointer<Float>

    init(config c: TextConfig, rows: Int, mlpChunkRows: Int) {
        self.rows = rows
        self.mlpChunkRows = mlpChunkRows
        func alloc(_ n: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
            p.initialize(repeating: 0, count: max(n, 1))
            return p
        }
        x = alloc(rows * c.hiddenSize); xn = alloc(rows * c.hiddenSize)
        q = alloc(rows * c.qDim); k = alloc(rows * c.kvDim); v = alloc(rows * c.kvDim)
        attn = alloc(rows * c.qDim); tmp = alloc(rows * c.hiddenSize)
        gate = alloc(mlpChunkRows * c.intermediateSize); up = alloc(mlpChunkRows * c.intermediateSize)
        cos = alloc(rows * c.headDim / 2); sin = alloc(rows * c.headDim / 2)
    }

    /// Bytes `init` allocates (for --max-ram planning).
    static func bytes(config c: TextConfig, rows: Int, mlpChunkRows: Int) -> Int {
        let floats = rows * (3 * c.hiddenSize + 2 * c.qDim + 2 * c.kvDim + c.headDim)
            + 2 * mlpChunkRows * c.intermediateSize
        return floats * MemoryLayout<Float>.size
    }

    func deallocate() {
        for p in [x, xn, q, k, v, attn, tmp, gate, up, cos, sin] { p.deallocate() }
    }
}

/// `body` with the base address of `values`, or nil when there are none.
@inline(__always)
func withOptional<T>(_ values: [Float]?, _ body: (UnsafePointer<Float>?) -> T) -> T {
    guard let values else { return body(nil) }
    return values.withUnsafeBufferPointer { body($0.baseAddress) }
}

@inline(__always)
func addInPlace(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) {
    for i in 0 ..< n { x[i] += y[i] }
}

/// Seconds on the monotonic clock.
enum MonotonicClock {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}
