import Foundation
import Kernels
import Quant

/// The Qwen2.5-VL vision tower (transformers `Qwen2_5_VisionTransformerPretrainedModel`), streamed from
/// a pack one shard at a time: `visual.patch_embed`, then `visual.blocks.N` (the next one prefetched
/// while the current one runs), then `visual.merger`; each shard is released after use, so one block's
/// weights are resident at a time.
///
/// forward: pixel_values [N, 1176]
///   -> patch embedding (the Conv3d as a matrix product with `[Dv, 1176]`)   [N, Dv]
///   -> window order (whole 2×2 units permuted into windows)
///   -> depth × block: x += proj(attn(rope(qkv(rms(x))))); x += down(silu(gate(rms(x))) * up(rms(x)))
///      attention inside each window, or over each whole image on `fullatt_block_indexes`
///      (segment ids; no L×L matrix)
///   -> merger: RMSNorm(ln_q) per patch, 4 patches of a unit concatenated [N/4, 4·Dv], mlp.0, GELU (erf),
///      mlp.2 -> [N/4, out_hidden]
///   -> processor order (the window permutation undone).
public final class VisionTower: @unchecked Sendable {
    public let config: VisionConfig
    /// `visual.*` of the pack's `text_encoder`.
    let parts: VisionTowerSources<PackTensorSource>

    /// Opens the vision tower of a pack's `text_encoder`. Throws `missingComponent` when the pack has no
    /// text encoder or its text encoder has no vision tower.
    public init(pack: Pack) throws {
        guard pack.hasComponent("text_encoder") else {
            throw QwenImageError.missingComponent(pack: pack.path, component: "text_encoder",
                                                  hint: "Convert a checkpoint that has a text_encoder (with its vision tower).")
        }
        let component = try pack.component("text_encoder")
        if (try? TextConfig.load(component.configData(), file: "config.json"))?.family == .qwen3vl {
            throw QwenImageError.invalidInput("\(pack.path): a Qwen-Image 2.1 text encoder (Qwen3-VL): its vision tower is a "
                + "Qwen3VisionTower, not a Qwen2.5-VL one")
        }
        parts = VisionTowerSources(root: PackTensorSource(component: component))
        guard !parts.patchEmbed.isEmpty else {
            throw QwenImageError.missingComponent(pack: pack.path, component: "vision tower (text_encoder visual.*)",
                                                  hint: "Reference images need the Qwen2.5-VL vision tower: convert the "
                                                  + "text encoder with its visual.* tensors.")
        }
        config = try VisionConfig.fromTextEncoderConfig(component.configData(),
                                                        file: pack.path + "/text_encoder/config.json")
    }

    /// Asks `source` (scoped to the checkpoint root) for every weight of the tower once, as `forward`
    /// does (the converter's plan runs this against a `ShapeOnlySource`).
    public static func requestWeights<S: TensorSource>(config c: VisionConfig, from source: S) throws {
        let p = VisionTowerSources(root: source)
        _ = try p.patchEmbedding(c)
        for b in 0..<c.depth { _ = try VisionBlockWeights(p.blocks.prefix(b), config: c) }
        _ = try VisionMergerWeights(p.merger, config: c)
    }

    /// Intermediate tensors for tests: (name, values). Names as in the oracle: `patch_embed` (processor
    /// order), `block{i}` and `last_hidden_state` (window order), all `[N, Dv]`.
    public typealias Trace = (String, [Float]) -> Void

