import Kernels
import Testing

/// Helpers shared by the matmul tests: deterministic data, packing, the tiers of this machine.
struct MMRng {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    mutating func float() -> Float { Float(Int64(bitPattern: next()) >> 40) / Float(1 << 23) }
    mutating func floats(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in float() * scale } }
}

struct MMScheme: CustomStringConvertible {
    let scheme: qk_scheme
    let group: Int32
    var description: String {
        let names = ["f32", "bf16", "f16", "q8", "q4", "q4c", "q8s", "q5s", "q6s"]
        return "\(names[Int(scheme.rawValue)])/g\(group)"
    }
    var isInt: Bool { scheme.rawValue >= QK_Q8.rawValue }
    /// Values of fewer than 8 bits (q4, q4c, q5s, q6s), for tolerances.
    var isBelowEightBit: Bool { scheme == QK_Q4 || scheme == QK_Q4C || scheme == QK_Q5S || scheme == QK_Q6S }
    static let all: [MMScheme] = [
        .init(scheme: QK_F32, group: 0), .init(scheme: QK_BF16, group: 0), .init(scheme: QK_F16, group: 0),
        .init(scheme: QK_Q8, group: 0), .init(scheme: QK_Q8, group: 32), .init(scheme: QK_Q8, group: 64),
        .init(scheme: QK_Q8, group: 128), .init(scheme: QK_Q4, group: 0), .init(scheme: QK_Q4, group: 32),
        .init(scheme: QK_Q4, group: 64), .init(scheme: QK_Q4, group: 128),
        .init(scheme: QK_Q4C, group: 32), .init(scheme: QK_Q8S, group: 32),
        .init(scheme: QK_Q5S, group: 32), .init(scheme: QK_Q6S, group: 32),
    ]
}

/// A packed weight whose memory lives as long as the object.
final class MMWeight {
    let buffer: UnsafeMutableRawPointer
    let bytes: Int
    let raw: qk_weight
    init(_ s: MMScheme, n: Int, k: Int, values: [Float]) {
        bytes = qk_weight_bytes(s.scheme, s.group, Int64(n), Int64(k))
        precondition(bytes > 0, "unsupported scheme \(s)")
        let buf = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        buffer = buf
        let rc = values.withUnsafeBufferPointer {
            qk_weight_pack_rows(s.scheme, s.group, Int64(n), Int64(k), 0, Int64(n), $0.baseAddress, buf)
        }
        precondition(rc == 0, "pack failed for \(s) n=\(n) k=\(k)")
        raw = qk_weight(scheme: s.scheme, group: s.group, n: Int64(n), k: Int64(k), data: UnsafeRawPointer(buf))
    }
    deinit { buffer.deallocate() }

    func row(_ r: Int) -> [Float] {
        var out = [Float](repeating: 0, count: Int(raw.k))
        withUnsafePointer(to: raw) { w in out.withUnsafeMutableBufferPointer { qk_weight_dequant_row(w, Int64(r), $0.baseAddress) } }
        return out
    }
}

typealias MMFn = (UnsafePointer<qk_weight>?, UnsafePointer<Float>?, Int64, UnsafePointer<Float>?, UnsafeMutablePointer<Float>?) -> Void

