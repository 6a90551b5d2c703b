import Foundation
import Quant

/// How the text encoder runs under a memory budget (`--max-ram`), and what it expects to use.
///
/// Peak memory ≈ process baseline (runtime, tokenizer) + resident layer shards (one, or two with
/// prefetch) + activations of the rows computed together (all prompts, or the longest one alone)
/// + kept inputs/outputs + embedding rows touched + slack. The options are tried from fastest to
/// leanest and the first that fits is taken.
public struct TextEncoderPlan: Sendable, CustomStringConvertible {
    /// Load layer N+1 while layer N computes.
    public var prefetch: Bool
    /// Run all prompts through each layer together (weights streamed once); else one prompt at a time.
    public var batchTogether: Bool
    /// Rows per MLP chunk.
    public var mlpChunkRows: Int
    /// Estimated peak resident bytes, and its parts.
    public var estimatedBytes: Int
    public var weightBytes: Int
    public var activationBytes: Int
    public var baselineBytes: Int

    /// Allocator slack and the kernels' per-thread scratch, which the estimate cannot see.
    public static let slackBytes = 24 << 20

    public var description: String {
        "\(prefetch ? "prefetch next layer" : "no prefetch"), \(batchTogether ? "all prompts per layer" : "one prompt at a time"), MLP in chunks of \(mlpChunkRows) rows; estimated peak \(ByteSize.format(estimatedBytes)) (weights \(ByteSize.format(weightBytes)), activations \(ByteSize.format(activationBytes)), baseline \(ByteSize.format(baselineBytes)))"
    }

    /// Estimate for one option.
    public static func estimate(config c: TextConfig, layerBytes: Int, embedRowBytes: Int,
                                sequenceLengths: [Int], baselineBytes: Int,
                                prefetch: Bool, batchTogether: Bool, mlpChunkRows: Int) -> TextEncoderPlan {
        let total = sequenceLengths.reduce(0, +)
        let rows = batchTogether ? total : (sequenceLengths.max() ?? 0)
        let chunk = max(1, min(mlpChunkRows, max(rows, 1)))
        // Inputs_embeds and hidden-state outputs of every prompt, the padded result and its file
        // buffer: four [tokens, H] f32 copies at most.
        let kept = 4 * total * c.hiddenSize * MemoryLayout<Float>.size
        // Each embedding row read touches its bytes plus up to one extra page.
        let embed = total * (embedRowBytes + 4096)
        let weights = layerBytes * (prefetch ? 2 : 1)
        let act = ForwardState.bytes(config: c, rows: rows, mlpChunkRows: chunk) + kept + embed
        return TextEncoderPlan(prefetch: prefetch, batchTogether: batchTogether, mlpChunkRows: chunk,
                               estimatedBytes: baselineBytes + weights + act + slackBytes,
                               weightBytes: weights, activationBytes: act, baselineBytes: baselineBytes)
    }

    /// The fastest option whose estimate fits `budget` (nil: no limit). Throws `QwenImageError.budget`
    /// naming the smallest workable budget when none fits.
    public static func choose(config c: TextConfig, layerBytes: Int, embedRowBytes: Int,
                              sequenceLengths: [Int], budget: Int?, baselineBytes: Int) throws -> TextEncoderPlan {
        let options: [(Bool, Bool, Int)] = [
            (true, true, 512), (true, true, 128), (false, true, 128),
            (true, false, 128), (false, false, 64), (false, false, 16),
        ]
        let plans = options.map {
            estimate(config: c, layerBytes: layerBytes, embedRowBytes: embedRowBytes,
                     sequenceLengths: sequenceLengths, baselineBytes: baselineBytes,
                     prefetch: $0.0, batchTogether: $0.1, mlpChunkRows: $0.2)
        }
        guard let budget else { return plans[0] }
        if let fit = plans.first(where: { $0.estimatedBytes <= budget }) { return fit }
        let leanest = plans.min(by: { $0.estimatedBytes < $1.estimatedBytes })!
        throw QwenImageError.budget(
            "--max-ram \(ByteSize.format(budget)) is too small for the text encoder: it needs at least "
            + "\(ByteSize.format(leanest.estimatedBytes)) (one layer shard \(ByteSize.format(layerBytes)), activations "
            + "\(ByteSize.format(leanest.activationBytes)) for the longest prompt of \(sequenceLengths.max() ?? 0) tokens, "
            + "process baseline \(ByteSize.format(baselineBytes))). Raise --max-ram, use a smaller pack scheme "
            + "(q4 or q8), or shorten the prompts.")
    }
}
