import Foundation
import Kernels
import Quant

/// What the Qwen3-VL vision tower gives the language model for a set of images.
public struct VisionFeatures: Sendable {
    /// `pooler_output`: the merger's rows [tokens, out_hidden], one per 2×2 unit, images in order.
    public var embeds: [Float]
    /// The DeepStack mergers' rows, each [tokens, out_hidden]; entry k is added to the output of
    /// language-model layer k at the image rows.
    public var deepstack: [[Float]]
    public let outHidden: Int
    public var tokens: Int { embeds.count / max(1, outHidden) }
}

/// The Qwen3-VL vision tower (transformers 5.25 `Qwen3VLVisionModel`), streamed from a pack one shard at
/// a time like the Qwen2.5-VL one (`VisionTower`), for Qwen-Image 2.1's reference images.
///
/// forward: pixel_values [N, 1536] (16-px patches, processor order: 2×2 units consecutive)
///   -> patch embedding (the Conv3d with bias as a matrix product)                  [N, Dv]
///   -> + the learned 48×48 position table resampled bilinearly (align_corners) to each image's grid
///   -> depth × block: x += proj(attn(rope(qkv(LN1(x))))); x += fc2(gelu_tanh(fc1(LN2(x))))
///      full attention within each image (no windows), 2-D rope on (row, col)
///      after the blocks in `deepstack_visual_indexes`: a DeepStack merger
///      (4 patches of a unit concatenated, LayerNorm(4·Dv), fc1, GELU (erf), fc2) taps x
///   -> merger: LayerNorm(Dv) per patch, 4 concatenated, fc1, GELU (erf), fc2      [N/4, out_hidden]
public final class Qwen3VisionTower: @unchecked Sendable {
    public let config: VisionConfig
    let parts: Qwen3VisionSources<PackTensorSource>

    /// Opens the vision tower of a pack's Qwen3-VL `text_encoder`.
    public init(pack: Pack) throws {
        guard pack.hasComponent("text_encoder") else {
            throw QwenImageError.missingComponent(pack: pack.path, component: "text_encoder",
                                                  hint: "Convert a checkpoint that has a text_encoder (with its vision tower).")
        }
        let component = try pack.component("text_encoder")
        config = try VisionConfig.fromTextEncoderConfig(component.configData(), file: pack.path + "/text_encoder/config.json")
        guard config.family == .qwen3vl else {
            throw QwenImageError.config(file: pack.path + "/text_encoder/config.json",
                                        message: "the vision tower is a Qwen2.5-VL one, not Qwen3-VL (use VisionTower)")
        }
        parts = Qwen3VisionSources(root: PackTensorSource(component: component), config: config)
        guard !parts.patchEmbed.isEmpty else {
            throw QwenImageError.missingComponent(pack: pack.path, component: "vision tower (text_encoder visual.*)",
                                                  hint: "Reference images need the Qwen3-VL vision tower: convert the text "
                                                  + "encoder with its visual.* tensors (qwen-quant from this version on keeps them).")
        }
    }

    /// Asks `source` (scoped to the checkpoint root) for every weight of the tower once, as `forward` does.
    public static func requestWeights<S: TensorSource>(config c: VisionConfig, from source: S) throws {
        let p = Qwen3VisionSources(root: source, config: c)
        _ = try p.embedding(c)
        for b in 0..<c.depth { _ = try Qwen3VisionBlockWeights(p.blocks.prefix(b), config: c) }
        _ = try PatchMergerWeights(p.merger, config: c, postShuffleNorm: false)
        for d in p.deepstack { _ = try PatchMergerWeights(d, config: c, postShuffleNorm: true) }
    }

    /// Intermediate tensors for tests: `patch_embed` (after the position table), `block{i}`, `deepstack{k}`.
    public typealias Trace = (String, [Float]) -> Void

