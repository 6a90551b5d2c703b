import ArgumentParser
import Foundation
import Kernels
import Quant
import QwenImage

/// Options shared by vae-encode and vae-decode.
struct VAEOptions: ParsableArguments {
    @Option(name: .long, help: "The pack folder (made by qwen-quant convert).")
    var pack: String

    @Option(name: .long, help: "The VAE component: vae (RGB) or vae_rgba (RGBA, Qwen-Image-Layered).")
    var component = "vae"

    @Option(name: .long, help: "Memory budget for the whole run, e.g. 512M or 1.5G: tiles are as large as fit (the whole image when it fits). Default: half of the machine's (or cgroup's) memory, at most 4G.")
    var maxRAM: String?

    @Option(name: .long, help: "Force square tiles of this many image pixels per side (exact: the result does not depend on it).")
    var tile: Int?

    @Flag(name: .long, help: "Replace an existing output file.")
    var force = false

    func tiling() throws -> VAETiling {
        if maxRAM != nil && tile != nil { throw ValidationError("give at most one of --max-ram and --tile") }
        if let t = tile {
            guard t >= 8 else { throw ValidationError("--tile must be at least 8 pixels, got \(t)") }
            return .tile(t)
        }
        if let m = maxRAM {
            guard let bytes = ByteSize.parse(m), bytes > 0 else {
                throw ValidationError("--max-ram: cannot read '\(m)' as a size (examples: 512M, 1.5G)")
            }
            return .maxRAM(usableBudget(bytes))
        }
        // No cap given: one that fits this machine (the whole image when it fits; tiling is exact).
        return .maxRAM(ProcessStats.defaultBudget())
    }

    func open() throws -> VAEPack {
        try VAEPack(pack: try Pack(path: pack), name: component)
    }
}

/// A progress bar created on the first tile (when the total is known).
final class TileProgress {
    private var bar: Quant.Progress?
    let label: String
    init(_ label: String) { self.label = label }
    func update(_ done: Int, _ total: Int) {
        if bar == nil { bar = Quant.Progress(label, total: total) }
        bar!.advance()
    }
    func finish() { bar?.finish() }
}

func vaeSummary(_ fields: [(String, Any)], report: VAERunReport, seconds: Double, weightBytes: Int) -> [(String, Any)] {
    var f = fields
    f.append(("seconds", (seconds * 1000).rounded() / 1000))
    f.append(("gflop_per_second", (2 * report.macs / max(seconds, 1e-9) / 1e9 * 10).rounded() / 10))
    f.append(("gflop", (2 * report.macs / 1e9 * 10).rounded() / 10))
    f.append(("tiles", report.segments.map { "\($0.name): \($0.tiles) of \($0.tileW)x\($0.tileH)" }.joined(separator: "; ")))
    f.append(("weight_bytes", weightBytes))
    f.append(("estimated_peak_bytes", report.estimatedPeakBytes))
    f.append(("peak_rss_bytes", ProcessStats.peakRSS()))
    f.append(("peak_rss", ByteSize.format(ProcessStats.peakRSS())))
    return f
}

