import Foundation
import Kernels

// The shapes `qwen-bench ops` measures. Real model sizes:
//  - VAE (Qwen-Image, config base_dim 96, dim_mult [1, 2, 4, 4]): decoder convs at 384 channels on the
//    128^2 latent and 256^2, 192 at 512^2, 96 at 1024^2 for a 1024x1024 image; the encoder's stride-2
//    downsampler (pad right/bottom by one); mid-block attention: one head, d = 384, over 128^2 positions.
//  - Vision tower (Qwen2.5-VL): 16 heads, d = 80; window attention over 64-token windows and full
//    attention, 5184 patches (a 1008x1008 image).
//  - Text model: 28 query heads, 4 kv heads, d = 128, causal, L = 256 / 1024.

struct OpsCase {
    let group: String, name: String, shape: String
    let flops: Double   // 0 for memory-bound ops
    let bytes: Double   // bytes read + written (0 when not meaningful)
    let setup: () -> OpsRun
}

struct OpsRun {
    let body: () -> Void
    let teardown: () -> Void
}

/// 64-byte aligned floats filled with a cheap deterministic pattern in [-1, 1).
private func opsBuffer(_ n: Int, seed: UInt32 = 1) -> UnsafeMutablePointer<Float> {
    let p = UnsafeMutableRawPointer.allocate(byteCount: max(n, 1) * 4, alignment: 64).bindMemory(to: Float.self, capacity: max(n, 1))
    var s = seed &* 2_654_435_761 | 1
    for i in 0..<n {
        s = s &* 1_664_525 &+ 1_013_904_223
        p[i] = Float(Int32(bitPattern: s) >> 8) / Float(1 << 23)
    }
    return p
}

private final class OpsWeight {
    let raw: UnsafeMutableRawPointer
    var w: qk_weight
    init(scheme: qk_scheme, n: Int, k: Int) {
        let values = opsBuffer(n * k, seed: 7)
        defer { values.deallocate() }
        let bytes = qk_weight_bytes(scheme, 0, Int64(n), Int64(k))
        raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        _ = qk_weight_pack_rows(scheme, 0, Int64(n), Int64(k), 0, Int64(n), values, raw)
        w = qk_weight(scheme: scheme, group: 0, n: Int64(n), k: Int64(k), data: UnsafeRawPointer(raw))
    }
    deinit { raw.deallocate() }
}

private func convCase(_ name: String, h: Int, cin: Int, cout: Int, stride: Int32 = 1, scheme: qk_scheme = QK_F32) -> OpsCase {
    let down = stride == 2
    let pads: (Int32, Int32, Int32, Int32) = down ? (0, 1, 0, 1) : (1, 1, 1, 1)
    let oh = (h + Int(pads.0 + pads.1) - 3) / Int(stride) + 1
    let schemeName = ["f32", "bf16", "f16", "q8", "q4"][Int(scheme.rawValue)]
    return OpsCase(group: "conv3x3", name: name, shape: "\(h)x\(h)x\(cin) -> \(oh)x\(oh)x\(cout), stride \(stride), \(schemeName)",
                   flops: 2.0 * Double(oh * oh * cout) * Double(9 * cin), bytes: 0) {
        let x = opsBuffer(h * h * cin), y = opsBuffer(oh * oh * cout), bias = opsBuffer(cout)
        let wt = OpsWeight(scheme: scheme, n: cout, k: 9 * cin)
        let p = UnsafeMutablePointer<qk_conv_params>.allocate(capacity: 1)
        p.pointee = qk_conv_params(h: Int64(h), w: Int64(h), cin: Int64(cin), cout: Int64(cout), stride: stride,
                                   pad_t: pads.0, pad_b: pads.1, pad_l: pads.2, pad_r: pads.3, accumulate: 0)
        return OpsRun(body: { withUnsafePointer(to: &wt.w) { qk_conv3x3(p, $0, x, bias, y) } },
                      teardown: { x.deallocate(); y.deallocate(); bias.deallocate(); p.deallocate(); _ = wt })
    }
}

