import Foundation
import Quant
@testable import QwenImage

/// Fixtures and helpers of the text encoder tests: the oracle's t2i cases and packs converted from
/// the committed tiny model into a temporary folder (once per scheme per test process).
enum TextEncoderFixtures {
    static let fixtures: URL = {
        var url = URL(fileURLWithPath: #filePath)
        while url.lastPathComponent != "Tests" { url.deleteLastPathComponent() }
        return url.appendingPathComponent("Fixtures")
    }()
    static let model = fixtures.appendingPathComponent("tiny-random-qwen-image").path
    static let refsPath = fixtures.appendingPathComponent("refs/t2i.safetensors").path
    static let casesPath = fixtures.appendingPathComponent("refs/cases.json").path

    /// The three single-prompt cases of `cases.json` (t2i.p0, p1, p2).
    static func singlePrompts() throws -> [(prefix: String, prompt: String)] {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: casesPath))) as! [String: Any]
        let t2i = (json["cases"] as! [String: Any])["t2i"] as! [String: Any]
        return (t2i["singles"] as! [[String: Any]]).map { ($0["tensor_prefix"] as! String, $0["prompt"] as! String) }
    }

    static func refs() throws -> SafetensorsFile { try SafetensorsFile(path: refsPath) }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var packs: [String: String] = [:]
    static let tempRoot: URL = {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("textlm-tests-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        tempRootPath = url.path
        atexit { try? FileManager.default.removeItem(atPath: TextEncoderFixtures.tempRootPath) }
        return url
    }()
    nonisolated(unsafe) private static var tempRootPath = ""

    /// A pack of the tiny model in `scheme` ("f32", "bf16", "q8", "q4"), optionally zstd-compressed,
    /// with the given components; converted on first use.
    static func pack(_ scheme: String, zstd: Int? = nil,
                     components: [String] = ["text_encoder", "tokenizer"]) throws -> String {
        let key = "\(scheme)-\(zstd.map(String.init) ?? "raw")-\(components.joined(separator: "+"))"
        lock.lock(); defer { lock.unlock() }
        if let p = packs[key] { return p }
        let out = tempRoot.appendingPathComponent(key).path
        try convertTinyModel(to: out, scheme: scheme, zstd: zstd, components: components)
        packs[key] = out
        return out
    }

    /// Converts the tiny model with the quant helper's converter (q8 / q4 with groups of 64 along k).
    static func convertTinyModel(to out: String, scheme: String, zstd: Int?, components: [String]) throws {
        var o = ConvertOptions()
        o.scheme = try PackScheme.parse(scheme)
        o.group = o.scheme.isQuantized ? 64 : 0
        o.zstdLevel = zstd
        o.components = Set(components)
        o.progress = false
        let checkpoint = try Checkpoint(path: model, only: o.components)
        let plan = try ConversionPlan.make(checkpoint: checkpoint, options: o)
        _ = try Converter.convert(checkpoint: checkpoint, plan: plan, output: URL(fileURLWithPath: out), options: o)
    }

    /// Copies a pack folder so a test can damage it.
    static func copy(pack: String, name: String) throws -> String {
        let dst = tempRoot.appendingPathComponent(name + "-\(UInt32.random(in: 0 ... .max))").path
        try FileManager.default.copyItem(atPath: pack, toPath: dst)
        return dst
    }

    /// ‖a − b‖ / ‖b‖ (b = reference).
    static func relL2(_ a: [Float], _ b: [Float]) -> Double {
        precondition(a.count == b.count, "sizes differ: \(a.count) vs \(b.count)")
        var num = 0.0, den = 0.0
        for i in 0 ..< a.count {
            let d = Double(a[i]) - Double(b[i])
            num += d * d
            den += Double(b[i]) * Double(b[i])
        }
        return (num / max(den, 1e-300)).squareRoot()
    }

    /// Encodes `prompts` with a fresh encoder over `packPath`.
    static func encode(_ prompts: [String], pack packPath: String, plan: TextEncoderPlan? = nil,
                       warn: (String) -> Void = { _ in }) throws -> PromptEmbeddings {
        let encoder = try PromptEncoder(pack: try Pack(path: packPath), packPath: packPath)
        return try encoder.encode([prompts], plan: plan, warn: warn)[0]
    }
}
