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
        return pixels * 2 * dim + BF16KeysValues.workFloats(rows: pixels, dim: dim, queryRows: m) + 4 * m * dim + 64 * dim
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
                attend = BF16KeysValues(keys: kv, keyStride: 2 * c, values: kv + c, valueStride: 2 * c, rows: L, dim: c,
                                         queryRows: chunk).attend
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
