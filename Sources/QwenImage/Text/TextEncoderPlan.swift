import Foundation
import Quant

/// How the text encoder runs under a memory budget (`--max-ram`), and what it expects to use.
///
/// Two phases peak separately:
///  * embedding lookup: the whole embedding tensor becomes resident (its checksum is verified on
///    first use over the whole tensor, and a zstd shard is decompressed whole), plus layer 0 when it is
///    prefetched meanwhile;
///  * decoder layers: one layer shard, or two with prefetch, plus the activations of the rows computed
///    together (all prompts, or the longest one alone).
/// Both add the process baseline (runtime, tokenizer), the kept inputs/outputs and some slack. The
/// options are tried from fastest to leanest and the first that fits is taken.
public struct TextEncoderPlan: Sendable, CustomStringConvertible {
    /// Load layer N+1 while layer N computes.
    public var prefetch: Bool
    /// Load layer 0 while the embedding rows are read.
    public var prefetchDuringEmbedding: Bool
    /// Run all prompts through each layer together (weights streamed once); else one prompt at a time.
    public var batchTogether: Bool
    /// Rows per MLP chunk.
    public var mlpChunkRows: Int
    /// Estimated peak resident bytes (the larger phase), and the parts of the layer phase.
    public var estimatedBytes: Int
    public var weightBytes: Int
    public var activationBytes: Int
    public var baselineBytes: Int
    /// Estimated peak of the embedding phase.
    public var embeddingPhaseBytes: Int

    /// Allocator slack and the kernels' per-thread scratch, which the estimate cannot see.
    public static let slackBytes = 24 << 20

    public var description: String {
        "\(prefetch ? "prefetch next layer" : "no prefetch")\(prefetch && !prefetchDuringEmbedding ? " (not during the embedding lookup)" : ""), \(batchTogether ? "all prompts per layer" : "one prompt at a time"), MLP in chunks of \(mlpChunkRows) rows; estimated peak \(ByteSize.format(estimatedBytes)) (layers \(ByteSize.format(weightBytes)) + activations \(ByteSize.format(activationBytes)) + baseline \(ByteSize.format(baselineBytes)); embedding phase \(ByteSize.format(embeddingPhaseBytes)))"
    }

    /// Estimate for one option. `embedBytes`: the whole embedding tensor as stored.
    public static func estimate(config c: TextConfig, layerBytes: Int, embedBytes: Int,
                                sequenceLengths: [Int], baselineBytes: Int, prefetch: Bool,
                                prefetchDuringEmbedding: Bool = false, batchTogether: Bool,
                                mlpChunkRows: Int) -> TextEncoderPlan {
        let total = sequenceLengths.reduce(0, +)
        let rows = batchTogether ? total : (sequenceLengths.max() ?? 0)
        let chunk = max(1, min(mlpChunkRows, max(rows, 1)))
        // Inputs_embeds and hidden-state outputs of every prompt, the padded result and its file
        // buffer: four [tokens, H] f32 copies at most.
        let kept = 4 * total * c.hiddenSize * MemoryLayout<Float>.size
        let weights = layerBytes * (prefetch ? 2 : 1)
        let act = ForwardState.bytes(config: c, rows: rows, mlpChunkRows: chunk) + kept
        let layerPhase = baselineBytes + weights + act + slackBytes
        let overlap = prefetch && prefetchDuringEmbedding
        let embedPhase = baselineBytes + embedBytes + (overlap ? layerBytes : 0) + kept + slackBytes
        return TextEncoderPlan(prefetch: prefetch, prefetchDuringEmbedding: overlap, batchTogether: batchTogether,
                               mlpChunkRows: chunk, estimatedBytes: max(layerPhase, embedPhase),
                               weightBytes: weights, activationBytes: act, baselineBytes: baselineBytes,
                               embeddingPhaseBytes: embedPhase)
    }

    /// The fastest option whose estimate fits `budget` (nil: no limit). Throws `QwenImageError.budget`
    /// naming the smallest workable budget when none fits.
    public static func choose(config c: TextConfig, layerBytes: Int, embedBytes: Int,
                              sequenceLengths: [Int], budget: Int?, baselineBytes: Int) throws -> TextEncoderPlan {
        // (prefetch, prefetch during the embedding lookup, all prompts together, MLP chunk rows)
        let options: [(Bool, Bool, Bool, Int)] = [
            (true, true, true, 512), (true, false, true, 512), (true, false, true, 128), (false, false, true, 128),
            (true, false, false, 128), (false, false, false, 64), (false, false, false, 16),
        ]
        let plans = options.map {
            estimate(config: c, layerBytes: layerBytes, embedBytes: embedBytes, sequenceLengths: sequenceLengths,
                     baselineBytes: baselineBytes, prefetch: $0.0, prefetchDuringEmbedding: $0.1,
                     batchTogether: $0.2, mlpChunkRows: $0.3)
        }
        guard let budget else { return plans[0] }
        if let fit = plans.first(where: { $0.estimatedBytes <= budget }) { return fit }
        let leanest = plans.min(by: { $0.estimatedBytes < $1.estimatedBytes })!
        throw QwenImageError.budget(
            "--max-ram \(ByteSize.format(budget)) is too small for the text encoder: it needs at least "
            + "\(ByteSize.format(leanest.estimatedBytes)) (one layer shard \(ByteSize.format(layerBytes)), the embedding "
            + "table \(ByteSize.format(embedBytes)) while it is read, activations \(ByteSize.format(leanest.activationBytes)) "
            + "for the longest prompt of \(sequenceLengths.max() ?? 0) tokens, process baseline "
            + "\(ByteSize.format(baselineBytes))). Raise --max-ram, use a smaller pack scheme (q4 or q8), or shorten the prompts.")
    }
}
