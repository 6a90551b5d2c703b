import CImageShim
import Foundation
import Quant

/// An 8-bit image, rows top to bottom, channels interleaved: `pixels[(y * width + x) * channels + c]`.
public struct Image8: Sendable, Equatable {
    public var width: Int
    public var height: Int
    /// 3 (RGB) or 4 (RGBA); 1 and 2 (gray, gray + alpha) only where a caller builds them itself.
    public var channels: Int
    /// [height, width, channels] (HWC).
    public var pixels: [UInt8]

    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }
}

/// Reading PNG and JPEG files into RGB / RGBA exactly as PIL's `Image.open(path).convert("RGB")`
/// (or `convert("RGBA")`) does, which is what the diffusers pipelines feed their image processors;
/// writing 8- and 16-bit PNGs atomically.
///
/// PIL conventions matched (checked against Pillow 13.0 by `Tests/Fixtures/scripts/make_image_fixtures.py`):
/// * alpha is dropped, not composited, by `convert("RGB")`; gray is replicated to R = G = B;
/// * 16-bit PNGs: RGB, RGBA and gray + alpha keep the high byte (`v >> 8`); 16-bit gray opens as
///   PIL mode `I;16` and its conversion clips, `min(v, 255)`, so most 16-bit gray images come out
///   nearly white (a PIL quirk, matched on purpose since the pipelines see the same);
/// * 1/2/4-bit gray is scaled to 0...255; palette images map through the palette;
/// * with `keepAlpha`: palette alpha from `tRNS`; a gray or RGB colour key (`tRNS`) makes the pixels
///   whose 8-bit value equals the key's low byte transparent (PIL compares that way); else alpha 255;
/// * gamma (`gAMA`), ICC profiles and `sBIT` are ignored, as `Image.open` does; so is the EXIF
///   orientation unless `applyEXIFOrientation` asks for diffusers' `load_image` behaviour;
/// * JPEG: libjpeg's accurate integer IDCT and fancy upsampling (PIL's defaults), grayscale
///   replicated; CMYK (and YCCK) JPEGs read as inverted CMYK and converted with PIL's `cmyk2rgb`.
public enum ImageFile {
    /// The default cap on width × height (64 Mi pixels: 8192 × 8192), so a hostile or mistaken file
    /// cannot make us allocate gigabytes. Callers expose it as `--max-pixels`.
    public static let defaultMaxPixels = 64 * 1024 * 1024

