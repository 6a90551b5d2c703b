import Foundation
import Quant

/// A pack's VAE component (`PACK/vae`, `PACK/vae_rgba`): its config and its tensors.
public struct VAEPack {
    public let name: String
    public let config: VAEConfig
    public let source: PackTensorSource

    /// The VAE component `name` of `pack`, with a clear error when the pack lacks it.
    public init(pack: Pack, name: String) throws {
        guard pack.hasComponent(name) else {
            let vaes = pack.components.filter { $0.hasPrefix("vae") }
            throw QwenImageError.missingComponent(pack: pack.path, component: name,
                hint: vaes.isEmpty ? "Convert the checkpoint with its VAE (qwen-quant convert --components \(name))."
                                   : "It has \(vaes.joined(separator: ", ")); pass --component.")
        }
        let component = try pack.component(name)
        self.name = name
        config = try VAEConfig.load(try component.configData(), file: component.folder.appendingPathComponent("config.json").path)
        source = PackTensorSource(component: component)
    }

    /// The model (`parts` of it; `temporal` adds the clip weights).
    public func model(parts: AutoencoderKLQwenImage.Parts = .both, temporal: Bool = false) throws -> AutoencoderKLQwenImage {
        if config.isResidual && temporal {
            throw QwenImageError.invalidInput("\(name): the Qwen-Image 2.1 VAE takes single images, not clips (upstream keeps only frame 0 of 2-4 frames and fails on more)")
        }
        return try AutoencoderKLQwenImage(config: config, source: source, parts: parts, temporal: temporal)
    }
}
