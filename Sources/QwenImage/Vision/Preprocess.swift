import Foundation

// MARK: - Geometry (pure functions of the image size)

/// The size rules of the Edit pipelines and of the Qwen2-VL image processor.
public enum VisionGeometry {
    /// Python's `round(x)` for a float: halves go to the even neighbour (2.5 → 2, 3.5 → 4).
    @inline(__always)
    public static func pythonRound(_ x: Double) -> Int { Int(x.rounded(.toNearestOrEven)) }

    /// `QwenImage21Pipeline`'s `output_resolution` values accepted (the pre-resize to that area).
    public static let outputResolutions = 32 ... 16384

    /// diffusers `calculate_dimensions(target_area, ratio)` (pipeline_qwenimage_edit*.py): the width and
    /// height, multiples of 32, of an image with about `targetArea` pixels and aspect `ratio` = w / h.
    public static func calculateDimensions(targetArea: Int, ratio: Double) -> (width: Int, height: Int) {
        let width = (Double(targetArea) * ratio).squareRoot()
        let height = width / ratio
        return (pythonRound(width / 32) * 32, pythonRound(height / 32) * 32)
    }

    /// The pipelines' first resize target for an input of `width × height`: Edit → a 1024×1024 area,
    /// Edit-Plus condition (text-encoder) images → a 384×384 area.
    public static func preresizeTarget(width: Int, height: Int, mode: EditMode) -> (width: Int, height: Int) {
        let area = mode == .edit ? 1024 * 1024 : 384 * 384
        return calculateDimensions(targetArea: area, ratio: Double(width) / Double(height))
    }

    /// transformers `smart_resize(height, width, factor, min_pixels, max_pixels)`: both sides multiples
    /// of `factor`, the area within [minPixels, maxPixels], the aspect kept as well as possible.
    /// Throws where upstream does (aspect ratio above 200). `path` names the image in errors.
    public static func smartResize(height: Int, width: Int, factor: Int = 28, minPixels: Int = 56 * 56,
                                   maxPixels: Int = 14 * 14 * 4 * 1280, path: String = "image") throws
        -> (height: Int, width: Int) {
        guard height > 0 && width > 0 else {
            throw QwenImageError.image(path: path, message: "image has zero size (\(width)x\(height))")
        }
        let aspect = Double(max(height, width)) / Double(min(height, width))
        guard aspect <= 200 else {
            throw QwenImageError.image(path: path, message: "absolute aspect ratio must be at most 200 (the Qwen2-VL "
                                       + "image processor refuses more), found \(width)x\(height) = \(aspect)")
        }
        let f = Double(factor)
        var hBar = pythonRound(Double(height) / f) * factor
        var wBar = pythonRound(Double(width) / f) * factor
        if hBar * wBar > maxPixels {
            let beta = (Double(height * width) / Double(maxPixels)).squareRoot()
            hBar = max(factor, Int((Double(height) / beta / f).rounded(.down)) * factor)
            wBar = max(factor, Int((Double(width) / beta / f).rounded(.down)) * factor)
        } else if hBar * wBar < minPixels {
            let beta = (Double(minPixels) / Double(height * width)).squareRoot()
            hBar = Int((Double(height) * beta / f).rounded(.up)) * factor
            wBar = Int((Double(width) * beta / f).rounded(.up)) * factor
        }
        return (hBar, wBar)
    }
}

/// Which Edit pipeline's prompt and first resize to use.
public enum EditMode: String, Sendable, CaseIterable {
    /// `QwenImageEditPipeline`: exactly one image, resized to a 1024×1024 area.
    case edit
    /// `QwenImageEditPlusPipeline`: one or more images, each resized to a 384×384 area for the text encoder.
    case editPlus = "edit-plus"
}

// MARK: - Images

/// An 8-bit RGB image, rows top to bottom, pixels interleaved `[height, width, 3]`.
public struct RGBImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) throws {
        guard width >= 0, height >= 0, pixels.count == width * height * 3 else {
            throw QwenImageError.invalidInput("RGB image: \(pixels.count) bytes do not make \(width)x\(height)x3")
        }
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// PIL `Image.resize((width, height), filter)`.
    public func resized(width w: Int, height h: Int, filter: PILResample.Filter) throws -> RGBImage {
        try RGBImage(width: w, height: h, pixels: PILResample.resize(pixels, width: width, height: height, channels: 3,
                                                                     toWidth: w, toHeight: h, filter: filter))
    }
}

