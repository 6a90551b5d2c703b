import Foundation
import Quant
@testable import QwenImage

/// Packs of the tiny Qwen-Image 2.1 fixture (`Tests/Fixtures/gen2/model`), converted once per scheme and component
/// set and shared by the suites that run at the same time (under a lock).
enum Gen2Packs {
    static let model = TextEncoderFixtures.fixtures.appendingPathComponent("gen2/model").path

    nonisolated(unsafe) private static var paths: [String: String] = [:]
    private static let lock = NSLock()

    /// - Parameter group: the group size of quantized schemes (nil: the converter's default).
    static func path(_ scheme: PackScheme, components: [String], group: Int? = nil) throws -> String {
        lock.lock(); defer { lock.unlock() }
        let key = "\(components.joined(separator: "+"))-\(scheme.rawValue)"
        if let p = paths[key] { return p }
        let out = TextEncoderFixtures.tempRoot.appendingPathComponent("gen2-\(key)")
        var o = ConvertOptions()
        o.scheme = scheme
        if let group { o.group = scheme.isQuantized ? group : 0 }
        o.components = Set(components)
        o.progress = false
        let checkpoint = try Checkpoint(path: model, only: o.components)
        _ = try Converter.convert(checkpoint: checkpoint, plan: try ConversionPlan.make(checkpoint: checkpoint, options: o),
                                  output: out, options: o)
        paths[key] = out.path
        return out.path
    }
}
