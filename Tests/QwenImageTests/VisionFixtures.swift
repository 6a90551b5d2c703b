import Foundation
import Quant
import Testing
@testable import QwenImage

/// Shared fixture access for the vision / edit tests (oracle references in `Tests/Fixtures/refs`).
enum VisionFixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    static func ref(_ name: String) -> String { root.appendingPathComponent("refs/" + name).path }
    static var modelPath: String { root.appendingPathComponent("tiny-random-qwen-image").path }
    static let editCases = ["edit1", "editplus1", "editplus2"]

    static func file(_ name: String) throws -> SafetensorsFile { try SafetensorsFile(path: ref(name)) }

    /// A uint8 `[H, W, C]` tensor as an image.
    static func image(_ f: SafetensorsFile, _ name: String) throws -> VisionSourceImage {
        let info = try f.info(name)
        #expect(info.dtype == .U8 && info.shape.count == 3, "\(name): \(info.dtype) \(info.shape)")
        return try VisionSourceImage(width: info.shape[1], height: info.shape[0], channels: info.shape[2],
                                 pixels: [UInt8](try f.rawBytes(name)))
    }

    static func rgb(_ f: SafetensorsFile, _ name: String) throws -> RGBImage {
        let s = try image(f, name)
        return try RGBImage(width: s.width, height: s.height, pixels: s.pixels)
    }

    static func grids(_ f: SafetensorsFile, _ name: String) throws -> [(t: Int, h: Int, w: Int)] {
        let g = try f.int64s(name).map(Int.init)
        return stride(from: 0, to: g.count, by: 3).map { (g[$0], g[$0 + 1], g[$0 + 2]) }
    }
}

/// Error metrics.
enum Metrics {
    static func relL2(_ a: [Float], _ ref: [Float]) -> Double {
        precondition(a.count == ref.count, "sizes \(a.count) vs \(ref.count)")
        var num = 0.0, den = 0.0
        for i in 0..<a.count {
            let d = Double(a[i]) - Double(ref[i])
            num += d * d
            den += Double(ref[i]) * Double(ref[i])
        }
        return den > 0 ? (num / den).squareRoot() : num.squareRoot()
    }

    static func maxAbs(_ a: [Float], _ ref: [Float]) -> Double {
        precondition(a.count == ref.count, "sizes \(a.count) vs \(ref.count)")
        var m = 0.0
        for i in 0..<a.count { m = max(m, abs(Double(a[i]) - Double(ref[i]))) }
        return m
    }

    static func maxAbs(_ a: [UInt8], _ b: [UInt8]) -> Int {
        precondition(a.count == b.count)
        var m = 0
        for i in 0..<a.count { m = max(m, abs(Int(a[i]) - Int(b[i]))) }
        return m
    }
}

/// Packs of the tiny fixture model, converted once per scheme into a temporary folder shared by the
/// vision / edit tests of this process (removed at exit).
enum TinyPacks {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var made: [String: String] = [:]
    static let dir: URL = {
        let u = FileManager.default.temporaryDirectory
            .appendingPathComponent("qwen-vision-tests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try? FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: TinyPacks.dirPathForCleanup) }
        return u
    }()
    nonisolated(unsafe) static var dirPathForCleanup = ""

    /// The path of a pack of the tiny model in `scheme` (group 64 for q8 / q4), converting it on first use.
    static func path(_ scheme: PackScheme, components: Set<String>? = nil) throws -> String {
        let key = scheme.rawValue + (components.map { "-" + $0.sorted().joined(separator: "+") } ?? "")
        lock.lock(); defer { lock.unlock() }
        if let p = made[key] { return p }
        dirPathForCleanup = dir.path
        var o = ConvertOptions()
        o.scheme = scheme
        o.group = (scheme == .q8 || scheme == .q4) ? 64 : 0
        o.components = components
        o.progress = false
        let ck = try Checkpoint(path: VisionFixtures.modelPath, only: components)
        let plan = try ConversionPlan.make(checkpoint: ck, options: o)
        let out = dir.appendingPathComponent("tiny-\(key)")
        _ = try Converter.convert(checkpoint: ck, plan: plan, output: out, options: o)
        made[key] = out.path
        return out.path
    }

    static func pack(_ scheme: PackScheme) throws -> Pack { try Pack(path: path(scheme)) }
}
