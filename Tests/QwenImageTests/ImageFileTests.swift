import Foundation
import Quant
import Testing
@testable import QwenImage

/// Fixtures: `Tests/Fixtures/images` (made by `scripts/make_image_fixtures.py` with PIL) and the oracle's
/// `refs/images` with the uint8 tensors the reference scripts decoded from them.
private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")
private func imagePath(_ name: String) -> String { fixtures.appendingPathComponent("images/" + name).path }

private func uint8Tensor(_ file: SafetensorsFile, _ name: String) throws -> (shape: [Int], values: [UInt8]) {
    let info = try file.info(name)
    #expect(info.dtype == .U8, "\(name) is \(info.dtype)")
    return (info.shape, [UInt8](try file.rawBytes(name)))
}

private func expectEqual(_ image: Image8, _ expected: (shape: [Int], values: [UInt8]), _ what: String) {
    #expect([image.height, image.width, image.channels] == expected.shape, "\(what): shape")
    if image.pixels != expected.values {
        let diffs = zip(image.pixels, expected.values).enumerated().filter { $0.element.0 != $0.element.1 }
        let first = diffs.first.map { "sample \($0.offset): got \($0.element.0), PIL \($0.element.1)" } ?? "sizes differ"
        Issue.record("\(what): \(diffs.count) samples differ from PIL; first \(first)")
    }
}

private let goodFixtures = [
    "rgb8.png", "rgba8.png", "gray8.png", "la8.png", "pal8.png", "pal8_trns.png", "pal4.png", "gray1.png",
    "gray2.png", "gray4.png", "gray2_trns.png", "gray16.png", "rgb16.png", "rgba16.png", "la16.png",
    "gray8_trns.png", "rgb8_trns.png", "gray16_trns.png", "rgb16_trns.png", "rgb8_adam7.png",
    "rgba16_adam7.png", "gray1_trns.png",
    "jpeg444.jpg", "jpeg422.jpg", "jpeg420.jpg", "jpeg420_progressive.jpg", "jpeg_gray.jpg", "jpeg_cmyk.jpg",
]

@Test(arguments: goodFixtures)
func imageDecodesLikePIL(_ name: String) throws {
    let expected = try SafetensorsFile(path: imagePath("expected.safetensors"))
    let key = String(name.split(separator: ".")[0])
    let rgb = try ImageFile.read(path: imagePath(name))
    expectEqual(rgb, try uint8Tensor(expected, key + ".rgb"), "\(name) as RGB")
    let rgba = try ImageFile.read(path: imagePath(name), keepAlpha: true)
    expectEqual(rgba, try uint8Tensor(expected, key + ".rgba"), "\(name) as RGBA")
}

@Test func imageDecodesTheOracleInputsExactly() throws {
    let cases: [(png: String, refs: String, tensor: String, alpha: Bool)] = [
        ("edit_A.png", "edit1.safetensors", "edit1.image0.uint8", false),
        ("edit_B.png", "editplus2.safetensors", "editplus2.image1.uint8", false),
        ("vae_enc0.png", "vae.safetensors", "vae.enc0.image_uint8", false),
        ("vae_rgba_enc.png", "vae_rgba.safetensors", "vae_rgba.enc.image_uint8", true),
    ]
    for c in cases {
        let refs = try SafetensorsFile(path: fixtures.appendingPathComponent("refs/" + c.refs).path)
        let image = try ImageFile.read(path: fixtures.appendingPathComponent("refs/images/" + c.png).path,
                                       keepAlpha: c.alpha)
        expectEqual(image, try uint8Tensor(refs, c.tensor), c.png)
    }
}

@Test func imageWritesAndReadsBack() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("image-io-\(getpid())")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    var generator = SystemRandomNumberGenerator()
    for channels in [3, 4] {
        for (w, h) in [(1, 1), (17, 5), (64, 33)] {
            let pixels = (0..<(w * h * channels)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let image = Image8(width: w, height: h, channels: channels, pixels: pixels)
            let path = dir.appendingPathComponent("rt\(channels)_\(w)x\(h).png").path
            try ImageFile.writePNG(image, to: path)
            #expect(try ImageFile.read(path: path, keepAlpha: channels == 4) == image)
            // Overwriting works, and leaves no temporary file behind.
            try ImageFile.writePNG(image, to: path)
        }
    }
    // 16 bit: the high byte comes back through PIL's 16 -> 8 bit rule for RGB(A).
    let samples: [UInt16] = (0..<(5 * 3 * 4)).map { UInt16(truncatingIfNeeded: $0 &* 4099 &+ 17) }
    let path16 = dir.appendingPathComponent("rt16.png").path
    try ImageFile.writePNG16(width: 5, height: 3, channels: 4, samples: samples, to: path16)
    let back = try ImageFile.read(path: path16, keepAlpha: true)
    #expect(back.pixels == samples.map { UInt8($0 >> 8) })
    let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }
    #expect(leftovers.isEmpty, "temporary files left: \(leftovers)")

    // Bad layouts and destinations.
    #expect(throws: QwenImageError.self) {
        try ImageFile.writePNG(Image8(width: 2, height: 2, channels: 3, pixels: [1, 2, 3]), to: path16)
    }
    #expect(throws: QwenImageError.self) {
        try ImageFile.writePNG(Image8(width: 0, height: 2, channels: 3, pixels: []), to: path16)
    }
    #expect(throws: QwenImageError.self) {
        try ImageFile.writePNG(Image8(width: 1, height: 1, channels: 3, pixels: [1, 2, 3]),
                               to: dir.appendingPathComponent("no/such/folder.png").path)
    }
}

