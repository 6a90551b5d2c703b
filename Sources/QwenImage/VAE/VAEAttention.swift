import Kernels
import Quant

/// The mid block's QwenImageAttentionBlock: x + proj(attention(to_qkv(norm(x)))), one head of width C over
/// the H·W positions of one frame (nothing attends across frames). It is the only layer that couples
/// distant pixels, so it runs on the whole frame at latent resolution, in place, between two tiled
/// segments. Keys and values are kept ([H·W, 2C]); queries are made and consumed in row chunks, so no
/// H·W × H·W matrix and no full query buffer exist.
final class MidAttention: @unchecked Sendable {
    let dim: Int
    let gamma: [Float]
    let wq: Weight, wkv: Weight
    let bq: [Float], bkv: [Float]
    let proj: Conv1
    static let chunkRows = 1024

    /// The attention kernel's widest head (`QK_ATTN_MAX_D`).
    static let maxDim = 4096

    init(_ src: TensorSource, dim: Int) throws {
        guard dim <= Self.maxDim else {
            throw QwenImageError.invalidInput("\(src.path): a mid-block attention over \(dim) channels; at most \(Self.maxDim) are supported")
        }
        self.dim = dim
        gamma = try VAENorm(src.prefix("norm"), dim: dim, images: true).gamma
        let toQKV = src.prefix("to_qkv")
        let qkv = try toQKV.matrix("weight", .conv1x1(cout: 3 * dim, cin: dim, spatialDims: 2))   // [3C, C, 1, 1]
        let b = try toQKV.vector("bias", count: 3 * dim)
        // Queries from rows [0, C), keys and values from rows [C, 3C) (upstream chunks the 3C outputs in
        // that order). Split into two f32 matrices: exact for f32 / bf16 / f16 packs (a bf16 pack's stay bf16
        // under --bf16-dot, as its other weights, for the bf16 dot product).
        let scheme = qk_bf16_dot_active() != 0 && qkv.raw.scheme == QK_BF16 ? QK_BF16 : QK_F32
        wq = try makeWeight(qkv.name + "[q]", try dequantRows(qkv, from: 0, count: dim), rows: dim, cols: dim, scheme: scheme)
        wkv = try makeWeight(qkv.name + "[kv]", try dequantRows(qkv, from: dim, count: 2 * dim), rows: 2 * dim, cols: dim, scheme: scheme)
        bq = Array(b[0..<dim])
        bkv = Array(b[dim..<(3 * dim)])
        proj = try Conv1(src.prefix("proj"), cin: dim, cout: dim, spatialDims: 2)
    }

    /// Floats of working memory for a frame of `pixels` positions (under --bf16-dot: also K and Vᵀ in bf16,
    /// a chunk's scores and the transposition rows).
    static func workFloats(pixels: Int, dim: Int) -> Int {
        guard qk_bf16_dot_active() != 0 else { return pixels * 2 * dim + 4 * min(pixels, chunkRows) * dim }
        let m = min(pixels, dotChunkRows)
        return pixels * 2 * dim + pixels * dim + m * pixels + 4 * m * dim + 16 * max(pixels, dim) + 64 * dim
    }

    /// Query rows per chunk under --bf16-dot: the chunk's scores [rows, pixels] are materialised (16 MiB at
    /// 128² latents).
    static let dotChunkRows = 256

    /// x: [pixels, C], updated in place.
    func apply(_ x: UnsafeMutablePointer<Float>, pixels L: Int) {
        let c = dim
        let dot = qk_bf16_dot_active() != 0
        let chunk = min(L, dot ? Self.dotChunkRows : Self.chunkRows)
        let kv = UnsafeMutablePointer<Float>.allocate(capacity: L * 2 * c)
        let n = UnsafeMutablePointer<Float>.allocate(capacity: chunk * c)
        let q = UnsafeMutablePointer<Float>.allocate(capacity: chunk * c)
        let o = UnsafeMutablePointer<Float>.allocate(capacity: chunk * c)
        let p = UnsafeMutablePointer<Float>.allocate(capacity: chunk * c)
        defer { kv.deallocate(); n.deallocate(); q.deallocate(); o.deallocate(); p.deallocate() }

        gamma.withUnsafeBufferPointer { g in
            var r0 = 0
            while r0 < L {
                let m = min(chunk, L - r0)
                qk_l2norm(x + r0 * c, g.baseAddress, nil, Int64(m), Int64(c), n)
                conv1x1(wkv, n, pixels: m, bias: bkv, kv + r0 * 2 * c)
                r0 += m
            }
            // The attention of m queries q [m, C] into o [m, C].
            let attend: (UnsafeMutablePointer<Float>, Int, UnsafeMutablePointer<Float>) -> Void
            if dot {
                attend = BF16KeysValues(kv: kv, pixels: L, dim: c, queryRows: chunk).attend
            } else {
                attend = { q, m, o in
                    var params = qk_attn_params()
                    params.lq = Int64(m); params.lk = Int64(L); params.hq = 1; params.hkv = 1; params.d = Int64(c)
                    params.q_stride = Int64(c); params.k_stride = Int64(2 * c); params.v_stride = Int64(2 * c)
                    params.o_stride = Int64(c)
                    params.scale = 1 / Float(c).squareRoot()
                    params.causal = 0
                    params.q_offset = 0
                    params.kv_len = Int64(L)
                    params.q_seg = nil
                    params.k_seg = nil
                    qk_attention(&params, q, kv, kv + c, o)
                }
            }
            r0 = 0
            while r0 < L {
                let m = min(chunk, L - r0)
                qk_l2norm(x + r0 * c, g.baseAddress, nil, Int64(m), Int64(c), n)
                conv1x1(wq, n, pixels: m, bias: bq, q)
                attend(q, m, o)
                conv1x1(proj.w, o, pixels: m, bias: proj.bias, p)
                addInPlace(x + r0 * c, p, count: m * c)
                r0 += m
            }
        }
    }
}

