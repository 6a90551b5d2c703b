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

    /// Floats of working memory for a frame of `pixels` positions.
    static func workFloats(pixels: Int, dim: Int) -> Int { pixels * 2 * dim + 4 * min(pixels, chunkRows) * dim }

    /// x: [pixels, C], updated in place.
    func apply(_ x: UnsafeMutablePointer<Float>, pixels L: Int) {
        let c = dim
        let chunk = min(L, Self.chunkRows)
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
            r0 = 0
            while r0 < L {
                let m = min(chunk, L - r0)
                qk_l2norm(x + r0 * c, g.baseAddress, nil, Int64(m), Int64(c), n)
                conv1x1(wq, n, pixels: m, bias: bq, q)
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
                conv1x1(proj.w, o, pixels: m, bias: proj.bias, p)
                addInPlace(x + r0 * c, p, count: m * c)
                r0 += m
            }
        }
    }
}
