import ArgumentParser
import Foundation
import Quant
import QwenImage

/// Reference-image options shared by `vision` and `encode`.
struct ImageOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("A reference image (PNG or JPEG); repeat for several (Edit-Plus).",
                                            valueName: "path"))
    var image: [String] = []

    @Option(name: .long, help: ArgumentHelp("edit (exactly one image) or edit-plus (one or more); "
                                            + "default: edit for one image, edit-plus for several.", valueName: "mode"))
    var mode: String?

    @Option(name: .long, help: ArgumentHelp("auto: the pipelines' first Lanczos resize (Edit: to a 1024x1024 area, "
                                            + "Edit-Plus: to a 384x384 area); none: hand the image to the processor as is.",
                                            valueName: "auto|none"))
    var preresize: String = "auto"

    @Option(name: .long, help: ArgumentHelp("Qwen-Image 2.1 packs: --preresize auto resizes each image to about this "
                                            + "many pixels squared (QwenImage21Pipeline's output_resolution, default 1024).",
                                            valueName: "n"))
    var outputResolution: Int = 1024

    @Option(name: .long, help: ArgumentHelp("Refuse images with more pixels than this (default 67108864 = 8192x8192).",
                                            valueName: "n"))
    var maxPixels: Int = ImageFile.defaultMaxPixels

    /// The mode to use for the given images, validated.
    func resolvedMode() throws -> EditMode {
        guard let m = mode else { return ReferenceImages.defaultMode(imageCount: image.count) }
        guard let e = EditMode(rawValue: m) else {
            throw ValidationError("--mode must be edit or edit-plus, found '\(m)'")
        }
        return e
    }

    func resolvedPreresize() throws -> Bool {
        switch preresize {
        case "auto": return true
        case "none": return false
        default: throw ValidationError("--preresize must be auto or none, found '\(preresize)'")
        }
    }

    func validateImages(required: Bool) throws {
        if required && image.isEmpty { throw ValidationError("give at least one --image") }
        guard maxPixels > 0 else { throw ValidationError("--max-pixels must be positive, found \(maxPixels)") }
        let range = VisionGeometry.outputResolutions
        guard range.contains(outputResolution) else {
            throw ValidationError("--output-resolution must be between \(range.lowerBound) and \(range.upperBound), found \(outputResolution)")
        }
        _ = try resolvedPreresize()
        if !image.isEmpty {
            let m = try resolvedMode()
            do { try ReferenceImages.checkCount(image.count, mode: m) } catch let e as QwenImageError {
                throw ValidationError(e.description)
            }
        }
    }
}

