import Foundation
import Kernels
import Testing

/// Sizes that hit every loop tail of the kernels (m tiles, 16-row blocks, k4 steps, 32-blocks, groups).
private let tailK = [1, 2, 3, 5, 7, 15, 16, 17, 31, 33, 63, 127, 129, 1023]
private let tailN = [1, 2, 3, 5, 7, 15, 16, 17, 31, 33, 63, 127, 129]
private let tailM = [1, 2, 3, 5, 7, 13, 17, 33]
private let shapes: [(m: Int, n: Int, k: Int)] = {
    var s: [(Int, Int, Int)] = []
    for (i, k) in tailK.enumerated() { s.append((tailM[i % tailM.count], tailN[(i * 5) % tailN.count], k)) }
    for n in tailN { s.append((3, n, 37)) }
    for m in tailM { s.append((m, 33, 65)) }
    s.append((2, 20, 200))   // k not a multiple of any group
    s.append((1, 129, 300))
    s.append((3, 17, 2080))  // 65 activation blocks: the AVX-512 quantizer's 16-block batches, then one alone
    return s
}()

@Suite("matmul", .serialized) struct MatmulTests {
    @Test("every SIMD tier equals the reference bit for bit (all schemes, tail sizes, unaligned x/y)")
    func tiersMatchReference() {
        let tiers = mmSimdTiers()
        print("matmul tiers compared with ref: \(tiers.map { $0.0 })")
        for s in MMScheme.all {
            for (idx, sh) in shapes.enumerated() {
                var rng = MMRng(UInt64(idx * 31 + 7))
                let w = MMWeight(s, n: sh.n, k: sh.k, values: rng.floats(sh.n * sh.k))
                let x = mmActivations(m: sh.m, k: sh.k, seed: UInt64(idx), outliers: [3: 200])
                let bias = idx % 2 == 0 ? rng.floats(sh.n) : nil
                let ref = mmRun(qk_matmul_ref, w, x: x, m: sh.m, bias: bias, misalign: 0)
                #expect(ref.allSatisfy { $0.isFinite }, "\(s) \(sh): reference produced non-finite values")
                for (name, fn) in tiers {
                    let y = mmRun(fn, w, x: x, m: sh.m, bias: bias, misalign: 1 + idx % 3)
                    let ok = mmBitsEqual(y, ref)
                    if !ok {
                        let worst = zip(y, ref).map { abs($0 - $1) }.max() ?? 0
                        Issue.record("\(name) \(s) m=\(sh.m) n=\(sh.n) k=\(sh.k): differs from ref (max abs diff \(worst))")
                    }
                }
            }
        }
    }

    @Test("float schemes: accurate to the f32 FMA-chain bound; bf16/f16 within their rounding bound")
    func floatAccuracy() {
        let m = 3, n = 40, k = 777
        var rng = MMRng(11)
        let wv = rng.floats(n * k)
        let x = mmActivations(m: m, k: k, seed: 5, outliers: [10: 300, 500: 1000])
        for s in MMScheme.all where !s.isInt {
            let w = MMWeight(s, n: n, k: k, values: wv)
            let y = mmRun(qk_matmul, w, x: x, m: m, bias: nil)
            let bound = s.scheme == QK_BF16 ? MatmulTolerance.bf16Weight : s.scheme == QK_F16 ? MatmulTolerance.f16Weight : 0
            for c in 0..<n {
                let wd = w.row(c)
                for r in 0..<m {
                    var exactDeq = 0.0, exactOrig = 0.0, absSum = 0.0
                    for i in 0..<k {
                        exactDeq += Double(x[r * k + i]) * Double(wd[i])
                        exactOrig += Double(x[r * k + i]) * Double(wv[c * k + i])
                        absSum += abs(Double(x[r * k + i]) * Double(wv[c * k + i]))
                    }
                    let chain = MatmulTolerance.floatChain * Double(k) * absSum * 1.01
                    let got = Double(y[r * n + c])
                    #expect(abs(got - exactDeq) <= chain, "\(s) r\(r) c\(c): \(got) vs \(exactDeq)")
                    #expect(abs(got - exactOrig) <= bound * absSum + chain, "\(s) r\(r) c\(c): \(got) vs \(exactOrig)")
                }
            }
        }
    }