struct VAEEncode: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vae-encode",
        abstract: "Encode a PNG or JPEG image (or a clip of frames) to VAE latents (the posterior mean) in a safetensors file.",
        discussion: HelpText.reflow("""
        Pixels go in as uint8/255*2-1 (RGB, or RGBA for a 4-channel VAE: the vae_rgba component, or the
        Qwen-Image 2.1 VAE, which takes an RGB image with an opaque alpha as the pipeline's convert("RGBA")).
        Writes the tensor `latents` [1, z_dim, 1, h, w] f32 with h = floor((H-2)/2)+1 applied three times
        (H/8 for multiples of 8; the 2.1 VAE: H/16, sides multiples of 16, one image, no clips),
        plus `logvar` (the posterior log-variance). --normalize applies (mean - latents_mean) / latents_std as
        the Qwen-Image pipelines do before the transformer. The work is tiled exactly: --max-ram or --tile
        change speed and memory, never the numbers.

        Clips: give --image several times, or --frames with a folder of PNG/JPEG files (taken in name order,
        numbers compared as numbers: f2 before f10). A clip has 1 + 4k frames of one size and is encoded
        causally as AutoencoderKLQwenImage does, to latents [1, z_dim, 1 + k, h, w].

        Examples:
          qwen-run vae-encode --pack pack/ --image photo.png --out latents.safetensors --normalize
          qwen-run vae-encode --pack pack/ --image big.png --out l.safetensors --max-ram 512M --json
          qwen-run vae-encode --pack pack/ --component vae_rgba --image layer.png --out l.safetensors
          qwen-run vae-encode --pack pack/ --frames clip/ --out clip.safetensors --max-ram 1G
          qwen-run vae-encode --pack pack/ --image f0.png --image f1.png --image f2.png --image f3.png --image f4.png --out c.safetensors
        """))

    @OptionGroup var vae: VAEOptions

    @Option(name: .long, help: "The input image (PNG or JPEG); give it 1 + 4k times for a clip.")
    var image: [String] = []

    @Option(name: .long, help: "A folder of frames (PNG/JPEG, name order) to encode as one clip.")
    var frames: String?

    @Option(name: .long, help: "The output safetensors file.")
    var out: String

    @Flag(name: .long, help: "Normalize the latents: (mean - latents_mean) / latents_std.")
    var normalize = false

    @Option(name: .long, help: "Refuse images with more pixels than this (default 64Mi = 8192x8192).")
    var maxPixels: Int = ImageFile.defaultMaxPixels

    @OptionGroup var common: CommonOptions

    func run() throws {
        try common.apply()
        let tiling = try vae.tiling()
        let paths = try framePaths()
        try checkOutput(out, force: vae.force, extensions: ["safetensors"], inputs: [vae.pack] + paths + (frames.map { [$0] } ?? []))
        do {
            let start = Date()
            let vaePack = try vae.open()
            let config = vaePack.config
            let tc = config.temporalCompression
            guard (paths.count - 1) % tc == 0 else {
                let k = (paths.count - 1) / tc
                throw QwenImageError.invalidInput("\(frames ?? "--image"): a clip has 1 + \(tc)k frames, found \(paths.count); "
                    + "keep the first \(1 + k * tc) or add \(1 + (k + 1) * tc - paths.count) (upstream would silently drop the extra ones)")
            }
            var images: [Image8] = []
            for p in paths {
                let img = try ImageFile.read(path: p, keepAlpha: config.inputChannels == 4, maxPixels: maxPixels)
                guard img.channels == config.inputChannels else {
                    throw QwenImageError.image(path: p, message: "the \(vae.component) VAE takes \(config.inputChannels) channels, the image has \(img.channels)")
                }
                if let first = images.first, first.width != img.width || first.height != img.height {
                    throw QwenImageError.image(path: p, message: "expected \(first.width)x\(first.height) like \(paths[0]) "
                        + "(every frame of a clip has one size), found \(img.width)x\(img.height)")
                }
                images.append(img)
            }
            let img = images[0]
            let model = try vaePack.model(parts: .encoder, temporal: images.count > 1)
            let x = try VAEFrames(images: images)
            let progress = TileProgress("vae-encode")
            let computeStart = Date()
            let (mean, logvar, report) = try model.encode(x, tiling: tiling) { progress.update($0, $1) }
            progress.finish()
            let seconds = Date().timeIntervalSince(computeStart)
            if normalize { try model.normalize(mean) }
            let w = try VAEIO.latentsWriter(mean: mean, logvar: logvar, normalized: normalize, component: vae.component,
                                            producer: "qwen-run vae-encode")
            let shape = [1, mean.channels, mean.frames, mean.height, mean.width]
            try w.write(to: URL(fileURLWithPath: out), force: vae.force)
            printSummary(vaeSummary([("output", out), ("image", "\(img.width)x\(img.height)x\(img.channels)"), ("frames", images.count),
                                     ("latents", shape.map(String.init).joined(separator: "x")), ("normalized", normalize),
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

    /// The input frames: the --image list, or the folder's PNG/JPEG files in name order (numbers compared as numbers).
    func framePaths() throws -> [String] {
        switch (image.isEmpty, frames) {
        case (true, nil): throw ValidationError("give --image (once, or 1 + 4k times for a clip) or --frames FOLDER")
        case (false, .some): throw ValidationError("give either --image or --frames, not both")
        case (false, nil): return image
        case (true, .some(let dir)):
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
                throw ValidationError("--frames \(dir): not a folder (give a folder of PNG/JPEG frames)")
            }
            let names: [String]
            do { names = try FileManager.default.contentsOfDirectory(atPath: dir) } catch {
                throw ValidationError("--frames \(dir): cannot list the folder (\(error.localizedDescription))")
            }
            let kept = names.filter { ["png", "jpg", "jpeg"].contains(($0 as NSString).pathExtension.lowercased()) && !$0.hasPrefix(".") }
                .sorted { $0.compare($1, options: .numeric) == .orderedAscending }
            guard !kept.isEmpty else {
                throw ValidationError("--frames \(dir): no .png, .jpg or .jpeg files in the folder (found \(names.count) other entries)")
            }
            return kept.map { (dir as NSString).appendingPathComponent($0) }
        }
    }
}