/// A reference image as decoded from its file: RGB, or RGBA when it has transparency.
public struct VisionSourceImage: Sendable {
    public var width: Int
    public var height: Int
    /// 3 (RGB) or 4 (RGBA, straight alpha).
    public var channels: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws {
        guard channels == 3 || channels == 4, width >= 0, height >= 0, pixels.count == width * height * channels else {
            throw QwenImageError.invalidInput("image: \(pixels.count) bytes do not make \(width)x\(height)x\(channels) "
                + "(3 or 4 channels)")
        }
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    public init(_ rgb: RGBImage) {
        width = rgb.width
        height = rgb.height
        channels = 3
        pixels = rgb.pixels   // an RGBImage is consistent by construction
    }

    /// What the pipeline hands the processor: the optional first Lanczos resize (PIL resizes RGBA through
    /// premultiplied alpha), then transparency flattened onto white.
    public func pipelineRGB(resizeTo size: (width: Int, height: Int)?) throws -> RGBImage {
        var px = pixels, w = width, h = height
        if let s = size, s.width != w || s.height != h {
            px = channels == 4
                ? try PILResample.resizeRGBA(px, width: w, height: h, toWidth: s.width, toHeight: s.height, filter: .lanczos)
                : try PILResample.resize(px, width: w, height: h, channels: 3, toWidth: s.width, toHeight: s.height,
                                     filter: .lanczos)
            w = s.width
            h = s.height
        }
        return try RGBImage(width: w, height: h, pixels: channels == 4 ? PILResample.compositeOnWhite(px) : px)
    }
}

// MARK: - Image processor

/// The Qwen2-VL image processor (transformers `Qwen2VLImageProcessorPil`, which transformers 5.x uses
/// when torchvision is absent, as in the reference): smart_resize, PIL bicubic on uint8, rescale by
/// 1/255 (in double, stored as f32), normalisation with the CLIP mean/std (f32), and patchify.
public struct VisionPreprocessor: Sendable {
    public var patchSize: Int
    public var mergeSize: Int
    public var temporalPatchSize: Int
    public var minPixels: Int
    public var maxPixels: Int
    public var rescaleFactor: Double
    public var imageMean: [Float]
    public var imageStd: [Float]

    /// The upstream defaults (equal to Qwen-Image's `processor/preprocessor_config.json`).
    public init(patchSize: Int = 14, mergeSize: Int = 2, temporalPatchSize: Int = 2, minPixels: Int = 3136,
                maxPixels: Int = 12_845_056, rescaleFactor: Double = 1.0 / 255.0,
                imageMean: [Float] = [0.48145466, 0.4578275, 0.40821073],
                imageStd: [Float] = [0.26862954, 0.26130258, 0.27577711]) {
        self.patchSize = patchSize
        self.mergeSize = mergeSize
        self.temporalPatchSize = temporalPatchSize
        self.minPixels = minPixels
        self.maxPixels = maxPixels
        self.rescaleFactor = rescaleFactor
        self.imageMean = imageMean
        self.imageStd = imageStd
    }

    /// Reads `preprocessor_config.json` (as in the hub `processor/` folder). Missing fields keep the defaults;
    /// `size.shortest_edge` / `size.longest_edge` win over `min_pixels` / `max_pixels`, as upstream.
    public init(preprocessorConfig data: Data, file: String) throws {
        struct Size: Decodable { var shortest_edge: Int?; var longest_edge: Int? }
        struct Raw: Decodable {
            var patch_size: Int?; var merge_size: Int?; var temporal_patch_size: Int?
            var min_pixels: Int?; var max_pixels: Int?; var size: Size?
            var rescale_factor: Double?; var image_mean: [Float]?; var image_std: [Float]?
            var do_resize: Bool?; var do_rescale: Bool?; var do_normalize: Bool?; var resample: Int?
        }
        let raw: Raw
        do { raw = try JSONDecoder().decode(Raw.self, from: data) } catch {
            throw QwenImageError.config(file: file, message: "cannot read the image processor config: \(error)")
        }
        self.init()
        if let v = raw.patch_size { patchSize = v }
        if let v = raw.merge_size { mergeSize = v }
        if let v = raw.temporal_patch_size { temporalPatchSize = v }
        if let v = raw.min_pixels { minPixels = v }
        if let v = raw.max_pixels { maxPixels = v }
        if let v = raw.size?.shortest_edge { minPixels = v }
        if let v = raw.size?.longest_edge { maxPixels = v }
        if let v = raw.rescale_factor { rescaleFactor = v }
        if let v = raw.image_mean { imageMean = v }
        if let v = raw.image_std { imageStd = v }
        guard imageMean.count == 3, imageStd.count == 3, imageStd.allSatisfy({ $0 > 0 }) else {
            throw QwenImageError.config(file: file, message: "image_mean and image_std must have 3 entries (std > 0), "
                                        + "found \(imageMean) and \(imageStd)")
        }
        guard raw.do_resize ?? true, raw.do_rescale ?? true, raw.do_normalize ?? true, (raw.resample ?? 3) == 3 else {
            throw QwenImageError.config(file: file, message: "only do_resize/do_rescale/do_normalize = true with "
                                        + "resample 3 (bicubic) are supported, as in Qwen-Image")
        }
        guard patchSize > 0, mergeSize > 0, temporalPatchSize > 0, minPixels > 0, maxPixels >= minPixels else {
            throw QwenImageError.config(file: file, message: "invalid patch/merge sizes or pixel limits")
        }
    }