    /// Runs the tower on `pixelValues` `[N, patchFeatures]` for images of the given grids.
    /// Returns `image_embeds` `[N / 4, out_hidden]` in processor order.
    /// - Parameter onBlock: called after each block (progress), with the block index.
    public func forward(pixelValues: [Float], grids: [(t: Int, h: Int, w: Int)], trace: Trace? = nil,
                        onBlock: ((Int) -> Void)? = nil) throws -> [Float] {
        let c = config
        let windows = try VisionWindows(grids: grids, spatialMergeSize: c.spatialMergeSize,
                                        windowSize: c.windowSize, patchSize: c.patchSize)
        let n = windows.patchCount
        let dv = c.hiddenSize, feat = c.patchFeatures
        guard n > 0, pixelValues.count == n * feat else {
            throw QwenImageError.invalidInput("pixel_values: expected \(n) x \(feat) values for grids "
                                              + "\(grids.map { [$0.t, $0.h, $0.w] }), found \(pixelValues.count)")
        }

        // MARK: patch embedding  [N, 1176] -> [N, Dv]
        parts.blocks.prefix(0).prefetch()
        var hidden: [Float]
        do {
            defer { parts.patchEmbed.release() }
            let w = try parts.patchEmbedding(c)
            hidden = [Float](repeating: 0, count: n * dv)
            pixelValues.withUnsafeBufferPointer { x in
                hidden.withUnsafeMutableBufferPointer { y in w.matmul(x.baseAddress!, rows: n, into: y.baseAddress!) }
            }
        }
        trace?("patch_embed", hidden)
        hidden = windows.toWindowOrder(hidden, dim: dv)

        // MARK: rope tables and segments, window order
        let hd = c.headDim
        let posH = windows.toWindowOrder(windows.posH, dim: 1)
        let posW = windows.toWindowOrder(windows.posW, dim: 1)
        var cos = [Float](repeating: 0, count: n * hd / 2)
        var sin = [Float](repeating: 0, count: n * hd / 2)
        qk_rope_table_2d(posH, posW, Int64(n), Int64(hd), c.ropeTheta, &cos, &sin)
        let windowSeg = windows.segmentIDs(window: true)
        let imageSeg = windows.segmentIDs(window: false)

        // MARK: blocks
        var scratch = BlockScratch(patches: n, config: c)
        for b in 0..<c.depth {
            if b + 1 < c.depth { parts.blocks.prefix(b + 1).prefetch() } else { parts.merger.prefetch() }
            let blockSource = parts.blocks.prefix(b)
            defer { blockSource.release() }
            let block = try VisionBlockWeights(blockSource, config: c)
            let seg = c.fullattBlockIndexes.contains(b) ? imageSeg : windowSeg
            block.run(&hidden, patches: n, cos: cos, sin: sin, segments: seg, scratch: &scratch, config: c)
            trace?("block\(b)", hidden)
            onBlock?(b)
        }
        trace?("last_hidden_state", hidden)
        scratch = BlockScratch(patches: 0, config: c)  // free before the merger

        // MARK: merger  [N, Dv] -> [N/4, 4·Dv] -> [N/4, out]
        let units = windows.unitCount, m = dv * windows.unit, out = c.outHiddenSize
        let merger: VisionMergerWeights
        do { merger = try VisionMergerWeights(parts.merger, config: c) } catch { parts.merger.release(); throw error }
        let lnQ = merger.lnQ, w0 = merger.mlp0, b0 = merger.mlp0Bias, w2 = merger.mlp2, b2 = merger.mlp2Bias
        hidden.withUnsafeMutableBufferPointer { h in
            qk_rmsnorm(h.baseAddress!, lnQ, Int64(n), Int64(dv), c.rmsNormEps, h.baseAddress!)
        }
        var mid = [Float](repeating: 0, count: units * m)
        hidden.withUnsafeBufferPointer { x in
            mid.withUnsafeMutableBufferPointer { y in w0.matmul(x.baseAddress!, rows: units, bias: b0, into: y.baseAddress!) }
        }
        hidden = []
        qk_gelu_erf(&mid, Int64(mid.count))
        var merged = [Float](repeating: 0, count: units * out)
        mid.withUnsafeBufferPointer { x in
            merged.withUnsafeMutableBufferPointer { y in w2.matmul(x.baseAddress!, rows: units, bias: b2, into: y.baseAddress!) }
        }
        parts.merger.release()

        // MARK: back to processor order
        var embeds = [Float](repeating: 0, count: units * out)
        merged.withUnsafeBufferPointer { s in
            embeds.withUnsafeMutableBufferPointer { d in
                for (j, u) in windows.windowIndex.enumerated() {
                    (d.baseAddress! + u * out).update(from: s.baseAddress! + j * out, count: out)
                }
            }
        }
        return embeds
    }
}

