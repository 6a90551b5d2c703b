import Kernels
import Testing

/// qk_xxh64_stripes (hash.c), the bulk loop of Quant's XXH64: the AVX-512 lanes against the scalar twin.
/// (The digests themselves are checked against the reference library's vectors in PackTests.)
@Suite struct HashTests {
    #if arch(x86_64)
    @Test("xxh64 stripes: the AVX-512 lanes give the scalar twin's accumulators (0-70 stripes, unaligned, 1 MiB)",
          .enabled(if: qk_tier_supported(QK_TIER_AVX512) != 0, "the CPU has no AVX-512 tier"))
    func avx512MatchesRef() {
        var rng = MMRng(29)
        let bytes = (0..<(1 << 20) + 1).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        bytes.withUnsafeBytes { b in
            for (offset, stripes) in (0...70).map({ (($0 * 7) % 5, $0) }) + [(1, (b.count - 1) / 32)] {
                let start: (UInt64, UInt64, UInt64, UInt64) = (rng.next(), rng.next(), rng.next(), rng.next())
                var ref = start, simd = start
                withUnsafeMutableBytes(of: &ref) { qk_xxh64_stripes_ref($0.baseAddress!.assumingMemoryBound(to: UInt64.self), b.baseAddress! + offset, stripes) }
                withUnsafeMutableBytes(of: &simd) { qk_xxh64_stripes_avx512($0.baseAddress!.assumingMemoryBound(to: UInt64.self), b.baseAddress! + offset, stripes) }
                #expect(ref == simd, "\(stripes) stripes at offset \(offset)")
                if stripes > 0 { #expect(ref != start, "\(stripes) stripes left the lanes unchanged") }
            }
        }
    }
    #endif
}