/// segments: lengths of consecutive windows (nil = one segment).
private func attnCase(_ name: String, l: Int, hq: Int, hkv: Int, d: Int, causal: Bool = false, windows: [Int]? = nil) -> OpsCase {
    var pairs = Double(l) * Double(l)
    if causal { pairs = Double(l) * Double(l + 1) / 2 }
    if let w = windows { pairs = w.reduce(0.0) { $0 + Double($1) * Double($1) } }
    let shape = "L=\(l), \(hq)/\(hkv) heads, d=\(d)" + (causal ? ", causal" : "") + (windows.map { ", \($0.count) windows" } ?? "")
    return OpsCase(group: "attention", name: name, shape: shape, flops: 4.0 * Double(d * hq) * pairs, bytes: 0) {
        let q = opsBuffer(l * hq * d, seed: 1), k = opsBuffer(l * hkv * d, seed: 2), v = opsBuffer(l * hkv * d, seed: 3)
        let o = opsBuffer(l * hq * d)
        let seg = UnsafeMutablePointer<Int32>.allocate(capacity: l)
        if let w = windows {
            var i = 0
            for (n, len) in w.enumerated() { for _ in 0..<len { seg[i] = Int32(n); i += 1 } }
        }
        let p = UnsafeMutablePointer<qk_attn_params>.allocate(capacity: 1)
        p.pointee = qk_attn_params(lq: Int64(l), lk: Int64(l), hq: Int64(hq), hkv: Int64(hkv), d: Int64(d),
                                   q_stride: Int64(hq * d), k_stride: Int64(hkv * d), v_stride: Int64(hkv * d),
                                   o_stride: Int64(hq * d), scale: 1 / Float(d).squareRoot(), causal: causal ? 1 : 0,
                                   q_offset: 0, kv_len: Int64(l), q_seg: windows == nil ? nil : UnsafePointer(seg),
                                   k_seg: windows == nil ? nil : UnsafePointer(seg))
        return OpsRun(body: { qk_attention(p, q, k, v, o) },
                      teardown: { q.deallocate(); k.deallocate(); v.deallocate(); o.deallocate(); seg.deallocate(); p.deallocate() })
    }
}

