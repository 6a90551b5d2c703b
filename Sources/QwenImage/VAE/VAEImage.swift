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

    /// Frame `t` as an 8-bit image.
    public func image8(frame t: Int) -> Image8 {
        let src = frame(t)
        var px = [UInt8](repeating: 0, count: frameFloats)
        for i in 0..<frameFloats {
            let v = min(max(src[i] / 2 + 0.5, 0), 1)
            px[i] = UInt8((v * 255).rounded(.toNearestOrEven))
        }
        return Image8(width: width, height: height, channels: channels, pixels: px)
    }

    /// Frame `t` as 16-bit samples (HWC), `round(clamp(x / 2 + 0.5, 0, 1) · 65535)`.
    public func samples16(frame t: Int) -> [UInt16] {
        let src = frame(t)
        var out = [UInt16](repeating: 0, count: frameFloats)
        for i in 0..<frameFloats {
            let v = min(max(src[i] / 2 + 0.5, 0), 1)
            out[i] = UInt16((v * 65535).rounded(.toNearestOrEven))
        }
        return out
    }
}