    @Test("integer schemes: activation error within the per-block bound; relative L2 with outlier channels")
    func intAccuracyWithOutliers() {
        let m = 4, n = 48, k = 1000
        var rng = MMRng(21)
        let wv = rng.floats(n * k)
        for outliers in [[Int: Float](), [5: 300, 700: 1000]] {
            let x = mmActivations(m: m, k: k, seed: 9, outliers: outliers)
            var exact = [Double](repeating: 0, count: m * n)
            for r in 0..<m { for c in 0..<n {
                var s = 0.0
                for i in 0..<k { s += Double(x[r * k + i]) * Double(wv[c * k + i]) }
                exact[r * n + c] = s
            } }
            for s in MMScheme.all where s.isInt {
                let w = MMWeight(s, n: n, k: k, values: wv)
                let y = mmRun(qk_matmul, w, x: x, m: m, bias: nil)
                for c in 0..<n {
                    let wd = w.row(c)
                    for r in 0..<m {
                        var deq = 0.0, bound = 0.0, absSum = 0.0
                        for b in stride(from: 0, to: k, by: 32) {
                            var amax = 0.0, wabs = 0.0
                            for i in b..<min(b + 32, k) {
                                amax = max(amax, abs(Double(x[r * k + i])))
                                wabs += abs(Double(wd[i]))
                                deq += Double(x[r * k + i]) * Double(wd[i])
                                absSum += abs(Double(x[r * k + i]) * Double(wd[i]))
                            }
                            bound += amax / 254 * wabs
                        }
                        bound = bound * (1 + MatmulTolerance.actSlack) + MatmulTolerance.floatChain * Double(k) * absSum * 4
                        let got = Double(y[r * n + c])
                        #expect(abs(got - deq) <= bound, "\(s) r\(r) c\(c): |\(got) - \(deq)| > \(bound)")
                    }
                }
                let err = mmRelL2(y, exact)
                let key = s.isBelowEightBit ? "q4" : "q8"
                print("matmul accuracy \(s) outliers=\(!outliers.isEmpty): relative L2 vs f32 = \(String(format: "%.2e", err))")
                #expect(err <= MatmulTolerance.relL2[key]!, "\(s): relative L2 \(err)")
            }
        }
    }