// MARK: - Weights

/// Where the parts of `Qwen2_5_VisionTransformerPretrainedModel` live under a source scoped to the
/// checkpoint root (hub names: `visual.patch_embed`, `visual.blocks.N`, `visual.merger`).
struct VisionTowerSources<Source: TensorSource> {
    let patchEmbed: Source
    let blocks: Source
    let merger: Source

    init(root: Source) {
        let visual = root.prefix("visual")
        patchEmbed = visual.prefix("patch_embed")
        blocks = visual.prefix("blocks")
        merger = visual.prefix("merger")
    }

    /// `patch_embed.proj`: the Conv3d kernel [Dv, C, T, P, P] as the matrix [Dv, C·T·P·P] (a
    /// pixel_values row is in the same (c, t, y, x) order).
    func patchEmbedding(_ c: VisionConfig) throws -> Weight {
        try patchEmbed.matrix("proj.weight", .flattened([c.hiddenSize, c.inChannels, c.temporalPatchSize, c.patchSize, c.patchSize]))
    }
}

/// `Qwen2_5_VLPatchMerger`: ln_q, then mlp = Sequential(Linear, GELU, Linear).
struct VisionMergerWeights {
    let lnQ: [Float]      // ln_q.weight [Dv]
    let mlp0: Weight      // mlp.0.weight [4·Dv, 4·Dv]
    let mlp0Bias: [Float]
    let mlp2: Weight      // mlp.2.weight [out, 4·Dv]
    let mlp2Bias: [Float]

    init(_ src: TensorSource, config c: VisionConfig) throws {
        let dv = c.hiddenSize, m = dv * c.mergeUnit, out = c.outHiddenSize
        lnQ = try src.vector("ln_q.weight", count: dv)
        let mlp = src.prefix("mlp")
        mlp0 = try mlp.matrix("0.weight", .linear(rows: m, cols: m))
        mlp0Bias = try mlp.vector("0.bias", count: m)
        mlp2 = try mlp.matrix("2.weight", .linear(rows: out, cols: m))
        mlp2Bias = try mlp.vector("2.bias", count: out)
    }
}

/// Activation buffers of one block, allocated once per forward.
struct BlockScratch {
    var normed: [Float]   // [N, Dv]
    var qkv: [Float]      // [N, 3·Dv]: q | k | v per row (heads × head_dim each)
    var attn: [Float]     // [N, Dv]
    var proj: [Float]     // [N, Dv]
    var gate: [Float]     // [chunk, I]
    var up: [Float]       // [chunk, I]
    var down: [Float]     // [chunk, Dv]
    let chunk: Int

    /// MLP rows per chunk: bounds the [rows, intermediate] buffers (3420 wide in the real model).
    static let mlpChunk = 512

    /// - Parameter gated: the MLP has an up projection beside the gate (Qwen2.5-VL's SwiGLU); Qwen3-VL's
    ///   fc1 → GELU → fc2 uses `gate` alone.
    init(patches n: Int, config c: VisionConfig, gated: Bool = true) {
        let dv = c.hiddenSize
        chunk = min(n, Self.mlpChunk)
        normed = [Float](repeating: 0, count: n * dv)
        qkv = [Float](repeating: 0, count: n * 3 * dv)
        attn = [Float](repeating: 0, count: n * dv)
        proj = [Float](repeating: 0, count: n * dv)
        gate = [Float](repeating: 0, count: chunk * c.intermediateSize)
        up = [Float](repeating: 0, count: gated ? chunk * c.intermediateSize : 0)
        down = [Float](repeating: 0, count: chunk * dv)
    }
}