/// --bf16-dot: the keys K [pixels, C] and values (as Vᵀ [C, pixels]) of one frame packed as bf16 weights,
/// and the attention of a query chunk as two bf16 dot products, scores = (q / sqrt C)·Kᵀ and
/// out = softmax(scores)·V (queries, probabilities, K and V rounded to bf16, as PyTorch's bf16 attention;
/// sums in f32).
private final class BF16KeysValues {
    private let k: qk_weight, vt: qk_weight
    private let kbuf: UnsafeMutableRawPointer, vbuf: UnsafeMutableRawPointer
    private let scores: UnsafeMutablePointer<Float>
    private let dim: Int

    /// kv: [pixels, 2C], keys then values per pixel; queryRows: the most queries attend takes at once.
    init(kv: UnsafePointer<Float>, pixels L: Int, dim c: Int, queryRows: Int) {
        dim = c
        kbuf = UnsafeMutableRawPointer.allocate(byteCount: qk_weight_bytes(QK_BF16, 0, Int64(L), Int64(c)), alignment: 64)
        vbuf = UnsafeMutableRawPointer.allocate(byteCount: qk_weight_bytes(QK_BF16, 0, Int64(c), Int64(L)), alignment: 64)
        scores = UnsafeMutablePointer<Float>.allocate(capacity: queryRows * L)
        let rows = UnsafeMutablePointer<Float>.allocate(capacity: 16 * max(L, c))
        defer { rows.deallocate() }
        // K: 16 rows at a time out of [keys | values]; Vᵀ: 16 channels at a time, gathered over the pixels.
        for k0 in stride(from: 0, to: L, by: 16) {
            let nr = min(16, L - k0)
            for r in 0..<nr { (rows + r * c).update(from: kv + (k0 + r) * 2 * c, count: c) }
            qk_weight_pack_rows(QK_BF16, 0, Int64(L), Int64(c), Int64(k0), Int64(nr), rows, kbuf)
        }
        for c0 in stride(from: 0, to: c, by: 16) {
            let nr = min(16, c - c0)
            for i in 0..<L {
                let src = kv + i * 2 * c + c + c0
                for r in 0..<nr { rows[r * L + i] = src[r] }
            }
            qk_weight_pack_rows(QK_BF16, 0, Int64(c), Int64(L), Int64(c0), Int64(nr), rows, vbuf)
        }
        k = qk_weight(scheme: QK_BF16, group: 0, n: Int64(L), k: Int64(c), data: kbuf)
        vt = qk_weight(scheme: QK_BF16, group: 0, n: Int64(c), k: Int64(L), data: vbuf)
    }

    deinit { kbuf.deallocate(); vbuf.deallocate(); scores.deallocate() }

    /// o [m, C] = softmax((q / sqrt C)·Kᵀ)·V for the queries q [m, C] (scaled in place).
    func attend(_ q: UnsafeMutablePointer<Float>, _ m: Int, _ o: UnsafeMutablePointer<Float>) {
        let scale = 1 / Float(dim).squareRoot()
        for i in 0..<(m * dim) { q[i] *= scale }
        withUnsafePointer(to: k) { qk_matmul($0, q, Int64(m), nil, scores) }
        qk_softmax(scores, Int64(m), k.n)
        withUnsafePointer(to: vt) { qk_matmul($0, scores, Int64(m), nil, o) }
    }
}
