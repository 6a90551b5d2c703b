// Tolerances of the KernelsTests target, one enum per test family, each with its metric and reason.

/// Tolerances of the matmul tests, each with its metric and reason (see the error bounds in
/// Sources/Kernels/include/qk_matmul_internal.h).
enum MatmulTolerance {
    /// Float schemes vs a float64 product with the same (dequantized) weights, per output:
    /// |err| <= floatChain * k * sum|x w|. A chain of k f32 FMAs has a relative error of at most
    /// about k * 2^-24; 1.2e-7 leaves room for the final bias add.
    static let floatChain = 1.2e-7
    /// BF16 / F16 weights vs the original f32 weights, per output: |err| <= bound * sum|x w| + chain.
    static let bf16Weight = 1.0 / 512      // 2^-9: round-to-nearest-even to 8 mantissa bits
    static let f16Weight = 1.0 / 2048      // 2^-11 (normal range; the test data stays there)
    /// Integer schemes vs a float64 product with the dequantized weights (isolates the activation
    /// quantization), per output: |err| <= sum_blocks amax_b / 254 * sum_b |w| * (1 + actSlack) + chain.
    static let actSlack = 1e-4
    /// Whole-output relative L2 error vs the exact f32 product, with outlier channels in x (x ~ U(-1, 1),
    /// channels scaled by 300 and 1000; w ~ U(-1, 1)). Measured values are printed by the test; these
    /// bounds are ~3x above what the scheme gives, to catch regressions, not to grade the format.
    static let relL2: [String: Double] = ["q8": 0.02, "q4": 0.25]
    /// bf16-dot (activations rounded to bf16) vs a float64 product with the same bf16 weights, per output:
    /// |err| <= bf16Activation * sum|x w| + chain: each x moves by at most 2^-8 |x| (nearest even to 8
    /// significant bits: half an ulp of 2^-7 relative).
    static let bf16Activation = 1.0 / 256
}

/// Tolerances of the Ops / Attention / Conv kernel tests (metric and reason beside each).
enum OpsTolerance {
    /// silu / silu_mul / gelu / softmax, SIMD vs ref, |a - b| <= abs + rel |b|: the vector exp and the
    /// erfc fit are within a few ulp of libm (rel 1.2e-7 for the fit); abs covers results near zero,
    /// where ref's 1 + erf(x) cancels (an ulp of 1 times |x|).
    static let elementRel: Float = 2e-6
    static let elementAbs: Float = 1e-7
    /// rmsnorm / l2norm: f32 vector sum of squares vs ref's double sum: a few ulp of the scale factor.
    static let normRel: Float = 1e-5
    static let normAbs: Float = 1e-7
    /// attention vs a Double softmax(QK^T)V: relative L2 over the output; f32 dot products of length
    /// d <= 384 and an f32 running sum.
    static let attentionRelL2 = 2e-6
    /// conv (f32 weights) vs a Double naive loop: relative L2, f32 sums of length 9 cin.
    static let convRelL2F32 = 2e-6
    /// rope tables vs the formula in Double: angles are rounded to f32 as transformers does, so the
    /// table may differ by about (ulp of the angle) + 1 ulp of cos/sin.
    static let ropeAngleUlps: Double = 1.0
    /// ... plus ropeCosSinAbs + ropeAngleRel · |angle|: f32 cos / sin of an f32 angle (about 1.2e-7 each,
    /// and the angle's own f32 product inv_freq · pos).
    static let ropeCosSinAbs = 2e-7
    static let ropeAngleRel = 2e-7
    /// softmax SIMD vs ref: the absolute floor of `tolRatio` (probabilities far below an ulp of 1).
    static let softmaxTierAbs: Float = 1e-9
    /// rmsnorm through the pool vs the formula in Double: |a - e| / (|e| + normFloor) <= normVsFormula;
    /// a few f32 ulp of the scale and of the product, the floor keeps near-zero outputs from dominating.
    static let normVsFormula = 1e-5
    static let normFloor = 1e-3
    /// softmax through the pool vs the formula in Double: |a - e| <= softmaxRel e + softmaxAbs (vector
    /// exp within a few ulp; the absolute term covers probabilities that underflow f32's precision).
    static let softmaxRel = 1e-6
    static let softmaxAbs = 1e-12
}