extension BlockScratch {
    /// x += a block's MLP, in row chunks of `s.chunk`: `chunk(r0, rows, &s)` reads rows r0 ..< r0 + rows of
    /// `s.normed` and leaves its output [rows, Dv] in `s.down`.
    static func addMLP(to x: inout [Float], patches n: Int, hidden dv: Int, scratch s: inout BlockScratch,
                       _ chunk: (Int, Int, inout BlockScratch) -> Void) {
        var r0 = 0
        while r0 < n {
            let rows = min(s.chunk, n - r0)
            chunk(r0, rows, &s)
            x.withUnsafeMutableBufferPointer { xb in
                s.down.withUnsafeBufferPointer { db in
                    let dst = xb.baseAddress! + r0 * dv
                    for i in 0..<(rows * dv) { dst[i] += db[i] }
                }
            }
            r0 += rows
        }
    }
}

/// One vision block's weights (`visual.blocks.N`), from a source scoped to the block.
struct VisionBlockWeights {
    let norm1: [Float]         // norm1.weight [Dv]
    let norm2: [Float]         // norm2.weight [Dv]
    let attention: VisionAttention
    let gate: Weight           // mlp.gate_proj.weight [I, Dv]
    let gateBias: [Float]
    let up: Weight             // mlp.up_proj.weight [I, Dv]
    let upBias: [Float]
    let down: Weight           // mlp.down_proj.weight [Dv, I]
    let downBias: [Float]

    init(_ src: TensorSource, config c: VisionConfig) throws {
        let dv = c.hiddenSize, i = c.intermediateSize
        norm1 = try src.vector("norm1.weight", count: dv)
        norm2 = try src.vector("norm2.weight", count: dv)
        attention = try VisionAttention(src, hidden: dv)
        let mlp = src.prefix("mlp")
        gate = try mlp.matrix("gate_proj.weight", .linear(rows: i, cols: dv))
        gateBias = try mlp.vector("gate_proj.bias", count: i)
        up = try mlp.matrix("up_proj.weight", .linear(rows: i, cols: dv))
        upBias = try mlp.vector("up_proj.bias", count: i)
        down = try mlp.matrix("down_proj.weight", .linear(rows: dv, cols: i))
        downBias = try mlp.vector("down_proj.bias", count: dv)
    }

    /// x: [N, Dv] in window order, updated in place.
    func run(_ x: inout [Float], patches n: Int, cos: [Float], sin: [Float], segments: [Int32],
             scratch s: inout BlockScratch, config c: VisionConfig) {
        let dv = c.hiddenSize, inter = c.intermediateSize
        // attention: x += proj(attn(rope(qkv(norm1(x)))))
        qk_rmsnorm(x, norm1, Int64(n), Int64(dv), c.rmsNormEps, &s.normed)
        attention.add(to: &x, patches: n, cos: cos, sin: sin, segments: segments, scratch: &s, config: c)

        // MLP: x += down(silu(gate(norm2(x))) * up(norm2(x))), in row chunks
        qk_rmsnorm(x, norm2, Int64(n), Int64(dv), c.rmsNormEps, &s.normed)
        BlockScratch.addMLP(to: &x, patches: n, hidden: dv, scratch: &s) { r0, rows, s in
            s.normed.withUnsafeBufferPointer { xn in
                let xin = xn.baseAddress! + r0 * dv
                s.gate.withUnsafeMutableBufferPointer { g in gate.matmul(xin, rows: rows, bias: gateBias, into: g.baseAddress!) }
                s.up.withUnsafeMutableBufferPointer { u in up.matmul(xin, rows: rows, bias: upBias, into: u.baseAddress!) }
            }
            s.gate.withUnsafeMutableBufferPointer { g in
                s.up.withUnsafeBufferPointer { u in qk_silu_mul(g.baseAddress!, u.baseAddress!, Int64(rows * inter), g.baseAddress!) }
            }
            s.gate.withUnsafeBufferPointer { g in
                s.down.withUnsafeMutableBufferPointer { d in down.matmul(g.baseAddress!, rows: rows, bias: downBias, into: d.baseAddress!) }
            }
        }
    }
}