struct Vision: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vision",
        abstract: "Run the vision tower on reference images: image_embeds as the Edit pipelines use them.",
        discussion: HelpText.reflow("""
        Writes a safetensors file with image_embeds [tokens, out_hidden] (f32; tokens = sum of t*h*w/4 over
        the images, in order) and image_grid_thw (int64 [images, 3], in patches).
        Preprocessing is the pipelines': optional first Lanczos resize (--preresize auto), then the Qwen2-VL
        image processor (smart_resize, bicubic, normalisation), matching PIL exactly.

        Qwen-Image 2.1 packs (Qwen3-VL tower, 16-pixel patches): --preresize auto is QwenImage21Pipeline's resize
        to a --output-resolution squared area, transparency is flattened onto white, and the file also holds
        deepstack_embeds_0 ... (the DeepStack mergers' rows, added to the outputs of the first language-model
        layers at the image tokens); --mode does not apply.

        Examples:
          qwen-run vision --pack pack/ --image photo.jpg --out photo_embeds.safetensors
          qwen-run vision --pack pack/ --image a.png --image b.jpg --preresize none --out ab.safetensors --json
          qwen-run vision --pack pack-2.1/ --image photo.png --output-resolution 2048 --out photo.safetensors
        """))

    @Option(name: .long, help: "A pack folder (made by qwen-quant convert) with a text encoder and its vision tower.")
    var pack: String

    @OptionGroup var images: ImageOptions

    @Option(name: .long, help: "Output safetensors file (written atomically).")
    var out: String

    @Flag(name: .long, help: "Replace an existing output file.")
    var force = false

    @OptionGroup var common: CommonOptions

    func validate() throws { try images.validateImages(required: true) }

    func run() throws {
        try common.apply()
        try checkOutput(out, force: force, extensions: ["safetensors"], inputs: [pack] + images.image)
        do {
            let start = DispatchTime.now()
            let p = try Pack(path: pack)
            if try ReferenceImages.isQwenImage21(pack: p) { return try run21(p, start: start) }
            let tower = try VisionTower(pack: p)
            let progress = Progress("vision", total: tower.config.depth)
            let (embeds, input) = try ReferenceImages.embed(
                paths: images.image, pack: p, mode: try images.resolvedMode(), preresize: try images.resolvedPreresize(),
                maxPixels: images.maxPixels, tower: tower, onBlock: { _ in progress.advance() })
            progress.finish()
            let tokens = embeds.count / tower.config.outHiddenSize
            var w = SafetensorsWriter(metadata: ["producer": "qwen-run vision", "mode": try images.resolvedMode().rawValue,
                                                 "preresize": images.preresize])
            try w.add("image_embeds", f32: embeds, shape: [tokens, tower.config.outHiddenSize])
            try w.add("image_grid_thw", int64: input.grids.flatMap { [Int64($0.t), Int64($0.h), Int64($0.w)] },
                      shape: [input.grids.count, 3])
            try w.write(toPath: out, force: force)
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
            printSummary([
                ("out", out),
                ("images", images.image),
                ("resized_hw", input.resized.map { [$0.height, $0.width] }),
                ("image_grid_thw", input.grids.map { [$0.t, $0.h, $0.w] }),
                ("tokens", tokens),
                ("patches", input.patchCount),
                ("seconds", seconds),
                ("peak_rss_bytes", ProcessStats.peakRSS()),
            ], json: common.json)
        } catch let e as QwenImageError {
            note("error: \(e.description)")
            throw ExitCode(1)
        } catch let e as QuantError {
            note("error: \(e)")
            throw ExitCode(1)
        }
    }

    /// Qwen-Image 2.1: the Qwen3-VL tower, its DeepStack rows too.
    private func run21(_ p: Pack, start: DispatchTime) throws {
        guard images.mode == nil else {
            throw QwenImageError.invalidInput("--mode selects a first-generation Edit template; a Qwen-Image 2.1 pack has one "
                                              + "image-conditioned template (leave --mode out)")
        }
        let tower = try Qwen3VisionTower(pack: p)
        let processor = try ReferenceImages.processor(pack: p)
        try ReferenceImages.checkProcessor(processor, tower: tower.config)
        let sources = try ReferenceImages.load(paths: images.image, maxPixels: images.maxPixels)
        let input = try VisionInput.prepare21(images: sources, paths: images.image,
                                              outputResolution: try images.resolvedPreresize() ? images.outputResolution : nil,
                                              processor: processor)
        let progress = Progress("vision", total: tower.config.depth)
        let features = try tower.forward(pixelValues: input.pixelValues, grids: input.grids, onBlock: { _ in progress.advance() })
        progress.finish()
        let out = tower.config.outHiddenSize, tokens = features.tokens
        var w = SafetensorsWriter(metadata: ["producer": "qwen-run vision", "model": "qwen-image-2.1",
                                             "preresize": images.preresize, "output_resolution": String(images.outputResolution)])
        try w.add("image_embeds", f32: features.embeds, shape: [tokens, out])
        for (k, d) in features.deepstack.enumerated() { try w.add("deepstack_embeds_\(k)", f32: d, shape: [tokens, out]) }
        try w.add("image_grid_thw", int64: input.grids.flatMap { [Int64($0.t), Int64($0.h), Int64($0.w)] },
                  shape: [input.grids.count, 3])
        try w.write(toPath: self.out, force: force)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        printSummary([
            ("out", self.out), ("images", images.image),
            ("resized_hw", input.resized.map { [$0.height, $0.width] }),
            ("image_grid_thw", input.grids.map { [$0.t, $0.h, $0.w] }),
            ("tokens", tokens), ("patches", input.patchCount), ("seconds", seconds),
            ("peak_rss_bytes", ProcessStats.peakRSS()),
        ], json: common.json)
    }
}
