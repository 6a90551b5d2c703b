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
    /// `--bf16-dot` (bf16 packs, activations rounded to bf16 in every bf16 product) vs the f32 reference,
    /// rel L2. Measured on the tiny model: text 3.4e-3, VAE decode 4.5e-3 (the upsampler kernels built at load
    /// are rounded to bf16 too), encode 1.7e-3; the upstream
    /// pipeline in bf16 lands at 1.03e-2 (text) and 0.97e-2 (decode) from the same reference (the oracle's
    /// precision notes). Bound: no worse than upstream bf16.
    static let bf16DotRelL2 = 1e-2
    /// ... and at least this far from the exact path, or the fast kernel did not run.
    static let bf16DotMinRelL2 = 1e-5
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
    /// Pack (f32) vs the same weights transformed in memory from the checkpoint: identical values, the
    /// same kernels; only the order of weight loading differs, so only rounding noise is allowed.
    static let vaePackVsCheckpoint = 1e-6
    /// de-normalize(normalize-ed latents) vs the pipeline's latents: one f32 multiply-add per value.
    static let vaeDenormalize = 1e-6

    // MARK: Vision tower and edit prompts (Vision*Tests, Edit*Tests)

    /// Max abs difference of `pixel_values` from the oracle. Our normalisation repeats numpy's f32
    /// arithmetic (f32(f64(u8) · rescale), then (x − mean) / std in f32), so this is normally 0; 1e-6 is
    /// the brief's bar and far below a one-grey-level error (1 / 255 / 0.27 ≈ 1.5e-2).
    static let pixelValuesMaxAbs: Double = 1e-6
    /// Max difference in grey levels of our PIL-compatible resamplers from Pillow 13. The fixed-point
    /// arithmetic and the pass order are mirrored exactly, so 0 is expected; the brief's bar is one level.
    static let resizeGreyLevels = 0
    /// Vision tower (patch embedding, blocks, merger output) and edit `prompt_embeds` on f32 and bf16
    /// packs, rel L2: the fixture weights are bf16-exact, so both packs hold the reference weights and
    /// the same f32 arithmetic in another order lands near 1e-6; 1e-4 is the project's bar, well below
    /// the smallest typical mistake (tanh GELU ~2e-4; a wrong window, rope or mrope layout > 1e-1).
    static let visionRelL2: Double = 1e-4
    static let editPromptRelL2: Double = 1e-4
    /// Two images batched vs each run alone, max abs: attention never crosses images, so only the
    /// kernels' row blocking may differ.
    static let visionBatchVsSingleMaxAbs: Double = 1e-5
    /// q8 / q4 packs: measured and printed, not judged; this bound only catches a broken path.
    static let visionQuantizedSanityRelL2: Double = 0.5
}
