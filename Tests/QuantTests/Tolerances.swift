import Quant

/// Tolerances of the Quant tests, one place, each with its metric and reason.
enum Tolerances {
    /// `qwen-quant verify`'s relative RMSE (read back through Weight.row) vs the converter's own, relative:
    /// the same values summed in the same order in Double, so only the last bits may differ.
    static let verifyVsConverterRMSE = 1e-9

    /// Relative RMSE ‖stored − source‖ / ‖source‖ of a whole tensor, for the fixture's random
    /// (roughly Gaussian) weights. A symmetric b-bit quantizer with step Δ = amax/qmax has an error of
    /// about Δ/√12 per element; for Gaussian groups amax ≈ 2.5-4σ, so q8 lands near 5e-3 and q4 near
    /// 0.1 (measured on the fixture: q8 4.9e-3..7.8e-3, q4 9.0e-2..1.3e-1, per-channel worst). The bounds
    /// leave ~30 % margin; a layout or rounding bug gives errors of order 1.
    static func relRMSE(_ scheme: PackScheme, group: Int) -> Double {
        switch (scheme, group) {
        case (.f32, _), (.bf16, _): return 0  // bf16 checkpoints are stored bit-exactly
        case (.f16, _): return 1e-3            // f16 has 3 more mantissa bits than bf16: exact unless out of range
        case (.q8, 0): return 1.0e-2
        case (.q8, _): return 0.9e-2
        case (.q4, 0): return 0.18
        case (.q4, 32): return 0.125
        case (.q4, _): return 0.145
        case (.q8s, _): return 0.9e-2         // as q8 group 32 (measured on Gaussian weights: equal or lower)
        case (.q4c, _): return 0.115          // below q4 group 32 (measured 0.071 vs 0.078 on layer-0 synthetic weights)
        case (.q5s, _): return 0.06           // ~1.5x its weight error on Gaussian groups (0.038, MatmulTests)
        case (.q6s, _): return 0.03           // ~1.5x its 0.019 likewise (one more bit halves the step)
        }
    }
}
