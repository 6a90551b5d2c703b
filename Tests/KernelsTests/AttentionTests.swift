import Kernels
import Testing

// qk_attention against a naive softmax(Q K^T) V in Double with every mask type (causal with offset,
// kv_len padding, segments, grouped-query heads), the tier twins against each other on single-head
// pieces, and 1 vs 2 threads bit-exact.

private struct AttnCase {
    var lq: Int, lk: Int, hq: Int, hkv: Int, d: Int
    var causal = false, qOffset = 0, kvLen: Int? = nil
    var qSeg: [Int32]? = nil, kSeg: [Int32]? = nil
    var pad = 3  // extra floats per row (strides larger than hq * d)
}

private struct AttnData {
    let c: AttnCase
    let q: [Float], k: [Float], v: [Float]
    var qs: Int { c.hq * c.d + c.pad }
    var ks: Int { c.hkv * c.d + c.pad + 1 }
    var vs: Int { c.hkv * c.d + c.pad + 2 }
    var os: Int { c.hq * c.d + 1 }
    init(_ c: AttnCase, seed: UInt64) {
        self.c = c
        var rng = OpsRng(seed)
        q = rng.floats(c.lq * (c.hq * c.d + c.pad), scale: 2)
        k = rng.floats(c.lk * (c.hkv * c.d + c.pad + 1), scale: 2)
        v = rng.floats(c.lk * (c.hkv * c.d + c.pad + 2))
    }

    func params(scale: Float) -> qk_attn_params {
        qk_attn_params(lq: Int64(c.lq), lk: Int64(c.lk), hq: Int64(c.hq), hkv: Int64(c.hkv), d: Int64(c.d),
                       q_stride: Int64(qs), k_stride: Int64(ks), v_stride: Int64(vs), o_stride: Int64(os),
                       scale: scale, causal: c.causal ? 1 : 0, q_offset: Int64(c.qOffset),
                       kv_len: Int64(c.kvLen ?? c.lk), q_seg: nil, k_seg: nil)
    }

    var scale: Float { 1 / Float(c.d).squareRoot() }

    /// out [lq, hq * d] (o_stride dropped) from the public kernel.
    func run() -> [Float] {
        var out = [Float](repeating: .nan, count: c.lq * os)
        var p = params(scale: scale)
        let qSeg = c.qSeg ?? [], kSeg = c.kSeg ?? []
        qSeg.withUnsafeBufferPointer { qsb in
            kSeg.withUnsafeBufferPointer { ksb in
                if c.qSeg != nil { p.q_seg = qsb.baseAddress; p.k_seg = ksb.baseAddress }
                qk_attention(&p, q, k, v, &out)
            }
        }
        return (0..<c.lq).flatMap { i in out[(i * os)..<(i * os + c.hq * c.d)] }
    }

    /// Naive reference in Double; rows that see no key are zero.
    func naive() -> [Double] {
        var out = [Double](repeating: 0, count: c.lq * c.hq * c.d)
        let group = c.hq / c.hkv, lim = min(c.kvLen ?? c.lk, c.lk), sc = Double(scale)
        for i in 0..<c.lq {
            for h in 0..<c.hq {
                let hk = h / group
                var keys: [Int] = []
                for j in 0..<lim {
                    if c.causal && j > c.qOffset + i { continue }
                    if let qs = c.qSeg, let ks = c.kSeg, qs[i] != ks[j] { continue }
                    keys.append(j)
                }
                if keys.isEmpty { continue }
                let s = keys.map { j in (0..<c.d).reduce(0.0) { $0 + Double(q[i * qs + h * c.d + $1]) * Double(k[j * ks + hk * c.d + $1]) } * sc }
                let m = s.max()!
                let e = s.map { ($0 - m).exp }
                let z = e.reduce(0, +)
                for (n, j) in keys.enumerated() {
                    for x in 0..<c.d { out[(i * c.hq + h) * c.d + x] += e[n] / z * Double(v[j * vs + hk * c.d + x]) }
                }
            }
        }
        return out
    }
}

private extension Double {
    var exp: Double { Foundation_exp(self) }
}
#if canImport(Glibc)
import Glibc
private func Foundation_exp(_ x: Double) -> Double { Glibc.exp(x) }
#else
import Darwin
private func Foundation_exp(_ x: Double) -> Double { Darwin.exp(x) }
#endif

/// Contiguous segments of the given lengths (window attention), ids starting at `first`.
private func segments(_ lengths: [Int], first: Int32 = 0) -> [Int32] {
    lengths.enumerated().flatMap { (n, len) in [Int32](repeating: first + Int32(n), count: len) }
}