/// The attention half of a vision block, the same in both towers: from `scratch.normed` (the block's first
/// norm of x), x += proj(attention(rope(q), rope(k), v)) with fused qkv, biases, the 2-D rope and attention
/// only between patches of one segment (window or image).
struct VisionAttention {
    let qkv: Weight            // attn.qkv.weight [3·Dv, Dv] (q, k, v stacked along the rows)
    let qkvBias: [Float]       // attn.qkv.bias [3·Dv]
    let proj: Weight           // attn.proj.weight [Dv, Dv]
    let projBias: [Float]      // attn.proj.bias [Dv]

    /// Reads `attn.{qkv,proj}.{weight,bias}` from a source scoped to the block.
    init(_ src: TensorSource, hidden dv: Int) throws {
        let attn = src.prefix("attn")
        qkv = try attn.matrix("qkv.weight", .linear(rows: 3 * dv, cols: dv))
        qkvBias = try attn.vector("qkv.bias", count: 3 * dv)
        proj = try attn.matrix("proj.weight", .linear(rows: dv, cols: dv))
        projBias = try attn.vector("proj.bias", count: dv)
    }

    init(qkv: Weight, qkvBias: [Float], proj: Weight, projBias: [Float]) {
        self.qkv = qkv
        self.qkvBias = qkvBias
        self.proj = proj
        self.projBias = projBias
    }

    /// - Parameter wholeSegmentRows: segments this long or longer take `attendPerSegment` (tests pass 1 or
    ///   Int.max to compare the two paths).
    /// - Parameter bf16Dot: whole-image segments attend with bf16 dot products (`BF16KeysValues`), as under
    ///   --bf16-dot (tests pass it to compare the two paths in one process).
    func add(to x: inout [Float], patches n: Int, cos: [Float], sin: [Float], segments: [Int32],
             scratch s: inout BlockScratch, config c: VisionConfig, wholeSegmentRows: Int = VisionAttention.wholeSegmentRows,
             bf16Dot: Bool = qk_bf16_dot_active() != 0) {
        let dv = c.hiddenSize, heads = c.numHeads, hd = c.headDim
        s.normed.withUnsafeBufferPointer { xn in
            s.qkv.withUnsafeMutableBufferPointer { y in qkv.matmul(xn.baseAddress!, rows: n, bias: qkvBias, into: y.baseAddress!) }
        }
        s.qkv.withUnsafeMutableBufferPointer { q in
            let base = q.baseAddress!
            qk_rope(base, Int64(n), Int64(heads), Int64(hd), Int64(3 * dv), cos, sin)        // q
            qk_rope(base + dv, Int64(n), Int64(heads), Int64(hd), Int64(3 * dv), cos, sin)   // k
        }
        let runs = Self.runs(segments)
        if runs.allSatisfy({ $0.count >= wholeSegmentRows }) {
            attendPerSegment(runs, scratch: &s, config: c, bf16Dot: bf16Dot)
        } else {
            segments.withUnsafeBufferPointer { seg in
                var p = qk_attn_params(lq: Int64(n), lk: Int64(n), hq: Int64(heads), hkv: Int64(heads), d: Int64(hd),
                                       q_stride: Int64(3 * dv), k_stride: Int64(3 * dv), v_stride: Int64(3 * dv),
                                       o_stride: Int64(dv), scale: 1 / Float(hd).squareRoot(), causal: 0, q_offset: 0,
                                       kv_len: Int64(n), q_seg: seg.baseAddress, k_seg: seg.baseAddress)
                s.qkv.withUnsafeBufferPointer { q in
                    s.attn.withUnsafeMutableBufferPointer { o in
                        qk_attention(&p, q.baseAddress!, q.baseAddress! + dv, q.baseAddress! + 2 * dv, o.baseAddress!)
                    }
                }
            }
        }
        s.attn.withUnsafeBufferPointer { a in
            s.proj.withUnsafeMutableBufferPointer { y in proj.matmul(a.baseAddress!, rows: n, bias: projBias, into: y.baseAddress!) }
        }
        x.withUnsafeMutableBufferPointer { xb in
            s.proj.withUnsafeBufferPointer { pb in for i in 0..<(n * dv) { xb[i] += pb[i] } }
        }
    }