private func memCase(_ group: String, _ name: String, _ shape: String, n: Int, m: Int, bytes: Double,
                     _ body: @escaping (UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) -> OpsCase {
    OpsCase(group: group, name: name, shape: shape, flops: 0, bytes: bytes) {
        let a = opsBuffer(n, seed: 4), b = opsBuffer(n, seed: 5), w = opsBuffer(m, seed: 6)
        return OpsRun(body: { body(a, b, w) }, teardown: { a.deallocate(); b.deallocate(); w.deallocate() })
    }
}

func opsBenchCases(quick: Bool) -> [OpsCase] {
    var c: [OpsCase] = []
    // ---- conv3x3 (VAE) ----
    if quick {
        c.append(convCase("vae 384ch", h: 64, cin: 384, cout: 384))
        c.append(convCase("vae 192ch", h: 128, cin: 192, cout: 192))
        c.append(convCase("vae 96ch", h: 256, cin: 96, cout: 96))
        c.append(convCase("vae 96ch down", h: 256, cin: 96, cout: 96, stride: 2))
    } else {
        c.append(convCase("vae 384ch latent", h: 128, cin: 384, cout: 384))
        c.append(convCase("vae 384ch", h: 256, cin: 384, cout: 384))
        c.append(convCase("vae 384->192 up", h: 256, cin: 384, cout: 192))
        c.append(convCase("vae 192ch", h: 512, cin: 192, cout: 192))
        c.append(convCase("vae 96ch", h: 1024, cin: 96, cout: 96))
        c.append(convCase("vae 96ch down", h: 1024, cin: 96, cout: 96, stride: 2))
        c.append(convCase("vae 384ch bf16", h: 256, cin: 384, cout: 384, scheme: QK_BF16))
        c.append(convCase("vae 384ch q8", h: 256, cin: 384, cout: 384, scheme: QK_Q8))
    }
    // ---- attention ----
    let vis = quick ? 1296 : 5184
    c.append(attnCase("vision window", l: vis, hq: 16, hkv: 16, d: 80, windows: [Int](repeating: 64, count: vis / 64) + (vis % 64 > 0 ? [vis % 64] : [])))
    c.append(attnCase("vision full", l: vis, hq: 16, hkv: 16, d: 80))
    c.append(attnCase("vae mid-block", l: quick ? 4096 : 16384, hq: 1, hkv: 1, d: 384))
    c.append(attnCase("text prefill", l: 256, hq: 28, hkv: 4, d: 128, causal: true))
    if !quick { c.append(attnCase("text prefill", l: 1024, hq: 28, hkv: 4, d: 128, causal: true)) }
    // ---- row / element-wise (memory-bound: GB/s) ----
    let tok = quick ? 256 : 1024
    c.append(memCase("rows", "rmsnorm", "\(tok)x3584", n: tok * 3584, m: 3584, bytes: Double(tok * 3584 * 8)) { a, b, w in
        qk_rmsnorm(a, w, Int64(tok), 3584, 1e-6, b) })
    let pix = quick ? 128 * 128 : 512 * 512
    c.append(memCase("rows", "l2norm (vae)", "\(pix)x96", n: pix * 96, m: 96, bytes: Double(pix * 96 * 8)) { a, b, w in
        qk_l2norm(a, w, nil, Int64(pix), 96, b) })
    c.append(memCase("rows", "softmax", "\(28 * tok)x\(tok)", n: 28 * tok * tok, m: 1, bytes: Double(28 * tok * tok * 8)) { a, _, _ in
        qk_softmax(a, Int64(28 * tok), Int64(tok)) })
    c.append(memCase("elementwise", "silu_mul", "\(tok)x18944", n: tok * 18944, m: 1, bytes: Double(tok * 18944 * 12)) { a, b, _ in
        qk_silu_mul(a, b, Int64(tok * 18944), b) })
    c.append(memCase("elementwise", "gelu_erf", "\(tok)x5120", n: tok * 5120, m: 1, bytes: Double(tok * 5120 * 8)) { a, _, _ in
        qk_gelu_erf(a, Int64(tok * 5120)) })
    c.append(memCase("elementwise", "silu (vae)", "\(pix)x96", n: pix * 96, m: 1, bytes: Double(pix * 96 * 8)) { a, _, _ in
        qk_silu(a, Int64(pix * 96)) })
    c.append(memCase("rope", "rope text", "\(tok)x28x128", n: tok * 28 * 128, m: tok * 64, bytes: Double(tok * 28 * 128 * 8)) { a, _, w in
        qk_rope(a, Int64(tok), 28, 128, 28 * 128, w, w) })
    let up = quick ? 128 : 256
    c.append(memCase("upsample", "upsample2x", "\(up)x\(up)x384", n: 4 * up * up * 384, m: 1, bytes: Double(up * up * 384 * 4 * 5)) { a, b, _ in
        qk_upsample2x(a, Int64(up), Int64(up), 384, b) })
    let cn = quick ? 1 << 22 : 1 << 24
    c.append(memCase("convert", "bf16 -> f32", "\(cn)", n: cn, m: 1, bytes: Double(cn * 6)) { a, b, _ in
        a.withMemoryRebound(to: UInt16.self, capacity: cn) { qk_bf16_to_f32($0, Int64(cn), b) } })
    c.append(memCase("convert", "f32 -> f16", "\(cn)", n: cn, m: 1, bytes: Double(cn * 6)) { a, b, _ in
        b.withMemoryRebound(to: UInt16.self, capacity: cn) { qk_f32_to_f16(a, Int64(cn), $0) } })
    return c
}