    /// Runs the tower on `pixelValues` `[N, patchFeatures]` for images of the given grids (in patches).
    /// - Parameter onBlock: called after each block (progress), with the block index.
    public func forward(pixelValues: [Float], grids: [(t: Int, h: Int, w: Int)], trace: Trace? = nil,
                        onBlock: ((Int) -> Void)? = nil) throws -> VisionFeatures {
        let c = config
        let layout = try PatchLayout(grids: grids, mergeSize: c.spatialMergeSize)
        let n = layout.patchCount, dv = c.hiddenSize, feat = c.patchFeatures
        guard n > 0, pixelValues.count == n * feat else {
            throw QwenImageError.invalidInput("pixel_values: expected \(n) x \(feat) values for grids "
                                              + "\(grids.map { [$0.t, $0.h, $0.w] }), found \(pixelValues.count)")
        }

        // MARK: patch embedding + learned positions  [N, 1536] -> [N, Dv]
        parts.blocks.prefix(0).prefetch()
        var hidden = [Float](repeating: 0, count: n * dv)
        do {
            defer { parts.patchEmbed.release(); parts.posEmbed.release() }
            let (w, bias, table) = try parts.embedding(c)
            pixelValues.withUnsafeBufferPointer { x in
                hidden.withUnsafeMutableBufferPointer { y in w.matmul(x.baseAddress!, rows: n, bias: bias, into: y.baseAddress!) }
            }
            layout.addInterpolatedPositions(table, side: c.positionGridSide, dim: dv, to: &hidden)
        }
        trace?("patch_embed", hidden)

        // MARK: rope tables and per-image segments
        let hd = c.headDim
        var cos = [Float](repeating: 0, count: n * hd / 2)
        var sin = [Float](repeating: 0, count: n * hd / 2)
        qk_rope_table_2d(layout.row, layout.col, Int64(n), Int64(hd), c.ropeTheta, &cos, &sin)

        // MARK: blocks, with the DeepStack taps
        var deepstack = [[Float]](repeating: [], count: c.deepstackVisualIndexes.count)
        var scratch = BlockScratch(patches: n, config: c, gated: false)
        for b in 0..<c.depth {
            if b + 1 < c.depth { parts.blocks.prefix(b + 1).prefetch() } else { parts.merger.prefetch() }
            let tap = c.deepstackVisualIndexes.firstIndex(of: b)
            if let tap { parts.deepstack[tap].prefetch() }
            let blockSource = parts.blocks.prefix(b)
            do {
                defer { blockSource.release() }
                let block = try Qwen3VisionBlockWeights(blockSource, config: c)
                block.run(&hidden, patches: n, cos: cos, sin: sin, segments: layout.segments, scratch: &scratch, config: c)
            }
            trace?("block\(b)", hidden)
            if let tap {
                defer { parts.deepstack[tap].release() }
                deepstack[tap] = try PatchMergerWeights(parts.deepstack[tap], config: c, postShuffleNorm: true).run(hidden, patches: n)
                trace?("deepstack\(tap)", deepstack[tap])
            }
            onBlock?(b)
        }
        scratch = BlockScratch(patches: 0, config: c, gated: false)  // free before the merger

        // MARK: merger  [N, Dv] -> [N/4, out]
        defer { parts.merger.release() }
        let embeds = try PatchMergerWeights(parts.merger, config: c, postShuffleNorm: false).run(hidden, patches: n)
        return VisionFeatures(embeds: embeds, deepstack: deepstack, outHidden: c.outHiddenSize)
    }
}

// MARK: - Patch bookkeeping

/// Per patch of a set of images, in processor order (2×2 merge units consecutive, units row-major): its
/// (row, col) in its image, its image's grid and its attention segment (one per image frame). Pure
/// functions of the grids (transformers `vision_utils.get_vision_position_ids`, `get_vision_cu_seqlens`,
/// `get_vision_interpolation_indices_and_weights`).
struct PatchLayout {
    var row: [Int64] = []
    var col: [Int64] = []
    var gridH: [Int32] = []
    var gridW: [Int32] = []
    var segments: [Int32] = []
    var patchCount: Int { row.count }

    init(grids: [(t: Int, h: Int, w: Int)], mergeSize m: Int) throws {
        var segment: Int32 = 0
        for (k, g) in grids.enumerated() {
            guard g.t > 0, g.h > 0, g.w > 0, g.h % m == 0, g.w % m == 0 else {
                throw QwenImageError.invalidInput("image \(k): grid (t, h, w) = (\(g.t), \(g.h), \(g.w)) patches; h and w "
                                                  + "must be positive multiples of the merge size \(m)")
            }
            for _ in 0..<g.t {
                for bh in 0..<(g.h / m) {
                    for bw in 0..<(g.w / m) {
                        for mh in 0..<m {
                            for mw in 0..<m {
                                row.append(Int64(bh * m + mh)); col.append(Int64(bw * m + mw))
                                gridH.append(Int32(g.h)); gridW.append(Int32(g.w)); segments.append(segment)
                            }
                        }
                    }
                }
                segment += 1
            }
        }
    }

