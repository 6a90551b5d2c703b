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
}
