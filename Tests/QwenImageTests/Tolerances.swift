/// Every tolerance of the QwenImage tests, with its metric and reason (one file per test target).
enum Tolerance {
    // MARK: VAE (metric: relative L2 ‖ours − ref‖ / ‖ref‖ unless noted)

    /// f32 weights vs the oracle (f32 math on the same bf16-rounded weights): the oracle README puts two
    /// f32 runs of the upstream code ~5e-7 apart; the issue asks 1e-4.
    static let vaeF32 = 1e-4
    /// bf16 packs: the oracle's weights are bf16-rounded, so bf16 storage is exact and this should land
    /// near vaeF32 too; the issue allows 3e-2 (bf16 arithmetic).
    static let vaeBF16 = 3e-2
    /// Our tiled result vs our untiled result: the same arithmetic per pixel (only where it is done
    /// differs), so only summation-order noise of the kernels' blocking is allowed.
    static let vaeTiledVsUntiled = 1e-5
}