    /// x[p] += the position table `[side·side, dim]` resampled to patch p's grid: bilinear with
    /// align_corners, border taps clamped, in f32 as transformers computes it (source coordinate
    /// `i·(side−1) / max(size−1, 1)`, weights `max(0, 1 − |src − tap|)`, the 2-D weight their product,
    /// the four weighted rows summed in tap order).
    func addInterpolatedPositions(_ table: [Float], side: Int, dim: Int, to x: inout [Float]) {
        func taps(_ index: Int64, _ size: Int32) -> (i0: Int, i1: Int, w0: Float, w1: Float) {
            let src = Float(index) * Float(side - 1) / Float(max(size - 1, 1))
            let f = src.rounded(.down)
            let d0 = src - f, d1 = abs(src - f - 1)
            let i0 = min(max(Int(f), 0), side - 1), i1 = min(max(Int(f) + 1, 0), side - 1)
            return (i0, i1, max(0, 1 - d0), max(0, 1 - d1))
        }
        table.withUnsafeBufferPointer { t in
            x.withUnsafeMutableBufferPointer { xb in
                for p in 0..<patchCount {
                    let h = taps(row[p], gridH[p]), w = taps(col[p], gridW[p])
                    let r0 = t.baseAddress! + (h.i0 * side + w.i0) * dim, r1 = t.baseAddress! + (h.i0 * side + w.i1) * dim
                    let r2 = t.baseAddress! + (h.i1 * side + w.i0) * dim, r3 = t.baseAddress! + (h.i1 * side + w.i1) * dim
                    let w0 = h.w0 * w.w0, w1 = h.w0 * w.w1, w2 = h.w1 * w.w0, w3 = h.w1 * w.w1
                    let dst = xb.baseAddress! + p * dim
                    for j in 0..<dim { dst[j] += ((r0[j] * w0 + r1[j] * w1) + r2[j] * w2) + r3[j] * w3 }
                }
            }
        }
    }
}

// MARK: - Weights

/// Where the parts of `Qwen3VLVisionModel` live under a source scoped to the checkpoint root (hub names:
/// `visual.patch_embed`, `visual.pos_embed`, `visual.blocks.N`, `visual.merger`,
/// `visual.deepstack_merger_list.K`).
struct Qwen3VisionSources<Source: TensorSource> {
    let patchEmbed: Source
    let posEmbed: Source
    let blocks: Source
    let merger: Source
    let deepstack: [Source]

    init(root: Source, config c: VisionConfig) {
        let visual = root.prefix("visual")
        patchEmbed = visual.prefix("patch_embed")
        posEmbed = visual.prefix("pos_embed")
        blocks = visual.prefix("blocks")
        merger = visual.prefix("merger")
        deepstack = c.deepstackVisualIndexes.indices.map { visual.prefix("deepstack_merger_list").prefix($0) }
    }

    /// `patch_embed.proj` (the Conv3d kernel [Dv, C, T, P, P] as [Dv, C·T·P·P], and its bias) and the
    /// position table `pos_embed.weight` [side², Dv].
    func embedding(_ c: VisionConfig) throws -> (weight: Weight, bias: [Float], table: [Float]) {
        let w = try patchEmbed.matrix("proj.weight", .flattened([c.hiddenSize, c.inChannels, c.temporalPatchSize,
                                                                 c.patchSize, c.patchSize]))
        let b = try patchEmbed.vector("proj.bias", count: c.hiddenSize)
        let t = try posEmbed.vector("weight", shape: [c.numPositionEmbeddings, c.hiddenSize])
        return (w, b, t)
    }
}

/// `Qwen3VLVisionPatchMerger`: LayerNorm (eps 1e-6) per patch (`postShuffleNorm` false: the final merger)
/// or on the 4 concatenated patches (true: the DeepStack mergers), then fc1, GELU (erf), fc2.
struct PatchMergerWeights {
    let norm: [Float], normBias: [Float]
    let fc1: Weight, fc1Bias: [Float]
    let fc2: Weight, fc2Bias: [Float]
    let postShuffleNorm: Bool
    let unit: Int, dv: Int, out: Int

