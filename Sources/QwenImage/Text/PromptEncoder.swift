import Foundation
import Quant

// Prompt → prompt embeddings, as diffusers 0.42.1 `QwenImagePipeline._get_qwen_prompt_embeds` +
// `encode_prompt`: template → ids (truncated to 1024 + 34) → embeddings → language model → last
// hidden state after the final norm → drop the template prefix → each row cut to its valid tokens,
// right-padded with zeros → mask → cut to `max_sequence_length`.

// MARK: - Result

/// `prompt_embeds` [B, L, H] and `prompt_embeds_mask` [B, L] as the pipelines return them.
public struct PromptEmbeddings: Sendable {
    public let batch: Int
    public let length: Int
    public let hidden: Int
    /// [B, L, H] f32; zero after each row's valid tokens.
    public var embeds: [Float]
    /// [B, L]: 1 on valid tokens, 0 on padding.
    public var mask: [Int64]
    /// Valid tokens per row.
    public var validLengths: [Int]
    /// [B, L]: 1 where the row is an `<|image_pad|>` token (Qwen-Image 2.1's `image_pad_mask`), nil where
    /// the pipeline returns none (the first generation) or it is all zero (text-only prompts).
    public var imagePadMask: [UInt8]? = nil

    /// The tail of `_get_qwen_prompt_embeds` (and of the Edit pipelines' variant): from each sequence's
    /// final-normed hidden states (`hiddenStates[b]`, at least `validLengths[b]` rows of `hidden`),
    /// keep rows `dropIndex ..< validLengths[b]`, zero-pad all rows to the longest, build the mask,
    /// then cut to `maxSequenceLength` when given (`encode_prompt`; the Edit pipelines do not cut).
    public static func assemble(hiddenStates: [[Float]], validLengths: [Int], hidden: Int, dropIndex: Int,
                                maxSequenceLength: Int? = nil) throws -> PromptEmbeddings {
        guard hiddenStates.count == validLengths.count, !hiddenStates.isEmpty else {
            throw QwenImageError.invalidInput("prompt embeddings: \(hiddenStates.count) hidden-state rows for \(validLengths.count) lengths")
        }
        var kept: [Int] = []
        for (b, v) in validLengths.enumerated() {
            guard v > dropIndex, hiddenStates[b].count >= v * hidden else {
                throw QwenImageError.invalidInput("prompt \(b): \(v) tokens, not more than the \(dropIndex) template tokens that are dropped")
            }
            kept.append(min(v - dropIndex, maxSequenceLength ?? Int.max))
        }
        let length = kept.max()!
        var embeds = [Float](repeating: 0, count: kept.count * length * hidden)
        var mask = [Int64](repeating: 0, count: kept.count * length)
        embeds.withUnsafeMutableBufferPointer { e in
            for (b, n) in kept.enumerated() {
                hiddenStates[b].withUnsafeBufferPointer { src in
                    (e.baseAddress! + b * length * hidden).update(from: src.baseAddress! + dropIndex * hidden,
                                                                  count: n * hidden)
                }
                for t in 0 ..< n { mask[b * length + t] = 1 }
            }
        }
        return PromptEmbeddings(batch: kept.count, length: length, hidden: hidden, embeds: embeds, mask: mask,
                                validLengths: kept)
    }

    /// The same embeddings repeated `count` times along the batch (one negative prompt for B prompts).
    public func repeated(_ count: Int) -> PromptEmbeddings {
        var e: [Float] = [], m: [Int64] = [], v: [Int] = []
        e.reserveCapacity(embeds.count * count)
        for _ in 0 ..< count { e += embeds; m += mask; v += validLengths }
        var out = PromptEmbeddings(batch: batch * count, length: length, hidden: hidden, embeds: e, mask: m, validLengths: v)
        out.imagePadMask = imagePadMask.map { p in (0 ..< count).flatMap { _ in p } }
        return out
    }
}

// MARK: - Encoder

/// Text-to-image prompt encoding from a pack (tokenizer + text encoder components).
public final class PromptEncoder {
    public let model: LanguageModel
    public let tokenizer: Qwen2Tokenizer
    public let template: PromptTemplate