    /// smart_resize factor: one merged unit in pixels (28).
    public var factor: Int { patchSize * mergeSize }
    /// Values per `pixel_values` row: 3 × temporal × patch × patch (1176).
    public var rowLength: Int { 3 * temporalPatchSize * patchSize * patchSize }

    /// The size the processor resizes an image to, with the checks that give clear errors first:
    /// a side shorter than `factor` (28 px) is refused (older transformers refused it too; current
    /// upstream would upsample it, so resize such an image yourself), as is an aspect ratio above 200.
    public func targetSize(height: Int, width: Int, path: String) throws -> (height: Int, width: Int) {
        guard height >= factor && width >= factor else {
            throw QwenImageError.image(path: path, message: "image too small: \(width)x\(height) pixels, the vision "
                                       + "tower needs at least \(factor)x\(factor) (upscale it, or use --preresize auto)")
        }
        return try VisionGeometry.smartResize(height: height, width: width, factor: factor, minPixels: minPixels,
                                              maxPixels: maxPixels, path: path)
    }

    /// The processor's resize: smart_resize then PIL bicubic (a copy when the size already fits).
    public func resize(_ image: RGBImage, path: String) throws -> RGBImage {
        let (h, w) = try targetSize(height: image.height, width: image.width, path: path)
        return try image.resized(width: w, height: h, filter: .bicubic)
    }

    /// Patchify an image whose sides are multiples of `factor` (the output of `resize`).
    /// Returns `pixel_values` rows `[gridH·gridW, rowLength]` and the grid (1, gridH, gridW) in patches.
    /// Rows are ordered by merge unit (`[gridH/2, gridW/2, 2, 2]`); a row is (channel, temporal, y, x),
    /// the still image repeated in every temporal slot.
    public func patchify(_ image: RGBImage) throws -> (pixelValues: [Float], grid: (t: Int, h: Int, w: Int)) {
        guard image.height > 0, image.width > 0, image.height % factor == 0, image.width % factor == 0 else {
            throw QwenImageError.invalidInput("patchify: a \(image.width)x\(image.height) image; both sides must be positive "
                + "multiples of \(factor) (patch \(patchSize) x merge \(mergeSize): resize it first)")
        }
        let P = patchSize, M = mergeSize, T = temporalPatchSize
        let gh = image.height / P, gw = image.width / P
        // Normalise once into planes [3, H, W] exactly like numpy: f32(f64(u8) * scale), then (x - mean) / std in f32.
        let plane = image.width * image.height
        var norm = [Float](repeating: 0, count: 3 * plane)
        var lut = [Float](repeating: 0, count: 3 * 256)
        for c in 0..<3 {
            for v in 0..<256 { lut[c * 256 + v] = (Float(Double(v) * rescaleFactor) - imageMean[c]) / imageStd[c] }
        }
        image.pixels.withUnsafeBufferPointer { px in
            for i in 0..<plane {
                for c in 0..<3 { norm[c * plane + i] = lut[c * 256 + Int(px[i * 3 + c])] }
            }
        }
        let row = rowLength
        var out = [Float](repeating: 0, count: gh * gw * row)
        norm.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                var r = 0
                for bh in 0..<(gh / M) {
                    for bw in 0..<(gw / M) {
                        for mh in 0..<M {
                            for mw in 0..<M {
                                let y0 = (bh * M + mh) * P, x0 = (bw * M + mw) * P
                                let base = dst.baseAddress! + r * row
                                for c in 0..<3 {
                                    for t in 0..<T {
                                        let o = base + (c * T + t) * P * P
                                        for py in 0..<P {
                                            let s = src.baseAddress! + c * plane + (y0 + py) * image.width + x0
                                            (o + py * P).update(from: s, count: P)
                                        }
                                    }
                                }
                                r += 1
                            }
                        }
                    }
                }
            }
        }
        return (out, (1, gh, gw))
    }
}