    /// Reads a PNG or JPEG file as RGB (3 channels), or RGBA (4) with `keepAlpha`.
    /// With `applyEXIFOrientation`, the image is turned upright as diffusers' `load_image` does
    /// (`ImageOps.exif_transpose`); without, it is as stored, like `Image.open`.
    /// Files above `maxFileBytes` (512 MiB: far above any PNG/JPEG within the pixel limit) are refused unread.
    public static let maxFileBytes = 512 << 20
    public static func read(path: String, keepAlpha: Bool = false, maxPixels: Int = defaultMaxPixels,
                            applyEXIFOrientation: Bool = false) throws -> Image8 {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw QwenImageError.image(path: path, message: "file not found")
        }
        if isDir.boolValue { throw QwenImageError.image(path: path, message: "is a folder, expected a PNG or JPEG file") }
        let data: Data
        do {
            guard let d = try FileBytes.read(path, limit: maxFileBytes) else { throw QwenImageError.image(path: path, message: "file not found") }
            data = d
        } catch let error as QuantError {
            throw QwenImageError.image(path: path, message: "cannot read: \(error.description)")
        }
        let image = try decode(data, name: path, keepAlpha: keepAlpha, maxPixels: maxPixels)
        guard applyEXIFOrientation, let orientation = exifOrientation(data) else { return image }
        return image.applyingEXIFOrientation(orientation)
    }

    /// Decodes PNG or JPEG bytes; `name` is used in error messages.
    public static func decode(_ data: Data, name: String, keepAlpha: Bool = false,
                              maxPixels: Int = defaultMaxPixels) throws -> Image8 {
        guard maxPixels > 0 else {
            throw QwenImageError.invalidInput("--max-pixels must be positive, got \(maxPixels)")
        }
        switch detect(data) {
        case .png: return try PNGCodec.decode(data, name: name, keepAlpha: keepAlpha, maxPixels: maxPixels)
        case .jpeg: return try JPEGCodec.decode(data, name: name, keepAlpha: keepAlpha, maxPixels: maxPixels)
        case .other(let found):
            throw QwenImageError.image(path: name, message: "unsupported format: found \(found); expected PNG or JPEG")
        }
    }

    /// Writes an 8-bit PNG (1 to 4 channels) atomically: a temporary file renamed into place.
    public static func writePNG(_ image: Image8, to path: String) throws {
        try writeAtomically(try pngData(image, name: path), to: path)
    }

    /// An 8-bit PNG (1 to 4 channels) in memory; `name` is used in error messages.
    public static func pngData(_ image: Image8, name: String) throws -> Data {
        try checkLayout(width: image.width, height: image.height, channels: image.channels,
                        count: image.pixels.count, path: name)
        return try image.pixels.withUnsafeBytes {
            try PNGCodec.encode($0.baseAddress!, width: image.width, height: image.height,
                                channels: image.channels, bitDepth: 8, path: name)
        }
    }

    /// Writes a 16-bit PNG atomically; `samples` are [height, width, channels] (HWC).
    public static func writePNG16(width: Int, height: Int, channels: Int, samples: [UInt16], to path: String) throws {
        try writeAtomically(try png16Data(width: width, height: height, channels: channels, samples: samples, name: path), to: path)
    }

    /// A 16-bit PNG in memory; `samples` are [height, width, channels] (HWC).
    public static func png16Data(width: Int, height: Int, channels: Int, samples: [UInt16], name: String) throws -> Data {
        try checkLayout(width: width, height: height, channels: channels, count: samples.count, path: name)
        return try samples.withUnsafeBytes {
            try PNGCodec.encode($0.baseAddress!, width: width, height: height, channels: channels, bitDepth: 16, path: name)
        }
    }

    // MARK: - Helpers

    enum Format: Equatable { case png, jpeg, other(String) }

    static func detect(_ data: Data) -> Format {
        let head = [UInt8](data.prefix(16))
        if head.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if head.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if head.isEmpty { return .other("an empty file (0 bytes)") }
        let hex = head.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
        let ascii = { (r: Range<Int>) in head.count >= r.upperBound ? String(decoding: head[r], as: UTF8.self) : "" }
        var guess = ""
        if ascii(0..<4) == "GIF8" { guess = " (GIF)" }
        else if ascii(0..<4) == "RIFF" && ascii(8..<12) == "WEBP" { guess = " (WebP)" }
        else if ascii(0..<2) == "BM" { guess = " (BMP)" }
        else if head.starts(with: [0x49, 0x49, 0x2A, 0x00]) || head.starts(with: [0x4D, 0x4D, 0x00, 0x2A]) { guess = " (TIFF)" }
        else if ascii(4..<8) == "ftyp" { guess = " (HEIF/AVIF)" }
        else if head.starts(with: [0x89, 0x50, 0x4E, 0x47]) { guess = " (a damaged PNG signature)" }
        return .other("bytes \(hex)\(guess)")
    }

    /// Turns a decoder shim's status into the error that names the file (shared by PNG and JPEG).
    static func checkDecoded(_ status: Int32, format: String, name: String, width: Int, height: Int,
                             hasPixels: Bool, maxPixels: Int, message: @autoclosure () -> String) throws {
        switch status {
        case Int32(QI_OK): break
        case Int32(QI_TOO_LARGE): throw tooLarge(name, width: width, height: height, maxPixels: maxPixels)
        default: throw QwenImageError.image(path: name, message: "invalid \(format): \(message())")
        }
        guard width > 0, height > 0, hasPixels else {
            throw QwenImageError.image(path: name, message: "invalid \(format): zero size (\(width) x \(height))")
        }
    }

    static func tooLarge(_ name: String, width: Int, height: Int, maxPixels: Int) -> QwenImageError {
        .image(path: name, message: "image is \(width) x \(height) = \(width * height) pixels, more than the limit of "
            + "\(maxPixels) pixels; raise the limit with --max-pixels if this is intended")
    }

    private static func checkLayout(width: Int, height: Int, channels: Int, count: Int, path: String) throws {
        guard width > 0, height > 0, width <= Int(Int32.max), height <= Int(Int32.max) else {
            throw QwenImageError.image(path: path, message: "cannot write a \(width) x \(height) image; expected positive sizes")
        }
        guard (1...4).contains(channels) else {
            throw QwenImageError.image(path: path, message: "cannot write \(channels) channels; expected 1 to 4")
        }
        guard count == width * height * channels else {
            throw QwenImageError.image(path: path,
                message: "expected \(width) x \(height) x \(channels) = \(width * height * channels) samples, found \(count)")
        }
    }

    private static func writeAtomically(_ data: Data, to path: String) throws {
        do { try AtomicOutput.write(data, to: URL(fileURLWithPath: path), force: true) } catch let e as AtomicOutputError {
            throw QwenImageError.io(path: path, message: e.description)
        } catch {
            throw QwenImageError.io(path: path, message: "cannot write: \(error.localizedDescription)")
        }
    }
}
