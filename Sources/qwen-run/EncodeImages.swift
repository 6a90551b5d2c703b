import ArgumentParser
import Foundation
import Quant
import QwenImage

/// `qwen-run encode --image ...`: Edit / Edit-Plus prompt embeddings (the vision path). Kept apart from
/// Encode.swift, which owns the text-only path and the shared options.
extension Encode {
    var editMode: QwenImage.EditMode {
        mode.flatMap { QwenImage.EditMode(rawValue: $0.rawValue) } ?? ReferenceImages.defaultMode(imageCount: images.count)
    }

    func validateImageOptions() throws {
        do { try ReferenceImages.checkCount(images.count, mode: editMode) } catch let e as QwenImageError {
            throw ValidationError(e.description)
        }
        if let p = preresize, p != "auto" && p != "none" {
            throw ValidationError("--preresize must be auto or none, found '\(p)'")
        }
        if let m = maxPixels, m <= 0 { throw ValidationError("--max-pixels must be positive, found \(m)") }
        let range = VisionGeometry.outputResolutions
        if let r = outputResolution, !range.contains(r) {
            throw ValidationError("--output-resolution must be between \(range.lowerBound) and \(range.upperBound), found \(r)")
        }
        if maxRam != nil {
            // Not planned under a budget yet: refusing beats ignoring it. Measured peaks: RESULTS.md (a 1024² image
            // and a prompt through Qwen-Image 2.1's q8s text encoder: 560 MiB).
            throw ValidationError("--max-ram applies to text-only prompts; with --image the vision tower and the prompt "
                                  + "are not planned under a budget yet (leave --max-ram out)")
        }
        if maxSequenceLength != 1024 {
            throw ValidationError("--max-sequence-length does not apply to Edit prompts (the Edit pipelines do not cut)")
        }
    }

    func encodeEditPrompts(_ prompts: [String], out: String) throws {
        let start = WallClock()
        let mode = editMode
        let pack = try Pack(path: self.pack)
        if try ReferenceImages.isQwenImage21(pack: pack) { return try encodeImagePrompts21(prompts, pack: pack, out: out, start: start) }
        if outputResolution != nil {
            throw QwenImageError.invalidInput("--output-resolution applies to Qwen-Image 2.1 packs; the Edit pipelines' resize "
                                              + "is chosen by --mode")
        }
        let encoder = try EditPromptEncoder(pack: pack, packPath: self.pack)
        let visionProgress = Progress("vision", total: encoder.tower.config.depth)
        let (imageEmbeds, input) = try ReferenceImages.embed(
            paths: images, pack: pack, mode: mode, preresize: (preresize ?? "auto") == "auto",
            maxPixels: maxPixels ?? ImageFile.defaultMaxPixels, tower: encoder.tower,
            onBlock: { _ in visionProgress.advance() })
        visionProgress.finish()
        let visionSeconds = start.elapsed()

        let negatives = negativePrompt.map { [$0] } ?? []
        let progress = Progress("encode", total: encoder.model.config.numHiddenLayers)
        encoder.model.onLayerDone = { _ in progress.advance() }
        let groups = negatives.isEmpty ? [prompts] : [prompts, negatives]
        let (results, sequences) = try encoder.encode(groups, mode: mode, grids: input.grids, imageEmbeds: imageEmbeds)
        progress.finish()

        try write(results, prompts: prompts.count, metadata: ["mode": mode.rawValue,
                  "positions": "mrope (3-D, transformers 4.x / diffusers PR #14189)"], to: URL(fileURLWithPath: out), force: force)
        imageSummary(out: out, template: ("mode", mode.rawValue), input: input,
                     imageTokens: imageEmbeds.count / encoder.model.config.hiddenSize, prompts: prompts.count,
                     results: results, tokens: sequences.reduce(0) { $0 + $1.ids.count }, start: start, visionSeconds: visionSeconds)
    }

    /// The summary of an image-prompt run (both generations).
    private func imageSummary(out: String, template: (String, Any), input: VisionInput, imageTokens: Int, prompts: Int,
                              results: [PromptEmbeddings], tokens: Int, start: WallClock, visionSeconds: Double) {
        let seconds = start.elapsed()
        printSummary([
            ("output", out), template, ("images", images),
            ("resized_hw", input.resized.map { [$0.height, $0.width] }),
            ("image_grid_thw", input.grids.map { [$0.t, $0.h, $0.w] }),
            ("image_tokens", imageTokens), ("prompts", prompts), ("negative_prompt", negativePrompt != nil),
            ("shape", [results[0].batch, results[0].length, results[0].hidden]), ("tokens", tokens),
            ("seconds", (seconds * 1000).rounded() / 1000), ("vision_seconds", (visionSeconds * 1000).rounded() / 1000),
            ("peak_rss_bytes", ProcessStats.peakRSS()), ("peak_rss", ByteSize.format(ProcessStats.peakRSS())),
        ], json: common.json)
    }

    /// Qwen-Image 2.1 (`QwenImage21Pipeline`): one image-conditioned template for any number of images.
    func encodeImagePrompts21(_ prompts: [String], pack: Pack, out: String, start: WallClock) throws {
        guard mode == nil else {
            throw QwenImageError.invalidInput("--mode selects a first-generation Edit template; a Qwen-Image 2.1 pack has one "
                                              + "image-conditioned template (leave --mode out)")
        }
        let encoder = try ImagePromptEncoder21(pack: pack, packPath: self.pack)
        let sources = try ReferenceImages.load(paths: images, maxPixels: maxPixels ?? ImageFile.defaultMaxPixels)
        let visionProgress = Progress("vision", total: encoder.tower.config.depth)
        let (features, input) = try encoder.embed(images: sources, names: images,
                                                  outputResolution: (preresize ?? "auto") == "auto" ? outputResolution ?? 1024 : nil,
                                                  onBlock: { _ in visionProgress.advance() })
        visionProgress.finish()
        let visionSeconds = start.elapsed()

        let negatives = negativePrompt.map { [$0] } ?? []
        let progress = Progress("encode", total: encoder.model.config.numHiddenLayers)
        encoder.model.onLayerDone = { _ in progress.advance() }
        let groups = negatives.isEmpty ? [prompts] : [prompts, negatives]
        let (results, tokens) = try encoder.encode(groups, grids: input.grids, features: features)
        progress.finish()

        try write(results, prompts: prompts.count, metadata: ["model": "qwen-image-2.1", "template": "image-conditioned"],
                  to: URL(fileURLWithPath: out), force: force)
        imageSummary(out: out, template: ("template", "image-conditioned-2.1"), input: input, imageTokens: features.tokens,
                     prompts: prompts.count, results: results, tokens: tokens, start: start, visionSeconds: visionSeconds)
    }
}
