import CImageShim
import Foundation

/// JPEG through libjpeg-turbo (via the setjmp shim), decoded with PIL's settings (see `ImageFile`).
enum JPEGCodec {
    static func decode(_ data: Data, name: String, keepAlpha: Bool, maxPixels: Int) throws -> Image8 {
        var jpeg = qi_jpeg_image()
        let status = data.withUnsafeBytes { raw in
            qi_jpeg_decode(raw.bindMemory(to: UInt8.self).baseAddress, raw.count, Int64(maxPixels), &jpeg)
        }
        defer { qi_free(jpeg.pixels) }
        let width = Int(jpeg.width), height = Int(jpeg.height), channels = Int(jpeg.channels)
        try ImageFile.checkDecoded(status, format: "JPEG", name: name, width: width, height: height,
                                   hasPixels: jpeg.pixels != nil, maxPixels: maxPixels, message: cMessage(&jpeg.message))
        let base = jpeg.pixels!
        let count = width * height
        let outChannels = keepAlpha ? 4 : 3
        let src = UnsafeBufferPointer(start: base, count: count * channels)
        var pixels = [UInt8](repeating: 255, count: count * outChannels)
        pixels.withUnsafeMutableBufferPointer { out in
            if channels == 3 && outChannels == 3 {
                _ = out.initialize(from: src)
                return
            }
            for p in 0..<count {
                let o = p * outChannels
                if channels == 1 {
                    let v = src[p]
                    out[o] = v; out[o + 1] = v; out[o + 2] = v
                } else if channels == 4 {
                    // PIL reads 4-component JPEGs as inverted ("CMYK;I", Adobe's convention), then
                    // converts with its cmyk2rgb: nk = 255 - k; x = clip(nk - c * nk / 255) (rounded).
                    let nk = Int(src[4 * p + 3])   // 255 - (255 - raw k)
                    for k in 0..<3 {
                        let c = 255 - Int(src[4 * p + k])
                        let t = c * nk + 128
                        out[o + k] = UInt8(clamping: nk - (((t >> 8) + t) >> 8))
                    }
                } else {
                    out[o] = src[3 * p]; out[o + 1] = src[3 * p + 1]; out[o + 2] = src[3 * p + 2]
                }
            }
        }
        return Image8(width: width, height: height, channels: outChannels, pixels: pixels)
    }
}
