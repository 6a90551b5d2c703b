import Foundation
import Kernels
import Quant
@testable import QwenImage

/// Fixtures: `Tests/Fixtures` (see MANIFEST.md).
let vaeFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

/// ‖a − b‖ / ‖b‖ (b = reference).
func relL2(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "relL2: \(a.count) vs \(b.count) values")
    var num = 0.0, den = 0.0
    for i in 0..<a.count {
        let d = Double(a[i]) - Double(b[i])
        num += d * d
        den += Double(b[i]) * Double(b[i])
    }
    return (num / max(den, 1e-30)).squareRoot()
}

func relL2(_ a: VAEFrames, _ b: VAEFrames) -> Double {
    precondition(a.count == b.count)
    return relL2(a.floats, b.floats)
}

enum VAEFixture {
    static func refs(_ name: String) throws -> SafetensorsFile {
        try SafetensorsFile(path: vaeFixtures.appendingPathComponent("refs/\(name).safetensors").path)
    }

    static func checkpoint(_ component: String) throws -> CheckpointComponent {
        try CheckpointComponent(name: component,
                                folder: vaeFixtures.appendingPathComponent("tiny-random-qwen-image/\(component)"))
    }

    static func config(_ component: String) throws -> VAEConfig {
        let ck = try checkpoint(component)
        return try VAEConfig.load(try ck.configData(), file: ck.configURL.path)
    }

    /// The model from a pack converted from the fixture checkpoint by the real converter (once per
    /// scheme and test process, in a temporary folder).
    static func model(_ component: String = "vae", scheme: PackScheme = .f32, temporal: Bool = false,
                      parts: AutoencoderKLQwenImage.Parts = .both) throws -> AutoencoderKLQwenImage {
        try VAEPack(pack: try pack(scheme), name: component).model(parts: parts, temporal: temporal)
    }

    /// The model straight from the fixture checkpoint (hub layout transformed in memory by RecordingTensorSource).
    static func hubModel(_ component: String = "vae", scheme: qk_scheme = QK_F32, temporal: Bool = false,
                         parts: AutoencoderKLQwenImage.Parts = .both) throws -> AutoencoderKLQwenImage {
        let ck = try checkpoint(component)
        return try AutoencoderKLQwenImage(config: try config(component), source: RecordingTensorSource(checkpoint: ck, scheme: scheme),
                                          parts: parts, temporal: temporal)
    }

    static func pack(_ scheme: PackScheme) throws -> Pack {
        PackCache.lock.lock()
        defer { PackCache.lock.unlock() }
        if let p = PackCache.packs[scheme] { return p }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("qwen-vae-tests-\(getpid())")
        if PackCache.packs.isEmpty {
            try? FileManager.default.removeItem(at: root)
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            atexit {
                try? FileManager.default.removeItem(at: FileManager.default.temporaryDirectory
                    .appendingPathComponent("qwen-vae-tests-\(getpid())"))
            }
        }
        var opts = ConvertOptions()
        opts.scheme = scheme
        opts.components = ["vae", "vae_rgba"]
        opts.progress = false
        opts.threads = 2
        let ck = try Checkpoint(path: vaeFixtures.appendingPathComponent("tiny-random-qwen-image").path, only: ["vae", "vae_rgba"])
        let plan = try ConversionPlan.make(checkpoint: ck, options: opts)
        let out = root.appendingPathComponent("\(scheme.rawValue).pack")
        _ = try Converter.convert(checkpoint: ck, plan: plan, output: out, options: opts)
        let p = try Pack(path: out.path)
        PackCache.packs[scheme] = p
        return p
    }

    /// A [B, C, T, H, W] reference tensor, batch item `b`, as frames.
    static func frames(_ file: SafetensorsFile, _ name: String, batch b: Int = 0) throws -> VAEFrames {
        let info = try file.info(name)
        precondition(info.shape.count == 5, "\(name): \(info.shape)")
        let (c, t, h, w) = (info.shape[1], info.shape[2], info.shape[3], info.shape[4])
        let all = try file.floats(name)
        let n = c * t * h * w
        return VAEFrames(cthw: Array(all[(b * n)..<((b + 1) * n)]), channels: c, frames: t, height: h, width: w)
    }
}

private enum PackCache {
    nonisolated(unsafe) static var packs: [PackScheme: Pack] = [:]
    static let lock = NSLock()
}
