import Foundation
import Quant

/// Edit / Edit-Plus prompts with reference images, as diffusers 0.42.1 `QwenImageEditPipeline` /
/// `QwenImageEditPlusPipeline._get_qwen_prompt_embeds` compute them:
///
/// 1. the template (Edit: one `<|vision_start|><|image_pad|><|vision_end|>` before the prompt; Edit-Plus:
///    `Picture i: <|vision_start|><|image_pad|><|vision_end|>` per image) is tokenized and each
///    `<|image_pad|>` expanded to t·h·w/4 copies (`Qwen2VLProcessor`);
/// 2. the token embeddings of those copies are replaced, in order, by the vision tower's rows;
/// 3. 3-D mrope positions (`Qwen2_5_VLModel.get_rope_index`): text tokens advance all three axes by one;
///    the tokens of an image with merged grid h×w starting at position s get t = s, h = s + row,
///    w = s + col (row-major); the text after it resumes at s + max(h, w);
/// 4. the language model, the final norm, the first 64 tokens dropped, the same zero padding / mask as
///    text-only prompts, and no cut to a maximum length.
///
/// **Positions: the mrope behaviour, not what the installed pipeline returns.** With transformers 5.x,
/// Qwen2.5-VL computes these 3-D positions only when `mm_token_type_ids` is passed, and diffusers 0.42.1
/// does not pass it (diffusers issue #14194, fix proposed in PR #14189), so the installed pipeline
/// silently gives image tokens plain sequential positions. We implement the 3-D positions: the
/// behaviour of transformers 4.x (which Qwen-Image was released with) and of the proposed fix; the
/// oracle's `<case>.prompt_embeds` / `<case>.position_ids`, not `<case>.seqpos.*` (see docs/EDIT.md).
public enum EditPrompt {
    /// The pipeline template for `mode` and a number of images.
    public static func template(mode: EditMode, imageCount: Int) -> PromptTemplate {
        mode == .edit ? .edit : .editPlus(imageCount: imageCount)
    }

    /// Image tokens of each image: t·h·w / merge² (the merged grid).
    public static func tokenCounts(grids: [(t: Int, h: Int, w: Int)], mergeSize: Int) -> [Int] {
        grids.map { $0.t * $0.h * $0.w / (mergeSize * mergeSize) }
    }

    /// `ids` with the k-th `imagePad` expanded to `counts[k]` copies. Throws unless the ids hold exactly
    /// one `imagePad` per image (a prompt that spells `<|image_pad|>` itself would add one).
    public static func expand(ids: [Int], imagePad: Int, counts: [Int]) throws -> [Int] {
        let found = ids.filter { $0 == imagePad }.count
        guard found == counts.count else {
            throw QwenImageError.invalidInput("the templated prompt has \(found) <|image_pad|> tokens for \(counts.count) "
                                              + "image(s); the prompt itself must not contain <|image_pad|>")
        }
        var out: [Int] = []
        out.reserveCapacity(ids.count + counts.reduce(0, +))
        var k = 0
        for id in ids {
            if id == imagePad {
                out += [Int](repeating: imagePad, count: counts[k])
                k += 1
            } else {
                out.append(id)
            }
        }
        return out
    }

    /// 3-D mrope positions of one expanded sequence (see the type's documentation for the rule).
    public static func positions(expandedIDs ids: [Int], imagePad: Int, grids: [(t: Int, h: Int, w: Int)],
                                 mergeSize m: Int) throws -> MRopePositions {
        var t = [Int64](), h = [Int64](), w = [Int64]()
        t.reserveCapacity(ids.count); h.reserveCapacity(ids.count); w.reserveCapacity(ids.count)
        var cur: Int64 = 0
        var i = 0, k = 0
        while i < ids.count {
            if ids[i] == imagePad {
                guard k < grids.count else {
                    throw QwenImageError.invalidInput("more <|image_pad|> runs than images (\(grids.count))")
                }
                let g = grids[k]
                let lh = g.h / m, lw = g.w / m
                let n = g.t * lh * lw
                guard i + n <= ids.count, ids[i ..< i + n].allSatisfy({ $0 == imagePad }) else {
                    throw QwenImageError.invalidInput("image \(k + 1): expected \(n) consecutive <|image_pad|> tokens")
                }
                for tt in 0 ..< g.t {
                    for r in 0 ..< lh {
                        for c in 0 ..< lw {
                            t.append(cur + Int64(tt)); h.append(cur + Int64(r)); w.append(cur + Int64(c))
                        }
                    }
                }
                cur += Int64(max(lh, lw))
                i += n
                k += 1
            } else {
                t.append(cur); h.append(cur); w.append(cur)
                cur += 1
                i += 1
            }
        }
        guard k == grids.count else {
            throw QwenImageError.invalidInput("\(grids.count) images but \(k) <|image_pad|> runs in the prompt")
        }
        return try MRopePositions(t: t, h: h, w: w)
    }