    /// Tokenized prompts of the last `encode` call (debugging, token counts).
    public private(set) var lastTokenized: [TemplatedPrompt] = []
    /// Compute the template's dropped prefix (the system part, `dropIndex` tokens) once and let every
    /// prompt start after it (`SharedPrefix`): the same numbers (tested), with 34 fewer rows per
    /// prompt. Off while `model.onHiddenState` is set (it reports every row), for calibration, and
    /// when the environment sets QWEN_SHARED_PREFIX=0 (for A/B measurements).
    public var sharesTemplatePrefix = ProcessInfo.processInfo.environment["QWEN_SHARED_PREFIX"] != "0"
    /// The prefix computed by an earlier call, reused while the template's tokens are the same.
    private var prefix: SharedPrefix?
    /// Rows the last `encode` call did not compute thanks to the shared prefix.
    public private(set) var lastRowsSaved = 0

    public init(model: LanguageModel, tokenizer: Qwen2Tokenizer, template: PromptTemplate = .textToImage) {
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
    }

    /// Opens the pack's `text_encoder` and `tokenizer` components.
    public convenience init(pack: Pack, packPath: String) throws {
        let model = try LanguageModel(pack: pack, packPath: packPath)
        let tokenizer = try Self.loadTokenizer(pack: pack, packPath: packPath)
        self.init(model: model, tokenizer: tokenizer,
                  template: model.config.family == .qwen3vl ? .textToImage21(tokenizer: tokenizer) : .textToImage)
    }

    /// The pack's tokenizer component (files carried verbatim from the checkpoint).
    public static func loadTokenizer(pack: Pack, packPath: String) throws -> Qwen2Tokenizer {
        // Qwen-Image 2.1 has no tokenizer folder: the processor's carries the tokenizer files.
        if !pack.components.contains("tokenizer") && pack.components.contains("processor") {
            return try Qwen2Tokenizer.load(pack: pack)
        }
        guard pack.components.contains("tokenizer") else {
            throw QwenImageError.missingComponent(pack: packPath, component: "tokenizer",
                hint: "Convert the checkpoint with its tokenizer (qwen-quant convert SRC -o PACK --components text_encoder,tokenizer,...).")
        }
        return try Qwen2Tokenizer.load(source: packPath + "/tokenizer") { name in
            // An absent file selects the fallback (vocab.json + merges.txt); any other failure is reported.
            pack.hasFile(component: "tokenizer", name: name) ? try pack.fileData(component: "tokenizer", name: name) : nil
        }
    }

    /// Formats and tokenizes each prompt (truncating as the pipeline does). `warn` is told about
    /// every truncated prompt. Empty prompts are refused.
    public func tokenize(_ prompts: [String], warn: (String) -> Void = { _ in }) throws -> [TemplatedPrompt] {
        try prompts.enumerated().map { i, p in
            if p.isEmpty && template.emptyPromptIsSpace { return template.tokenize(prompt: " ", with: tokenizer) }
            guard !p.isEmpty else {
                throw QwenImageError.invalidInput("prompt \(i + 1) is empty (use a space, \" \", for an empty negative prompt)")
            }
            let t = template.tokenize(prompt: p, with: tokenizer)
            if t.truncatedTokens > 0 {
                warn("warning: prompt \(i + 1) is \(t.ids.count + t.truncatedTokens) tokens with its template, more than the "
                     + "\(template.tokenizerMaxLength ?? t.ids.count) the pipeline accepts; truncated to \(t.ids.count) "
                     + "tokens as diffusers does (the last \(t.truncatedTokens) tokens, including the template's closing "
                     + "`<|im_end|>` / assistant turn, are dropped)")
            }
            return t
        }
    }

    /// Encodes several groups of prompts (for example [prompts, [negative prompt]]) in passes over
    /// the weights as `plan` says (one pass for all by default, up to 8192 tokens); each group is
    /// padded on its own, as diffusers encodes positive and negative prompts in separate calls.
    /// - Parameter maxSequenceLength: `encode_prompt`'s cut (1 ... 1024; default 1024).
    public func encode(_ groups: [[String]], maxSequenceLength: Int = 1024, plan: TextEncoderPlan? = nil,
                       warn: (String) -> Void = { _ in }) throws -> [PromptEmbeddings] {
        let tokenized = try tokenize(groups.flatMap { $0 }, warn: warn)
        return try encode(tokenized: tokenized, groups: groups.map(\.count), maxSequenceLength: maxSequenceLength,
                          plan: plan)
    }

