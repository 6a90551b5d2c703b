import Foundation
import Quant

/// What the weights of a text-encoder pack cost in memory while they are used (from its manifest).
/// Each shard is raw or zstd on its own (FORMAT.md §3.2): packs written since the embedding table
/// is kept raw have zstd layers and a raw table; older zstd packs compress the table too.
public struct TextWeightFootprint: Sendable {
    /// Resident bytes of the largest decoder-layer shard (raw: mapped pages; zstd: its buffer).
    public var layerBytes: Int
    /// Bytes of the embedding shard (raw: mapped; zstd: its decompression buffer).
    public var embedBytes: Int
    /// Bytes of one embedding row as stored.
    public var embedRowBytes: Int
    /// zstd shards: the compressed file is mapped while it is decompressed into a buffer.
    public var layersCompressed: Bool
    public var embedCompressed: Bool
    public var layerFileBytes: Int
    public var embedFileBytes: Int
    /// The largest decompression buffer the loader keeps for reuse (`PackComponent.poolLimitBytes`).
    public var poolLimitBytes: Int

    public init(layerBytes: Int, embedBytes: Int, embedRowBytes: Int = 0, layersCompressed: Bool = false,
                embedCompressed: Bool = false, layerFileBytes: Int = 0, embedFileBytes: Int = 0, poolLimitBytes: Int = 0) {
        self.layerBytes = layerBytes
        self.embedBytes = embedBytes
        self.embedRowBytes = embedRowBytes
        self.layersCompressed = layersCompressed
        self.embedCompressed = embedCompressed
        self.layerFileBytes = layersCompressed ? layerFileBytes : 0
        self.embedFileBytes = embedCompressed ? embedFileBytes : 0
        self.poolLimitBytes = poolLimitBytes
    }

    /// Resident bytes while `tokens` rows are read. Raw: the loader hashes the table in 16 MiB windows
    /// and drops the pages behind it, so only the window and the touched rows (a page each at most
    /// beyond the row) stay. zstd: the whole buffer plus the mapped compressed file.
    public func embeddingResident(tokens: Int) -> Int {
        embedCompressed ? embedBytes + embedFileBytes : min(embedBytes, (16 << 20) + tokens * (embedRowBytes + 4096))
    }

    /// The embedding's decompression buffer when the loader pools it after the lookup (zstd table no
    /// larger than the pool limit); 0 when it is freed or the table is raw.
    public var pooledEmbedBytes: Int { embedCompressed && embedBytes <= poolLimitBytes ? embedBytes : 0 }

    /// Resident weight bytes while the decoder layers run: one layer, or two with prefetch, plus the
    /// compressed file of the shard being decompressed. A pooled embedding buffer at least a layer
    /// large is reused for one of the layers; a smaller one stays beside them until evicted.
    public func layerPhaseBytes(prefetch: Bool) -> Int {
        let layers = layerBytes * (prefetch ? 2 : 1)
        let pooled = pooledEmbedBytes
        return (pooled >= layerBytes ? layers - layerBytes + pooled : layers + pooled) + layerFileBytes
    }

    /// Any shard the text encoder reads is compressed.
    public var compressed: Bool { layersCompressed || embedCompressed }
}

/// How the text encoder runs under a memory budget (`--max-ram`), and what it expects to use.
///
/// Prompts are grouped into passes of at most `rowsPerPass` tokens (a longer prompt is a pass of its
/// own); each pass streams the weights once and runs all its prompts through each layer together.
///
/// Two phases peak separately:
///  * embedding lookup: the rows read (a zstd table is decompressed whole; see
///    `TextWeightFootprint.embeddingResident`), plus layer 0 when it is prefetched meanwhile;
///  * decoder layers: one layer shard, or two with prefetch, plus the activations of one pass (see
///    `TextWeightFootprint.layerPhaseBytes`: a zstd table's buffer is freed after the lookup unless
///    the loader pools it).
/// Both add the process baseline (runtime, tokenizer), the kept outputs and some slack. The options
/// are tried from fastest to leanest and the first that fits is taken.
public struct TextEncoderPlan: Sendable, CustomStringConvertible {
    /// Load layer N+1 while layer N computes.
    public var prefetch: Bool
    /// Load layer 0 while the embedding rows are read.
    public var prefetchDuringEmbedding: Bool
    /// Tokens computed together in one pass over the weights (Int.max: all prompts in one pass).
    public var rowsPerPass: Int
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
    /// Tokens per pass without --max-ram: keeps a huge prompts file from allocating activations for
    /// all of it at once (8192 rows of the 7B model ≈ 0.6 GiB), at the price of streaming the weights
    /// once per 8192 tokens.
    public static let defaultRowsPerPass = 8192

    public var description: String {
        let passes = rowsPerPass == Int.max ? "all prompts in one pass" : rowsPerPass <= 1 ? "one prompt per pass" : "passes of up to \(rowsPerPass) tokens"
        return "\(prefetch ? "prefetch next layer" : "no prefetch")\(prefetch && !prefetchDuringEmbedding ? " (not during the embedding lookup)" : ""), \(passes), MLP in chunks of \(mlpChunkRows) rows; estimated peak \(ByteSize.format(estimatedBytes)) (layers \(ByteSize.format(weightBytes)) + activations \(ByteSize.format(activationBytes)) + baseline \(ByteSize.format(baselineBytes)); embedding phase \(ByteSize.format(embeddingPhaseBytes)))"
    }

