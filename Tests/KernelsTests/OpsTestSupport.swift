import Kernels

// Shared helpers of the Ops / Attention / Conv kernel tests.
//
// Tier twins are called directly (qk_<op>_avx2 / _avx512 vs qk_<op>_ref) instead of switching the
// process-wide tier, because swift-testing runs suites in parallel and other suites rely on that state.

/// Deterministic xorshift generator so failures reproduce.
struct OpsRng {
    var state: UInt64
    init(_ seed: UInt64) { state = seed &* 0x9E37_79B9_7F4A_7C15 | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return state
    }
    /// Uniform in [-1, 1).
    mutating func float() -> Float { Float(Int64(bitPattern: next()) >> 40) / Float(1 << 23) }
    mutating func floats(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in float() * scale } }
}

/// Sizes that hit every loop tail of 8- and 16-lane kernels.
let tailSizes = [1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 64, 127, 129, 1023]

/// The SIMD tiers this CPU can run, by name.
func simdTiers() -> [String] {
    #if arch(x86_64)
    var t: [String] = []
    if qk_tier_supported(QK_TIER_AVX2) != 0 { t.append("avx2") }
    if qk_tier_supported(QK_TIER_AVX512) != 0 { t.append("avx512") }
    return t
    #else
    return []
    #endif
}

/// Max over i of |a - b| / (abs + rel * |b|): <= 1 passes.
func tolRatio(_ a: [Float], _ b: [Float], abs: Float, rel: Float) -> Float {
    var worst: Float = 0
    for i in 0..<a.count {
        if a[i].isNaN || b[i].isNaN { if a[i].isNaN != b[i].isNaN { return .infinity }; continue }
        worst = max(worst, Swift.abs(a[i] - b[i]) / (abs + rel * Swift.abs(b[i])))
    }
    return worst
}

func bitsEqual(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

/// Relative L2 error of `a` against the Double reference `b`.
func relL2(_ a: [Float], _ b: [Double]) -> Double {
    var num = 0.0, den = 0.0
    for i in 0..<a.count { num += (Double(a[i]) - b[i]) * (Double(a[i]) - b[i]); den += b[i] * b[i] }
    return (num / max(den, 1e-300)).squareRoot()
}

/// Runs `body` with 1 and then 2 threads and returns both results, retrying when another suite changed
/// the process-wide tier in between (the comparison is only meaningful under one tier).
func oneAndTwoThreads<T>(_ body: () -> T) -> (T, T) {
    withKernelState { oneAndTwoThreadsLocked(body) }
}

private func oneAndTwoThreadsLocked<T>(_ body: () -> T) -> (T, T) {
    let saved = qk_get_threads()
    defer { qk_set_threads(saved) }
    var last: (T, T)? = nil
    for _ in 0..<5 {
        let before = String(cString: qk_isa_name())
        qk_set_threads(1); let a = body()
        qk_set_threads(2); let b = body()
        last = (a, b)
        if String(cString: qk_isa_name()) == before { break }
    }
    return last!
}