// MARK: - Reference images to pixel_values

/// The vision input of one or more images, concatenated as the processor does.
public struct VisionInput: Sendable {
    /// `[sum of t·h·w, 1176]` row-major.
    public var pixelValues: [Float]
    /// Per image (t, h, w) in 14-px patches.
    public var grids: [(t: Int, h: Int, w: Int)]
    /// The images after every resize (what the patches show), for reports and tests.
    public var resized: [RGBImage]

    public var patchCount: Int { grids.reduce(0) { $0 + $1.t * $1.h * $1.w } }

    public init(pixelValues: [Float], grids: [(t: Int, h: Int, w: Int)], resized: [RGBImage]) {
        self.pixelValues = pixelValues
        self.grids = grids
        self.resized = resized
    }

    /// Runs the pipelines' optional first resize (`preresize`: Lanczos to the mode's target area), then the
    /// image processor, on each image in order. `paths` name the images in errors.
    public static func prepare(images: [VisionSourceImage], paths: [String], mode: EditMode, preresize: Bool,
                               processor: VisionPreprocessor) throws -> VisionInput {
        guard images.count == paths.count else {
            throw QwenImageError.invalidInput("\(images.count) images but \(paths.count) paths to name them")
        }
        var pv: [Float] = []
        var grids: [(t: Int, h: Int, w: Int)] = []
        var resized: [RGBImage] = []
        for (img, path) in zip(images, paths) {
            var target: (width: Int, height: Int)? = nil
            if preresize {
                let t = VisionGeometry.preresizeTarget(width: img.width, height: img.height, mode: mode)
                guard t.width > 0 && t.height > 0 else {
                    throw QwenImageError.image(path: path, message: "the pipeline's first resize would give "
                        + "\(t.width)x\(t.height) pixels for a \(img.width)x\(img.height) image (aspect ratio too extreme)")
                }
                target = t
            }
            let im = try processor.resize(try img.pipelineRGB(resizeTo: target), path: path)
            let (rows, grid) = try processor.patchify(im)
            pv.append(contentsOf: rows)
            grids.append(grid)
            resized.append(im)
        }
        return VisionInput(pixelValues: pv, grids: grids, resized: resized)
    }

    /// Qwen-Image 2.1 (`QwenImage21Pipeline.__call__` then `_get_qwen_prompt_embeds`): each image resized
    /// (Lanczos, as RGBA) to `calculate_dimensions(outputResolution², w / h)` when `outputResolution` is
    /// given, pasted onto white (the same bytes as `compositeOnWhite`), then the image processor (smart_resize with factor 32, bicubic, patchify).
    public static func prepare21(images: [VisionSourceImage], paths: [String], outputResolution: Int?,
                                 processor: VisionPreprocessor) throws -> VisionInput {
        guard images.count == paths.count else {
            throw QwenImageError.invalidInput("\(images.count) images but \(paths.count) paths to name them")
        }
        var input = VisionInput(pixelValues: [], grids: [], resized: [])
        for (img, path) in zip(images, paths) {
            var target: (width: Int, height: Int)? = nil
            if let r = outputResolution {
                let t = VisionGeometry.calculateDimensions(targetArea: r * r, ratio: Double(img.width) / Double(img.height))
                guard t.width > 0 && t.height > 0 else {
                    throw QwenImageError.image(path: path, message: "the pipeline's resize to a \(r)x\(r) area would give "
                        + "\(t.width)x\(t.height) pixels for a \(img.width)x\(img.height) image (aspect ratio too extreme)")
                }
                target = t
            }
            let im = try processor.resize(try img.pipelineRGB(resizeTo: target), path: path)
            let (rows, grid) = try processor.patchify(im)
            input.pixelValues.append(contentsOf: rows)
            input.grids.append(grid)
            input.resized.append(im)
        }
        return input
    }
}