    /// Groups prompts of these token counts into passes, in order: indices per pass.
    public func passes(_ lengths: [Int]) -> [[Int]] {
        var out: [[Int]] = []
        var current: [Int] = []
        var rows = 0
        for (i, l) in lengths.enumerated() {
            if !current.isEmpty && rows + l > rowsPerPass {
                out.append(current)
                current = []
                rows = 0
            }
            current.append(i)
            rows += l
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// Estimate for one option.
    public static func estimate(config c: TextConfig, weights w: TextWeightFootprint,
                                sequenceLengths: [Int], baselineBytes: Int, prefetch: Bool,
                                prefetchDuringEmbedding: Bool = false, rowsPerPass: Int = Int.max,
                                mlpChunkRows: Int) -> TextEncoderPlan {
        var plan = TextEncoderPlan(prefetch: prefetch, prefetchDuringEmbedding: prefetch && prefetchDuringEmbedding,
                                   rowsPerPass: max(1, rowsPerPass), mlpChunkRows: 1, estimatedBytes: 0,
                                   weightBytes: 0, activationBytes: 0, baselineBytes: baselineBytes,
                                   embeddingPhaseBytes: 0)
        let total = sequenceLengths.reduce(0, +)
        let rows = plan.passes(sequenceLengths).map { $0.reduce(0) { $0 + sequenceLengths[$1] } }.max() ?? 0
        plan.mlpChunkRows = max(1, min(mlpChunkRows, max(rows, 1)))
        let f = MemoryLayout<Float>.size
        // Outputs kept until the end: every prompt's hidden states, the padded result, the writer's copy
        // and its serialized file: four [tokens, H] f32 arrays at most. A pass also holds its inputs
        // (the embedding rows and their per-prompt copies).
        let kept = 4 * total * c.hiddenSize * f
        let passInputs = 2 * rows * c.hiddenSize * f
        plan.weightBytes = w.layerPhaseBytes(prefetch: prefetch)
        plan.activationBytes = ForwardState.bytes(config: c, rows: rows, mlpChunkRows: plan.mlpChunkRows) + passInputs + kept
        let layerPhase = baselineBytes + plan.weightBytes + plan.activationBytes + slackBytes
        plan.embeddingPhaseBytes = baselineBytes + w.embeddingResident(tokens: rows)
            + (plan.prefetchDuringEmbedding ? w.layerBytes + w.layerFileBytes : 0) + passInputs + kept + slackBytes
        plan.estimatedBytes = max(layerPhase, plan.embeddingPhaseBytes)
        return plan
    }

    /// The fastest option whose estimate fits `budget`; without a budget, the fastest option with
    /// passes of `defaultRowsPerPass` tokens. Throws `QwenImageError.budget` naming the smallest
    /// workable budget when none fits.
    public static func choose(config c: TextConfig, weights w: TextWeightFootprint,
                              sequenceLengths: [Int], budget: Int?, baselineBytes: Int) throws -> TextEncoderPlan {
        func plan(_ prefetch: Bool, _ overlap: Bool, _ rows: Int, _ chunk: Int) -> TextEncoderPlan {
            estimate(config: c, weights: w, sequenceLengths: sequenceLengths,
                     baselineBytes: baselineBytes, prefetch: prefetch, prefetchDuringEmbedding: overlap,
                     rowsPerPass: rows, mlpChunkRows: chunk)
        }
        guard let budget else { return plan(true, true, defaultRowsPerPass, 512) }
        // (prefetch, prefetch during the embedding lookup, tokens per pass, MLP chunk rows)
        let options: [(Bool, Bool, Int, Int)] = [
            (true, true, Int.max, 512), (true, false, Int.max, 512), (true, false, 4096, 256),
            (true, false, 1024, 128), (false, false, 1024, 128), (true, false, 1, 128), (false, false, 1, 64),
            (false, false, 1, 16),
        ]
        let plans = options.map { plan($0.0, $0.1, $0.2, $0.3) }
        if let fit = plans.first(where: { $0.estimatedBytes <= budget }) { return fit }
        let leanest = plans.min(by: { $0.estimatedBytes < $1.estimatedBytes })!
        throw QwenImageError.budget(
            "--max-ram \(ByteSize.format(budget)) is too small for the text encoder: it needs at least "
            + "\(ByteSize.format(leanest.estimatedBytes)) (one layer shard \(ByteSize.format(w.layerBytes)), the embedding "
            + "table \(ByteSize.format(w.embeddingResident(tokens: sequenceLengths.max() ?? 0)))\(w.embedCompressed ? " (compressed file + buffer)" : "") while it is read, activations and outputs "
            + "\(ByteSize.format(leanest.activationBytes)) for \(sequenceLengths.count) prompt(s) of up to "
            + "\(sequenceLengths.max() ?? 0) tokens, process baseline \(ByteSize.format(baselineBytes))). Raise --max-ram, "
            + "use a smaller pack scheme (q4 or q8)\(w.compressed ? " or an uncompressed pack" : ""), or encode fewer or shorter prompts per run.")
    }
}
