import Foundation
import Quant

/// Qwen-Image 2.1 prompts with reference images, as diffusers 0.42.1
/// `QwenImage21Pipeline._get_qwen_prompt_embeds(prompt, image)` computes them with transformers 5.25:
///
/// 1. `PromptTemplate.imageConditioned21`: `<image1><|vision_start|><|image_pad|><|vision_end|>` (then
///    ` <imageN>...` per further image) before the prompt (`""` becomes `" "`); tokenized, each
///    `<|image_pad|>` expanded to t·h·w/4 copies;
/// 2. the vision tower (`Qwen3VisionTower`) on every image (RGBA pasted onto white); its merger rows replace
///    the image-pad embeddings, in order;
/// 3. 3-D interleaved mrope positions from `get_rope_index` over the real tokens (the same rule as the
///    first generation's Edit prompts: `EditPrompt.positions`), so left padding in a batch moves nothing;
/// 4. the language model with DeepStack (merger k's rows added to the output of layer k at the image
///    rows), no final norm (the pipeline hooks it away), the system prefix dropped, right-padded with
///    zeros, plus `image_pad_mask`.
///
/// Every prompt of a call sees all the images; the tower runs once for them (upstream runs it once per
/// prompt on copies of the same images, with the same result).
public final class ImagePromptEncoder21 {
    public let model: LanguageModel
    public let tokenizer: Qwen2Tokenizer
    public let tower: Qwen3VisionTower
    public let processor: VisionPreprocessor
    public let imagePad: Int
    /// The text-to-image template: the system prompt and its drop index, tokenized once.
    private let textTemplate: PromptTemplate

    public init(model: LanguageModel, tokenizer: Qwen2Tokenizer, tower: Qwen3VisionTower, processor: VisionPreprocessor) throws {
        guard model.config.family == .qwen3vl else {
            throw QwenImageError.config(file: "text_encoder/config.json",
                                        message: "not a Qwen3-VL text encoder (Qwen-Image 2.1); use EditPromptEncoder")
        }
        self.model = model
        self.tokenizer = tokenizer
        self.tower = tower
        self.processor = processor
        textTemplate = .textToImage21(tokenizer: tokenizer)
        imagePad = try ReferenceImages.checkVisionSetup(model: model.config, tokenizer: tokenizer, tower: tower.config,
                                                 processor: processor)
        guard tower.config.deepstackVisualIndexes.count <= model.config.numHiddenLayers else {
            throw QwenImageError.config(file: "text_encoder/config.json", message: "\(tower.config.deepstackVisualIndexes.count) "
                + "DeepStack mergers for \(model.config.numHiddenLayers) language-model layers")
        }
    }

    /// Opens the pack's text encoder (with its vision tower), the processor's tokenizer and image settings.
    public convenience init(pack: Pack, packPath: String) throws {
        try self.init(model: try LanguageModel(pack: pack, packPath: packPath),
                      tokenizer: try PromptEncoder.loadTokenizer(pack: pack, packPath: packPath),
                      tower: try Qwen3VisionTower(pack: pack), processor: try ReferenceImages.processor(pack: pack))
    }

    /// The template for `imageCount` images.
    public func template(imageCount: Int) -> PromptTemplate {
        .imageConditioned21(base: textTemplate, imageCount: imageCount)
    }

    /// One prompt ready for the language model: tokens (image pads expanded), embeddings with the image rows
    /// spliced in, positions and the DeepStack rows.
    public func sequence(prompt: String, grids: [(t: Int, h: Int, w: Int)], features: VisionFeatures) throws -> (ids: [Int], sequence: LMSequence) {
        guard !grids.isEmpty else { throw QwenImageError.invalidInput("an image-conditioned prompt needs at least one image") }
        let raw = template(imageCount: grids.count).tokenize(prompt: prompt.isEmpty ? " " : prompt, with: tokenizer).ids
        let m = tower.config.spatialMergeSize
        let ids = try EditPrompt.expand(ids: raw, imagePad: imagePad, counts: EditPrompt.tokenCounts(grids: grids, mergeSize: m))
        let positions = try EditPrompt.positions(expandedIDs: ids, imagePad: imagePad, grids: grids, mergeSize: m)
        var embeds = try model.embed(ids)
        try EditPrompt.splice(&embeds, ids: ids, imagePad: imagePad, imageEmbeds: features.embeds, hidden: model.config.hiddenSize)
        var s = LMSequence(inputsEmbeds: embeds, positions: positions)
        s.deepstack = features.deepstack
        s.visualRows = ids.indices.filter { ids[$0] == imagePad }
        return (ids, s)
    }

    /// Encodes groups of prompts (for example [prompts, [negative prompt]]), every prompt with all the images
    /// (`features` from `tower` for `grids`), all through each layer together. Each group is padded on its own.
    public func encode(_ groups: [[String]], grids: [(t: Int, h: Int, w: Int)],
                       features: VisionFeatures) throws -> (embeddings: [PromptEmbeddings], tokens: Int) {
        let built = try groups.flatMap { $0 }.map { try sequence(prompt: $0, grids: grids, features: features) }
        let states = try model.forward(built.map(\.sequence))
        let drop = template(imageCount: grids.count).dropIndex
        var out: [PromptEmbeddings] = []
        var first = 0
        for g in groups {
            let r = first ..< first + g.count
            var e = try PromptEmbeddings.assemble(hiddenStates: Array(states[r]), validLengths: built[r].map { $0.ids.count },
                                                  hidden: model.config.hiddenSize, dropIndex: drop)
            var pad = [UInt8](repeating: 0, count: e.batch * e.length)
            for (b, item) in built[r].enumerated() {
                for (j, id) in item.ids[drop...].enumerated() where id == imagePad { pad[b * e.length + j] = 1 }
            }
            e.imagePadMask = pad
            out.append(e)
            first += g.count
        }
        return (out, built.reduce(0) { $0 + $1.ids.count })
    }

    /// Decoded images → `pixel_values` (as `VisionInput.prepare21`) → the vision tower.
    public func embed(images: [VisionSourceImage], names: [String], outputResolution: Int?,
                      onBlock: ((Int) -> Void)? = nil) throws -> (features: VisionFeatures, input: VisionInput) {
        guard !images.isEmpty else { throw QwenImageError.invalidInput("no reference image given") }
        let input = try VisionInput.prepare21(images: images, paths: names, outputResolution: outputResolution, processor: processor)
        return (try tower.forward(pixelValues: input.pixelValues, grids: input.grids, onBlock: onBlock), input)
    }
}
