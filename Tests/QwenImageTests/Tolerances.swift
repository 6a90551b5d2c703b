// Tolerances of the QwenImage tests: one place, each with its metric and reason.
// Metric "rel L2" is ‖candidate − reference‖ / ‖reference‖ over the whole tensor.

enum Tolerances {
    // MARK: Text encoder (TextEncoderTests)

    /// f32 and bf16 packs vs the float32 PyTorch reference, rel L2. The checkpoint is bf16, so both packs
    /// hold exactly the reference weights; computing in f32 should land near 1e-6 (the same upstream code
    /// with another attention kernel differs by ~5e-7). 1e-4 is the project's bar; the oracle's
    /// sensitivity run puts typical porting mistakes far above it.
    static let textF32RelL2 = 1e-4
    /// A batch row vs the same prompt encoded alone, and one strategy vs another (prefetch, one prompt at
    /// a time, MLP row chunks), rel L2. Same weights, same arithmetic per row; only the kernels' row
    /// blocking may differ. Upstream itself reports ~4e-7 for padded vs single rows.
    static let textBatchVsSingleRelL2 = 1e-6
    /// q8 / q4 packs vs the reference: reported, not pass/fail. These loose bounds only catch a broken
    /// path (a wrong scale or layout gives rel L2 near or above 1); measured values are printed by the test.
    static let textQ8RelL2Sanity = 0.1
    static let textQ4RelL2Sanity = 0.5
}

extension Tolerances {
    /// `qwen-run encode --dtype bf16` output vs the f32 reference, rel L2: rounding to bf16 (8 bits of
    /// mantissa) alone gives about 2^-9 / sqrt(3) ≈ 1.1e-3 relative; 4e-3 leaves room and still catches
    /// a wrong conversion (truncation instead of rounding stays below, garbage does not).
    static let bf16OutputRelL2 = 4e-3
}

extension Tolerances {
    // MARK: VAE (VAEReferenceTests, VAETilingTests), rel L2

    /// f32 weights vs the oracle (f32 math on the same bf16-rounded weights): two f32 runs of the upstream
    /// code differ by ~5e-7 (oracle README); the issue asks 1e-4. Measured: ~1e-6.
    static let vaeF32 = 1e-4
    /// bf16 packs: the oracle's weights are bf16-rounded, so bf16 storage is exact and should land near
    /// vaeF32 (the test checks that too); the issue allows 3e-2 (bf16 arithmetic).
    static let vaeBF16 = 3e-2
    /// Our tiled result vs our untiled result: the same arithmetic per pixel, only where it is done differs,
    /// so only summation-order noise of the kernels' blocking is allowed.
    static let vaeTiledVsUntiled = 1e-5
}
