import Foundation
import Quant
import QwenImage

/// The checks and the file layout `vae-encode` / `vae-decode` and the server's VAE routes share.
enum VAEIO {
    /// The `latents` tensor of a safetensors file, [1, z_dim, T, h, w] or [1, z_dim, h, w] (any float dtype),
    /// checked against the VAE. `label` names the input in errors; `oneFrame` refuses clips (for PNG output),
    /// saying what to do instead.
    static func latents(_ file: SafetensorsFile, label: String, config: VAEConfig, component: String,
                        oneFrame: String? = nil) throws -> VAEFrames {
        guard let info = file.tensors["latents"] else {
            throw QwenImageError.tensor(name: "latents", message: "not found in \(label) (it has: "
                + file.tensorNames.prefix(8).joined(separator: ", ") + (file.tensorNames.count > 8 ? ", …" : "") + ")")
        }
        guard info.dtype.isFloat else {
            throw QwenImageError.tensor(name: "latents", message: "in \(label): expected a float tensor, found \(info.dtype.rawValue)")
        }
        let s = info.shape
        guard (s.count == 5 || s.count == 4), s[0] == 1 else {
            throw QwenImageError.tensor(name: "latents", message: "in \(label): expected shape [1, z_dim, T, h, w] or [1, z_dim, h, w], found \(s)")
        }
        let (c, t, h, w) = s.count == 5 ? (s[1], s[2], s[3], s[4]) : (s[1], 1, s[2], s[3])
        guard t >= 1, h >= 1, w >= 1 else {
            throw QwenImageError.tensor(name: "latents", message: "in \(label): empty shape \(s)")
        }
        if let oneFrame, t > 1 {
            throw QwenImageError.invalidInput("\(label): latents have \(t) frames (a clip of \(1 + 4 * (t - 1)) frames); " + oneFrame)
        }
        guard c == config.zDim else {
            throw QwenImageError.tensor(name: "latents", message: "in \(label): expected z_dim = \(config.zDim) channels "
                + "for the \(component) VAE, found \(c) (shape \(s))")
        }
        let maxSide = 16384 / config.spatialCompression
        guard h <= maxSide, w <= maxSide else {
            throw QwenImageError.tensor(name: "latents", message: "in \(label): \(w)×\(h) latents decode to more than 16384 pixels per side; refused")
        }
        return VAEFrames(cthw: try file.floats("latents"), channels: c, frames: t, height: h, width: w)
    }

    /// Refuses decoded frames with NaN or infinite values (nothing is written then).
    static func checkFinite(_ x: VAEFrames, label: String) throws {
        let bad = x.nonFiniteCount
        guard bad == 0 else {
            throw QwenImageError.invalidInput("\(label): the decoder produced \(bad) NaN or infinite values out of \(x.count): "
                + "the latents are far outside the range the VAE was trained on (were they normalized twice, or is --denormalize wrong?); nothing was written")
        }
    }

    /// `latents` and `logvar` [1, z_dim, T, h, w] f32, as `vae-encode` writes them.
    static func latentsWriter(mean: VAEFrames, logvar: VAEFrames, normalized: Bool, component: String, producer: String) throws -> SafetensorsWriter {
        var w = SafetensorsWriter(metadata: ["producer": producer, "normalized": normalized ? "true" : "false", "component": component])
        let shape = [1, mean.channels, mean.frames, mean.height, mean.width]
        try w.add("latents", f32: mean.cthw(), shape: shape)
        try w.add("logvar", f32: logvar.cthw(), shape: shape)
        return w
    }
}