    init(_ src: TensorSource, config c: VisionConfig, postShuffleNorm: Bool) throws {
        dv = c.hiddenSize
        unit = c.mergeUnit
        out = c.outHiddenSize
        self.postShuffleNorm = postShuffleNorm
        let m = dv * unit, normDim = postShuffleNorm ? m : dv
        norm = try src.vector("norm.weight", count: normDim)
        normBias = try src.vector("norm.bias", count: normDim)
        fc1 = try src.matrix("linear_fc1.weight", .linear(rows: m, cols: m))
        fc1Bias = try src.vector("linear_fc1.bias", count: m)
        fc2 = try src.matrix("linear_fc2.weight", .linear(rows: out, cols: m))
        fc2Bias = try src.vector("linear_fc2.bias", count: out)
    }

    /// x: [N, Dv] in processor order -> [N / 4, out].
    func run(_ x: [Float], patches n: Int) -> [Float] {
        let units = n / unit, m = dv * unit
        var normed = [Float](repeating: 0, count: n * dv)
        if postShuffleNorm {
            qk_layernorm(x, norm, normBias, Int64(units), Int64(m), 1e-6, &normed)
        } else {
            qk_layernorm(x, norm, normBias, Int64(n), Int64(dv), 1e-6, &normed)
        }
        var mid = [Float](repeating: 0, count: units * m)
        normed.withUnsafeBufferPointer { a in
            mid.withUnsafeMutableBufferPointer { y in fc1.matmul(a.baseAddress!, rows: units, bias: fc1Bias, into: y.baseAddress!) }
        }
        normed = []
        qk_gelu_erf(&mid, Int64(mid.count))
        var y = [Float](repeating: 0, count: units * out)
        mid.withUnsafeBufferPointer { a in
            y.withUnsafeMutableBufferPointer { o in fc2.matmul(a.baseAddress!, rows: units, bias: fc2Bias, into: o.baseAddress!) }
        }
        return y
    }
}

/// One Qwen3-VL block (`visual.blocks.N`): LayerNorms with bias, the shared attention, fc1 → GELU-tanh → fc2.
struct Qwen3VisionBlockWeights {
    let norm1: [Float], norm1Bias: [Float]
    let norm2: [Float], norm2Bias: [Float]
    let attention: VisionAttention
    let fc1: Weight, fc1Bias: [Float]   // mlp.linear_fc1 [I, Dv]
    let fc2: Weight, fc2Bias: [Float]   // mlp.linear_fc2 [Dv, I]

    init(_ src: TensorSource, config c: VisionConfig) throws {
        let dv = c.hiddenSize, i = c.intermediateSize
        norm1 = try src.vector("norm1.weight", count: dv)
        norm1Bias = try src.vector("norm1.bias", count: dv)
        norm2 = try src.vector("norm2.weight", count: dv)
        norm2Bias = try src.vector("norm2.bias", count: dv)
        attention = try VisionAttention(src, hidden: dv)
        let mlp = src.prefix("mlp")
        fc1 = try mlp.matrix("linear_fc1.weight", .linear(rows: i, cols: dv))
        fc1Bias = try mlp.vector("linear_fc1.bias", count: i)
        fc2 = try mlp.matrix("linear_fc2.weight", .linear(rows: dv, cols: i))
        fc2Bias = try mlp.vector("linear_fc2.bias", count: dv)
    }

    /// x: [N, Dv] in processor order, updated in place.
    func run(_ x: inout [Float], patches n: Int, cos: [Float], sin: [Float], segments: [Int32],
             scratch s: inout BlockScratch, config c: VisionConfig) {
        let dv = c.hiddenSize, inter = c.intermediateSize
        qk_layernorm(x, norm1, norm1Bias, Int64(n), Int64(dv), 1e-6, &s.normed)
        attention.add(to: &x, patches: n, cos: cos, sin: sin, segments: segments, scratch: &s, config: c)

        qk_layernorm(x, norm2, norm2Bias, Int64(n), Int64(dv), 1e-6, &s.normed)
        BlockScratch.addMLP(to: &x, patches: n, hidden: dv, scratch: &s) { r0, rows, s in
            s.normed.withUnsafeBufferPointer { xn in
                s.gate.withUnsafeMutableBufferPointer { g in
                    fc1.matmul(xn.baseAddress! + r0 * dv, rows: rows, bias: fc1Bias, into: g.baseAddress!)
                }
            }
            qk_gelu_tanh(&s.gate, Int64(rows * inter))
            s.gate.withUnsafeBufferPointer { g in
                s.down.withUnsafeMutableBufferPointer { d in fc2.matmul(g.baseAddress!, rows: rows, bias: fc2Bias, into: d.baseAddress!) }
            }
        }
    }
}
