import Foundation
import Quant

/// Reference images from files to `image_embeds`: what `qwen-run vision` and `qwen-run encode --image`
/// share.
public enum ReferenceImages {
    /// How many images a mode takes (Edit: exactly one; Edit-Plus: one or more).
    public static func checkCount(_ count: Int, mode: EditMode) throws {
        switch mode {
        case .edit where count != 1:
            throw QwenImageError.invalidInput("--mode edit takes exactly one --image, found \(count) "
                                              + "(use --mode edit-plus for several reference images)")
        case .editPlus where count < 1:
            throw QwenImageError.invalidInput("--mode edit-plus needs at least one --image")
        default: return
        }
    }

    /// The default mode for a number of images: Edit for one, Edit-Plus for several.
    public static func defaultMode(imageCount: Int) -> EditMode { imageCount == 1 ? .edit : .editPlus }

    /// Decodes PNG / JPEG files. Transparency is kept (and later composited onto white, as transformers'
    /// `convert_to_rgb` does); a fully opaque alpha channel is dropped (the same pixels, less work).
    public static func load(paths: [String], maxPixels: Int = ImageFile.defaultMaxPixels) throws -> [VisionSourceImage] {
        try paths.map { try source(ImageFile.read(path: $0, keepAlpha: true, maxPixels: maxPixels), name: $0) }
    }

    /// A decoded image (read with `keepAlpha: true`) as the vision input: RGB, or RGBA when some pixel is
    /// not opaque.
    public static func source(_ im: Image8, name: String) throws -> VisionSourceImage {
        guard im.width > 0 && im.height > 0 else {
            throw QwenImageError.image(path: name, message: "image has zero size (\(im.width)x\(im.height))")
        }
        switch im.channels {
        case 3:
            return try VisionSourceImage(width: im.width, height: im.height, channels: 3, pixels: im.pixels)
        case 4:
            var opaque = true
            for i in stride(from: 3, to: im.pixels.count, by: 4) where im.pixels[i] != 255 { opaque = false; break }
            if !opaque { return try VisionSourceImage(width: im.width, height: im.height, channels: 4, pixels: im.pixels) }
            var rgb = [UInt8](repeating: 0, count: im.width * im.height * 3)
            for i in 0..<(im.width * im.height) {
                rgb[i * 3] = im.pixels[i * 4]; rgb[i * 3 + 1] = im.pixels[i * 4 + 1]; rgb[i * 3 + 2] = im.pixels[i * 4 + 2]
            }
            return try VisionSourceImage(width: im.width, height: im.height, channels: 3, pixels: rgb)
        default:
            throw QwenImageError.image(path: name, message: "expected 3 or 4 channels after decoding, found \(im.channels)")
        }
    }

    /// Whether the pack's text encoder is Qwen-Image 2.1's (Qwen3-VL: `ImagePromptEncoder21`,
    /// `Qwen3VisionTower`) rather than the first generation's (Qwen2.5-VL: `EditPromptEncoder`, `VisionTower`).
    public static func isQwenImage21(pack: Pack) throws -> Bool {
        guard pack.hasComponent("text_encoder") else { return false }
        return try TextConfig.load(try pack.component("text_encoder").configData(),
                                   file: pack.path + "/text_encoder/config.json").family == .qwen3vl
    }

    /// Checks that a language model, its tokenizer, vision tower and image processor fit together (either
    /// generation) and returns the `<|image_pad|>` id.
    public static func checkVisionSetup(model: TextConfig, tokenizer: Qwen2Tokenizer, tower v: VisionConfig,
                                 processor: VisionPreprocessor) throws -> Int {
        guard let pad = model.imageTokenId ?? tokenizer.tokenID("<|image_pad|>") else {
            throw QwenImageError.config(file: "text_encoder/config.json",
                                        message: "no image_token_id, and the tokenizer has no <|image_pad|> token")
        }
        if let tokPad = tokenizer.tokenID("<|image_pad|>"), tokPad != pad {
            throw QwenImageError.config(file: "text_encoder/config.json",
                                        message: "image_token_id \(pad) differs from the tokenizer's <|image_pad|> id \(tokPad)")
        }
        guard v.outHiddenSize == model.hiddenSize else {
            throw QwenImageError.config(file: "text_encoder/config.json", message: "vision out_hidden_size "
                + "\(v.outHiddenSize) differs from the language model's hidden_size \(model.hiddenSize)")
        }
        try checkProcessor(processor, tower: v)
        return pad
    }

    /// The image processor must cut the patches the tower was built for.
    public static func checkProcessor(_ processor: VisionPreprocessor, tower v: VisionConfig) throws {
        guard v.spatialMergeSize == processor.mergeSize, v.patchSize == processor.patchSize,
              v.temporalPatchSize == processor.temporalPatchSize else {
            throw QwenImageError.config(file: "processor/preprocessor_config.json",
                                        message: "patch / merge / temporal sizes (\(processor.patchSize), \(processor.mergeSize), "
                                        + "\(processor.temporalPatchSize)) differ from the vision tower's (\(v.patchSize), "
                                        + "\(v.spatialMergeSize), \(v.temporalPatchSize)): convert the checkpoint's processor/ "
                                        + "with the text encoder")
        }
    }

    /// The image processor settings of a pack: `processor/preprocessor_config.json` when the pack carries
    /// it, else the upstream defaults (identical to Qwen-Image's file).
    public static func processor(pack: Pack) throws -> VisionPreprocessor {
        guard pack.hasComponent("processor"),
              let data = try? pack.fileData(component: "processor", name: "preprocessor_config.json") else {
            return VisionPreprocessor()
        }
        return try VisionPreprocessor(preprocessorConfig: data, file: pack.path + "/processor/preprocessor_config.json")
    }

    /// Files → `pixel_values` → vision tower. Returns the embeddings `[tokens, out_hidden]` and the input.
    public static func embed(paths: [String], pack: Pack, mode: EditMode, preresize: Bool,
                             maxPixels: Int = ImageFile.defaultMaxPixels, tower: VisionTower? = nil,
                             onBlock: ((Int) -> Void)? = nil) throws -> (embeds: [Float], input: VisionInput) {
        try checkCount(paths.count, mode: mode)
        return try embed(images: try load(paths: paths, maxPixels: maxPixels), names: paths, pack: pack, mode: mode,
                         preresize: preresize, tower: tower, onBlock: onBlock)
    }

    /// Decoded images (from `load` or `source`) → `pixel_values` → vision tower; `names` label them in errors.
    public static func embed(images: [VisionSourceImage], names: [String], pack: Pack, mode: EditMode, preresize: Bool,
                             tower: VisionTower? = nil, processor: VisionPreprocessor? = nil,
                             onBlock: ((Int) -> Void)? = nil) throws -> (embeds: [Float], input: VisionInput) {
        try checkCount(images.count, mode: mode)
        let tower = try tower ?? VisionTower(pack: pack)
        let input = try VisionInput.prepare(images: images, paths: names, mode: mode, preresize: preresize,
                                            processor: try processor ?? self.processor(pack: pack))
        let embeds = try tower.forward(pixelValues: input.pixelValues, grids: input.grids, onBlock: onBlock)
        return (embeds, input)
    }
}
