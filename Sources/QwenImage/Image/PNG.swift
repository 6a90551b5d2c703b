import CImageShim
import Foundation

/// PNG through libpng (via the setjmp shim), converted to RGB / RGBA as PIL does (see `ImageFile`).
enum PNGCodec {
    static func decode(_ data: Data, name: String, keepAlpha: Bool, maxPixels: Int) throws -> Image8 {
        var png = qi_png_image()
        let status = data.withUnsafeBytes { raw in
            qi_png_decode(raw.bindMemory(to: UInt8.self).baseAddress, raw.count, Int64(maxPixels), &png)
        }
        defer { qi_free(png.pixels) }
        let width = Int(png.width), height = Int(png.height), channels = Int(png.channels)
        try ImageFile.checkDecoded(status, format: "PNG", name: name, width: width, height: height,
                                   hasPixels: png.pixels != nil, maxPixels: maxPixels, message: cMessage(&png.message))
        let base = png.pixels!
        let count = width * height
        let outChannels = keepAlpha ? 4 : 3
        // PIL's 16 -> 8 bit: gray alone (mode I;16) clips, everything else keeps the high byte.
        let clip16 = png.file_color_type == 0
        // PIL compares a colour key's low byte with the 8-bit pixel values; a 1-bit gray key is 255 when set.
        var key: (UInt8, UInt8, UInt8)? = nil
        if png.has_key != 0 {
            key = (UInt8(truncatingIfNeeded: png.key.0), UInt8(truncatingIfNeeded: png.key.1),
                   UInt8(truncatingIfNeeded: png.key.2))
            if png.file_color_type == 0 && png.file_bit_depth == 1 { key!.0 = png.key.0 != 0 ? 255 : 0 }
        }

        var pixels = [UInt8](repeating: 0, count: count * outChannels)
        pixels.withUnsafeMutableBufferPointer { out in
            if png.bit_depth == 16 {
                let src = UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt16.self), count: count * channels)
                convert(count: count, channels: channels, outChannels: outChannels, key: key, out: out) { i in
                    let v = src[i]
                    return clip16 ? UInt8(min(v, 255)) : UInt8(v >> 8)
                }
            } else {
                let src = UnsafeBufferPointer(start: base.assumingMemoryBound(to: UInt8.self), count: count * channels)
                convert(count: count, channels: channels, outChannels: outChannels, key: key, out: out) { src[$0] }
            }
        }
        return Image8(width: width, height: height, channels: outChannels, pixels: pixels)
    }

    /// Maps `channels` (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) to RGB or RGBA, `sample(i)` giving the
    /// 8-bit value of source sample i.
    @inline(__always)
    private static func convert(count: Int, channels: Int, outChannels: Int, key: (UInt8, UInt8, UInt8)?,
                                out: UnsafeMutableBufferPointer<UInt8>, _ sample: (Int) -> UInt8) {
        for p in 0..<count {
            let s = p * channels, o = p * outChannels
            let r, g, b: UInt8
            var a: UInt8 = 255
            switch channels {
            case 1:
                r = sample(s); g = r; b = r
                if let key, r == key.0 { a = 0 }
            case 2:
                r = sample(s); g = r; b = r; a = sample(s + 1)
            case 3:
                r = sample(s); g = sample(s + 1); b = sample(s + 2)
                if let key, r == key.0, g == key.1, b == key.2 { a = 0 }
            default:
                r = sample(s); g = sample(s + 1); b = sample(s + 2); a = sample(s + 3)
            }
            out[o] = r; out[o + 1] = g; out[o + 2] = b
            if outChannels == 4 { out[o + 3] = a }
        }
    }

    static func encode(_ samples: UnsafeRawPointer, width: Int, height: Int, channels: Int, bitDepth: Int,
                       path: String) throws -> Data {
        var out: UnsafeMutablePointer<UInt8>? = nil
        var size = 0
        var text = [CChar](repeating: 0, count: Int(QI_MESSAGE_CAP))
        let status = qi_png_encode(samples, Int32(width), Int32(height), Int32(channels), Int32(bitDepth),
                                   &out, &size, &text)
        defer { qi_free(out) }
        guard status == Int32(QI_OK), let out else {
            let reason = String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw QwenImageError.io(path: path, message: "PNG encoding failed: \(reason)")
        }
        return Data(bytes: out, count: size)
    }
}

/// The NUL-terminated C message buffer (a fixed-size tuple in Swift) as a String.
func cMessage<T>(_ buffer: inout T) -> String {
    withUnsafeBytes(of: &buffer) { raw in
        let bytes = raw.bindMemory(to: UInt8.self)
        let end = bytes.firstIndex(of: 0) ?? bytes.count
        return String(decoding: bytes[..<end], as: UTF8.self)
    }
}