// MARK: - Bad input

private func errorText(_ body: () throws -> Image8) -> String {
    do { _ = try body(); return "no error" } catch { return "\(error)" }
}

@Test func imageBadInputsGiveClearErrors() throws {
    let cases: [(String, String)] = [
        ("bad_truncated.png", "invalid PNG: truncated file"),
        ("bad_truncated.jpg", "invalid JPEG: truncated file"),
        ("bad_zero_width.png", "invalid PNG: Invalid IHDR data (Image width is zero in IHDR)"),
        ("bad_zlib.png", "invalid PNG:"),
        ("bad_crc.png", "invalid PNG: IHDR: CRC error"),
        ("bad_12bit.jpg", "invalid JPEG: Unsupported JPEG data precision 12"),
        ("huge_header.png", "image is 100000 x 100000 = 10000000000 pixels, more than the limit of 67108864 pixels; "
            + "raise the limit with --max-pixels"),
    ]
    for (name, expected) in cases {
        let text = errorText { try ImageFile.read(path: imagePath(name)) }
        #expect(text.hasPrefix(imagePath(name) + ": "), "\(name): \(text)")
        #expect(text.contains(expected), "\(name): \(text)")
    }
    // The cap applies to JPEG too, and can be raised.
    let small = errorText { try ImageFile.read(path: imagePath("jpeg420.jpg"), maxPixels: 100) }
    #expect(small.contains("image is 37 x 23 = 851 pixels, more than the limit of 100 pixels"), "\(small)")
    #expect(try ImageFile.read(path: imagePath("jpeg420.jpg"), maxPixels: 851).width == 37)

    // Not an image, empty, missing, a folder.
    let text = Data("hello, world".utf8)
    #expect(errorText { try ImageFile.decode(text, name: "x.txt") }
            == "x.txt: unsupported format: found bytes 68 65 6c 6c 6f 2c 20 77; expected PNG or JPEG")
    #expect(errorText { try ImageFile.decode(Data("GIF89a\u{1}\u{0}".utf8), name: "a.gif") }.contains("(GIF)"))
    #expect(errorText { try ImageFile.decode(Data(), name: "e.png") }
            == "e.png: unsupported format: found an empty file (0 bytes); expected PNG or JPEG")
    #expect(errorText { try ImageFile.read(path: imagePath("missing.png")) } == imagePath("missing.png") + ": file not found")
    #expect(errorText { try ImageFile.read(path: fixtures.path) }.contains("is a folder"))
    #expect(errorText { try ImageFile.decode(Data([0xFF, 0xD8, 0xFF]), name: "j.jpg") }.hasPrefix("j.jpg: invalid JPEG: "))
    #expect(errorText { try ImageFile.decode(Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]), name: "p.png") }
            .hasPrefix("p.png: invalid PNG: "))

    // Every prefix of a good PNG and JPEG fails cleanly (no crash, no hang, no garbage image).
    for name in ["rgb8_adam7.png", "jpeg420_progressive.jpg"] {
        let data = try Data(contentsOf: URL(fileURLWithPath: imagePath(name)))
        let full = try ImageFile.decode(data, name: name)
        for cut in stride(from: 0, to: data.count, by: 7) {
            if let image = try? ImageFile.decode(data.prefix(cut), name: name) {
                // A PNG cut inside its trailing IEND chunk still holds the whole image (PIL accepts it too).
                #expect(image == full, "\(name) cut at \(cut) decoded to a different image")
            }
        }
    }
}

// MARK: - EXIF orientation

@Test(arguments: ["orient1.png", "orient2.png", "orient3.png", "orient4.png", "orient5.png", "orient6.png",
                  "orient7.png", "orient8.png", "orient6_jpeg.jpg"])
func imageAppliesEXIFOrientationLikeExifTranspose(_ name: String) throws {
    let expected = try SafetensorsFile(path: imagePath("expected.safetensors"))
    let upright = try ImageFile.read(path: imagePath(name), applyEXIFOrientation: true)
    expectEqual(upright, try uint8Tensor(expected, String(name.split(separator: ".")[0]) + ".upright"), name)
    // Without the option the pixels are as stored (Image.open), whatever the tag says.
    let stored = try ImageFile.read(path: imagePath(name))
    let orientation = try #require(ImageFile.exifOrientation(try Data(contentsOf: URL(fileURLWithPath: imagePath(name)))))
    #expect(stored.applyingEXIFOrientation(orientation) == upright)
    #expect(name.hasSuffix(".jpg") || [stored.height, stored.width] == [7, 13])
}