/// Every SIMD tier this CPU supports, with its direct entry point (no global ISA switch, so tests
/// running in parallel cannot disturb each other).
func mmSimdTiers() -> [(String, MMFn)] {
    var out: [(String, MMFn)] = []
    #if arch(x86_64)
    if qk_tier_supported(QK_TIER_AVX2) != 0 { out.append(("avx2", qk_matmul_avx2)) }
    if qk_tier_supported(QK_TIER_AVXVNNI) != 0 { out.append(("avxvnni", qk_matmul_avxvnni)) }
    if qk_tier_supported(QK_TIER_AVX512) != 0 {
        out.append(("avx512", qk_matmul_avx512))
        // the avxvnni kernels, EVEX-encoded: checks that tier's arithmetic on CPUs without AVX-VNNI
        if qk_tier_supported(QK_TIER_AVXVNNI) == 0 { out.append(("avxvnni(evex)", qk_matmul_avxvnni_evex)) }
    }
    #elseif arch(arm64)
    // Not compiled on the x86 CI machine; the same tiers are checked there under qemu by Tests/aarch64.
    if qk_tier_supported(QK_TIER_NEON) != 0 { out.append(("neon", qk_matmul_neon)) }
    if qk_tier_supported(QK_TIER_DOTPROD) != 0 { out.append(("dotprod", qk_matmul_dotprod)) }
    if qk_tier_supported(QK_TIER_I8MM) != 0 { out.append(("i8mm", qk_matmul_i8mm)) }
    #endif
    return out
}

/// Runs `fn` with x and y placed at an odd float offset (unaligned) and returns y.
func mmRun(_ fn: MMFn, _ w: MMWeight, x: [Float], m: Int, bias: [Float]?, misalign: Int = 1) -> [Float] {
    let n = Int(w.raw.n), k = Int(w.raw.k)
    let xs = UnsafeMutablePointer<Float>.allocate(capacity: m * k + 16)
    let ys = UnsafeMutablePointer<Float>.allocate(capacity: m * n + 16)
    defer { xs.deallocate(); ys.deallocate() }
    for i in 0..<(m * k) { xs[misalign + i] = x[i] }
    for i in 0..<(m * n + 16) { ys[i] = .nan }
    withUnsafePointer(to: w.raw) { wp in
        if let bias { bias.withUnsafeBufferPointer { fn(wp, xs + misalign, Int64(m), $0.baseAddress, ys + misalign) } }
        else { fn(wp, xs + misalign, Int64(m), nil, ys + misalign) }
    }
    return Array(UnsafeBufferPointer(start: ys + misalign, count: m * n))
}

func mmBitsEqual(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

func mmRelL2(_ a: [Float], _ b: [Double]) -> Double {
    var num = 0.0, den = 0.0
    for i in 0..<a.count { let d = Double(a[i]) - b[i]; num += d * d; den += b[i] * b[i] }
    return (num / max(den, 1e-300)).squareRoot()
}

/// x [m, k] with a few outlier channels (the pattern of Qwen2.5 hidden states).
func mmActivations(m: Int, k: Int, seed: UInt64, outliers: [Int: Float] = [:]) -> [Float] {
    var rng = MMRng(seed)
    var x = rng.floats(m * k)
    for r in 0..<m { for (c, s) in outliers where c < k { x[r * k + c] *= s } }
    return x
}

/// Expects `fn` to give the same bits on 1, 2, 3 and 5 threads, and rows 0, 5 and m - 1 computed alone to
/// equal their rows of the batch. Changes the thread count: call it inside withKernelState.
func mmExpectThreadAndBatchInvariance(_ fn: MMFn, _ w: MMWeight, x: [Float], m: Int, bias: [Float]?, _ label: String) {
    let n = Int(w.raw.n), k = Int(w.raw.k)
    let saved = qk_get_threads()
    defer { qk_set_threads(saved) }
    qk_set_threads(1)
    let y1 = mmRun(fn, w, x: x, m: m, bias: bias)
    for t: Int32 in [2, 3, 5] {
        qk_set_threads(t)
        #expect(mmBitsEqual(mmRun(fn, w, x: x, m: m, bias: bias), y1), "\(label): \(t) threads differ from 1")
    }
    for r in [0, 5, m - 1] {
        let single = mmRun(fn, w, x: Array(x[(r * k)..<((r + 1) * k)]), m: 1, bias: bias)
        #expect(mmBitsEqual(single, Array(y1[(r * n)..<((r + 1) * n)])), "\(label): row \(r) alone differs from the batch")
    }
}
