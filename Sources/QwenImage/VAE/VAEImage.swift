import Foundation

/// The pipelines' pixel conventions (diffusers VaeImageProcessor): in, `uint8 / 255 · 2 − 1`; out,
/// `clamp(x / 2 + 0.5, 0, 1)` then `round(· 255)` (numpy rounds halves to even). Alpha, when present,
/// is handled like the colour channels (straight, not premultiplied).
extension VAEFrames {
    /// One frame from an 8-bit image (HWC).
    public convenience init(image: Image8) {
        self.init(frames: 1, height: image.height, width: image.width, channels: image.channels)
        image.pixels.withUnsafeBufferPointer { px in
            for i in 0..<px.count { data[i] = Float(px[i]) / 255 * 2 - 1 }
        }
    }

    /// A clip from 8-bit images (HWC), one frame each; all must have the same size and channel count.
    public convenience init(images: [Image8]) throws {
        guard let first = images.first else { throw QwenImageError.invalidInput("VAE frames: no images given") }
        for (i, im) in images.enumerated() where im.width != first.width || im.height != first.height || im.channels != first.channels {
            throw QwenImageError.invalidInput("VAE frames: frame \(i) is \(im.width)x\(im.height)x\(im.channels), "
                + "frame 0 is \(first.width)x\(first.height)x\(first.channels): every frame of a clip must have the same size")
        }
        self.init(frames: images.count, height: first.height, width: first.width, channels: first.channels)
        for (t, im) in images.enumerated() {
            let dst = frame(t)
            im.pixels.withUnsafeBufferPointer { px in
                for i in 0..<px.count { dst[i] = Float(px[i]) / 255 * 2 - 1 }
            }
        }
    }

    /// Frame `t` as an 8-bit image.
    public func image8(frame t: Int) -> Image8 {
        let src = frame(t)
        var px = [UInt8](repeating: 0, count: frameFloats)
        for i in 0..<frameFloats {
            px[i] = UInt8((Self.unit(src[i]) * 255).rounded(.toNearestOrEven))
        }
        return Image8(width: width, height: height, channels: channels, pixels: px)
    }

    /// Frame `t` as 16-bit samples (HWC), `round(clamp(x / 2 + 0.5, 0, 1) · 65535)`.
    public func samples16(frame t: Int) -> [UInt16] {
        let src = frame(t)
        var out = [UInt16](repeating: 0, count: frameFloats)
        for i in 0..<frameFloats {
            out[i] = UInt16((Self.unit(src[i]) * 65535).rounded(.toNearestOrEven))
        }
        return out
    }

    /// `clamp(x / 2 + 0.5, 0, 1)`; NaN maps to 0 (callers that must not hide one check `nonFiniteCount` first).
    @inline(__always) static func unit(_ x: Float) -> Float {
        let v = x / 2 + 0.5
        return v.isNaN ? 0 : min(max(v, 0), 1)
    }

    /// How many values are NaN or infinite (a decode of out-of-range latents can overflow).
    public var nonFiniteCount: Int {
        var n = 0
        for i in 0..<count where !data[i].isFinite { n += 1 }
        return n
    }
}