    /// `encode` from prompts already tokenized with `tokenize`; `groups` gives the size of each
    /// consecutive group of `tokenized`.
    public func encode(tokenized: [TemplatedPrompt], groups: [Int], maxSequenceLength: Int = 1024,
                       plan: TextEncoderPlan? = nil) throws -> [PromptEmbeddings] {
        let limit = template.maxSequenceLength ?? Int.max
        guard maxSequenceLength >= 1 && maxSequenceLength <= limit else {
            throw QwenImageError.invalidInput("max sequence length must be between 1 and \(limit), got \(maxSequenceLength)")
        }
        guard groups.reduce(0, +) == tokenized.count, groups.allSatisfy({ $0 > 0 }) else {
            throw QwenImageError.invalidInput("prompt groups \(groups) do not cover the \(tokenized.count) prompts")
        }
        lastTokenized = tokenized
        if let plan {
            model.prefetch = plan.prefetch
            model.prefetchDuringEmbedding = plan.prefetchDuringEmbedding
            model.mlpChunkRows = plan.mlpChunkRows
        }
        let hidden = model.config.hiddenSize
        let cut = template.maxSequenceLength == nil ? Int.max : maxSequenceLength
        let passes = (plan ?? TextEncoderPlan.estimate(config: model.config, weights: TextWeightFootprint(layerBytes: 0, embedBytes: 0),
                                                      sequenceLengths: [], baselineBytes: 0, prefetch: model.prefetch,
                                                      rowsPerPass: TextEncoderPlan.defaultRowsPerPass,
                                                      mlpChunkRows: model.mlpChunkRows))
            .passes(tokenized.map { $0.ids.count })

        // The template's dropped prefix, shared when every prompt starts with the same tokens.
        let drop = template.dropIndex
        for (i, t) in tokenized.enumerated() where t.ids.count <= drop {
            throw QwenImageError.invalidInput("prompt \(i + 1): \(t.ids.count) tokens, not more than the \(drop) template tokens that are dropped")
        }
        var shared: SharedPrefix?
        if sharesTemplatePrefix && model.onHiddenState == nil && drop > 0 {
            // The template's own first tokens (a prompt of one letter cannot merge into them).
            let ids = Array(template.tokenize(prompt: "a", with: tokenizer).ids.prefix(drop))
            if prefix?.ids != ids { prefix = SharedPrefix(ids: ids) }
            shared = prefix
        }
        // Left padding (Qwen-Image 2.1): a prompt's positions start at its pad count within its group.
        var pads = [Int](repeating: 0, count: tokenized.count)
        if template.leftPaddedPositions {
            var first = 0
            for g in groups {
                let longest = tokenized[first ..< first + g].map(\.ids.count).max() ?? 0
                for i in first ..< first + g { pads[i] = longest - tokenized[i].ids.count }
                first += g
            }
        }
        // A padded prompt's template prefix sits at other positions than the shared one: computed in full.
        func continues(_ i: Int) -> Bool { pads[i] == 0 && (shared.map { tokenized[i].ids.starts(with: $0.ids) } ?? false) }
        lastRowsSaved = 0

        // Each pass: its embedding rows in one visit of the embedding shard, then all its prompts
        // through each layer together (the weights are streamed once per pass).
        var states = [[Float]](repeating: [], count: tokenized.count)
        for pass in passes {
            let skip = pass.map { continues($0) ? drop : 0 }
            var embeds = try model.embed(zip(pass, skip).flatMap { tokenized[$0].ids[$1...] })
            var sequences: [LMSequence] = []
            var start = 0
            for (i, k) in zip(pass, skip) {
                let n = tokenized[i].ids.count - k
                sequences.append(LMSequence(inputsEmbeds: Array(embeds[start * hidden ..< (start + n) * hidden]),
                                            positions: .sequential(n, start: Int64(pads[i] + k)), afterPrefix: k > 0))
                start += n
                lastRowsSaved += k
            }
            embeds = []
            let out = try model.forward(sequences, prefix: shared)
            // Keep only the rows that end up in the result: after the template prefix, up to the cut.
            for (j, (i, k)) in zip(pass, skip).enumerated() {
                let kept = min(tokenized[i].ids.count - drop, cut)
                states[i] = Array(out[j][(drop - k) * hidden ..< (drop - k + kept) * hidden])
            }
        }

        var results: [PromptEmbeddings] = []
        var first = 0
        for g in groups {
            let range = first ..< first + g
            results.append(try PromptEmbeddings.assemble(
                hiddenStates: Array(states[range]), validLengths: states[range].map { $0.count / hidden },
                hidden: hidden, dropIndex: 0))
            for i in range { states[i] = [] }   // free as we go
            first += g
        }
        return results
    }
}