    /// Segments at least this long (whole images) are attended one image and head at a time.
    static let wholeSegmentRows = 256

    /// Query rows per chunk of the bf16 attention over `keys` patches: its scores [rows, keys] are
    /// materialised per thread, so at most 4 MiB of them (256 rows up to 4,096 patches, 64 at 16,384).
    static func dotChunkRows(keys: Int) -> Int { min(keys, max(64, min(256, (1 << 20) / max(keys, 1)))) }

    /// The runs of equal ids in `segments` (segments are contiguous): (first row, rows).
    static func runs(_ segments: [Int32]) -> [(start: Int, count: Int)] {
        var out: [(start: Int, count: Int)] = []
        var i = 0
        while i < segments.count {
            var j = i + 1
            while j < segments.count && segments[j] == segments[i] { j += 1 }
            out.append((i, j - i))
            i = j
        }
        return out
    }

    /// Full attention over whole images (Qwen3-VL's every block, Qwen2.5-VL's full-attention blocks): per image
    /// and head, that head's q, k and v are first copied into dense [rows, head_dim] buffers. In the fused qkv
    /// rows a head's 72 values sit 3·Dv floats apart (13.8 KB for Dv 1152), so every key of a piece was on
    /// its own page and the pieces of one row block walked all heads' keys: at 16,384 patches (a 2048²
    /// image) the kernel ran at half the rate it reaches on dense rows. The same keys per query, so the
    /// same result up to the order of the key tiles' sums. With `bf16Dot`: `attendPerSegmentBF16`.
    private func attendPerSegment(_ runs: [(start: Int, count: Int)], scratch s: inout BlockScratch, config c: VisionConfig,
                                  bf16Dot: Bool) {
        if bf16Dot { return attendPerSegmentBF16(runs, scratch: &s, config: c) }
        let dv = c.hiddenSize, hd = c.headDim
        let longest = runs.map(\.count).max() ?? 0
        // One head's q | k | v, each [rows, head_dim].
        let buf = UnsafeMutableBufferPointer<Float>.allocate(capacity: 3 * longest * hd)
        defer { buf.deallocate() }
        let q = buf.baseAddress!, k = q + longest * hd, v = k + longest * hd
        s.qkv.withUnsafeBufferPointer { src in
            s.attn.withUnsafeMutableBufferPointer { o in
                for run in runs {
                    for h in 0..<c.numHeads {
                        let first = src.baseAddress! + run.start * 3 * dv + h * hd
                        for r in 0..<run.count {
                            let row = first + r * 3 * dv
                            (q + r * hd).update(from: row, count: hd)
                            (k + r * hd).update(from: row + dv, count: hd)
                            (v + r * hd).update(from: row + 2 * dv, count: hd)
                        }
                        let dst = o.baseAddress! + run.start * dv + h * hd
                        var p = qk_attn_params(lq: Int64(run.count), lk: Int64(run.count), hq: 1, hkv: 1, d: Int64(hd),
                                               q_stride: Int64(hd), k_stride: Int64(hd), v_stride: Int64(hd),
                                               o_stride: Int64(dv), scale: 1 / Float(hd).squareRoot(), causal: 0,
                                               q_offset: 0, kv_len: Int64(run.count), q_seg: nil, k_seg: nil)
                        qk_attention(&p, q, k, v, dst)
                    }
                }
            }
        }
    }

