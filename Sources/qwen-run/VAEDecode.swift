import ArgumentParser
import Foundation
import Kernels
import Quant
import QwenImage

struct VAEDecode: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vae-decode",
        abstract: "Decode VAE latents (a safetensors file) to a PNG, or to a safetensors `sample` tensor.",
        discussion: HelpText.reflow("""
        Reads the tensor `latents`, [1, z_dim, T, h, w] or [1, z_dim, h, w] (f32, bf16 or f16). --denormalize
        first applies latents * latents_std + latents_mean (as the pipelines do before decoding). The decoded
        pixels are clamped to [-1, 1] like AutoencoderKLQwenImage.decode.
          OUT.png: 8-bit (or 16-bit with --png16) RGB / RGBA, clamp(x/2 + 0.5, 0, 1). Needs T = 1: a clip
                   (T > 1 latent frames, 1 + 4(T-1) frames) is refused; write .safetensors instead.
          OUT.safetensors: `sample` [1, C, T', 8h, 8w] f32 in [-1, 1].
        The work is tiled exactly: --max-ram or --tile change speed and memory, never the numbers.

        Examples:
          qwen-run vae-decode --pack pack/ --latents l.safetensors --out image.png --denormalize
          qwen-run vae-decode --pack pack/ --latents l.safetensors --out image.png --max-ram 512M --png16
          qwen-run vae-decode --pack pack/ --latents clip.safetensors --out clip.safetensors --json
        """))

    @OptionGroup var vae: VAEOptions

    @Option(name: .long, help: "The input safetensors file with a tensor named `latents`.")
    var latents: String

    @Option(name: .long, help: "The output: .png or .safetensors.")
    var out: String

    @Flag(name: .long, help: "De-normalize first: latents * latents_std + latents_mean.")
    var denormalize = false

    @Flag(name: .long, help: "Write a 16-bit PNG.")
    var png16 = false

    @OptionGroup var common: CommonOptions

    func run() throws {
        try common.apply()
        let tiling = try vae.tiling()
        try checkOutput(out, force: vae.force, extensions: ["png", "safetensors"], inputs: [vae.pack, latents])
        let asPNG = (out as NSString).pathExtension.lowercased() == "png"
        if png16 && !asPNG { throw ValidationError("--png16 needs a .png output") }
        do {
            let start = Date()
            let file = try SafetensorsFile(path: latents)
            let vaePack = try vae.open()
            let z = try VAEIO.latents(file, label: latents, config: vaePack.config, component: vae.component,
                                      oneFrame: asPNG ? "a PNG holds one image: write the clip to a .safetensors file instead" : nil)
            let s = try file.info("latents").shape
            let model = try vaePack.model(parts: .decoder, temporal: z.frames > 1)
            if denormalize { try model.denormalize(z) }
            let progress = TileProgress("vae-decode")
            let computeStart = Date()
            let (x, report) = try model.decode(z, tiling: tiling) { progress.update($0, $1) }
            progress.finish()
            let seconds = Date().timeIntervalSince(computeStart)
            try VAEIO.checkFinite(x, label: latents)
            if asPNG {
                if png16 {
                    try ImageFile.writePNG16(width: x.width, height: x.height, channels: x.channels, samples: x.samples16(frame: 0), to: out)
                } else {
                    try ImageFile.writePNG(x.image8(frame: 0), to: out)
                }
            } else {
                var wr = SafetensorsWriter(metadata: ["producer": "qwen-run vae-decode", "component": vae.component])
                try wr.add("sample", f32: x.cthw(), shape: [1, x.channels, x.frames, x.height, x.width])
                try wr.write(to: URL(fileURLWithPath: out), force: vae.force)
            }
            printSummary(vaeSummary([("output", out), ("latents", s.map(String.init).joined(separator: "x")),
                                     ("decoded", "\(x.frames)x\(x.height)x\(x.width)x\(x.channels)"), ("denormalized", denormalize),
                                     ("total_seconds", (Date().timeIntervalSince(start) * 1000).rounded() / 1000)],
                                    report: report, seconds: seconds, weightBytes: model.weightBytes), json: common.json)
        } catch let error as QwenImageError {
            note("error: \(error.description)")
            throw ExitCode(1)
        } catch let error as QuantError {
            note("error: \(error.description)")
            throw ExitCode(1)
        }
    }
}
