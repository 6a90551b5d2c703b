import Foundation
import Quant

/// VAE tensors from a pack component (`PACK/vae`, `PACK/vae_rgba`): each name is looked up in the
/// manifest, its shard opened on first use (mapped for raw shards, decompressed for zstd ones).
/// Only the tensors asked for are touched, so a still image never pages in the t0 / t1 slices.
public final class PackVAESource: VAEWeightSource {
    public let component: PackComponent
    private var shards: [String: PackShard] = [:]
    private let lock = NSLock()

    public init(component: PackComponent) { self.component = component }

    /// The VAE component `name` of `pack`, with a clear error when the pack lacks it.
    public convenience init(pack: Pack, name: String) throws {
        guard pack.hasComponent(name) else {
            let vaes = pack.components.filter { $0.hasPrefix("vae") }
            throw QwenImageError.missingComponent(pack: pack.path, component: name,
                hint: vaes.isEmpty ? "Convert the checkpoint with its VAE (qwen-quant convert --components \(name))."
                                   : "It has \(vaes.joined(separator: ", ")); pass --component.")
        }
        self.init(component: try pack.component(name))
    }

    public func config() throws -> VAEConfig {
        try VAEConfig.load(try component.configData(), file: component.folder.appendingPathComponent("config.json").path)
    }

    private func shard(for name: String) throws -> (PackShard, PackTensorInfo) {
        guard let info = component.tensorInfo(name) else {
            throw QwenImageError.tensor(name: name, message: "missing from pack component \(component.folder.path) "
                + "(was the pack converted by an older qwen-quant, or from another VAE?)")
        }
        lock.lock(); defer { lock.unlock() }
        if let s = shards[info.shard] { return (s, info) }
        let s = try component.shard(info.shard)
        shards[info.shard] = s
        return (s, info)
    }

    public func weight(_ name: String, rows: Int, cols: Int) throws -> Weight {
        let (s, info) = try shard(for: name)
        guard info.shape == [rows, cols] else {
            throw QwenImageError.tensor(name: name, message: "expected shape [\(rows), \(cols)] for this config, found \(info.shape) in \(component.folder.path)")
        }
        return try s.weight(name)
    }

    public func vector(_ name: String, count: Int) throws -> [Float] {
        let (s, info) = try shard(for: name)
        guard info.shape.reduce(1, *) == count else {
            throw QwenImageError.tensor(name: name, message: "expected \(count) values for this config, found shape \(info.shape) in \(component.folder.path)")
        }
        return try s.vector(name)
    }

    public func release(block: String) {
        lock.lock(); defer { lock.unlock() }
        shards.removeValue(forKey: block)?.release()
    }
}