@Suite struct AttentionTests {
    private static let cases: [AttnCase] = [
        AttnCase(lq: 1, lk: 1, hq: 1, hkv: 1, d: 1),
        AttnCase(lq: 5, lk: 7, hq: 2, hkv: 2, d: 3),
        AttnCase(lq: 17, lk: 33, hq: 4, hkv: 2, d: 17),                                  // GQA
        AttnCase(lq: 70, lk: 70, hq: 4, hkv: 1, d: 16, causal: true),                    // causal, 2 q blocks
        AttnCase(lq: 33, lk: 130, hq: 2, hkv: 1, d: 20, causal: true, qOffset: 97),      // cached prefix
        AttnCase(lq: 9, lk: 65, hq: 2, hkv: 2, d: 31, kvLen: 40),                        // kv padding
        AttnCase(lq: 20, lk: 20, hq: 2, hkv: 2, d: 8, causal: true, qOffset: -3),        // rows with no key
        AttnCase(lq: 130, lk: 130, hq: 2, hkv: 2, d: 80,
                 qSeg: segments([64, 30, 36]), kSeg: segments([64, 30, 36])),            // window attention
        AttnCase(lq: 50, lk: 60, hq: 3, hkv: 1, d: 33, causal: true, qOffset: 10, kvLen: 55,
                 qSeg: segments([10, 25, 15], first: 1), kSeg: segments([20, 15, 25])),  // everything at once
        AttnCase(lq: 12, lk: 12, hq: 1, hkv: 1, d: 7,
                 qSeg: [0, 1, 0, 1, 2, 2, 0, 9, 1, 1, 0, 0], kSeg: [1, 0, 0, 1, 2, 1, 0, 0, 2, 1, 1, 0]), // scattered ids, 9 unseen
        AttnCase(lq: 65, lk: 200, hq: 1, hkv: 1, d: 128, causal: true, qOffset: 135),
        AttnCase(lq: 40, lk: 150, hq: 1, hkv: 1, d: 384),                                 // VAE mid-block width
        AttnCase(lq: 20, lk: 70, hq: 1, hkv: 1, d: 1152),                                 // VAE 2.1 decoder mid block
    ]

    @Test func publicMatchesNaive() {
        for (n, c) in Self.cases.enumerated() {
            let data = AttnData(c, seed: UInt64(n + 10))
            let (a, b) = oneAndTwoThreads { data.run() }
            #expect(bitsEqual(a, b), "case \(n): 1 vs 2 threads")
            let ref = data.naive()
            let err = relL2(a, ref)
            #expect(err <= OpsTolerance.attentionRelL2, "case \(n): rel L2 \(err)")
            // rows with no visible key are exactly zero
            for i in 0..<c.lq * c.hq where ref[(i * c.d)..<(i * c.d + c.d)].allSatisfy({ $0 == 0 }) {
                #expect(a[(i * c.d)..<(i * c.d + c.d)].allSatisfy { $0 == 0 }, "case \(n): empty row \(i)")
            }
        }
    }

    #if arch(x86_64)
    /// Each tier's twin on one-head pieces of up to 128 rows (what the dispatcher hands it).
    @Test func tiersMatchNaive() {
        let scratchCases = Self.cases.filter { $0.hq == 1 && $0.hkv == 1 && $0.lq <= 128 } + [
            AttnCase(lq: 64, lk: 129, hq: 1, hkv: 1, d: 63, causal: true, qOffset: 65),
            AttnCase(lq: 128, lk: 150, hq: 1, hkv: 1, d: 40, causal: true, qOffset: 22),
            AttnCase(lq: 101, lk: 77, hq: 1, hkv: 1, d: 24, kvLen: 70,
                     qSeg: segments([30, 71]), kSeg: segments([40, 37])),
            AttnCase(lq: 3, lk: 257, hq: 1, hkv: 1, d: 2, kvLen: 250),
        ]
        typealias Twin = @convention(c) (UnsafePointer<qk_attn_params>?, UnsafePointer<Float>?, UnsafePointer<Float>?,
                                         UnsafePointer<Float>?, UnsafeMutablePointer<Float>?, UnsafeMutableRawPointer?) -> Void
        let twins: [(String, Twin)] = [("ref", qk_attention_ref)] + simdTiers().map { ($0, $0 == "avx2" ? qk_attention_avx2 : qk_attention_avx512) }
        for (n, c) in scratchCases.enumerated() {
            let data = AttnData(c, seed: UInt64(n + 100))
            let ref = data.naive()
            let scratch = UnsafeMutableRawPointer.allocate(byteCount: qk_attention_scratch_bytes(Int64(c.d)), alignment: 64)
            defer { scratch.deallocate() }
            for (name, twin) in twins {
                var out = [Float](repeating: .nan, count: c.lq * data.os)
                var p = data.params(scale: data.scale)
                let qSeg = c.qSeg ?? [], kSeg = c.kSeg ?? []
                qSeg.withUnsafeBufferPointer { qsb in
                    kSeg.withUnsafeBufferPointer { ksb in
                        if c.qSeg != nil { p.q_seg = qsb.baseAddress; p.k_seg = ksb.baseAddress }
                        twin(&p, data.q, data.k, data.v, &out, scratch)
                    }
                }
                let got = (0..<c.lq).flatMap { i in out[(i * data.os)..<(i * data.os + c.d)] }
                let err = relL2(got, ref)
                #expect(err <= OpsTolerance.attentionRelL2, "\(name) piece \(n): rel L2 \(err)")
            }
        }
    }
    #endif
}
