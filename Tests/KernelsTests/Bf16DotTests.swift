import Foundation
import Kernels
import Testing

/// The bf16-dot path (qk_set_bf16_dot): QK_BF16 weights times activations rounded to bf16, the CPU's
/// vdpbf16ps on AVX512-BF16. Tested through the per-tier entry points, never the process-wide switch
/// (other suites run bf16 products meanwhile).
@Suite("bf16 dot", .serialized) struct Bf16DotTests {
    /// Tails of every loop: odd k (padded pair), n not a multiple of 16, m around the 12 / 4 / 1 tiles.
    static let shapes: [(m: Int, n: Int, k: Int)] = [
        (1, 1, 1), (2, 17, 2), (3, 16, 3), (5, 33, 31), (7, 5, 64), (13, 40, 129), (17, 63, 300), (33, 20, 77),
        (12, 32, 1023), (25, 70, 18), (1, 129, 256), (4, 31, 5),
    ]

    static func bf16Bits(_ f: Float) -> UInt16 {
        if f.isNaN { return 0x7fc0 }
        let u = f.bitPattern
        return UInt16(truncatingIfNeeded: (u &+ 0x7fff &+ ((u >> 16) & 1)) >> 16)
    }

    /// The documented arithmetic (qk_matmul_internal.h, "bf16-dot"), computed here from the bf16 bits:
    /// per pair the odd product first, each rounded sum flushed to zero when subnormal, bf16 subnormal
    /// inputs read as zero, then the bias.
    static func model(x: [Float], w: MMWeight, m: Int, bias: [Float]?) -> [Float] {
        let n = Int(w.raw.n), k = Int(w.raw.k), kp = k + (k & 1)
        func daz(_ h: UInt16) -> Float { h & 0x7f80 == 0 ? (h & 0x8000 != 0 ? -0.0 : 0.0) : Float(bitPattern: UInt32(h) << 16) }
        func ftz(_ v: Float) -> Float { abs(v) < Float.leastNormalMagnitude ? (v.sign == .minus ? -0.0 : 0.0) : v }
        var y = [Float](repeating: 0, count: m * n)
        for c in 0..<n {
            var wr = w.row(c).map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16) }
            if k & 1 == 1 { wr.append(0) }
            for r in 0..<m {
                var xr = (0..<k).map { bf16Bits(x[r * k + $0]) }
                if k & 1 == 1 { xr.append(0) }
                var acc: Float = 0
                for p in stride(from: 0, to: kp, by: 2) {
                    acc = ftz(acc.addingProduct(daz(xr[p + 1]), daz(wr[p + 1])))
                    acc = ftz(acc.addingProduct(daz(xr[p]), daz(wr[p])))
                }
                y[r * n + c] = bias.map { acc + $0[c] } ?? acc
            }
        }
        return y
    }

    static var hasKernel: Bool {
        #if arch(x86_64)
        return qk_tier_supported(QK_TIER_AVX512) != 0 && qk_cpu_has_avx512bf16() != 0
        #else
        return false
        #endif
    }

    @Test("the scalar twin computes the documented arithmetic, within the bf16-activation bound of the exact product")
    func referenceIsTheModel() {
        for (idx, sh) in Self.shapes.enumerated() {
            var rng = MMRng(UInt64(idx * 13 + 5))
            let w = MMWeight(.init(scheme: QK_BF16, group: 0), n: sh.n, k: sh.k, values: rng.floats(sh.n * sh.k))
            let x = mmActivations(m: sh.m, k: sh.k, seed: UInt64(idx + 40), outliers: [2: 300])
            let bias = idx % 2 == 0 ? rng.floats(sh.n) : nil
            let y = mmRun(qk_matmul_bf16dot_ref, w, x: x, m: sh.m, bias: bias, misalign: idx % 3)
            #expect(mmBitsEqual(y, Self.model(x: x, w: w, m: sh.m, bias: bias)), "\(sh): ref twin differs from the model")
            for c in 0..<sh.n {
                let wd = w.row(c)
                for r in 0..<sh.m {
                    var exact = Double(bias?[c] ?? 0), absSum = 0.0
                    for i in 0..<sh.k { exact += Double(x[r * sh.k + i]) * Double(wd[i]); absSum += abs(Double(x[r * sh.k + i]) * Double(wd[i])) }
                    let bound = (MatmulTolerance.bf16Activation + MatmulTolerance.floatChain * Double(sh.k)) * absSum + 1e-6
                    #expect(abs(Double(y[r * sh.n + c]) - exact) <= bound, "\(sh) row \(r) col \(c): error above the bf16 activation bound")
                }
            }
        }
    }

    @Test("vdpbf16ps kernel equals the scalar twin bit for bit (tail sizes, unaligned x/y, tiny values)")
    func kernelMatchesReference() throws {
        #if arch(x86_64)
        guard Self.hasKernel else {
            print("bf16 dot: this CPU has no AVX512-BF16; the kernel is not compared here")
            return
        }
        for (idx, sh) in Self.shapes.enumerated() {
            var rng = MMRng(UInt64(idx * 7 + 3))
            var wv = rng.floats(sh.n * sh.k)
            var x = mmActivations(m: sh.m, k: sh.k, seed: UInt64(idx), outliers: [3: 200])
            if idx % 3 == 1 {   // values whose bf16 form or products are subnormal: DAZ / FTZ paths
                for i in stride(from: 0, to: wv.count, by: 5) { wv[i] *= 1e-38 }
                for i in stride(from: 1, to: x.count, by: 4) { x[i] *= 1e-30; x[i] *= 3e-9 }
            }
            let w = MMWeight(.init(scheme: QK_BF16, group: 0), n: sh.n, k: sh.k, values: wv)
            let bias = idx % 2 == 0 ? rng.floats(sh.n) : nil
            let ref = mmRun(qk_matmul_bf16dot_ref, w, x: x, m: sh.m, bias: bias, misalign: 0)
            let y = mmRun(qk_matmul_bf16dot_avx512, w, x: x, m: sh.m, bias: bias, misalign: 1 + idx % 3)
            if !mmBitsEqual(y, ref) {
                let worst = zip(y, ref).map { abs($0 - $1) }.max() ?? 0
                Issue.record("avx512-bf16 m=\(sh.m) n=\(sh.n) k=\(sh.k): differs from ref (max abs diff \(worst))")
            }
        }
        #endif
    }

    @Test("bf16-dot results do not depend on the thread count or on the other rows of the batch")
    func threadAndBatchInvariance() {
        #if arch(x86_64)
        guard Self.hasKernel else { return }
        withKernelState {
            let m = 37, n = 70, k = 301
            var rng = MMRng(17)
            let w = MMWeight(.init(scheme: QK_BF16, group: 0), n: n, k: k, values: rng.floats(n * k))
            let x = mmActivations(m: m, k: k, seed: 8, outliers: [17: 500])
            mmExpectThreadAndBatchInvariance(qk_matmul_bf16dot_avx512, w, x: x, m: m, bias: rng.floats(n), "bf16 dot")
        }
        #endif
    }
}