    /// Replaces the rows of `embeds` [L, hidden] at image-token positions, in order, by the rows of
    /// `imageEmbeds` [tokens, hidden].
    public static func splice(_ embeds: inout [Float], ids: [Int], imagePad: Int, imageEmbeds: [Float],
                              hidden: Int) throws {
        let rows = ids.filter { $0 == imagePad }.count
        guard rows * hidden == imageEmbeds.count, embeds.count == ids.count * hidden else {
            throw QwenImageError.invalidInput("\(rows) image tokens in the prompt but \(imageEmbeds.count / max(hidden, 1)) "
                                              + "image embedding rows")
        }
        var j = 0
        embeds.withUnsafeMutableBufferPointer { e in
            imageEmbeds.withUnsafeBufferPointer { s in
                for (r, id) in ids.enumerated() where id == imagePad {
                    (e.baseAddress! + r * hidden).update(from: s.baseAddress! + j * hidden, count: hidden)
                    j += 1
                }
            }
        }
    }
}

/// One Edit / Edit-Plus prompt ready for the language model.
public struct EditSequence: Sendable {
    /// `input_ids` with the image tokens expanded.
    public let ids: [Int]
    /// [L, hidden] token embeddings with the image rows spliced in.
    public var inputsEmbeds: [Float]
    public let positions: MRopePositions
}

/// Edit / Edit-Plus prompt encoding from a pack: text encoder, tokenizer and the vision tower.
public final class EditPromptEncoder {
    public let model: LanguageModel
    public let tokenizer: Qwen2Tokenizer
    public let tower: VisionTower
    public let processor: VisionPreprocessor
    public let imagePad: Int

    public init(model: LanguageModel, tokenizer: Qwen2Tokenizer, tower: VisionTower, processor: VisionPreprocessor) throws {
        self.model = model
        self.tokenizer = tokenizer
        self.tower = tower
        self.processor = processor
        imagePad = try ReferenceImages.checkVisionSetup(model: model.config, tokenizer: tokenizer, tower: tower.config,
                                                 processor: processor)
    }

    /// Opens the pack's text encoder (with its vision tower), tokenizer and image processor settings.
    public convenience init(pack: Pack, packPath: String) throws {
        let tower = try VisionTower(pack: pack)
        try self.init(model: try LanguageModel(pack: pack, packPath: packPath),
                      tokenizer: try PromptEncoder.loadTokenizer(pack: pack, packPath: packPath),
                      tower: tower, processor: try ReferenceImages.processor(pack: pack))
    }

    /// Tokenizes `prompt` in the mode's template, expands the image tokens, embeds, splices the image rows
    /// and computes the 3-D positions.
    public func sequence(prompt: String, mode: EditMode, grids: [(t: Int, h: Int, w: Int)],
                         imageEmbeds: [Float]) throws -> EditSequence {
        guard !prompt.isEmpty else { throw QwenImageError.invalidInput("the prompt is empty (use \" \" for an empty one)") }
        try ReferenceImages.checkCount(grids.count, mode: mode)
        let template = EditPrompt.template(mode: mode, imageCount: grids.count)
        let raw = template.tokenize(prompt: prompt, with: tokenizer).ids
        let m = tower.config.spatialMergeSize
        let ids = try EditPrompt.expand(ids: raw, imagePad: imagePad,
                                        counts: EditPrompt.tokenCounts(grids: grids, mergeSize: m))
        let positions = try EditPrompt.positions(expandedIDs: ids, imagePad: imagePad, grids: grids, mergeSize: m)
        var embeds = try model.embed(ids)
        try EditPrompt.splice(&embeds, ids: ids, imagePad: imagePad, imageEmbeds: imageEmbeds,
                              hidden: model.config.hiddenSize)
        return EditSequence(ids: ids, inputsEmbeds: embeds, positions: positions)
    }

    /// Encodes groups of prompts (for example [prompts, [negative prompt]]), every prompt with the same
    /// reference images (`imageEmbeds` from `tower` for `grids`), all through each layer together.
    /// Each group is padded on its own; the Edit pipelines cut nothing.
    public func encode(_ groups: [[String]], mode: EditMode, grids: [(t: Int, h: Int, w: Int)],
                       imageEmbeds: [Float]) throws -> (embeddings: [PromptEmbeddings], sequences: [EditSequence]) {
        let seqs = try groups.flatMap { $0 }.map {
            try sequence(prompt: $0, mode: mode, grids: grids, imageEmbeds: imageEmbeds)
        }
        let states = try model.forward(seqs.map { LMSequence(inputsEmbeds: $0.inputsEmbeds, positions: $0.positions) })
        let template = EditPrompt.template(mode: mode, imageCount: grids.count)
        var out: [PromptEmbeddings] = []
        var first = 0
        for g in groups {
            let r = first ..< first + g.count
            out.append(try PromptEmbeddings.assemble(hiddenStates: Array(states[r]), validLengths: seqs[r].map { $0.ids.count },
                                                     hidden: model.config.hiddenSize, dropIndex: template.dropIndex,
                                                     maxSequenceLength: nil))
            first += g.count
        }
        return (out, seqs)
    }
}
