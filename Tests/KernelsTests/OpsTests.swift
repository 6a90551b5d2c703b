import Foundation
import Kernels
import Testing

// Element-wise, row, rope and upsampling kernels: every SIMD tier against the scalar twin at tail sizes,
// with unaligned pointers (offset by one float), and the public entry points against direct formulas.

#if arch(x86_64)
private func pick<T>(_ tier: String, _ avx2: T, _ avx512: T) -> T { tier == "avx2" ? avx2 : avx512 }
#endif

/// Runs `f` on a copy of `input` that starts one float past a 64-byte boundary and returns the result.
private func unaligned(_ input: [Float], _ f: (UnsafeMutablePointer<Float>) -> Void) -> [Float] {
    var buf = [Float](repeating: 0, count: input.count + 17)
    return buf.withUnsafeMutableBufferPointer { b in
        let p = b.baseAddress! + 1
        for i in 0..<input.count { p[i] = input[i] }
        f(p)
        return Array(UnsafeBufferPointer(start: p, count: input.count))
    }
}

@Suite struct OpsTests {
    #if arch(x86_64)
    @Test func elementwiseTiersMatchRef() {
        var rng = OpsRng(1)
        for tier in simdTiers() {
            for n in tailSizes {
                let x = rng.floats(n, scale: 12), up = rng.floats(n, scale: 2)
                let siluRef = unaligned(x) { qk_silu_ref($0, Int64(n)) }
                let silu = unaligned(x) { pick(tier, qk_silu_avx2, qk_silu_avx512)($0, Int64(n)) }
                #expect(tolRatio(silu, siluRef, abs: OpsTolerance.elementAbs, rel: OpsTolerance.elementRel) <= 1,
                        "silu \(tier) n=\(n)")
                let geluRef = unaligned(x) { qk_gelu_erf_ref($0, Int64(n)) }
                let gelu = unaligned(x) { pick(tier, qk_gelu_erf_avx2, qk_gelu_erf_avx512)($0, Int64(n)) }
                let geluAbs = OpsTolerance.elementAbs * 12  // ref's 1 + erf cancels: an ulp of 1 times |x|
                #expect(tolRatio(gelu, geluRef, abs: geluAbs, rel: OpsTolerance.elementRel) <= 1, "gelu \(tier) n=\(n)")
                let tanhRef = unaligned(x) { qk_gelu_tanh_ref($0, Int64(n)) }
                let tanhSIMD = unaligned(x) { pick(tier, qk_gelu_tanh_avx2, qk_gelu_tanh_avx512)($0, Int64(n)) }
                #expect(tolRatio(tanhSIMD, tanhRef, abs: geluAbs, rel: OpsTolerance.elementRel) <= 1, "gelu_tanh \(tier) n=\(n)")
                var out = [Float](repeating: 0, count: n), outRef = out
                qk_silu_mul_ref(x, up, Int64(n), &outRef)
                let upU = unaligned(up) { _ in }
                _ = unaligned(x) { g in
                    upU.withUnsafeBufferPointer { u in pick(tier, qk_silu_mul_avx2, qk_silu_mul_avx512)(g, u.baseAddress, Int64(n), &out) }
                }
                #expect(tolRatio(out, outRef, abs: OpsTolerance.elementAbs, rel: OpsTolerance.elementRel) <= 1,
                        "silu_mul \(tier) n=\(n)")
            }
        }
    }

    @Test func rowTiersMatchRef() {
        var rng = OpsRng(2)
        for tier in simdTiers() {
            for dim in tailSizes {
                let rows = 3
                let x = rng.floats(rows * dim, scale: 3), w = rng.floats(dim), b = rng.floats(dim)
                var y = [Float](repeating: 0, count: rows * dim), yRef = y
                qk_rmsnorm_ref(x, w, Int64(rows), Int64(dim), 1e-6, &yRef)
                _ = unaligned(x) { p in pick(tier, qk_rmsnorm_avx2, qk_rmsnorm_avx512)(p, w, Int64(rows), Int64(dim), 1e-6, &y) }
                #expect(tolRatio(y, yRef, abs: OpsTolerance.normAbs, rel: OpsTolerance.normRel) <= 1, "rmsnorm \(tier) dim=\(dim)")
                // LayerNorm on rows with a large common offset (the mean must be taken out before the variance).
                let shifted = x.map { $0 + 40 }
                qk_layernorm_ref(shifted, w, b, Int64(rows), Int64(dim), 1e-6, &yRef)
                _ = unaligned(shifted) { p in
                    pick(tier, qk_layernorm_avx2, qk_layernorm_avx512)(p, w, b, Int64(rows), Int64(dim), 1e-6, &y)
                }
                #expect(tolRatio(y, yRef, abs: OpsTolerance.normAbs * 40, rel: OpsTolerance.normRel * 40) <= 1,
                        "layernorm \(tier) dim=\(dim)")
                for bias in [nil, b] {
                    qk_l2norm_ref(x, w, bias, Int64(rows), Int64(dim), &yRef)
                    _ = unaligned(x) { p in pick(tier, qk_l2norm_avx2, qk_l2norm_avx512)(p, w, bias, Int64(rows), Int64(dim), &y) }
                    #expect(tolRatio(y, yRef, abs: OpsTolerance.normAbs, rel: OpsTolerance.normRel) <= 1, "l2norm \(tier) dim=\(dim)")
                }
                let s = rng.floats(rows * dim, scale: 30)
                let smRef = unaligned(s) { qk_softmax_ref($0, Int64(rows), Int64(dim)) }
                let sm = unaligned(s) { pick(tier, qk_softmax_avx2, qk_softmax_avx512)($0, Int64(rows), Int64(dim)) }
                #expect(tolRatio(sm, smRef, abs: OpsTolerance.softmaxTierAbs, rel: OpsTolerance.elementRel) <= 1, "softmax \(tier) n=\(dim)")
            }
        }
    }

    /// rope does the same two products and sum in every tier: bit-identical.
    @Test func ropeTiersBitExact() {
        var rng = OpsRng(3)
        for tier in simdTiers() {
            for half in [1, 2, 3, 7, 8, 16, 17, 20, 33, 40, 64] {
                let hd = 2 * half, rows = 3, heads = 2, stride = heads * hd + 5
                let x = rng.floats(rows * stride, scale: 4)
                let c = rng.floats(rows * half), s = rng.floats(rows * half)
                let ref = unaligned(x) { qk_rope_ref($0, Int64(rows), Int64(heads), Int64(hd), Int64(stride), c, s) }
                let got = unaligned(x) { pick(tier, qk_rope_avx2, qk_rope_avx512)($0, Int64(rows), Int64(heads), Int64(hd), Int64(stride), c, s) }
                #expect(bitsEqual(got, ref), "rope \(tier) head_dim=\(hd)")
            }
        }
    }

    /// Every f16 / bf16 bit pattern, and f32 patterns around every rounding boundary: bit-identical.
    @Test func conversionTiersBitExact() {
        let all = (0..<65536).map { UInt16($0) }
        var rng = OpsRng(4)
        var f: [Float] = [0, -0.0, .infinity, -.infinity, .nan, -.nan, Float(bitPattern: 0x7f80_0001), 65504, 65519.99, 65520,
                          -65520, 1e-8, 2.98e-8, 2.9802322e-8, 5.96e-8, 6.1e-5, Float.leastNormalMagnitude,
                          Float.leastNonzeroMagnitude, .greatestFiniteMagnitude]
        f += all.map { Float(bitPattern: UInt32($0) << 16 | 0x8000) }  // bf16 ties
        f += all.map { Float(bitPattern: UInt32($0) << 16 | 0x7fff) }
        f += (0..<60000).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }
        f += (0..<60000).map { i in Float(bitPattern: 0x3300_0000 + UInt32(i) * 1117) }  // f16 subnormal/normal range
        for tier in ["ref"] + simdTiers() {
            var a = [Float](repeating: 0, count: all.count), h = [UInt16](repeating: 0, count: f.count)
            var bfRef = a, hRef = h
            qk_bf16_to_f32_ref(all, Int64(all.count), &bfRef)
            qk_f16_to_f32_ref(all, Int64(all.count), &a)
            #expect(a[0x3c00] == 1 && a[0x0001] == 5.9604645e-8 && a[0x7bff] == 65504 && a[0xfc00] == -.infinity)
            #expect(a[0x7e00].isNaN && bfRef[0x3f80] == 1)
            if tier == "ref" {
                qk_f32_to_f16_ref(f, Int64(f.count), &h)
                #expect(h[0] == 0 && h[1] == 0x8000 && h[2] == 0x7c00 && h[7] == 0x7bff && h[8] == 0x7bff && h[9] == 0x7c00)
                qk_f32_to_bf16_ref(f, Int64(f.count), &h)
                #expect(h[4] == 0x7fc0 && h[2] == 0x7f80)
                continue
            }
            #if arch(x86_64)
            var t = a
            pick(tier, qk_bf16_to_f32_avx2, qk_bf16_to_f32_avx512)(all, Int64(all.count), &t)
            #expect(bitsEqual(t, bfRef), "bf16->f32 \(tier)")
            qk_f16_to_f32_ref(all, Int64(all.count), &a)
            pick(tier, qk_f16_to_f32_avx2, qk_f16_to_f32_avx512)(all, Int64(all.count), &t)
            #expect(bitsEqual(t, a), "f16->f32 \(tier)")
            qk_f32_to_f16_ref(f, Int64(f.count), &hRef)
            pick(tier, qk_f32_to_f16_avx2, qk_f32_to_f16_avx512)(f, Int64(f.count), &h)
            #expect(h == hRef, "f32->f16 \(tier): first difference at \(String(describing: h.indices.first { h[$0] != hRef[$0] }))")
            qk_f32_to_bf16_ref(f, Int64(f.count), &hRef)
            pick(tier, qk_f32_to_bf16_avx2, qk_f32_to_bf16_avx512)(f, Int64(f.count), &h)
            #expect(h == hRef, "f32->bf16 \(tier)")
            #endif
        }
    }
    #endif

    /// Conversions against Swift's own Float16 (IEEE round-to-nearest-even) on the public entry point.
    @Test func conversionsMatchIEEE() {
        var rng = OpsRng(5)
        let f = (0..<100_000).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }.filter { !$0.isNaN }
        var h = [UInt16](repeating: 0, count: f.count)
        qk_f32_to_f16(f, Int64(f.count), &h)
        #if !((os(macOS) || targetEnvironment(macCatalyst)) && arch(x86_64))
        #expect(zip(f, h).allSatisfy { Float16($0).bitPattern == $1 })
        #endif
        var back = [Float](repeating: 0, count: f.count)
        qk_f32_to_bf16(f, Int64(f.count), &h)
        qk_bf16_to_f32(h, Int64(h.count), &back)
        // bf16 keeps 8 significant bits: the nearest (ties to even) of the two neighbours
        for (x, y) in zip(f, back) where x.isFinite && y.isFinite {
            let lo = Float(bitPattern: x.bitPattern & 0xffff_0000), hi = Float(bitPattern: (x.bitPattern & 0xffff_0000) + 0x10000)
            let dlo = abs(Double(x) - Double(lo)), dhi = abs(Double(x) - Double(hi))
            #expect(y == (dlo < dhi ? lo : dhi < dlo ? hi : ((lo.bitPattern >> 16) & 1 == 0 ? lo : hi)))
        }
    }

    @Test func publicOpsMatchFormulasAndThreadCounts() {
        var rng = OpsRng(6)
        let rows = 300, dim = 1000
        let x = rng.floats(rows * dim, scale: 5), w = rng.floats(dim)
        // rmsnorm vs the formula in Double
        let (y1, y2) = oneAndTwoThreads { () -> [Float] in
            var y = [Float](repeating: 0, count: rows * dim)
            qk_rmsnorm(x, w, Int64(rows), Int64(dim), 1e-6, &y)
            return y
        }
        #expect(bitsEqual(y1, y2))
        var worst = 0.0
        for r in 0..<rows {
            let ms = (0..<dim).reduce(0.0) { $0 + Double(x[r * dim + $1]) * Double(x[r * dim + $1]) } / Double(dim)
            for i in 0..<dim {
                let e = Double(x[r * dim + i]) / (ms + 1e-6).squareRoot() * Double(w[i])
                worst = max(worst, abs(Double(y1[r * dim + i]) - e) / (abs(e) + OpsTolerance.normFloor))
            }
        }
        #expect(worst < OpsTolerance.normVsFormula)
        // softmax / gelu / silu through the pool, 1 vs 2 threads
        let (s1, s2) = oneAndTwoThreads { () -> [Float] in
            var s = x
            qk_softmax(&s, Int64(rows), Int64(dim))
            var g = x
            qk_gelu_erf(&g, Int64(g.count))
            var u = [Float](repeating: 0, count: x.count)
            qk_silu_mul(x, g, Int64(x.count), &u)
            return s + g + u
        }
        #expect(bitsEqual(s1, s2))
        for r in 0..<3 {
            let m = x[(r * dim)..<((r + 1) * dim)].max()!
            let z = (0..<dim).reduce(0.0) { $0 + exp(Double(x[r * dim + $1] - m)) }
            for i in 0..<dim {
                let e = exp(Double(x[r * dim + i] - m)) / z
                #expect(abs(Double(s1[r * dim + i]) - e) <= OpsTolerance.softmaxRel * e + OpsTolerance.softmaxAbs)
            }
        }
        for i in 0..<x.count {
            let v = Double(x[i])
            let e = 0.5 * v * erfc(-v / 2.0.squareRoot())
            #expect(abs(Double(s1[rows * dim + i]) - e) <= Double(OpsTolerance.elementRel) * abs(e) + Double(OpsTolerance.elementAbs) * abs(v))
        }
    }

    @Test func upsampleNearest() {
        var rng = OpsRng(7)
        for (h, w, c) in [(1, 1, 1), (3, 5, 7), (17, 9, 96), (64, 64, 33)] {
            let x = rng.floats(h * w * c)
            let (y1, y2) = oneAndTwoThreads { () -> [Float] in
                var y = [Float](repeating: .nan, count: 4 * h * w * c)
                qk_upsample2x(x, Int64(h), Int64(w), Int64(c), &y)
                return y
            }
            #expect(bitsEqual(y1, y2))
            var ok = true
            for oy in 0..<(2 * h) { for ox in 0..<(2 * w) { for k in 0..<c where y1[(oy * 2 * w + ox) * c + k] != x[((oy / 2) * w + ox / 2) * c + k] { ok = false } } }
            #expect(ok, "upsample \(h)x\(w)x\(c)")
        }
    }

    @Test func ropeTablesMatchFormula() {
        // text mrope: head_dim 128, sections [16, 24, 24], theta 1e6; positions differ per axis
        let rows = 40, hd = 128, half = hd / 2
        let pt = (0..<rows).map { Int64($0 * 3) }, ph = (0..<rows).map { Int64($0 % 7 + 100) }, pw = (0..<rows).map { Int64(1000 + $0) }
        var c = [Float](repeating: 0, count: rows * half), s = c
        let sections: [Int32] = [16, 24, 24]
        qk_rope_table_mrope(pt, ph, pw, Int64(rows), Int64(hd), sections, 1e6, &c, &s)
        func check(_ pos: Int64, _ invFreq: Double, _ cv: Float, _ sv: Float) -> Bool {
            let a = Double(pos) * invFreq
            let tol = OpsTolerance.ropeAngleUlps * Double(Float(a).ulp) + OpsTolerance.ropeCosSinAbs + a * OpsTolerance.ropeAngleRel
            return abs(Double(cv) - cos(a)) <= tol && abs(Double(sv) - sin(a)) <= tol
        }
        var ok = true
        for r in 0..<rows {
            for i in 0..<half {
                let pos = i < 16 ? pt[r] : i < 40 ? ph[r] : pw[r]
                if !check(pos, pow(1e6, -2.0 * Double(i) / Double(hd)), c[r * half + i], s[r * half + i]) { ok = false }
            }
        }
        #expect(ok, "mrope table")
        // vision 2-D: head_dim 80 -> 20 frequencies per axis, [h freqs, w freqs], theta 1e4
        let vd = 80, vhalf = 40, q = 20
        var vc = [Float](repeating: 0, count: rows * vhalf), vs = vc
        qk_rope_table_2d(ph, pw, Int64(rows), Int64(vd), 1e4, &vc, &vs)
        ok = true
        for r in 0..<rows {
            for i in 0..<vhalf {
                let j = i % q, pos = i < q ? ph[r] : pw[r]
                if !check(pos, pow(1e4, -2.0 * Double(j) / Double(vhalf)), vc[r * vhalf + i], vs[r * vhalf + i]) { ok = false }
            }
        }
        #expect(ok, "2-D rope table")
        // the public qk_rope with these tables equals the rotate-half formula
        var rng = OpsRng(8)
        let x = rng.floats(rows * 2 * vd)
        var y = x
        qk_rope(&y, Int64(rows), 2, Int64(vd), Int64(2 * vd), vc, vs)
        var worst: Float = 0
        for r in 0..<rows { for h in 0..<2 { for i in 0..<vhalf {
            let b = r * 2 * vd + h * vd, cc = vc[r * vhalf + i], ss = vs[r * vhalf + i]
            worst = max(worst, abs(y[b + i] - (x[b + i] * cc - x[b + i + vhalf] * ss)),
                        abs(y[b + i + vhalf] - (x[b + i + vhalf] * cc + x[b + i] * ss)))
        } } }
        #expect(worst == 0)
    }
}
