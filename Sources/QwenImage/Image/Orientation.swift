import Foundation

// EXIF orientation, as `PIL.ImageOps.exif_transpose` applies it (diffusers' `load_image` calls it before
// `convert("RGB")`; a plain `Image.open` does not). Read from a JPEG's first `Exif` APP1 segment or a
// PNG's `eXIf` chunk; orientation written only in XMP or in a legacy "Raw profile type exif" text chunk
// is not read.

extension ImageFile {
    /// The EXIF orientation tag (1...8) of PNG or JPEG bytes, or nil when there is none or it is invalid.
    public static func exifOrientation(_ data: Data) -> Int? {
        let bytes = [UInt8](data.prefix(1 << 20))   // metadata comes first; never scan a whole photo
        switch detect(data) {
        case .jpeg: return jpegOrientation(bytes)
        case .png: return pngOrientation(bytes)
        case .other: return nil
        }
    }

    private static func be16(_ b: [UInt8], _ i: Int) -> Int { Int(b[i]) << 8 | Int(b[i + 1]) }
    private static func be32(_ b: [UInt8], _ i: Int) -> Int { be16(b, i) << 16 | be16(b, i + 2) }

    private static func jpegOrientation(_ b: [UInt8]) -> Int? {
        var pos = 2
        while pos + 4 <= b.count {
            guard b[pos] == 0xFF else { return nil }
            let marker = b[pos + 1]
            if marker == 0xFF { pos += 1; continue }                         // fill byte
            if marker == 0x01 || (0xD0...0xD8).contains(marker) { pos += 2; continue }   // no length
            if marker == 0xDA || marker == 0xD9 { return nil }              // start of scan / end
            let length = be16(b, pos + 2)
            guard length >= 2 else { return nil }
            let start = pos + 4, end = min(pos + 2 + length, b.count)
            if marker == 0xE1 && end - start > 6 && Array(b[start..<(start + 6)]) == Array("Exif\0\0".utf8) {
                return tiffOrientation(Array(b[(start + 6)..<end]))
            }
            pos += 2 + length
        }
        return nil
    }

    private static func pngOrientation(_ b: [UInt8]) -> Int? {
        var pos = 8
        while pos + 12 <= b.count {
            let length = be32(b, pos)
            let type = String(decoding: b[(pos + 4)..<(pos + 8)], as: UTF8.self)
            let start = pos + 8, end = min(start + length, b.count)
            if type == "eXIf" {
                var tiff = Array(b[start..<end])
                if tiff.starts(with: Array("Exif\0\0".utf8)) { tiff.removeFirst(6) }
                return tiffOrientation(tiff)
            }
            if type == "IEND" || length < 0 { return nil }
            pos = start + length + 4
        }
        return nil
    }

    /// Tag 0x0112 of IFD0 of a TIFF structure.
    private static func tiffOrientation(_ t: [UInt8]) -> Int? {
        guard t.count >= 8 else { return nil }
        let little: Bool
        if t[0] == 0x49 && t[1] == 0x49 { little = true } else if t[0] == 0x4D && t[1] == 0x4D { little = false } else { return nil }
        func u16(_ i: Int) -> Int { little ? Int(t[i]) | Int(t[i + 1]) << 8 : Int(t[i]) << 8 | Int(t[i + 1]) }
        func u32(_ i: Int) -> Int { little ? u16(i) | u16(i + 2) << 16 : u16(i) << 16 | u16(i + 2) }
        guard u16(2) == 42 else { return nil }
        let ifd = u32(4)
        guard ifd >= 8, ifd + 2 <= t.count else { return nil }
        for k in 0..<u16(ifd) {
            let e = ifd + 2 + 12 * k
            guard e + 12 <= t.count else { return nil }
            guard u16(e) == 0x0112 else { continue }
            let value: Int
            switch u16(e + 2) {
            case 3: value = u16(e + 8)      // SHORT
            case 4: value = u32(e + 8)      // LONG
            default: return nil
            }
            return (1...8).contains(value) ? value : nil
        }
        return nil
    }
}

extension Image8 {
    /// The image turned upright for an EXIF orientation, as `ImageOps.exif_transpose`:
    /// 2 mirror, 3 rotate 180°, 4 flip, 5 transpose, 6 rotate 90° clockwise, 7 transverse,
    /// 8 rotate 90° counter-clockwise; 1 and anything else leave it unchanged.
    public func applyingEXIFOrientation(_ orientation: Int) -> Image8 {
        guard (2...8).contains(orientation) else { return self }
        let w = width, h = height, c = channels
        let swaps = orientation >= 5
        let ow = swaps ? h : w, oh = swaps ? w : h
        // Source column and row of output pixel (x, y).
        let source: (Int, Int) -> (Int, Int)
        switch orientation {
        case 2: source = { x, y in (w - 1 - x, y) }
        case 3: source = { x, y in (w - 1 - x, h - 1 - y) }
        case 4: source = { x, y in (x, h - 1 - y) }
        case 5: source = { x, y in (y, x) }
        case 6: source = { x, y in (y, h - 1 - x) }
        case 7: source = { x, y in (w - 1 - y, h - 1 - x) }
        default: source = { x, y in (w - 1 - y, x) }
        }
        var out = [UInt8](repeating: 0, count: pixels.count)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<oh {
                    for x in 0..<ow {
                        let (sx, sy) = source(x, y)
                        let s = (sy * w + sx) * c, d = (y * ow + x) * c
                        for k in 0..<c { dst[d + k] = src[s + k] }
                    }
                }
            }
        }
        return Image8(width: ow, height: oh, channels: c, pixels: out)
    }
}