    /// --bf16-dot: one pool task per (image, head), each on its thread's buffers with its kernels running
    /// serially there: the head's q | k | v copied dense, K and Vᵀ packed as bf16 (`BF16KeysValues`), then
    /// query chunks of `dotChunkRows` through the two bf16 dot products. Per-head tasks keep both threads
    /// busy through the packing and the many small products a per-chunk split would synchronise on (and
    /// cost about 2 × 19 MiB more than the f32 path at 16,384 patches, 2 × 8 MiB at 4,096).
    private func attendPerSegmentBF16(_ runs: [(start: Int, count: Int)], scratch s: inout BlockScratch, config c: VisionConfig) {
        let longest = runs.map(\.count).max() ?? 0
        let chunk = Self.dotChunkRows(keys: longest)
        s.qkv.withUnsafeBufferPointer { src in
            s.attn.withUnsafeMutableBufferPointer { o in
                let job = HeadJob(src: src.baseAddress!, out: o.baseAddress!, runs: runs, heads: c.numHeads, dv: c.hiddenSize,
                                  hd: c.headDim, longest: longest, chunk: chunk, threads: Int(qk_get_threads()))
                qk_parallel_for(Int64(runs.count * c.numHeads), { ctx, task, tid in
                    Unmanaged<HeadJob>.fromOpaque(ctx!).takeUnretainedValue().run(Int(task), thread: Int(tid))
                }, Unmanaged.passUnretained(job).toOpaque())
            }
        }
    }
}

/// The per-(image, head) tasks of `VisionAttention.attendPerSegmentBF16`, with one set of buffers per
/// pool thread.
private final class HeadJob {
    let src: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>
    let runs: [(start: Int, count: Int)]
    let heads: Int, dv: Int, hd: Int, chunk: Int
    /// Per thread: k | v [longest, hd] each, a chunk's queries and output [chunk, hd] each; the packed keys
    /// and values.
    let buffers: [UnsafeMutablePointer<Float>]
    let keysValues: [BF16KeysValues]
    let longest: Int

    init(src: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, runs: [(start: Int, count: Int)], heads: Int,
         dv: Int, hd: Int, longest: Int, chunk: Int, threads: Int) {
        self.src = src; self.out = out; self.runs = runs
        self.heads = heads; self.dv = dv; self.hd = hd; self.chunk = chunk; self.longest = longest
        buffers = (0..<threads).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: 2 * longest * hd + 2 * chunk * hd) }
        keysValues = (0..<threads).map { _ in BF16KeysValues(capacity: longest, dim: hd, queryRows: chunk) }
    }

    deinit { for b in buffers { b.deallocate() } }

    func run(_ task: Int, thread: Int) {
        let run = runs[task / heads], h = task % heads
        let k = buffers[thread], v = k + longest * hd, q = v + longest * hd, o = q + chunk * hd
        let first = src + run.start * 3 * dv + h * hd
        for r in 0..<run.count {
            let row = first + r * 3 * dv
            (k + r * hd).update(from: row + dv, count: hd)
            (v + r * hd).update(from: row + 2 * dv, count: hd)
        }
        let kv = keysValues[thread]
        kv.load(keys: k, keyStride: hd, values: v, valueStride: hd, rows: run.count)
        let dst = out + run.start * dv + h * hd
        for r0 in stride(from: 0, to: run.count, by: chunk) {
            let m = min(chunk, run.count - r0)
            for r in 0..<m { (q + r * hd).update(from: first + (r0 + r) * 3 * dv, count: hd) }
            kv.attend(q, m, o)
            for r in 0..<m { (dst + (r0 + r) * dv).update(from: o + r * hd, count: hd) }
        }
    }
}
