/// The chat templates the Qwen-Image pipelines wrap a prompt in before the text encoder, with the
/// number of leading tokens (the system prompt up to and including `<|im_start|>user\n`) whose hidden
/// states are dropped. Mirrors diffusers 0.42.1, `pipelines/qwenimage/`:
///
/// * `QwenImagePipeline._get_qwen_prompt_embeds`: `prompt_template_encode`, drop 34, tokenizer called with
///   `max_length = 1024 + 34, truncation=True`; `encode_prompt` then cuts the embeddings to
///   `max_sequence_length` (1024 by default; `__call__` passes 512).
/// * `QwenImageEditPipeline`: its own system prompt, `<|vision_start|><|image_pad|><|vision_end|>` once
///   before the prompt, drop 64; the processor is called without truncation and nothing is cut.
/// * `QwenImageEditPlusPipeline`: the Edit system prompt with `Picture {i}: <|vision_start|>...` per image
///   (i from 1) in front of the prompt, drop 64, no truncation.
///
/// The drop index is hard-coded upstream (it does not depend on the tokenizer), except for Qwen-Image 2.1:
///
/// * `QwenImage21Pipeline._get_qwen_prompt_embeds` (diffusers 0.42.1, `pipelines/qwenimage21/`): one system
///   prompt, the drop index = the token count of the system message as the processor's chat template
///   renders it (`<|im_start|>system\n{sys}<|im_end|>\n` for Qwen3-VL's template), an empty prompt
///   replaced by " ", no truncation and no cut, left padding in a batch (positions are `arange` over the
///   padded row, so a prompt's positions start at its pad count).
public struct PromptTemplate: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case textToImage = "text-to-image", edit, editPlus = "edit-plus", textToImage21 = "text-to-image-2.1"
        case imageToImage21 = "image-conditioned-2.1"
    }

    public let kind: Kind
    /// The template text before and after `{}`.
    public let prefix: String
    public let suffix: String
    /// Tokens dropped from the front of the encoder output (`prompt_template_encode_start_idx`).
    public let dropIndex: Int
    /// The tokenizer's `max_length` with truncation on; nil where the pipeline does not truncate.
    public let tokenizerMaxLength: Int?
    /// The cut of the embeddings in `encode_prompt` (`max_sequence_length`); nil where there is none.
    public let maxSequenceLength: Int?
    /// Number of images the template refers to (one `<|image_pad|>` each).
    public let imageCount: Int
    /// The pipeline encodes "" as " " (Qwen-Image 2.1); the first generation's refuse it here.
    public var emptyPromptIsSpace = false
    /// Prompts of a batch are left-padded and their positions count the padding (Qwen-Image 2.1).
    public var leftPaddedPositions = false

    static let textToImageSystem = "Describe the image by detailing the color, shape, size, texture, quantity, "
        + "text, spatial relationships of the objects and background:"
    static let editSystem = "Describe the key features of the input image (color, shape, size, texture, objects, "
        + "background), then explain how the user's text instruction should alter or modify the image. Generate a "
        + "new image that meets the user's requirements while maintaining consistency with the original input "
        + "where appropriate."
    static let visionPlaceholder = "<|vision_start|><|image_pad|><|vision_end|>"
    static let assistantSuffix = "<|im_end|>\n<|im_start|>assistant\n"

    /// `QwenImagePipeline` (text-to-image).
    public static let textToImage = PromptTemplate(
        kind: .textToImage,
        prefix: "<|im_start|>system\n\(textToImageSystem)<|im_end|>\n<|im_start|>user\n",
        suffix: assistantSuffix, dropIndex: 34, tokenizerMaxLength: 1024 + 34, maxSequenceLength: 1024,
        imageCount: 0)

    /// `QwenImageEditPipeline` (one reference image).
    public static let edit = PromptTemplate(
        kind: .edit,
        prefix: "<|im_start|>system\n\(editSystem)<|im_end|>\n<|im_start|>user\n\(visionPlaceholder)",
        suffix: assistantSuffix, dropIndex: 64, tokenizerMaxLength: nil, maxSequenceLength: nil, imageCount: 1)

    /// `QwenImageEditPlusPipeline` with `imageCount` reference images (0 gives no picture prefix, as
    /// the pipeline does with no image).
    public static func editPlus(imageCount: Int) -> PromptTemplate {
        var pictures = ""
        for i in 0..<max(imageCount, 0) { pictures += "Picture \(i + 1): \(visionPlaceholder)" }
        return PromptTemplate(
            kind: .editPlus,
            prefix: "<|im_start|>system\n\(editSystem)<|im_end|>\n<|im_start|>user\n\(pictures)",
            suffix: assistantSuffix, dropIndex: 64, tokenizerMaxLength: nil, maxSequenceLength: nil,
            imageCount: max(imageCount, 0))
    }

    static let system21 = "Comprehend and analyze the provided prompt."

    /// `QwenImage21Pipeline` (text-to-image), with the drop index counted by `tokenizer`.
    public static func textToImage21(tokenizer: Qwen2Tokenizer) -> PromptTemplate {
        let system = "<|im_start|>system\n\(system21)<|im_end|>\n"
        var t = PromptTemplate(kind: .textToImage21, prefix: system + "<|im_start|>user\n", suffix: assistantSuffix,
                               dropIndex: tokenizer.encode(system).count, tokenizerMaxLength: nil, maxSequenceLength: nil,
                               imageCount: 0)
        t.emptyPromptIsSpace = true
        t.leftPaddedPositions = true
        return t
    }

    /// `QwenImage21Pipeline`'s image-conditioned template (`prompt_template_ti2i`) for `imageCount` reference
    /// images: `<image1><|vision_start|><|image_pad|><|vision_end|>`, then ` <imageN>...` for each further
    /// image, in front of the prompt (the `<imageN>` tags are plain text). Same system prompt and drop index
    /// as text-to-image (`base`, from `textToImage21`); the positions are 3-D mrope over the unpadded tokens, so
    /// padding does not move them.
    public static func imageConditioned21(base: PromptTemplate, imageCount: Int) -> PromptTemplate {
        precondition(base.kind == .textToImage21, "imageConditioned21 builds on the 2.1 text-to-image template")
        var images = ""
        for i in 1 ... max(imageCount, 1) { images += (i > 1 ? " " : "") + "<image\(i)>\(visionPlaceholder)" }
        var t = PromptTemplate(kind: .imageToImage21, prefix: base.prefix + images, suffix: assistantSuffix,
                               dropIndex: base.dropIndex, tokenizerMaxLength: nil, maxSequenceLength: nil,
                               imageCount: max(imageCount, 1))
        t.emptyPromptIsSpace = true
        return t
    }

    /// `template.format(prompt)`: the prompt is inserted verbatim (braces in it are not interpreted).
    public func format(prompt: String) -> String { prefix + prompt + suffix }

    /// Formats and tokenizes `prompt` as the pipeline does (truncating where it truncates).
    public func tokenize(prompt: String, with tokenizer: Qwen2Tokenizer) -> TemplatedPrompt {
        let text = format(prompt: prompt)
        var ids = tokenizer.encode(text)
        var dropped = 0
        if let limit = tokenizerMaxLength, ids.count > limit {
            dropped = ids.count - limit
            ids.removeLast(dropped)
        }
        return TemplatedPrompt(text: text, ids: ids, dropIndex: dropIndex, truncatedTokens: dropped)
    }
}

/// A prompt in its template, tokenized.
public struct TemplatedPrompt: Sendable, Equatable {
    /// The formatted text.
    public let text: String
    /// Token ids after truncation (`input_ids` of one row, without padding).
    public let ids: [Int]
    /// Hidden states `ids[dropIndex...]` are the prompt embeddings.
    public let dropIndex: Int
    /// Tokens removed from the end by the pipeline's truncation (0 when the prompt fits); callers
    /// should tell the user when this is not 0.
    public let truncatedTokens: Int
}