    @Test("bf16 packs are bit-exact copies (round trip through dequant_row)")
    func bf16RoundTrip() {
        let n = 21, k = 45
        var rng = MMRng(3)
        var src = (0..<(n * k)).map { _ in UInt16(truncatingIfNeeded: rng.next()) & 0x7F7F | 0x0080 }
        src[0] = 0x8000; src[1] = 0x0001   // -0 and a subnormal survive too
        let bytes = qk_weight_bytes(QK_BF16, 0, Int64(n), Int64(k))
        let buf = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        defer { buf.deallocate() }
        #expect(qk_weight_pack_rows_bf16(QK_BF16, 0, Int64(n), Int64(k), 0, Int64(n), src, buf) == 0)
        var w = qk_weight(scheme: QK_BF16, group: 0, n: Int64(n), k: Int64(k), data: UnsafeRawPointer(buf))
        var row = [Float](repeating: 0, count: k)
        for r in 0..<n {
            qk_weight_dequant_row(&w, Int64(r), &row)
            for i in 0..<k { #expect(row[i].bitPattern == UInt32(src[r * k + i]) << 16, "row \(r) col \(i)") }
        }
        // f32 -> bf16 rounds to nearest even
        let f: [Float] = [1.0 + 1.0 / 256, 1.0 + 3.0 / 256, -2.5, 1e-3]
        let wb = MMWeight(MMScheme(scheme: QK_BF16, group: 0), n: 1, k: 4, values: f)
        #expect(wb.row(0) == [1.0, 1.0 + 4.0 / 256, -2.5, Float(bitPattern: (Float(1e-3).bitPattern &+ 0x7FFF &+ ((Float(1e-3).bitPattern >> 16) & 1)) & 0xFFFF_0000)])
    }

    @Test("row-chunked packing equals whole-matrix packing (f32 and bf16 sources)")
    func chunkedPacking() {
        let n = 53, k = 70
        var rng = MMRng(8)
        let wv = rng.floats(n * k)
        let wb: [UInt16] = wv.map { UInt16($0.bitPattern >> 16) }
        for s in MMScheme.all {
            let bytes = qk_weight_bytes(s.scheme, s.group, Int64(n), Int64(k))
            var whole = [UInt8](repeating: 0xAA, count: bytes), chunked = [UInt8](repeating: 0x55, count: bytes)
            var whole16 = [UInt8](repeating: 0xAA, count: bytes), chunked16 = [UInt8](repeating: 0x55, count: bytes)
            #expect(qk_weight_pack_rows(s.scheme, s.group, Int64(n), Int64(k), 0, Int64(n), wv, &whole) == 0)
            #expect(qk_weight_pack_rows_bf16(s.scheme, s.group, Int64(n), Int64(k), 0, Int64(n), wb, &whole16) == 0)
            for (r0, nr) in [(32, 21), (0, 16), (16, 16)] {   // out of order on purpose
                let part = Array(wv[(r0 * k)..<((r0 + nr) * k)]), part16 = Array(wb[(r0 * k)..<((r0 + nr) * k)])
                #expect(qk_weight_pack_rows(s.scheme, s.group, Int64(n), Int64(k), Int64(r0), Int64(nr), part, &chunked) == 0)
                #expect(qk_weight_pack_rows_bf16(s.scheme, s.group, Int64(n), Int64(k), Int64(r0), Int64(nr), part16, &chunked16) == 0)
            }
            #expect(whole == chunked, "\(s): chunked f32 packing differs")
            #expect(whole16 == chunked16, "\(s): chunked bf16 packing differs")
        }
    }

    @Test("bad arguments are refused, not packed")
    func badArguments() {
        #expect(qk_weight_bytes(QK_BF16, 32, 16, 16) == 0)
        #expect(qk_weight_bytes(QK_Q8, 48, 16, 16) == 0)
        #expect(qk_weight_bytes(QK_Q4, 0, 0, 16) == 0)
        #expect(qk_weight_bytes(QK_Q4C, 64, 16, 256) == 0)   // compact scales: group 32 only
        #expect(qk_weight_bytes(QK_Q8S, 0, 16, 256) == 0)
        var out = [UInt8](repeating: 0, count: qk_weight_bytes(QK_Q8, 32, 40, 8))
        let w = [Float](repeating: 1, count: 40 * 8)
        #expect(qk_weight_pack_rows(QK_Q8, 32, 40, 8, 8, 16, w, &out) == -1)     // row0 not aligned
        #expect(qk_weight_pack_rows(QK_Q8, 32, 40, 8, 0, 20, w, &out) == -1)     // chunk not aligned, not final
        #expect(qk_weight_pack_rows(QK_Q8, 32, 40, 8, 32, 16, w, &out) == -1)    // past n
        var bad = w; bad[5] = .nan
        #expect(qk_weight_pack_rows(QK_Q8, 32, 40, 8, 0, 40, bad, &out) == -1)
        var big = w; big[3] = 70000
        var out16 = [UInt8](repeating: 0, count: qk_weight_bytes(QK_F16, 0, 40, 8))
        #expect(qk_weight_pack_rows(QK_F16, 0, 40, 8, 0, 40, big, &out16) == -1)
        #expect(qk_weight_pack_rows(QK_F16, 0, 40, 8, 0, 40, w, &out16) == 0)
    }

    @Test("results do not depend on the thread count or on the other rows of the batch")
    func threadAndBatchInvariance() {
        withKernelState {
            let m = 37, n = 70, k = 300
            var rng = MMRng(99)
            let wv = rng.floats(n * k)
            let x = mmActivations(m: m, k: k, seed: 4, outliers: [17: 500])
            let bias = rng.floats(n)
            for s in MMScheme.all {
                mmExpectThreadAndBatchInvariance(qk_matmul, MMWeight(s, n: n, k: k, values: wv), x: x, m: m, bias: bias, "\(s)")
            }
        }
    }

    @Test("clipping search lowers the weight quantization error (measured)")
    func scaleSearch() {
        let n = 64, k = 256
        var rng = MMRng(77)
        // heavy-ish tails: sum of uniforms cubed, like trained weights' outliers
        let wv = (0..<(n * k)).map { _ in Float(pow(Double(rng.float()), 3)) + rng.float() * 0.1 }
        for s in MMScheme.all where s.isInt && s.group == 32 || s.scheme == QK_Q4 && s.group == 128 {
            var err = [0.0, 0.0]
            for (i, on) in [Int32(0), 1].enumerated() {
                qk_set_weight_scale_search(on)
                let w = MMWeight(s, n: n, k: k, values: wv)
                for r in 0..<n { for (a, b) in zip(w.row(r), wv[(r * k)..<((r + 1) * k)]) { err[i] += Double(a - b) * Double(a - b) } }
            }
            qk_set_weight_scale_search(1)
            print("weight scale search \(s): squared error \(String(format: "%.3e", err[1])) vs absmax \(String(format: "%.3e", err[0])) (ratio \(String(format: "%.3f", err[1] / err[0])))")
            #expect(err[1] <= err[0], "\(s): search made it worse")
        }
    }

    @Test("q4 gives a group whose extreme is positive the same 16 levels as one whose extreme is negative")
    func q4SignSymmetry() {
        // Gaussian-like values (sum of three uniforms), each run of 32 flipped so that its largest
        // magnitude is positive: every group, whatever its size, has a positive extreme in w and a
        // negative one in -w, and both must quantize equally well. A step that can only be positive
        // puts the 16th level (-8) on the negative side alone, so w got 15 levels: measured ratios
        // 1.25-1.32 before the scale could take either sign, 1.004-1.015 after (not 1: the clipped
        // candidates d = f·amax/7 clamp at +7 and -8, which are not mirror images).
        let n = 64, k = 256
        var rng = MMRng(91)
        var wv = (0..<(n * k)).map { _ in rng.float() + rng.float() + rng.float() }
        for c in stride(from: 0, to: n * k, by: 32) {
            let run = wv[c..<(c + 32)]
            if let m = run.max(by: { abs($0) < abs($1) }), m < 0 { for i in c..<(c + 32) { wv[i] = -wv[i] } }
        }
        for s in MMScheme.all where s.scheme == QK_Q4 {
            var err = [0.0, 0.0]
            for (i, sign) in [Float(1), -1].enumerated() {
                let v = wv.map { $0 * sign }
                let w = MMWeight(s, n: n, k: k, values: v)
                for r in 0..<n { for (a, b) in zip(w.row(r), v[(r * k)..<((r + 1) * k)]) { err[i] += Double(a - b) * Double(a - b) } }
            }
            let ratio = max(err[0], err[1]) / min(err[0], err[1])
            print("q4 sign symmetry \(s): squared error w \(String(format: "%.4e", err[0])), -w \(String(format: "%.4e", err[1])) (ratio \(String(format: "%.4f", ratio)))")
            #expect(ratio < 1.05, "\(s): w and -w quantize with different error (ratio \(ratio))")
        }
    }

    @Test("q4c, q5s, q6s and q8s sizes: 4.375, 5.375, 6.375 and 8.375 bits per weight when k is a multiple of 256")
    func compactSizes() {
        #expect(qk_weight_bytes(QK_Q4C, 32, 16, 3584) * 8 == 16 * 3584 * 4375 / 1000)
        #expect(qk_weight_bytes(QK_Q5S, 32, 16, 3584) * 8 == 16 * 3584 * 5375 / 1000)
        #expect(qk_weight_bytes(QK_Q6S, 32, 16, 3584) * 8 == 16 * 3584 * 6375 / 1000)
        #expect(qk_weight_bytes(QK_Q8S, 32, 16, 3584) * 8 == 16 * 3584 * 8375 / 1000)
        // k = 100: kp 128, 4 groups, 1 super-group: 64 + 64 (codes padded) + 128 * 8 bytes per 16 rows
        // (q5s / q6s: + 128 * 2 / 128 * 4 bytes of high bits)
        #expect(qk_weight_bytes(QK_Q4C, 32, 17, 100) == 2 * (64 + 64 + 128 * 8))
        #expect(qk_weight_bytes(QK_Q5S, 32, 17, 100) == 2 * (64 + 64 + 128 * 10))
        #expect(qk_weight_bytes(QK_Q6S, 32, 17, 100) == 2 * (64 + 64 + 128 * 12))
        #expect(qk_weight_bytes(QK_Q6S, 64, 16, 256) == 0)
    }

    @Test("q4c, q5s, q6s and q8s round trip: exactly representable weights come back exactly")
    func compactExactRoundTrip() {
        // every group: d · (codebook values) with d = 127 · 2^-10, its first value at the outer level
        // -127 (so the plain candidate d = smax / -127 is exact), so that D = d / 127 = 2^-10 and the
        // 8-bit code 127 reproduce d exactly; q8s: d · integers in [-127, 127] likewise; q5s / q6s:
        // d · integers in [-16, 15] / [-32, 31], the first one at -16 / -32 (the candidate smax / qmin)
        let cb: [Float] = [-127, -100, -79, -63, -48, -34, -22, -9, 2, 14, 25, 37, 50, 65, 83, 108]
        let n = 19, k = 300, d = Float(127) / 1024
        var rng = MMRng(5)
        for (scheme, level) in [(QK_Q4C, { (r: inout MMRng) in cb[Int(r.next() % 16)] }),
                                (QK_Q8S, { (r: inout MMRng) in Float(Int(r.next() % 255) - 127) }),
                                (QK_Q5S, { (r: inout MMRng) in Float(Int(r.next() % 32) - 16) }),
                                (QK_Q6S, { (r: inout MMRng) in Float(Int(r.next() % 64) - 32) })] {
            let outer: Float = scheme == QK_Q5S ? -16 : scheme == QK_Q6S ? -32 : -127
            var wv = [Float](repeating: 0, count: n * k)
            for r in 0..<n { for i in 0..<k { wv[r * k + i] = d * (i % 32 == 0 ? outer : level(&rng)) } }
            let w = MMWeight(MMScheme(scheme: scheme, group: 32), n: n, k: k, values: wv)
            for r in 0..<n { #expect(w.row(r) == Array(wv[(r * k)..<((r + 1) * k)]), "\(scheme) row \(r)") }
        }
    }

    @Test("q4c: lower weight error than q4/g32 at fewer bits; q8s not above q8/g32; q5s and q6s between (Gaussian-like weights, measured)")
    func compactWeightError() {
        let n = 64, k = 1024
        var rng = MMRng(13)
        let wv = (0..<(n * k)).map { _ in rng.float() + rng.float() + rng.float() + rng.float() }
        func relErr(_ s: MMScheme) -> Double {
            let w = MMWeight(s, n: n, k: k, values: wv)
            var e = 0.0, t = 0.0
            for r in 0..<n { for (a, b) in zip(w.row(r), wv[(r * k)..<((r + 1) * k)]) { e += Double(a - b) * Double(a - b); t += Double(b) * Double(b) } }
            return (e / t).squareRoot()
        }
        let q4 = relErr(MMScheme(scheme: QK_Q4, group: 32)), q4c = relErr(MMScheme(scheme: QK_Q4C, group: 32))
        let q8 = relErr(MMScheme(scheme: QK_Q8, group: 32)), q8s = relErr(MMScheme(scheme: QK_Q8S, group: 32))
        let q5s = relErr(MMScheme(scheme: QK_Q5S, group: 32)), q6s = relErr(MMScheme(scheme: QK_Q6S, group: 32))
        print("weight error: q4/g32 \(String(format: "%.4f", q4)), q4c \(String(format: "%.4f", q4c)); q5s \(String(format: "%.4f", q5s)), q6s \(String(format: "%.4f", q6s)); q8/g32 \(String(format: "%.5f", q8)), q8s \(String(format: "%.5f", q8s))")
        #expect(q4c < q4 * 0.95, "q4c \(q4c) is not clearly below q4/g32 \(q4)")
        #expect(q8s <= q8 * 1.01, "q8s \(q8s) is above q8/g32 \(q8)")
        // one more bit halves the step: each of q5s and q6s at most 0.6x the scheme below it
        #expect(q5s < q4c * 0.6 && q6s < q5s * 0.6 && q8s < q6s * 0.35, "q4c \(q4c), q5s \(q5s), q6s \(q6s), q8s \(q8s)")
    }

    @Test("importance-weighted packing lowers the importance-weighted error; imp = all ones equals no importance")
    func importancePacking() {
        let n = 32, k = 512
        var rng = MMRng(17)
        let wv = (0..<(n * k)).map { _ in rng.float() + rng.float() + rng.float() }
        // a few columns 100x as important (the outlier channels of real activations)
        var imp = [Float](repeating: 1, count: k)
        for c in stride(from: 3, to: k, by: 37) { imp[c] = 100 }
        let ones = [Float](repeating: 1, count: k)
        for s in MMScheme.all where s.isInt && s.group != 0 {
            let bytes = qk_weight_bytes(s.scheme, s.group, Int64(n), Int64(k))
            var plain = [UInt8](repeating: 0, count: bytes), weighted = plain, unit = plain
            #expect(qk_weight_pack_rows(s.scheme, s.group, Int64(n), Int64(k), 0, Int64(n), wv, &plain) == 0)
            #expect(qk_weight_pack_rows_imp(s.scheme, s.group, Int64(n), Int64(k), 0, Int64(n), wv, imp, &weighted) == 0)
            #expect(qk_weight_pack_rows_imp(s.scheme, s.group, Int64(n), Int64(k), 0, Int64(n), wv, ones, &unit) == 0)
            #expect(unit == plain, "\(s): importance of all ones changed the packing")
            func werr(_ buf: [UInt8]) -> Double {
                var e = 0.0
                buf.withUnsafeBytes { p in
                    var w = qk_weight(scheme: s.scheme, group: s.group, n: Int64(n), k: Int64(k), data: p.baseAddress)
                    var row = [Float](repeating: 0, count: k)
                    for r in 0..<n {
                        qk_weight_dequant_row(&w, Int64(r), &row)
                        for i in 0..<k { let d = Double(row[i] - wv[r * k + i]); e += Double(imp[i]) * d * d }
                    }
                }
                return e
            }
            let ep = werr(plain), ew = werr(weighted)
            print("importance packing \(s): weighted error \(String(format: "%.4e", ew)) vs plain \(String(format: "%.4e", ep)) (ratio \(String(format: "%.3f", ew / ep)))")
            // 8-bit: the clipping grid rarely moves at 8 bits, so equal is allowed there
            #expect(s.isBelowEightBit ? ew < ep : ew <= ep, "\(s): importance did not lower the weighted error")
        }
        var bad = imp; bad[7] = -1
        var out = [UInt8](repeating: 0, count: qk_weight_bytes(QK_Q4C, 32, Int64(n), Int64(k)))
        #expect(qk_weight_pack_rows_imp(QK_Q4C, 32, Int64(n), Int64(k), 0, Int64(n), wv, bad, &out) == -1)
    }
}
